//! The report as Markdown (`COMPATIBILITY.md`): one section per part of the view.

use super::view::*;
use model::findings::Kind;
use model::profile::Status;
use model::Verdict;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The profiles section: a verdict per profile and kernel, then what each profile lacks where,
/// each need once with the kernels as ranges.
pub fn profiles_markdown(v: &View<'_>) -> String {
    let mut md = String::from("\n## Can I run it here? Profiles\n\n");
    if v.profiles.is_empty() {
        md += "No profile in `profiles/`.\n";
        return md;
    }
    md += "What a piece of software needs (`profiles/<name>.toml`), checked on every kernel: ✅ satisfies, \
           ❌ violates, ❔ not checked (a needed behaviour said nothing about that kernel). Check a profile with \
           `cargo xtask check NAME`, or on a production host with `cargo xtask check NAME --host`. \"Needs at least\" is the \
           oldest kernel version the behaviours' expectation tables say it works on.\n\n| profile | needs at least |";
    for k in &v.order {
        let _ = write!(md, " {k} ({}) |", v.label(k));
    }
    md += "\n|---|---|";
    md += &"---|".repeat(v.order.len());
    md += "\n";
    for (p, per) in &v.profiles {
        let minimum = match model::documented::minimum(p, &v.compat.behaviours).0 {
            Some(model::documented::Since::From(at)) => at.to_string(),
            Some(other) => other.to_string(),
            None => "-".to_string(),
        };
        let _ = write!(md, "| [{}](../profiles/{}.toml) | {minimum} |", p.name, p.name);
        for k in &v.order {
            let check = &per[k];
            let n = check.needs.iter().filter(|c| c.status != Status::Met).count();
            let _ = write!(
                md,
                " {} {}{} |",
                outcome_symbol(check.outcome),
                check.outcome,
                if n > 0 { format!(" ({n})") } else { String::new() }
            );
        }
        md += "\n";
    }
    for (p, per) in &v.profiles {
        let _ = writeln!(md, "\n**{}**: {}", p.name, p.summary);
        let mut any = false;
        for need in &p.needs {
            let mut by_observed: Vec<(Status, String, Option<String>, Vec<&str>)> = Vec::new();
            for k in &v.order {
                let Some(c) = per[k].needs.iter().find(|c| c.need.behaviour == need.behaviour) else {
                    continue;
                };
                if c.status == Status::Met {
                    continue;
                }
                match by_observed.iter_mut().find(|(s, o, _, _)| *s == c.status && *o == c.observed) {
                    Some((_, _, _, ks)) => ks.push(k),
                    None => by_observed.push((c.status, c.observed.clone(), c.reason.clone(), vec![k])),
                }
            }
            for (status, observed, reason, ks) in by_observed {
                any = true;
                let what = match status {
                    Status::Violated => format!("observed `{}`", short(&observed, 80)),
                    _ => format!("not checked ({})", short(reason.as_deref().unwrap_or(""), 120)),
                };
                let _ = writeln!(
                    md,
                    "- `{}` needs `{}`: {what} on {}. Why: {}",
                    need.behaviour,
                    short(&need.expect, 100),
                    v.kernels(&ks),
                    need.why
                );
            }
        }
        if !any {
            md += "- Every kernel satisfies it.\n";
        }
    }
    md
}

/// The findings section: every behaviour where kernels contradict the documentation or their
/// expectation, once, with the kernels as ranges and the documented claim quoted.
pub fn findings_markdown(v: &View<'_>) -> String {
    let mut md = String::from("\n## Findings\n");
    for kind in [Kind::Documentation, Kind::Expectation, Kind::Flaky] {
        let _ = write!(md, "\n### {}\n\n", kind_title(&kind));
        let groups: Vec<&FindingGroup<'_>> = v.findings.iter().filter(|g| g.kind == kind).collect();
        if groups.is_empty() {
            md += "None observed.\n";
            continue;
        }
        for g in groups {
            let b = &v.compat.behaviours[g.behaviour];
            let seen: Vec<String> = g
                .observed
                .iter()
                .map(|(o, ks)| match lacking(&g.claim, o) {
                    lacks if lacks.is_empty() => format!("`{}` on {}", short(o, 60), v.kernels(ks)),
                    lacks => format!("a list without `{}` on {}", lacks.join(" "), v.kernels(ks)),
                })
                .collect();
            let _ = writeln!(
                md,
                "- **`{}`**: {}. Claimed: {}. Observed {}.",
                g.behaviour,
                b.summary,
                short(&g.claim, 200),
                seen.join("; ")
            );
            if !g.source.is_empty() {
                let _ = writeln!(md, "  > {}", g.source);
            }
            if !b.notes.is_empty() {
                let _ = writeln!(md, "\n  {}", b.notes);
            }
            let _ = writeln!(md, "\n  What the kernel does, by its source: {}", b.citation);
        }
    }
    md
}

/// What changed since the previous matrix (from the history), and where behaviours change along
/// the kernel versions.
pub fn changes_markdown(v: &View<'_>) -> String {
    let mut md = String::from("\n## What changed\n\n");
    match v.previous_matrix() {
        None => {
            md +=
                "The history (`matrix/history.toml`) starts with this matrix: nothing to compare with yet.\n"
        }
        Some(date) => {
            let _ = writeln!(md, "Since the previous matrix ({date}):\n");
            for (k, before, now) in &v.moves {
                let _ = writeln!(md, "- {k} moved from {before} to {now}.");
            }
            for c in &v.changes {
                let _ = writeln!(
                    md,
                    "- `{}` on {}: `{}` on {} (first seen {}) → `{}` on {}.",
                    c.behaviour,
                    c.kernel,
                    short(&c.before.observed, 80),
                    c.before.version,
                    c.before.first_seen,
                    short(&c.observed, 80),
                    c.version
                );
            }
            if v.changes.is_empty() {
                md += "- No observation changed.\n";
            }
        }
    }
    md += "\nAlong the kernel versions (every point release the history recorded, in version order), where \
           behaviours change:\n\n";
    if v.steps.is_empty() {
        md += "Nowhere: every kernel observed the same thing for every behaviour.\n";
    }
    for step in &v.steps {
        let _ = writeln!(
            md,
            "- Between {} ({}) and {} ({}):",
            step.before.0, step.before.1, step.after.0, step.after.1
        );
        for (id, old, new) in &step.changes {
            let _ = writeln!(md, "  - `{id}`: {}", change_text(old, new));
        }
    }
    md
}

/// The names of set-valued behaviours (features, ioctls) by kernel.
/// The configuration axis: the columns the project built, grouped by the source they share, each
/// with what differs from the base configuration and the behaviours it observed differently from
/// the base build of the same source.
pub fn configurations_markdown(v: &View<'_>) -> String {
    let compat = v.compat;
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in &v.order {
        if let Some(b) = &compat.kernels[*id].build {
            by_source.entry(b.source.as_str()).or_default().push(id);
        }
    }
    if by_source.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## Configurations\n\nKernels built from Debian's source packages (`cargo xtask images build`): columns that \
         share a source differ only in their configuration, the base one (`images/configs/base.config`) and what \
         each changes in it. Behaviours listed were observed differently from the base build of the same source.\n",
    );
    for (source, ids) in by_source {
        let _ = write!(md, "\n`{source}`\n\n| kernel | differs from the base configuration | observed differently |\n|---|---|---|\n");
        let base =
            ids.iter().find(|id| compat.kernels[**id].build.as_ref().is_some_and(|b| b.differs.is_empty()));
        for id in &ids {
            let b = compat.kernels[*id].build.as_ref().expect("grouped by build");
            let differs = if b.differs.is_empty() {
                "(the base configuration)".to_string()
            } else {
                b.differs.join(", ")
            };
            let changed: Vec<String> = match base {
                Some(base) if base != id => compat
                    .behaviours
                    .iter()
                    .filter(|(_, beh)| {
                        let (a, c) = (beh.cells.get(*base), beh.cells.get(*id));
                        a.zip(c).is_some_and(|(a, c)| a.observed != c.observed || a.verdict != c.verdict)
                    })
                    .map(|(bid, _)| format!("`{bid}`"))
                    .collect(),
                _ => Vec::new(),
            };
            let changed = match changed.len() {
                0 if base.is_some_and(|b| b != id) => "none".to_string(),
                0 => "-".to_string(),
                n if n > 12 => format!("{n} behaviours: {} ...", changed[..12].join(", ")),
                _ => changed.join(", "),
            };
            let _ = writeln!(md, "| {id} | {differs} | {changed} |");
        }
    }
    md
}

pub fn selftests_markdown(v: &View<'_>) -> String {
    let compat = v.compat;
    let sources = selftest_sources(v);
    if sources.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## The kernels' own selftests\n\nEach kernel's userfaultfd selftests (`uffd-unit-tests` and `uffd-stress` from \
         tools/testing/selftests/mm, or `userfaultfd` from tools/testing/selftests/vm before 6.4), built from its own Debian \
         source package and run in its guest after the suite: the `selftests` rows below, one per case.\n\n\
         | kernel | pass | fail | skip | built from |\n|---|---|---|---|---|\n",
    );
    for (k, source) in &sources {
        let (pass, fail, skip) = selftest_counts(compat, k);
        let _ = writeln!(md, "| {k} | {pass} | {fail} | {skip} | {} |", cell_text(source, 200));
    }
    let disagree = selftest_disagreements(compat);
    if disagree.is_empty() {
        md += "\nWhere a selftest and one of our behaviours speak about the same thing, they agree on every kernel.\n";
    } else {
        md += "\nWhere a selftest and one of our behaviours speak about the same thing and disagree:\n\n\
               | kernel | selftest | behaviour | how |\n|---|---|---|---|\n";
        for d in disagree {
            let _ = writeln!(
                md,
                "| {} | `{}` | `{}` | {} |",
                d.kernel,
                d.selftest,
                d.behaviour,
                cell_text(&d.how, 300)
            );
        }
    }
    md
}

pub fn timelines_markdown(v: &View<'_>) -> String {
    let mut md = String::new();
    if v.timelines.is_empty() {
        return md;
    }
    md += "\n## Features and ioctls by kernel\n\nWhich name each kernel lists, by the first kernel (in version order) that has it; \
           the tables below show these cells only as counts and the change from the kernel before.\n";
    for t in &v.timelines {
        let _ = write!(md, "\n### `{}`\n\n| name | first in |", t.behaviour);
        for k in &v.order {
            let _ = write!(md, " {} |", v.label(k));
        }
        md += "\n|---|---|";
        md += &"---|".repeat(v.order.len());
        md += "\n";
        for (name, ks) in &t.names {
            let _ = write!(md, "| {name} | {} |", v.label(ks[0]));
            for k in &v.order {
                md += if ks.contains(k) { " ● |" } else { " |" };
            }
            md += "\n";
        }
    }
    md
}

pub fn markdown(v: &View<'_>) -> String {
    let compat = v.compat;
    let mut md = String::from("# userfaultfd behaviour compatibility\n\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask report` from `matrix/compat.toml` (matrix of {}), `matrix/history.toml` and \
         `profiles/`; do not edit. Every cell was observed on that kernel by the uffd-conformance suite: its \
         verdict, then the observed value. Kernels are in version order. The full details, expectation tables and \
         citations are in `compat.toml` and on the HTML report.\n",
        compat.generated
    );
    md += "Legend: ";
    md += &Verdict::ALL
        .iter()
        .map(|v| format!("{} {v} ({})", symbol(*v), meaning(*v)))
        .collect::<Vec<_>>()
        .join("; ");
    md += ".\n";
    md += &profiles_markdown(v);
    md += &findings_markdown(v);
    md += &changes_markdown(v);
    md += "\n## Kernels\n\n| kernel | version | release | accel | source | date | status |\n|---|---|---|---|---|---|---|\n";
    for id in &v.order {
        let k = &compat.kernels[*id];
        let status = match &k.reason {
            Some(r) => format!("incomplete: {}", cell_text(r, 120)),
            None => "complete".to_string(),
        };
        let _ = writeln!(
            md,
            "| {id} | {} | {} | {} | {} | {} | {status} |",
            v.label(id),
            k.release,
            k.accel,
            cell_text(&k.source, 90),
            k.date
        );
    }
    if let Some(go) = go_line(compat) {
        let _ = writeln!(md, "\n{go}");
    }
    md += &configurations_markdown(v);
    md += &selftests_markdown(v);
    md += &timelines_markdown(v);
    // The kernels' own selftest cases last, folded under their counts.
    let mut families: Vec<(&str, Vec<&str>)> = families(compat).into_iter().collect();
    families.sort_by_key(|(f, _)| *f == model::data::SELFTESTS);
    for (family, ids) in families {
        let selftests = family == model::data::SELFTESTS;
        let _ = write!(md, "\n## {family}\n\n");
        if selftests {
            let _ = write!(md, "<details><summary>{}</summary>\n\n", selftest_summary(v));
        }
        md += "| behaviour |";
        for k in &v.order {
            let _ = write!(md, " {k} |");
        }
        md += "\n|---|";
        md += &"---|".repeat(v.order.len());
        md += "\n";
        for id in ids {
            let b = &compat.behaviours[id];
            let since = supported_since(b).map_or_else(String::new, |s| format!(" ({})", supported_text(&s)));
            let _ = write!(md, "| `{id}` {}{since} |", cell_text(&b.summary, 100));
            for k in &v.order {
                match b.cells.get(*k) {
                    Some(c) if not_in_selftests(b, c) => md += " · not in this kernel's selftests |",
                    Some(c) => {
                        let shown = match v.set_cell(id, k) {
                            Some((short, _, _)) => short,
                            None => cell_text(&c.observed, 48),
                        };
                        let _ = write!(md, " {} {} |", symbol(c.verdict), shown);
                    }
                    None => md += " |",
                }
            }
            md += "\n";
        }
        if selftests {
            md += "\n</details>\n";
        }
    }
    md
}

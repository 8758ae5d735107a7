//! The report as one self-contained page (`index.html`, no external assets): the view as JSON,
//! rendered in the browser by a small script. The page's HTML, CSS and script are files beside
//! this one (`page.html`, `page.css`, `page.js`), put together at build time.

use super::view::*;
use anyhow::{Context, Result};
use model::documented::Since;
use model::history::observes_the_kernel;
use model::profile::Status;
use model::Verdict;
use serde_json::{json, Value};

/// The page without its data: `page.html` with `page.css` and `page.js` in place.
const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The page's data: the view, as the page's script renders it.
pub fn page_data(v: &View<'_>) -> Value {
    let compat = v.compat;
    let kernels: Vec<Value> = v
        .order
        .iter()
        .map(|k| {
            let i = &compat.kernels[*k];
            json!({"id": k, "label": v.label(k), "arch": model::columns::arch(i), "release": i.release, "version": i.version, "accel": i.accel,
                   "source": i.source, "date": i.date, "reason": i.reason, "host": i.accel == "none",
                   "config": i.config.as_ref().map(|c| c.source.clone()),
                   "build": i.build.as_ref().map(|b| json!({"source": b.source, "differs": b.differs}))})
        })
        .collect();
    let behaviours = behaviours_json(v);
    let profiles = profiles_json(v);
    let findings: Vec<Value> = v
        .findings
        .iter()
        .map(|g| {
            let observed: Vec<Value> = g
                .observed
                .iter()
                .map(|(o, ks)| json!({"value": o, "kernels": ks, "where": v.kernels(ks), "lacks": lacking(&g.claim, o)}))
                .collect();
            json!({"behaviour": g.behaviour, "kind": kind_name(&g.kind), "claim": g.claim, "source": g.source,
                   "observed": observed})
        })
        .collect();
    let timelines: Vec<Value> = v
        .timelines
        .iter()
        .map(|t| {
            let names: Vec<Value> = t
                .names
                .iter()
                .map(|(n, ks)| json!({"name": n, "first": v.label(ks[0]), "kernels": ks}))
                .collect();
            json!({"behaviour": t.behaviour, "names": names})
        })
        .collect();
    let changes: Vec<Value> = v
        .changes
        .iter()
        .map(|c| {
            json!({"behaviour": c.behaviour, "kernel": c.kernel, "before": c.before, "observed": c.observed,
                   "version": c.version, "verdict": c.verdict})
        })
        .collect();
    let steps: Vec<Value> = v
        .steps
        .iter()
        .map(|x| {
            let changes: Vec<Value> = x
                .changes
                .iter()
                .map(|(id, old, new)| json!({"behaviour": id, "old": old, "new": new, "names": name_changes(old, new)}))
                .collect();
            json!({"before": x.before, "after": x.after, "changes": changes})
        })
        .collect();
    // `absent` has its own swatch, in words (page.js: ABSENT).
    let legend: Vec<Value> = Verdict::ALL
        .iter()
        .filter(|x| **x != Verdict::Absent)
        .map(|x| json!({"verdict": x.as_str(), "mark": mark(*x), "meaning": meaning(*x)}))
        .collect();
    let selftests: Vec<Value> = selftest_sources(v)
        .into_iter()
        .map(|(k, source)| {
            let (pass, fail, skip) = selftest_counts(compat, &k);
            json!({"kernel": k, "source": source, "pass": pass, "fail": fail, "skip": skip})
        })
        .collect();
    let disagreements = selftest_disagreements(compat);
    let clients: Vec<Value> = v
        .clients
        .iter()
        .map(|r| {
            let cells: serde_json::Map<String, Value> = r
                .cells
                .iter()
                .map(|(k, c)| {
                    (
                        k.to_string(),
                        json!({"state": c.state.as_str(), "text": c.text, "why": c.why, "failing": c.failing,
                               "link": format!("{}/{k}", c.link)}),
                    )
                })
                .collect();
            json!({"name": r.name, "behaviours": r.behaviours, "cells": cells, "writeups": r.writeups})
        })
        .collect();
    json!({"generated": compat.generated, "kernels": kernels, "behaviours": behaviours, "profiles": profiles,
           "findings": findings, "timelines": timelines, "clients": clients,
           "selftests": {"kernels": selftests, "disagreements": disagreements, "summary": selftest_summary(v)},
           "changes": {"previous": v.previous_matrix(), "cells": changes, "moves": v.moves, "steps": steps},
           "legend": legend, "go": go_line(compat), "arch": arch_json(compat)})
}

/// Every behaviour with its cells, in column order, and what the picker offers for it.
fn behaviours_json(v: &View<'_>) -> Vec<Value> {
    let compat = v.compat;
    compat
        .behaviours
        .iter()
        .map(|(id, b)| {
            let values = distinct_observations(v, id);
            let cells: serde_json::Map<String, Value> = v
                .order
                .iter()
                .filter_map(|k| b.cells.get(*k).map(|c| (k, c)))
                .map(|(k, c)| {
                    let value = observes_the_kernel(c.verdict).then(|| values.iter().position(|o| *o == c.observed));
                    let set = v.set_cell(id, k);
                    let history: Vec<&model::history::Entry> = v.history.of(id, k).collect();
                    (
                        k.to_string(),
                        json!({"observed": c.observed, "verdict": c.verdict, "mark": mark(c.verdict), "reason": c.reason,
                               "absent": not_in_selftests(b, c),
                               "repro": if not_in_selftests(b, c) { None } else { reproduce(compat, id, k) },
                               "expected": c.expected, "details": c.details, "value": value.flatten(),
                               "short": set.as_ref().map(|s| s.0.clone()), "added": set.as_ref().map(|s| s.1.clone()),
                               "removed": set.as_ref().map(|s| s.2.clone()), "history": history}),
                    )
                })
                .collect();
            let stretches: Vec<Value> = v
                .stretches
                .iter()
                .filter(|(s, _)| s == id)
                .flat_map(|(_, s)| s.iter().map(|s| json!({"observed": s.observed, "points": s.points})))
                .collect();
            let picks: Vec<Value> = if b.family == model::data::SELFTESTS {
                Vec::new()
            } else {
                picks(v, id)
                    .into_iter()
                    .map(|p| {
                        // One letter per kernel, in column order: met, violated, not checked.
                        let per: String = v
                            .order
                            .iter()
                            .map(|k| match p.kernels[*k] {
                                Status::Met => 'm',
                                Status::Violated => 'v',
                                Status::NotChecked => 'n',
                            })
                            .collect();
                        json!({"expect": p.expect, "since": since_json(&p.since), "kernels": per})
                    })
                    .collect()
            };
            json!({"id": id, "family": b.family, "summary": b.summary, "observes": b.observes, "expectation": b.expectation,
                   "documented": b.documented, "citation": b.citation, "notes": b.notes, "values": values, "cells": cells,
                   "set": is_set_valued(b), "stretches": stretches, "since": supported_since(b).map(|s| json!({"text": supported_text(&s)})),
                   "picks": picks})
        })
        .collect()
}

/// Every profile with its verdict per kernel, what it lacks there, and its minimum version.
fn profiles_json(v: &View<'_>) -> Vec<Value> {
    let compat = v.compat;
    v
        .profiles
        .iter()
        .map(|(p, per)| {
            let verdicts: serde_json::Map<String, Value> = per
                .iter()
                .map(|(k, check)| {
                    let problems: Vec<Value> = check
                        .needs
                        .iter()
                        .filter(|c| c.status != Status::Met)
                        .map(|c| {
                            json!({"behaviour": c.need.behaviour, "violated": c.status == Status::Violated,
                                   "observed": c.observed, "reason": c.reason, "expect": c.need.expect, "why": c.need.why})
                        })
                        .collect();
                    (k.to_string(), json!({"outcome": check.outcome.as_str(), "problems": problems}))
                })
                .collect();
            let needs: Vec<Value> =
                p.needs.iter().map(|n| json!({"behaviour": n.behaviour, "expect": n.expect, "why": n.why})).collect();
            let (overall, each) = model::documented::minimum(p, &compat.behaviours);
            json!({"name": p.name, "summary": p.summary, "source": p.source, "path": p.path, "needs": needs, "kernels": verdicts,
                   "minimum": overall.as_ref().map(since_json), "minimum_text": model::documented::describe_minimum(&overall, &each)})
        })
        .collect()
}

/// Where x86-64 and arm64 differ (`arch_differences`), as the page's script reads it.
fn arch_json(compat: &model::Compat) -> Value {
    let side = |s: &ArchSide| {
        json!({"kernel": s.kernel, "arch": s.arch, "version": s.version, "observed": s.observed, "verdict": s.verdict,
               "mark": mark(s.verdict), "reason": s.reason, "row": s.row})
    };
    arch_differences(compat)
        .iter()
        .map(|p| {
            let differences: Vec<Value> = p
                .differences
                .iter()
                .map(|d| {
                    json!({"behaviour": d.behaviour, "x86": side(&d.x86), "other": side(&d.other),
                           "names": name_changes(&d.x86.observed, &d.other.observed),
                           "citation": compat.behaviours[d.behaviour].citation})
                })
                .collect();
            json!({"x86": p.x86, "other": p.other, "compared": p.compared, "differences": differences})
        })
        .collect()
}

/// A documented minimum version as the page's script reads it: `kind` (`any`, `from`, `never`,
/// `undetermined`), the words, and for `from` the version as numbers to compare.
fn since_json(s: &Since) -> Value {
    match s {
        Since::Any => json!({"kind": "any", "text": since_text(s)}),
        Since::From(v) => json!({"kind": "from", "text": since_text(s), "version": v.to_string(),
                                 "key": [v.major, v.minor, v.patch]}),
        Since::Never => json!({"kind": "never", "text": since_text(s)}),
        Since::Undetermined => json!({"kind": "undetermined", "text": since_text(s)}),
    }
}

/// The page: the view as JSON, rendered by a small script (see the module comment for what it
/// shows). Its URL fragment is a permalink (`#ID` a behaviour, `#ID/KERNEL` a cell, which opens
/// its details) or the filters (`#q=copy&family=remove&differs=1`).
pub fn html(v: &View<'_>) -> Result<String> {
    // Nothing inside the data may close the script element.
    let data = serde_json::to_string(&page_data(v)).context("serialising the matrix")?.replace("</", "<\\/");
    Ok(TEMPLATE
        .replacen("/*STYLE*/\n", STYLE, 1)
        .replacen("/*SCRIPT*/\n", SCRIPT, 1)
        .replacen("/*DATA*/", &data, 1))
}

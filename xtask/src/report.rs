//! `cargo xtask report`: the matrix as people read it, rendered from `matrix/compat.toml`:
//! `COMPATIBILITY.md` (checked in, readable on the forge: findings first, then one table per
//! family with behaviours as rows and kernels as columns) and one self-contained `index.html`
//! (no external assets) for publishing.

use anyhow::{Context, Result};
use model::findings::{findings, Finding, Kind};
use model::{Compat, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub const COMPATIBILITY: &str = "COMPATIBILITY.md";

/// Renders both from the matrix in `matrix_dir` (`COMPATIBILITY.md` beside `compat.toml`); the
/// page goes to `html_dir/index.html`.
pub fn run(matrix_dir: &Path, html_dir: &Path) -> Result<()> {
    let compat: Compat = model::data::load(&matrix_dir.join("compat.toml"))?;
    write_markdown(matrix_dir, &compat)?;
    let page = html_dir.join("index.html");
    crate::util::write_atomic(&page, html(&compat)?.as_bytes())?;
    println!(
        "wrote {} and {}",
        crate::util::display_path(&matrix_dir.join(COMPATIBILITY)),
        crate::util::display_path(&page)
    );
    Ok(())
}

pub fn write_markdown(matrix_dir: &Path, compat: &Compat) -> Result<()> {
    crate::util::write_atomic(&matrix_dir.join(COMPATIBILITY), markdown(compat).as_bytes())
}

pub fn default_html_dir(root: &Path) -> PathBuf {
    root.join("target/report")
}

pub fn symbol(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "✅",
        Verdict::Unexpected => "❌",
        Verdict::Unsupported => "➖",
        Verdict::Skipped => "⏭️",
        Verdict::Flaky => "🎲",
        Verdict::Error => "⚠️",
        Verdict::Hung => "⏳",
        Verdict::Crashed => "💥",
        Verdict::Missing => "❔",
    }
}

fn meaning(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "matches the expectation for that kernel version",
        Verdict::Unexpected => "differs from the expectation: a finding",
        Verdict::Unsupported => "a prerequisite is missing on that kernel",
        Verdict::Skipped => "a prerequisite of the machine is missing (not the kernel's); nothing learnt",
        Verdict::Flaky => "repeated runs observed different things",
        Verdict::Error => "the harness failed; nothing learnt",
        Verdict::Hung => "the probe's watchdog fired",
        Verdict::Crashed => "the probe died from a signal",
        Verdict::Missing => "no result arrived (see the reason)",
    }
}

/// Table-safe text: no pipes or newlines, and at most `max` characters.
fn cell_text(s: &str, max: usize) -> String {
    let s = s.replace('|', "\\|").replace('\n', " ");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

fn families(compat: &Compat) -> BTreeMap<&str, Vec<&str>> {
    let mut f: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, b) in &compat.behaviours {
        f.entry(b.family.as_str()).or_default().push(id.as_str());
    }
    f
}

/// The findings section: every behaviour where a kernel contradicts the documentation or its
/// expectation, with the kernels and what they did.
fn findings_markdown(compat: &Compat, all: &[Finding]) -> String {
    let mut md = String::new();
    for (kind, title) in [
        (Kind::Documentation, "Documentation mismatches"),
        (Kind::Expectation, "Unexpected"),
        (Kind::Flaky, "Flaky (repeated runs disagreed)"),
    ] {
        let of_kind: Vec<&Finding> = all.iter().filter(|f| f.kind == kind).collect();
        let _ = write!(md, "\n### {title}\n\n");
        if of_kind.is_empty() {
            md += "None observed.\n";
            continue;
        }
        let mut ids: Vec<&str> = of_kind.iter().map(|f| f.behaviour.as_str()).collect();
        ids.dedup();
        for id in ids {
            let b = &compat.behaviours[id];
            let claim = of_kind.iter().find(|f| f.behaviour == id).map_or("", |f| f.claim.as_str());
            let kernels: Vec<String> = of_kind
                .iter()
                .filter(|f| f.behaviour == id)
                .map(|f| format!("{} (`{}`)", f.kernel, cell_text(&f.observed, 60)))
                .collect();
            let source = of_kind.iter().find(|f| f.behaviour == id).map_or("", |f| f.source.as_str());
            let _ = writeln!(
                md,
                "- **`{id}`**: {}. Claimed: {}. Observed on {}.",
                b.summary,
                cell_text(claim, 200),
                kernels.join(", ")
            );
            if !source.is_empty() {
                let _ = writeln!(md, "  The claim: {source}");
            }
            if !b.notes.is_empty() {
                let _ = writeln!(md, "  {}", b.notes);
            }
            let _ = writeln!(md, "  What the kernel does, by its source: {}", b.citation);
        }
    }
    md
}

pub fn markdown(compat: &Compat) -> String {
    let mut md = String::from("# userfaultfd behaviour compatibility\n\n");
    let _ = writeln!(
        md,
        "Generated by `cargo xtask report` from `matrix/compat.toml` (matrix of {}); do not edit. Every cell was \
         observed on that kernel by the uffd-conformance suite: its verdict, then the observed value. The full \
         details, expectation tables and citations are in `compat.toml` and on the HTML report.\n",
        compat.generated
    );
    md += "Legend: ";
    md += &Verdict::ALL
        .iter()
        .map(|v| format!("{} {v} ({})", symbol(*v), meaning(*v)))
        .collect::<Vec<_>>()
        .join("; ");
    md += ".\n\n## Findings\n";
    md += &findings_markdown(compat, &findings(compat));
    md +=
        "\n## Kernels\n\n| kernel | release | accel | source | date | status |\n|---|---|---|---|---|---|\n";
    for (id, k) in &compat.kernels {
        let status = match &k.reason {
            Some(r) => format!("incomplete: {}", cell_text(r, 120)),
            None => "complete".to_string(),
        };
        let _ = writeln!(
            md,
            "| {id} | {} | {} | {} | {} | {status} |",
            k.release,
            k.accel,
            cell_text(&k.source, 90),
            k.date
        );
    }
    if let Some(go) = go_line(compat) {
        let _ = writeln!(md, "\n{go}");
    }
    let kernels: Vec<&String> = compat.kernels.keys().collect();
    for (family, ids) in families(compat) {
        let _ = write!(md, "\n## {family}\n\n| behaviour |");
        for k in &kernels {
            let _ = write!(md, " {k} |");
        }
        md += "\n|---|";
        md += &"---|".repeat(kernels.len());
        md += "\n";
        for id in ids {
            let b = &compat.behaviours[id];
            let _ = write!(md, "| `{id}` {} |", cell_text(&b.summary, 100));
            for k in &kernels {
                match b.cells.get(*k) {
                    Some(c) => {
                        let _ = write!(md, " {} {} |", symbol(c.verdict), cell_text(&c.observed, 48));
                    }
                    None => md += " |",
                }
            }
            md += "\n";
        }
    }
    md
}

/// Which Go release ran the behaviours with a Go runtime in the loop (`RunInfo.go`), on which
/// columns; `None` when no column ran one.
pub fn go_line(compat: &Compat) -> Option<String> {
    let mut by_release: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, k) in &compat.kernels {
        if let Some(go) = &k.go {
            by_release.entry(go.as_str()).or_default().push(id.as_str());
        }
    }
    if by_release.is_empty() {
        return None;
    }
    let all =
        by_release.len() == 1 && by_release.values().next().is_some_and(|v| v.len() == compat.kernels.len());
    let runs: Vec<String> = by_release
        .iter()
        .map(
            |(go, on)| {
                if all {
                    format!("{go} on every kernel")
                } else {
                    format!("{go} on {}", on.join(", "))
                }
            },
        )
        .collect();
    Some(format!(
        "Go runtime in the loop (the Go workload of the `stw.go_*` behaviours and `remove.pending_go_gc`): {}.",
        runs.join("; ")
    ))
}

/// The page: the matrix as JSON, rendered by a small script; colours by verdict, the observed
/// value in each cell, details and citation on click, filters by family and by "differs across
/// kernels" (also settable in the URL: `#family=populate&differs=1`), and a legend.
pub fn html(compat: &Compat) -> Result<String> {
    let legend: Vec<serde_json::Value> = Verdict::ALL
        .iter()
        .map(|v| serde_json::json!({"verdict": v.as_str(), "symbol": symbol(*v), "meaning": meaning(*v)}))
        .collect();
    let findings: Vec<serde_json::Value> = findings(compat)
        .iter()
        .map(|f| {
            serde_json::json!({"behaviour": f.behaviour, "kernel": f.kernel, "observed": f.observed, "claim": f.claim, "source": f.source,
                               "kind": match f.kind { Kind::Documentation => "documentation", Kind::Expectation => "expectation", Kind::Flaky => "flaky" }})
        })
        .collect();
    let data =
        serde_json::json!({"compat": compat, "legend": legend, "findings": findings, "go": go_line(compat)});
    // Nothing inside the data may close the script element.
    let data = serde_json::to_string(&data).context("serialising the matrix")?.replace("</", "<\\/");
    Ok(PAGE.replace("/*DATA*/", &data))
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>userfaultfd behaviour compatibility</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
td.cell{cursor:pointer;max-width:16em;font-family:ui-monospace,monospace;font-size:12px;word-break:break-word}
td.cell.expected{background:#dcf5dc}td.cell.unexpected{background:#f8c8c8}td.cell.unsupported{background:#eee;color:#666}
td.cell.error,td.cell.crashed{background:#ffe2b0}td.cell.hung{background:#f3d9ff}td.cell.missing{background:#fff;color:#999}
td.cell.skipped{background:#f6f6f6;color:#888;font-style:italic}td.cell.flaky{background:#fde68a}
td.behaviour code{font-weight:600}
.legend span{display:inline-block;margin-right:1em}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #999;vertical-align:middle;margin-right:.3em}
#panel{position:fixed;right:1em;bottom:1em;width:34em;max-height:60vh;overflow:auto;background:#fff;border:1px solid #888;
  box-shadow:0 2px 8px #0004;padding:.8em;display:none;font-size:13px}
#panel pre{white-space:pre-wrap;background:#f6f6f6;padding:.4em}
.hidden{display:none}
.controls{margin:1em 0;padding:.5em;background:#f8f8f8;border:1px solid #ddd}
</style></head><body>
<h1>userfaultfd behaviour compatibility</h1>
<p id="about"></p>
<div class="controls">
 <label>Family <select id="family"><option value="">all</option></select></label>
 <label><input type="checkbox" id="differs"> only behaviours observed differently across kernels</label>
 <span id="shown"></span>
</div>
<div class="legend" id="legend"></div>
<h2>Findings</h2><ul id="findings"></ul>
<h2>Kernels</h2><table id="kernels"><thead><tr><th>kernel</th><th>release</th><th>accel</th><th>source</th><th>date</th><th>status</th></tr></thead><tbody></tbody></table>
<p id="go"></p>
<div id="families"></div>
<div id="panel"></div>
<script type="application/json" id="data">/*DATA*/</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const C = D.compat, kernels = Object.keys(C.kernels), ids = Object.keys(C.behaviours);
const el = (tag, attrs, ...kids) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (k === "class") e.className = v; else e.setAttribute(k, v); }
  for (const k of kids) e.append(k); return e; };
document.getElementById("about").textContent =
  `Matrix of ${C.generated}: ${ids.length} behaviours on ${kernels.length} kernels. Every cell was observed on that kernel. Click a cell for its details, the expectation and the citation.`;
const colours = {expected:"#dcf5dc",unexpected:"#f8c8c8",unsupported:"#eee",skipped:"#f6f6f6",flaky:"#fde68a",error:"#ffe2b0",hung:"#f3d9ff",crashed:"#ffe2b0",missing:"#fff"};
for (const l of D.legend) document.getElementById("legend").append(
  el("span", {}, el("span", {class: "swatch", style: `background:${colours[l.verdict]}`}), `${l.verdict}: ${l.meaning}`));
const fl = document.getElementById("findings");
if (!D.findings.length) fl.append(el("li", {}, "None observed."));
// One entry per behaviour and kind of finding, with every kernel it holds on.
const groups = new Map();
for (const f of D.findings) {
  const key = `${f.kind} ${f.behaviour}`;
  if (!groups.has(key)) groups.set(key, {f, on: []});
  groups.get(key).on.push(`${f.kernel} (${f.observed})`);
}
for (const {f, on} of groups.values()) {
  const li = el("li", {class: "finding"}, el("code", {}, f.behaviour), ` on ${on.length} kernel(s): `, on.join(", "),
    `; ${f.kind === "documentation" ? "the documentation claims" : f.kind === "flaky" ? "repeated runs should agree:" : "the expectation says"} ${f.claim}`);
  if (f.source) li.append(el("blockquote", {}, f.source));
  fl.append(li);
}
const kb = document.querySelector("#kernels tbody");
for (const [id, k] of Object.entries(C.kernels)) kb.append(el("tr", {}, el("td", {}, id), el("td", {}, k.release),
  el("td", {}, k.accel), el("td", {}, k.source), el("td", {}, k.date), el("td", {}, k.reason ? `incomplete: ${k.reason}` : "complete")));
if (D.go) document.getElementById("go").textContent = D.go;
const fams = [...new Set(ids.map(i => C.behaviours[i].family))];
const sel = document.getElementById("family");
for (const f of fams) sel.append(el("option", {value: f}, f));
const root = document.getElementById("families");
for (const fam of fams) {
  const head = el("tr", {}, el("th", {}, "behaviour"), ...kernels.map(k => el("th", {}, k)));
  const body = el("tbody");
  for (const id of ids.filter(i => C.behaviours[i].family === fam)) {
    const b = C.behaviours[id];
    const observed = kernels.map(k => b.cells[k]).filter(c => c && (c.verdict === "expected" || c.verdict === "unexpected" || c.verdict === "unsupported")).map(c => c.observed);
    const differs = new Set(observed).size > 1;
    const row = el("tr", {class: "behaviour-row", "data-family": fam, "data-differs": differs ? "1" : "0"},
      el("td", {class: "behaviour"}, el("code", {}, id), el("br"), b.summary));
    for (const k of kernels) {
      const c = b.cells[k];
      const td = c ? el("td", {class: `cell ${c.verdict}`, title: `${c.verdict}: ${c.observed}`, "data-id": id, "data-kernel": k}, c.observed)
                   : el("td", {class: "cell missing"}, "");
      td.addEventListener("click", () => show(id, k));
      row.append(td);
    }
    body.append(row);
  }
  root.append(el("section", {"data-family": fam}, el("h2", {}, fam), el("table", {}, el("thead", {}, head), body)));
}
function show(id, k) {
  const b = C.behaviours[id], c = b.cells[k] || {};
  const p = document.getElementById("panel"); p.replaceChildren();
  p.append(el("b", {}, `${id} on ${k}`), el("p", {}, b.summary),
    el("p", {}, `Verdict: ${c.verdict || "-"}. Observed: `, el("code", {}, c.observed || "-")),
    c.reason ? el("p", {}, `Reason: ${c.reason}`) : "", c.expected ? el("p", {}, `Graded against: ${c.expected}`) : "",
    el("p", {}, "Details:"), el("pre", {}, JSON.stringify(c.details || {}, null, 1)),
    el("p", {}, `Observes: ${b.observes}`),
    el("p", {}, "Expectation: ", ...b.expectation.map(r => el("div", {}, el("code", {}, r.kernels), ": ", r.expect))),
    ...(b.documented && b.documented.length ? [el("p", {}, "Documented: ", ...b.documented.map(r => el("div", {}, el("code", {}, r.kernels), ": ", r.expect)))] : []),
    el("p", {}, `Citation: ${b.citation}`), b.notes ? el("p", {}, `Notes: ${b.notes}`) : "",
    el("button", {}, "close"));
  p.querySelector("button").onclick = () => { p.style.display = "none"; };
  p.style.display = "block";
}
const diff = document.getElementById("differs");
function apply() {
  const fam = sel.value, only = diff.checked;
  let rows = 0, cells = 0;
  for (const s of root.querySelectorAll("section")) s.classList.toggle("hidden", !!fam && s.dataset.family !== fam);
  for (const r of root.querySelectorAll("tr.behaviour-row")) {
    const hide = (!!fam && r.dataset.family !== fam) || (only && r.dataset.differs !== "1");
    r.classList.toggle("hidden", hide);
    if (!hide) { rows++; cells += r.querySelectorAll("td.cell").length; }
  }
  document.getElementById("shown").textContent = `${rows} behaviours, ${cells} cells shown`;
  document.body.dataset.shownRows = rows; document.body.dataset.shownCells = cells;
  const h = new URLSearchParams(); if (fam) h.set("family", fam); if (only) h.set("differs", "1");
  history.replaceState(null, "", h.toString() ? "#" + h : location.pathname);
}
const start = new URLSearchParams(location.hash.slice(1));
sel.value = start.get("family") || ""; diff.checked = start.get("differs") === "1";
sel.onchange = apply; diff.onchange = apply; apply();
document.body.dataset.ready = "1";
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn compat() -> Compat {
        crate::util::fixture()
    }

    #[test]
    fn the_go_release_is_shown_when_a_column_ran_one() {
        let mut c = compat();
        assert_eq!(go_line(&c), None);
        assert!(!markdown(&c).contains("Go runtime"));
        for k in c.kernels.values_mut() {
            k.go = Some("go1.27.3".into());
        }
        let line = go_line(&c).unwrap();
        assert!(line.contains("go1.27.3 on every kernel"), "{line}");
        assert!(markdown(&c).contains(&line) && html(&c).unwrap().contains("go1.27.3 on every kernel"));
        let first = c.kernels.keys().next().unwrap().clone();
        c.kernels.get_mut(&first).unwrap().go = Some("go1.28.0".into());
        let line = go_line(&c).unwrap();
        assert!(line.contains(&format!("go1.28.0 on {first}")) && line.contains("go1.27.3 on "), "{line}");
    }

    #[test]
    fn markdown_has_findings_first_and_every_cell() {
        let c = compat();
        let md = markdown(&c);
        let findings = md.find("## Findings").unwrap();
        let first_family = md.find("\n## api\n").unwrap();
        assert!(findings < first_family);
        let cells =
            md.lines().filter(|l| l.starts_with("| `")).map(|l| l.matches(" |").count() - 1).sum::<usize>();
        assert_eq!(cells, c.behaviours.len() * c.kernels.len());
        assert!(
            !html(&c).unwrap().contains("</script>\n<script type=\"application/json\""),
            "data is embedded once"
        );
    }

    /// Renders the page in headless Chromium and reads back the DOM the page's own script built.
    fn chromium_dom(page: &Path, fragment: &str, screenshot: Option<&Path>) -> String {
        let chromium = std::env::var("UFFDC_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = page.parent().unwrap().join(format!("profile{}", fragment.len()));
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
        match screenshot {
            Some(png) => cmd.arg(format!("--screenshot={}", png.display())).arg("--window-size=1500,2200"),
            None => cmd.arg("--dump-dom"),
        };
        let out = cmd.arg(format!("file://{}{fragment}", page.display())).output().expect("running chromium");
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn attr(dom: &str, name: &str) -> usize {
        let at = dom.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in the rendered page"));
        dom[at + name.len() + 2..].split('"').next().unwrap().parse().unwrap()
    }

    #[test]
    #[ignore = "needs Chromium: run through `cargo xtask test`"]
    fn the_page_renders_every_cell_and_filters_in_chromium() {
        let c = compat();
        let dir = crate::util::project_root().join("target/uffdc/tests/report");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let page = dir.join("index.html");
        std::fs::write(&page, html(&c).unwrap()).unwrap();

        let dom = chromium_dom(&page, "", None);
        assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
        let cells = c.behaviours.len() * c.kernels.len();
        assert_eq!(dom.matches("class=\"cell ").count(), cells, "one rendered cell per matrix cell");
        assert_eq!(attr(&dom, "data-shown-cells"), cells);
        assert!(dom.contains(">expected") || dom.contains("✅"), "the legend is there");

        // The family filter and the "differs across kernels" filter, as the URL sets them, on a
        // family where the second one narrows something.
        let differs = |b: &model::Behaviour| {
            let seen: std::collections::BTreeSet<&str> = b
                .cells
                .values()
                .filter(|cell| {
                    matches!(cell.verdict, Verdict::Expected | Verdict::Unexpected | Verdict::Unsupported)
                })
                .map(|cell| cell.observed.as_str())
                .collect();
            seen.len() > 1
        };
        let (family, total, differing) = families(&c)
            .into_iter()
            .map(|(f, ids)| (f, ids.len(), ids.iter().filter(|id| differs(&c.behaviours[**id])).count()))
            .find(|(_, total, differing)| differing < total)
            .expect("a family where some behaviour is observed the same everywhere");
        let dom = chromium_dom(&page, &format!("#family={family}"), None);
        assert_eq!(attr(&dom, "data-shown-rows"), total, "family filter");
        let dom = chromium_dom(&page, &format!("#family={family}&differs=1"), None);
        assert_eq!(attr(&dom, "data-shown-rows"), differing, "differs filter");

        // A screenshot, kept as an artifact of the test run.
        let png = dir.join("report.png");
        chromium_dom(&page, "", Some(&png));
        assert!(
            std::fs::metadata(&png).map(|m| m.len() > 10_000).unwrap_or(false),
            "no screenshot at {}",
            png.display()
        );
    }
}

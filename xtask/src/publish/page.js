"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const K = D.kernels, B = D.behaviours, byId = new Map(B.map(b => [b.id, b])), kid = new Map(K.map(k => [k.id, k]));
const el = (tag, attrs, ...kids) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v); }
  for (const k of kids) if (k !== null && k !== undefined && k !== "") e.append(k); return e; };
const code = t => el("code", {}, t);
const link = (hash, ...kids) => el("a", {href: "#" + hash}, ...kids);
const fams = [...new Set(B.map(b => b.family))];
const marks = Object.fromEntries(D.legend.map(l => [l.verdict, l.mark]));
const kernelFact = v => v === "expected" || v === "unexpected" || v === "unsupported";
document.getElementById("about").textContent =
  `Matrix of ${D.generated}: ${B.length} behaviours on ${K.length} kernels, in version order. Every cell was observed on that kernel by the uffd-conformance suite.`;

// Profiles: a verdict per profile and kernel; select one for what it lacks there.
const pb = document.getElementById("profiles-body");
if (!D.profiles.length) pb.append(el("p", {}, "No profile in profiles/."));
else {
  const head = el("tr", {}, el("th", {}, "profile"), ...K.map(k => el("th", {class: "k", title: `${k.id}: ${k.release}`},
    el("span", {class: "kl"}, k.id, el("br"), el("span", {class: "muted"}, k.label)))));
  const body = el("tbody");
  const detail = el("div", {id: "profile-detail"});
  for (const p of D.profiles) {
    const row = el("tr", {}, el("td", {title: p.summary}, el("b", {}, p.name), el("div", {class: "muted summary"}, p.summary)));
    for (const k of K) {
      const v = p.kernels[k.id], cls = v.outcome.replace(" ", "-");
      const m = v.outcome === "satisfies" ? "✓" : v.outcome === "violates" ? "✗" : "?";
      const td = el("td", {class: `pv ${cls}`, "data-profile": p.name, "data-kernel": k.id, "data-outcome": v.outcome,
        title: `${p.name} on ${k.id}: ${v.outcome}`}, el("span", {class: "m"}, m), el("span", {class: "word"}, v.outcome),
        v.problems.length ? ` (${v.problems.length})` : "");
      td.addEventListener("click", () => showProfile(p, k, detail));
      row.append(td);
    }
    body.append(row);
  }
  pb.append(el("div", {class: "scroll"}, el("table", {class: "profiles"}, el("thead", {}, head), body)), detail);
  // What each profile lacks, each need once with its kernels.
  for (const p of D.profiles) {
    const lacking = new Map();
    for (const k of K) for (const pr of p.kernels[k.id].problems) {
      const key = `${pr.behaviour}\u0000${pr.violated}\u0000${pr.observed}`;
      if (!lacking.has(key)) lacking.set(key, {pr, on: []});
      lacking.get(key).on.push(k.id);
    }
    if (!lacking.size) continue;
    const ul = el("ul", {class: "problems"});
    for (const {pr, on} of lacking.values())
      ul.append(el("li", {}, link(pr.behaviour, code(pr.behaviour)), ` needs `, code(pr.expect), `: `,
        pr.violated ? el("span", {}, "observed ", code(pr.observed)) : el("span", {}, `not checked (${pr.reason})`),
        ` on `, el("span", {class: "where"}, on.map(k => `${k} (${kid.get(k).label})`).join(", ")), el("br"),
        el("span", {class: "muted"}, `Why: ${pr.why}`)));
    const where = new Set([...lacking.values()].flatMap(x => x.on));
    pb.append(el("details", {class: "lacks", "data-profile": p.name}, el("summary", {},
      el("b", {}, p.name), ` lacks ${lacking.size} need(s) on ${where.size} kernel(s): ${[...where].join(", ")}`), ul));
  }
}
function showProfile(p, k, into) {
  const v = p.kernels[k.id];
  into.replaceChildren(el("p", {}, el("b", {}, `${p.name} on ${k.id} (${k.label}): ${v.outcome}`), p.source ? el("span", {class: "muted"}, ` (after ${p.source})`) : ""));
  const ul = el("ul", {class: "problems"});
  for (const n of p.needs) {
    const pr = v.problems.find(x => x.behaviour === n.behaviour);
    ul.append(el("li", {}, pr ? (pr.violated ? "✗ " : "? ") : "✓ ", link(`${n.behaviour}/${k.id}`, code(n.behaviour)), " needs ", code(n.expect),
      pr ? (pr.violated ? el("span", {}, ", observed ", code(pr.observed)) : ` (not checked: ${pr.reason})`) : "", el("br"), el("span", {class: "muted"}, n.why)));
  }
  into.append(ul);
}

// The legend: marks and colours.
const lg = document.getElementById("legend");
for (const l of D.legend) lg.append(el("span", {title: l.meaning}, el("span", {class: "sw v0"}, l.mark), `${l.verdict}`));
lg.append(el("span", {}, el("span", {class: "sw v0"}, "\u00a0"), el("span", {class: "sw v1"}, "\u00a0"), el("span", {class: "sw v2"}, "\u00a0"), "first, second, third observation of a row"),
  el("span", {}, el("span", {class: "sw hatch"}, "s"), "nothing learnt about the kernel"));

// The overview: every behaviour on every kernel, coloured by observation, marked by verdict; one
// block per family, side by side where the screen is wide enough.
const ov = document.getElementById("overview-grid");
let overviewCells = 0;
for (const fam of fams) {
  const hrow = el("tr", {}, el("th", {class: "fam"}, fam));
  for (const k of K) hrow.append(el("th", {class: `k${k.host ? " host" : ""}`, title: `${k.id}: ${k.release}${k.host ? " (a host kernel, run directly)" : ""}`}, el("span", {}, `${k.label} ${k.id}`)));
  const ob = el("tbody");
  ov.append(el("table", {class: "overview", "data-family": fam}, el("thead", {}, hrow), ob));
  for (const b of B.filter(b => b.family === fam)) {
    const row = el("tr", {class: "ov-row", "data-id": b.id, "data-family": fam, "data-differs": b.values.length > 1 ? "1" : "0"},
      el("td", {class: "name", title: b.summary}, link(b.id, b.id.slice(fam.length + 1))));
    for (const k of K) {
      const c = b.cells[k.id];
      const colour = !c ? "" : c.value === null ? "nothing" : c.value < 7 ? `v${c.value}` : "vx";
      const a = el("a", {class: `ov ${c ? c.verdict : "missing"} ${colour}`, href: `#${b.id}/${k.id}`, "data-cell": `${b.id}/${k.id}`,
        title: c ? `${b.id} on ${k.id} (${k.label}): ${c.verdict}: ${c.observed}` : `${b.id} on ${k.id}: no cell`}, c ? c.mark : "");
      row.append(el("td", {}, a));
      overviewCells++;
    }
    ob.append(row);
  }
}
document.body.dataset.overviewCells = overviewCells;

// Findings: one entry per behaviour, kind and claim; the kernels as ranges; the claim quoted.
const fl = document.getElementById("findings-list");
if (!D.findings.length) fl.append(el("li", {}, "None observed."));
for (const f of D.findings) {
  const b = byId.get(f.behaviour);
  const says = f.kind === "documentation" ? "the documentation claims" : f.kind === "flaky" ? "repeated runs should agree:" : "the expectation says";
  const li = el("li", {class: "finding", "data-behaviour": f.behaviour, "data-kind": f.kind},
    el("b", {}, f.kind === "documentation" ? "Documentation mismatch: " : f.kind === "flaky" ? "Flaky: " : "Unexpected: "),
    link(f.behaviour, code(f.behaviour)), `: ${b.summary}. ${says[0].toUpperCase() + says.slice(1)} `, code(f.claim), ". Observed ",
    ...f.observed.flatMap((o, i) => [i ? "; " : "", o.lacks.length ? el("span", {}, "a list without ", code(o.lacks.join(" "))) : code(o.value), " on ", el("span", {class: "where"}, o.where)]), ".");
  if (f.source) li.append(el("blockquote", {}, f.source));
  if (b.notes) li.append(el("div", {class: "muted"}, b.notes));
  fl.append(li);
}

// The kernels' own selftests: counts per kernel, and where they disagree with our behaviours.
const sb = document.getElementById("selftests-body");
if (!D.selftests.kernels.length) document.getElementById("selftests-section").hidden = true;
else {
  const t = el("table", {id: "selftests-table"}, el("thead", {}, el("tr", {}, ...["kernel", "pass", "fail", "skip", "built from"].map(h => el("th", {}, h)))));
  const tb = el("tbody");
  for (const s of D.selftests.kernels) tb.append(el("tr", {}, el("td", {}, s.kernel), el("td", {}, String(s.pass)), el("td", {}, String(s.fail)), el("td", {}, String(s.skip)), el("td", {}, s.source)));
  t.append(tb); sb.append(el("div", {class: "scroll"}, t));
  const ul = el("ul", {id: "disagreements"});
  for (const d of D.selftests.disagreements) ul.append(el("li", {class: "disagreement"}, `${d.kernel}: `, link(`${d.selftest}/${d.kernel}`, code(d.selftest)), " and ",
    link(`${d.behaviour}/${d.kernel}`, code(d.behaviour)), `: ${d.how}.`));
  if (!D.selftests.disagreements.length) ul.append(el("li", {}, "Where a selftest and one of our behaviours speak about the same thing, they agree on every kernel."));
  sb.append(ul);
}

// What changed: since the previous matrix (the history), and along the kernel versions.
const cb = document.getElementById("changes-body");
if (!D.changes.previous) cb.append(el("p", {}, "The history (matrix/history.toml) starts with this matrix: nothing to compare with yet."));
else {
  cb.append(el("p", {}, `Since the previous matrix (${D.changes.previous}):`));
  const ul = el("ul", {id: "changes-list"});
  for (const [k, a, b] of D.changes.moves) ul.append(el("li", {class: "move"}, `${k} moved from ${a} to ${b}.`));
  for (const c of D.changes.cells) ul.append(el("li", {class: "change", "data-behaviour": c.behaviour, "data-kernel": c.kernel},
    link(`${c.behaviour}/${c.kernel}`, code(c.behaviour)), ` on ${c.kernel}: `, code(c.before.observed), ` on ${c.before.version} (first seen ${c.before.first_seen}) → `,
    code(c.observed), ` on ${c.version}.`));
  if (!D.changes.cells.length) ul.append(el("li", {}, "No observation changed."));
  cb.append(ul);
}
cb.append(el("p", {}, "Along the kernel versions (every point release the history recorded, in version order), where behaviours change:"));
const ual = el("ul", {id: "steps-list"});
if (!D.changes.steps.length) ual.append(el("li", {}, "Nowhere: every kernel observed the same thing for every behaviour."));
for (const st of D.changes.steps) {
  const inner = el("ul", {});
  for (const c of st.changes) inner.append(el("li", {"data-behaviour": c.behaviour}, link(c.behaviour, code(c.behaviour)), ": ",
    ...(c.names ? [code(c.names.join(" "))] : [code(c.old), " → ", code(c.new)])));
  ual.append(el("li", {class: "step", "data-before": st.before[0], "data-after": st.after[0]},
    el("b", {}, `Changed between ${st.before[0]} (${st.before[1]}) and ${st.after[0]} (${st.after[1]})`), ` (${st.changes.length}):`, inner));
}
cb.append(ual);

// Timelines of set-valued behaviours (features, ioctls).
const tb = document.getElementById("timelines-body");
if (!D.timelines.length) document.getElementById("timelines-section").classList.add("hidden");
for (const t of D.timelines) {
  const head = el("tr", {}, el("th", {}, "name"), el("th", {}, "first in"), ...K.map(k => el("th", {title: k.id}, k.label, el("br"), el("span", {class: "muted"}, k.id))));
  const body = el("tbody");
  for (const n of t.names) body.append(el("tr", {}, el("td", {}, code(n.name)), el("td", {}, n.first),
    ...K.map(k => el("td", {class: n.kernels.includes(k.id) ? "on" : ""}, n.kernels.includes(k.id) ? "●" : ""))));
  tb.append(el("h3", {}, link(t.behaviour, code(t.behaviour))), el("div", {class: "scroll"}, el("table", {class: "timeline"}, el("thead", {}, head), body)));
}

// Kernels.
const kb = document.querySelector("#kernels-table tbody");
for (const k of K) kb.append(el("tr", {}, el("td", {}, k.id, k.host ? el("div", {class: "muted"}, "a host kernel, run directly (no QEMU)") : ""), el("td", {}, k.label),
  el("td", {}, k.release), el("td", {}, k.accel), el("td", {}, k.source), el("td", {}, k.date), el("td", {}, k.reason ? `incomplete: ${k.reason}` : "complete")));
if (D.go) document.getElementById("go").textContent = D.go;

// Every cell, one table per family.
const sel = document.getElementById("family");
for (const f of fams) sel.append(el("option", {value: f}, f));
const root = document.getElementById("families");
for (const fam of fams) {
  const head = el("tr", {}, el("th", {}, "behaviour"), ...K.map(k => el("th", {}, k.id, el("br"), el("span", {class: "muted"}, k.label))));
  const body = el("tbody");
  for (const b of B.filter(b => b.family === fam)) {
    const row = el("tr", {class: "behaviour-row", id: b.id, "data-family": fam, "data-differs": b.values.length > 1 ? "1" : "0",
      "data-text": [b.id, b.summary, ...Object.values(b.cells).map(c => c.observed)].join(" ").toLowerCase()},
      el("td", {class: "behaviour"}, link(b.id, code(b.id)), el("br"), b.summary));
    for (const k of K) {
      const c = b.cells[k.id];
      const td = c ? el("td", {class: `cell ${c.verdict}`, id: `${b.id}/${k.id}`, title: `${c.verdict}: ${c.observed}`},
                        el("span", {class: "mk"}, c.mark), c.short || c.observed,
                        c.added && c.added.length ? el("small", {}, c.added.map(a => "+" + a).join(" ")) : "",
                        c.removed && c.removed.length ? el("small", {}, c.removed.map(a => "−" + a).join(" ")) : "")
                   : el("td", {class: "cell missing"}, "");
      td.addEventListener("click", () => { location.hash = `${b.id}/${k.id}`; });
      row.append(td);
    }
    body.append(row);
  }
  root.append(el("section", {"data-family": fam}, el("h2", {}, fam), el("div", {class: "scroll"}, el("table", {}, el("thead", {}, head), body))));
}

// The details of one cell.
const panel = document.getElementById("panel");
function show(id, k) {
  const b = byId.get(id), c = b.cells[k] || {}, kk = kid.get(k);
  panel.replaceChildren();
  panel.dataset.open = `${id}/${k}`;
  const hist = c.history || [];
  panel.append(el("b", {}, `${id} on ${k}`), kk ? el("span", {class: "muted"}, ` (${kk.label}, ${kk.release})`) : "", el("p", {}, b.summary),
    el("p", {}, `Verdict: ${c.verdict || "-"}. Observed: `, code(c.observed || "-")),
    c.reason ? el("p", {}, `Reason: ${c.reason}`) : "", c.expected ? el("p", {}, `Graded against: ${c.expected}`) : "",
    el("p", {}, "Details:"), el("pre", {}, JSON.stringify(c.details || {}, null, 1)),
    hist.length ? el("p", {}, "On this kernel over time: ", ...hist.map(e => el("div", {}, code(e.observed), ` on ${e.version} (first seen ${e.first_seen})`))) : "",
    el("p", {}, `Observes: ${b.observes}`),
    el("p", {}, "Expectation: ", ...b.expectation.map(r => el("div", {}, code(r.kernels), ": ", r.expect))),
    b.documented && b.documented.length ? el("p", {}, "Documented: ", ...b.documented.map(r => el("div", {}, code(r.kernels), ": ", r.expect, r.source ? el("blockquote", {}, r.source) : ""))) : "",
    el("p", {}, `Citation: ${b.citation}`), b.notes ? el("p", {}, `Notes: ${b.notes}`) : "",
    el("p", {}, "Permalink: ", link(`${id}/${k}`, `#${id}/${k}`)), el("button", {}, "close"));
  panel.querySelector("button").onclick = () => { panel.style.display = "none"; delete panel.dataset.open; };
  panel.style.display = "block";
}

// Filters (search, family, differs) and permalinks, both in the URL fragment.
const q = document.getElementById("q"), diff = document.getElementById("differs");
function apply(write) {
  const fam = sel.value, only = diff.checked, text = q.value.trim().toLowerCase();
  let rows = 0, cells = 0;
  for (const s of root.querySelectorAll("section")) s.classList.toggle("hidden", !!fam && s.dataset.family !== fam);
  for (const r of root.querySelectorAll("tr.behaviour-row")) {
    const hide = (!!fam && r.dataset.family !== fam) || (only && r.dataset.differs !== "1") || (!!text && !r.dataset.text.includes(text));
    r.classList.toggle("hidden", hide);
    const o = ov.querySelector(`tr.ov-row[data-id="${CSS.escape(r.id)}"]`); if (o) o.classList.toggle("hidden", hide);
    if (!hide) { rows++; cells += r.querySelectorAll("td.cell").length; }
  }
  for (const t of ov.querySelectorAll("table.overview")) t.classList.toggle("hidden", !!fam && t.dataset.family !== fam);
  document.getElementById("shown").textContent = `${rows} behaviours, ${cells} cells shown`;
  document.body.dataset.shownRows = rows; document.body.dataset.shownCells = cells;
  if (write) {
    const h = new URLSearchParams(); if (text) h.set("q", text); if (fam) h.set("family", fam); if (only) h.set("differs", "1");
    history.replaceState(null, "", h.toString() ? "#" + h : location.pathname);
  }
}
function target() {
  for (const t of document.querySelectorAll(".target")) t.classList.remove("target");
  const hash = decodeURIComponent(location.hash.slice(1));
  if (!hash || hash.includes("=")) return;
  const [id, k] = hash.split("/");
  if (!byId.has(id)) return;
  const row = document.getElementById(id);
  if (row) row.classList.add("target");
  if (k && kid.has(k)) {
    for (const t of document.querySelectorAll(`[data-cell="${CSS.escape(hash)}"]`)) t.classList.add("target");
    const cell = document.getElementById(hash); if (cell) { cell.classList.add("target"); into(cell); }
    show(id, k);
  } else if (row) into(row);
}
// Scrolls to an element only when it is not in view already.
function into(e) {
  const r = e.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) e.scrollIntoView({block: "center"});
}
const start = location.hash.includes("=") ? new URLSearchParams(location.hash.slice(1)) : new URLSearchParams();
q.value = start.get("q") || ""; sel.value = start.get("family") || ""; diff.checked = start.get("differs") === "1";
q.oninput = () => apply(true); sel.onchange = () => apply(true); diff.onchange = () => apply(true);
window.addEventListener("hashchange", target);
apply(false); target();
document.body.dataset.height = Math.ceil(document.documentElement.scrollHeight);
document.body.dataset.ready = "1";

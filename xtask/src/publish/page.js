"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const K = D.kernels, B = D.behaviours, byId = new Map(B.map(b => [b.id, b])), kid = new Map(K.map(k => [k.id, k]));
const el = (tag, attrs, ...kids) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v); }
  for (const k of kids) if (k !== null && k !== undefined && k !== "") e.append(k); return e; };
const code = t => el("code", {}, t);
const link = (hash, ...kids) => el("a", {href: "#" + hash}, ...kids);
const SELFTESTS = "selftests";
// Families in the catalogue's order, the kernels' own selftest cases last.
const fams = [...new Set(B.map(b => b.family))].sort((a, b) => (a === "selftests") - (b === "selftests"));
const ours = B.filter(b => b.family !== SELFTESTS), cases = B.filter(b => b.family === SELFTESTS);
// A cell's state: its verdict, or "absent" for a selftest case this kernel's selftests do not have.
const state = c => !c ? "missing" : c.absent ? "absent" : c.verdict;
const ABSENT = "not in this kernel's selftests";
const letter = i => String.fromCharCode(97 + Math.min(i, 25));
const kernelWord = k => `${k.id} (${k.label})`;
document.getElementById("about").textContent =
  `Matrix of ${D.generated}: ${ours.length} behaviours${cases.length ? ` and ${cases.length} cases of the kernels' own selftests` : ""} on ${K.length} kernels, in version order. Every cell was observed on that kernel by the uffd-conformance suite.`;

// A kernel's column head: its id (breakable at its hyphens) and its version.
const kernelHead = k => el("th", {class: "k", scope: "col", title: `${k.id}: ${k.release}`},
  el("span", {class: "kid"}, ...k.id.split("-").flatMap((p, i, all) => i < all.length - 1 ? [p + "-", el("wbr")] : [p])),
  el("span", {class: "kv"}, k.label));

// Profiles: a verdict per profile and kernel, each a button; select one for what it lacks there.
const pb = document.getElementById("profiles-body");
const detail = el("div", {id: "profile-detail", "aria-live": "polite"});
if (!D.profiles.length) pb.append(el("p", {}, "No profile in profiles/."));
else {
  const head = el("tr", {}, el("th", {scope: "col"}, "profile", el("br"), el("span", {class: "muted"}, "needs at least")), ...K.map(kernelHead));
  const body = el("tbody");
  for (const p of D.profiles) {
    const min = p.minimum ? p.minimum.kind === "from" ? p.minimum.version : p.minimum.text : "";
    const row = el("tr", {}, el("td", {class: "pn", title: p.summary}, el("b", {}, p.name), el("span", {class: "min", title: p.minimum_text}, min)));
    for (const k of K) {
      const v = p.kernels[k.id], cls = v.outcome.replace(" ", "-");
      const m = v.outcome === "satisfies" ? "✓" : v.outcome === "violates" ? "✗" : "?";
      const n = v.problems.length;
      const b = el("button", {type: "button", class: "pv", "data-profile": p.name, "data-kernel": k.id, "data-outcome": v.outcome,
        "aria-pressed": "false", "aria-label": `${p.name} on ${k.id} (${k.label}): ${v.outcome}${n ? `, ${n} need(s) not met` : ""}`,
        title: `${p.name} on ${k.id}: ${v.outcome}`}, m, n ? ` ${n}` : "");
      b.addEventListener("click", () => { for (const x of pb.querySelectorAll("button.pv[aria-pressed=true]")) x.setAttribute("aria-pressed", "false");
        b.setAttribute("aria-pressed", "true"); showProfile(p, k, detail); });
      row.append(el("td", {class: `pv pv-${cls}`}, b));
    }
    body.append(row);
  }
  pb.append(el("div", {class: "scroll"}, el("table", {class: "profiles"}, el("thead", {}, head), body)), detail);
  // What each profile lacks, each need once with its kernels (folded).
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
        ` on `, el("span", {class: "where"}, on.map(k => kernelWord(kid.get(k))).join(", ")), el("br"),
        el("span", {class: "muted"}, `Why: ${pr.why}`)));
    const where = new Set([...lacking.values()].flatMap(x => x.on));
    pb.append(el("details", {class: "lacks", "data-profile": p.name}, el("summary", {},
      el("b", {}, p.name), ` lacks ${lacking.size} need(s) on ${where.size} kernel(s)`), ul));
  }
}
function showProfile(p, k, into) {
  const v = p.kernels[k.id];
  into.replaceChildren(el("p", {}, el("b", {}, `${p.name} on ${kernelWord(k)}: ${v.outcome}`), ". ", p.summary,
    p.source ? el("span", {class: "muted"}, ` (after ${p.source})`) : "", el("br"), el("span", {class: "muted"}, `Needs at least: ${p.minimum_text}.`)));
  const ul = el("ul", {class: "problems"});
  for (const n of p.needs) {
    const pr = v.problems.find(x => x.behaviour === n.behaviour);
    ul.append(el("li", {}, pr ? (pr.violated ? "✗ " : "? ") : "✓ ", link(`${n.behaviour}/${k.id}`, code(n.behaviour)), " needs ", code(n.expect),
      pr ? (pr.violated ? el("span", {}, ", observed ", code(pr.observed)) : ` (not checked: ${pr.reason})`) : "", el("br"), el("span", {class: "muted"}, n.why)));
  }
  into.append(ul);
}

// Pick the behaviours you rely on: a verdict per kernel (each need as a profile's need is checked,
// computed with the matrix) and the minimum version the expectation tables give (as
// model::documented::minimum combines its needs': the newest, unless one holds on no kernel).
const pickList = document.getElementById("pick-list"), picked = new Map();
const pickBoxes = new Map(), pickSelects = new Map();
for (const fam of fams.filter(f => f !== SELFTESTS)) {
  const fs = el("fieldset", {"data-family": fam}, el("legend", {}, fam));
  for (const b of ours.filter(b => b.family === fam && b.picks.length)) {
    const box = el("input", {type: "checkbox", id: `pick:${b.id}`, "data-id": b.id});
    const sel = el("select", {"aria-label": `the value of ${b.id} your software needs`, "data-id": b.id},
      ...b.picks.map((p, i) => el("option", {value: String(i)}, `${p.expect} (${p.since.text})`)));
    box.addEventListener("change", () => { if (box.checked) picked.set(b.id, +sel.value); else picked.delete(b.id); renderPicks(true); });
    sel.addEventListener("change", () => { if (box.checked) { picked.set(b.id, +sel.value); renderPicks(true); } });
    pickBoxes.set(b.id, box); pickSelects.set(b.id, sel);
    fs.append(el("div", {class: "pick-row", "data-text": `${b.id} ${b.summary}`.toLowerCase()},
      el("label", {for: `pick:${b.id}`, title: `${b.summary}${b.since ? ` (${b.since.text})` : ""}`}, box, " ", b.id), sel));
  }
  pickList.append(fs);
}
function setPick(id, expect) {
  const b = byId.get(id); if (!b || !pickBoxes.has(id)) return;
  const i = b.picks.findIndex(p => p.expect === expect); if (i < 0) return;
  pickSelects.get(id).value = String(i); pickBoxes.get(id).checked = true; picked.set(id, i);
}
const pickProfile = document.getElementById("pick-profile");
for (const p of D.profiles) pickProfile.append(el("option", {value: p.name}, p.name));
pickProfile.addEventListener("change", () => {
  clearPicks();
  const p = D.profiles.find(x => x.name === pickProfile.value);
  if (p) for (const n of p.needs) setPick(n.behaviour, n.expect);
  renderPicks(true);
});
function clearPicks() { picked.clear(); for (const b of pickBoxes.values()) b.checked = false; }
document.getElementById("pick-clear").addEventListener("click", () => { clearPicks(); pickProfile.value = ""; renderPicks(true); });
document.getElementById("pick-q").addEventListener("input", e => {
  const t = e.target.value.trim().toLowerCase();
  for (const r of pickList.querySelectorAll(".pick-row")) r.classList.toggle("hidden", !!t && !r.dataset.text.includes(t));
});
// A need met, violated or not checked looks as a profile's verdict does.
const pickClass = {m: "pv-satisfies", v: "pv-violates", n: "pv-not-checked"};
const cmpKey = (a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
// The picks go into the fragment (`#pick=ID:VALUE&pick=...`), so that a set of picks is a link.
function renderPicks(write) {
  if (write) writeHash();
  const table = document.getElementById("pick-table"), min = document.getElementById("pick-min"), toml = document.getElementById("pick-toml");
  table.replaceChildren();
  if (!picked.size) {
    min.textContent = "Nothing picked yet: tick the behaviours your software relies on, or start from a profile.";
    toml.textContent = ""; document.body.dataset.picked = "0"; return;
  }
  const head = el("tr", {}, el("th", {scope: "col"}, "you need"), el("th", {scope: "col"}, "documented"), ...K.map(kernelHead));
  const body = el("tbody"), total = K.map(() => "m");
  let overall = {kind: "any"}; const from = [], never = [], open = [];
  for (const [id, i] of picked) {
    const p = byId.get(id).picks[i];
    const row = el("tr", {"data-id": id}, el("td", {}, link(id, code(id)), " ", code(p.expect)), el("td", {class: "since"}, p.since.text));
    [...p.kernels].forEach((s, j) => {
      const k = K[j], word = s === "m" ? "met" : s === "v" ? "violated" : "not-checked";
      if (s === "v") total[j] = "v"; else if (s === "n" && total[j] !== "v") total[j] = "n";
      row.append(el("td", {class: `p ${pickClass[s]}`, title: `${id} on ${k.id}: ${word.replace("-", " ")}`}, link(`${id}/${k.id}`, s === "m" ? "✓" : s === "v" ? "✗" : "?")));
    });
    body.append(row);
    if (p.since.kind === "never") never.push(id);
    else if (p.since.kind === "undetermined") open.push(id);
    else if (p.since.kind === "from") {
      from.push([p.since, id]);
      if (overall.kind === "any" || (overall.kind === "from" && cmpKey(p.since.key, overall.key) > 0)) overall = p.since;
    }
  }
  const words = {m: "satisfies", v: "violates", n: "not checked"};
  body.append(el("tr", {class: "total"}, el("td", {colspan: "2"}, el("b", {}, "verdict")),
    ...total.map((s, j) => el("td", {class: `p ${pickClass[s]}`, "data-kernel": K[j].id,
      "data-verdict": words[s], title: `${K[j].id}: ${words[s]}`}, s === "m" ? "✓" : s === "v" ? "✗" : "?"))));
  table.append(el("thead", {}, head), body);
  from.sort((a, b) => cmpKey(a[0].key, b[0].key));
  const byVersion = new Map();
  for (const [s, id] of from) { if (!byVersion.has(s.version)) byVersion.set(s.version, []); byVersion.get(s.version).push(id); }
  let text = never.length ? `No kernel is documented to give ${never.join(", ")}.`
    : overall.kind === "from" ? `Needs Linux ${overall.version} or later (${[...byVersion].map(([v, ids]) => `${v} for ${ids.join(", ")}`).join("; ")}).`
    : "Any kernel, by the expectation tables.";
  if (open.length) text += ` The tables do not say for ${open.join(", ")}.`;
  const ok = total.map((s, j) => s === "m" ? K[j].id : null).filter(Boolean);
  text += ` Observed: ${ok.length ? `satisfied on ${ok.length} of ${K.length} kernels` : "no kernel satisfies it"}.`;
  min.textContent = text;
  toml.textContent = `summary = "what my software relies on"\n` + [...picked].map(([id, i]) =>
    `\n[[need]]\nbehaviour = "${id}"\nexpect = ${JSON.stringify(byId.get(id).picks[i].expect)}\nwhy = "..."\n`).join("") +
    `\n# save as my.toml, then: cargo xtask check my.toml   (or --host on the machine itself)\n`;
  document.body.dataset.picked = String(picked.size);
}
renderPicks();

// The legend: one swatch per cell state, with the classes the cells have.
const lg = document.getElementById("legend");
const swatch = (st, mark, sup) => el("span", {class: `ov s-${st}`, "data-state": st}, mark, sup ? el("sup", {}, sup) : "");
for (const l of D.legend) lg.append(el("span", {title: l.meaning}, swatch(l.verdict, l.mark), l.verdict));
lg.append(el("span", {}, swatch("absent", "·"), ABSENT),
  el("span", {}, swatch("expected", "✓", "b"), swatch("unsupported", "–", "c"), "b, c, ...: a kernel that did something else than most kernels of its row, which other thing"));

// The overview: every behaviour on every kernel, coloured by verdict; one block per family, side by
// side where the screen is wide enough. The selftest cases are folded under their counts.
const ov = document.getElementById("overview-grid");
let overviewCells = 0;
const fold = (what, body) => el("details", {class: "fold", "data-family": SELFTESTS}, el("summary", {}, what), body);
for (const fam of fams) {
  const hrow = el("tr", {}, el("th", {class: "fam", scope: "col"}, fam));
  for (const k of K) hrow.append(el("th", {class: `k${k.host ? " host" : ""}`, scope: "col", title: `${k.id}: ${k.release}${k.host ? " (a host kernel, run directly)" : ""}`}, el("span", {}, `${k.label} ${k.id}`)));
  const ob = el("tbody");
  const table = el("table", {class: "overview", "data-family": fam}, el("thead", {}, hrow), ob);
  ov.append(fam === SELFTESTS ? fold(D.selftests.summary, el("div", {class: "scroll"}, table)) : el("div", {class: "scroll"}, table));
  for (const b of B.filter(b => b.family === fam)) {
    const row = el("tr", {class: "ov-row", "data-id": b.id, "data-family": fam, "data-differs": b.values.length > 1 ? "1" : "0"},
      el("td", {class: "name", title: `${b.summary}${b.since ? ` (${b.since.text})` : ""}`}, link(b.id, b.id.slice(fam.length + 1))));
    for (const k of K) {
      const c = b.cells[k.id], st = state(c);
      // The row's most common observation goes unmarked; any other gets its letter (b, c, ...).
      const sup = c && c.value ? letter(c.value) : "";
      const a = el("a", {class: `ov s-${st}`, href: `#${b.id}/${k.id}`, "data-cell": `${b.id}/${k.id}`, "data-state": st,
        title: c ? `${b.id} on ${k.id} (${k.label}): ${c.absent ? ABSENT : `${c.verdict}: ${c.observed}`}` : `${b.id} on ${k.id}: no cell`},
        c ? (c.absent ? "·" : c.mark) : "", sup ? el("sup", {}, sup) : "");
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
  const t = el("table", {id: "selftests-table"}, el("thead", {}, el("tr", {}, ...["kernel", "pass", "fail", "skip", "built from"].map(h => el("th", {scope: "col"}, h)))));
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
const tlb = document.getElementById("timelines-body");
if (!D.timelines.length) document.getElementById("timelines-section").classList.add("hidden");
for (const t of D.timelines) {
  const head = el("tr", {}, el("th", {scope: "col"}, "name"), el("th", {scope: "col"}, "first in"), ...K.map(k => el("th", {scope: "col", title: k.id}, k.label, el("br"), el("span", {class: "muted"}, k.id))));
  const body = el("tbody");
  for (const n of t.names) body.append(el("tr", {}, el("td", {}, code(n.name)), el("td", {}, n.first),
    ...K.map(k => el("td", {class: n.kernels.includes(k.id) ? "on" : ""}, n.kernels.includes(k.id) ? "●" : ""))));
  tlb.append(el("h3", {}, link(t.behaviour, code(t.behaviour))), el("div", {class: "scroll"}, el("table", {class: "timeline"}, el("thead", {}, head), body)));
}

// Kernels.
const kb = document.querySelector("#kernels-table tbody");
for (const k of K) kb.append(el("tr", {}, el("td", {}, k.id, k.host ? el("div", {class: "muted"}, "a host kernel, run directly (no QEMU)") : ""), el("td", {}, k.label),
  el("td", {}, k.release), el("td", {}, k.accel), el("td", {}, k.source), el("td", {}, k.date), el("td", {}, k.reason ? `incomplete: ${k.reason}` : "complete")));
if (D.go) document.getElementById("go").textContent = D.go;

// Every cell, one table per family (the selftest cases folded); each cell a link to its details.
const sel = document.getElementById("family");
for (const f of fams) sel.append(el("option", {value: f}, f));
const root = document.getElementById("families");
for (const fam of fams) {
  const head = el("tr", {}, el("th", {scope: "col"}, "behaviour"), ...K.map(k => el("th", {scope: "col"}, k.id, el("br"), el("span", {class: "muted"}, k.label))));
  const body = el("tbody");
  for (const b of B.filter(b => b.family === fam)) {
    const row = el("tr", {class: "behaviour-row", id: b.id, "data-family": fam, "data-differs": b.values.length > 1 ? "1" : "0",
      "data-text": [b.id, b.summary, ...Object.values(b.cells).map(c => c.observed)].join(" ").toLowerCase()},
      el("td", {class: "behaviour"}, link(b.id, code(b.id)), el("br"), b.summary, b.since ? el("span", {class: "since"}, b.since.text) : ""));
    for (const k of K) {
      const c = b.cells[k.id], st = state(c);
      const td = c ? el("td", {class: `cell s-${st}`, id: `${b.id}/${k.id}`, "data-state": st, title: c.absent ? ABSENT : `${c.verdict}: ${c.observed}`},
                        el("a", {href: `#${b.id}/${k.id}`}, el("span", {class: "mk"}, c.absent ? "·" : c.mark), c.absent ? ABSENT : (c.short || c.observed),
                        c.added && c.added.length ? el("small", {}, c.added.map(a => "+" + a).join(" ")) : "",
                        c.removed && c.removed.length ? el("small", {}, c.removed.map(a => "−" + a).join(" ")) : ""))
                   : el("td", {class: "cell s-missing", "data-state": "missing"}, "");
      row.append(td);
    }
    body.append(row);
  }
  const table = el("div", {class: "scroll"}, el("table", {}, el("thead", {}, head), body));
  root.append(el("section", {"data-family": fam}, el("h2", {}, fam), fam === SELFTESTS ? fold(D.selftests.summary, table) : table));
}

// The details of one cell, with the command that observes it again.
const panel = document.getElementById("panel");
function show(id, k) {
  const b = byId.get(id), c = b.cells[k] || {}, kk = kid.get(k);
  panel.replaceChildren();
  panel.dataset.open = `${id}/${k}`;
  const hist = c.history || [];
  const close = el("button", {type: "button"}, "close");
  panel.append(el("b", {}, `${id} on ${k}`), kk ? el("span", {class: "muted"}, ` (${kk.label}, ${kk.release})`) : "", el("p", {}, b.summary),
    c.absent ? el("p", {}, `${ABSENT[0].toUpperCase() + ABSENT.slice(1)}: ${c.reason}.`) : el("p", {}, `Verdict: ${c.verdict || "-"}. Observed: `, code(c.observed || "-")),
    c.reason && !c.absent ? el("p", {}, `Reason: ${c.reason}`) : "", c.expected ? el("p", {}, `Graded against: ${c.expected}`) : "",
    c.repro ? el("p", {}, "Reproduce it: ", el("code", {class: "repro"}, c.repro)) : "",
    el("p", {}, "Details:"), el("pre", {}, JSON.stringify(c.details || {}, null, 1)),
    hist.length ? el("p", {}, "On this kernel over time: ", ...hist.map(e => el("div", {}, code(e.observed), ` on ${e.version} (first seen ${e.first_seen})`))) : "",
    el("p", {}, `Observes: ${b.observes}`), b.since ? el("p", {}, `By its expectation table: ${b.since.text}.`) : "",
    el("p", {}, "Expectation: ", ...b.expectation.map(r => el("div", {}, code(r.kernels), ": ", r.expect))),
    b.documented && b.documented.length ? el("p", {}, "Documented: ", ...b.documented.map(r => el("div", {}, code(r.kernels), ": ", r.expect, r.source ? el("blockquote", {}, r.source) : ""))) : "",
    el("p", {}, `Citation: ${b.citation}`), b.notes ? el("p", {}, `Notes: ${b.notes}`) : "",
    el("p", {}, "Permalink: ", link(`${id}/${k}`, `#${id}/${k}`)), close);
  close.onclick = () => { panel.style.display = "none"; delete panel.dataset.open; document.body.classList.remove("panel-open"); };
  panel.style.display = "block";
  // Room below the last rows, so that any row can be brought above the panel.
  document.body.classList.add("panel-open");
}

// Filters (search, family, differs) and permalinks, both in the URL fragment.
const q = document.getElementById("q"), diff = document.getElementById("differs");
function apply(write) {
  const fam = sel.value, only = diff.checked, text = q.value.trim().toLowerCase();
  let rows = 0, cells = 0, selftestRows = 0;
  for (const s of root.querySelectorAll("section")) s.classList.toggle("hidden", !!fam && s.dataset.family !== fam);
  for (const r of root.querySelectorAll("tr.behaviour-row")) {
    const hide = (!!fam && r.dataset.family !== fam) || (only && r.dataset.differs !== "1") || (!!text && !r.dataset.text.includes(text));
    r.classList.toggle("hidden", hide);
    const o = ov.querySelector(`tr.ov-row[data-id="${CSS.escape(r.id)}"]`); if (o) o.classList.toggle("hidden", hide);
    if (!hide) { rows++; cells += r.querySelectorAll("td.cell").length; if (r.dataset.family === SELFTESTS) selftestRows++; }
  }
  for (const t of ov.querySelectorAll("table.overview")) t.closest(".scroll").classList.toggle("hidden", !!fam && t.dataset.family !== fam);
  // Folded selftest cases open when a search or the family filter asks for them.
  if ((text || fam === SELFTESTS) && selftestRows) for (const d of document.querySelectorAll("details.fold")) d.open = true;
  document.getElementById("shown").textContent = `${rows} rows, ${cells} cells shown`;
  document.body.dataset.shownRows = rows; document.body.dataset.shownCells = cells;
  if (write) writeHash();
}
// The filters and the picks, as the fragment says them.
function writeHash() {
  const h = new URLSearchParams(), text = q.value.trim().toLowerCase();
  if (text) h.set("q", text); if (sel.value) h.set("family", sel.value); if (diff.checked) h.set("differs", "1");
  for (const [id, i] of picked) h.append("pick", `${id}:${byId.get(id).picks[i].expect}`);
  history.replaceState(null, "", h.toString() ? "#" + h : location.pathname);
}
// The sticky bar's height, which every scroll target keeps clear of (scroll-margin-top).
const bar = document.getElementById("controls");
const measure = () => document.documentElement.style.setProperty("--bar", `${Math.ceil(bar.getBoundingClientRect().height)}px`);
function target() {
  for (const t of document.querySelectorAll(".target")) t.classList.remove("target");
  const hash = decodeURIComponent(location.hash.slice(1));
  if (!hash || hash.includes("=")) return;
  const [id, k] = hash.split("/");
  if (!byId.has(id)) return;
  const row = document.getElementById(id);
  if (row) { row.classList.add("target"); const d = row.closest("details"); if (d) d.open = true; }
  if (k && kid.has(k)) {
    for (const t of document.querySelectorAll(`[data-cell="${CSS.escape(hash)}"]`)) t.classList.add("target");
    show(id, k);
    const cell = document.getElementById(hash); if (cell) { cell.classList.add("target"); into(cell); }
  } else if (row) into(row);
}
// Brings an element below the sticky bar (and above the details panel) unless it is there already.
function into(e) {
  const r = e.getBoundingClientRect(), top = bar.getBoundingClientRect().bottom;
  const bottom = panel.style.display === "block" ? panel.getBoundingClientRect().top : window.innerHeight;
  if (r.top < top || r.bottom > bottom || r.left < 0 || r.right > window.innerWidth) e.scrollIntoView({block: "start", inline: "nearest"});
}
// The filters from the fragment: on load, and whenever the fragment changes in an open page.
function fromHash() {
  const params = location.hash.includes("=") ? new URLSearchParams(location.hash.slice(1)) : null;
  if (params) {
    q.value = params.get("q") || ""; sel.value = params.get("family") || ""; diff.checked = params.get("differs") === "1"; apply(false);
    clearPicks();
    for (const p of params.getAll("pick")) { const at = p.indexOf(":"); if (at > 0) setPick(p.slice(0, at), p.slice(at + 1)); }
    renderPicks(false);
  }
  return !!params;
}
q.oninput = () => apply(true); sel.onchange = () => apply(true); diff.onchange = () => apply(true);
window.addEventListener("hashchange", () => { if (!fromHash()) target(); });
// Escape closes the details panel.
window.addEventListener("keydown", e => { if (e.key === "Escape" && panel.dataset.open) panel.querySelector("button").click(); });
new ResizeObserver(measure).observe(bar);
fromHash(); apply(false); measure(); target();
document.body.dataset.height = Math.ceil(document.documentElement.scrollHeight);
document.body.dataset.ready = "1";

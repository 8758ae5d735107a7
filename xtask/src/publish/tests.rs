//! The report's tests: the view, both renderings and the page in a browser.

use super::markdown::*;
use super::page::*;
use super::view::*;
use super::*;
use model::history::{observes_the_kernel, History};
use model::profile::Profile;
use model::{Compat, Verdict};

use std::collections::BTreeSet;

/// The fixture's profiles (a page server 5.10 cannot run, a hugetlb user the host could not
/// check).
fn profiles() -> Vec<Profile> {
    let root = crate::util::project_root();
    ["page-server", "hugetlb-user"]
        .iter()
        .map(|p| {
            let path = root.join(format!("xtask/testdata/profiles/{p}.toml"));
            crate::inputs::profiles::load(&root, &path.display().to_string()).unwrap()
        })
        .collect()
}

/// A history in which the fixture's matrix follows an older one: debian-6.1-cloud was at
/// 6.1.176 then, where remove.madv_free raised its REMOVE event.
fn history(compat: &Compat) -> History {
    let mut older = compat.clone();
    older.generated = "2026-09-01T00:00:00Z".into();
    let k = older.kernels.get_mut("debian-6.1-cloud").unwrap();
    k.version = k.version.replace("6.1.192", "6.1.176");
    let cell =
        older.behaviours.get_mut("remove.madv_free").unwrap().cells.get_mut("debian-6.1-cloud").unwrap();
    cell.observed = "REMOVE pages [1,3)".into();
    cell.verdict = Verdict::Expected;
    let mut h = History::new();
    h.record(&older);
    h.record(compat);
    h
}

/// The fixture with selftest rows: `case` on `kernel` reported `observed` (and `reason`).
fn with_selftest(c: &mut Compat, case: &str, kernel: &str, observed: &str, reason: Option<&str>) {
    let row = c.behaviours.entry(case.to_string()).or_insert_with(|| model::data::selftest_behaviour(case));
    let mut cell = model::Cell::missing("");
    cell.observed = observed.to_string();
    cell.reason = reason.map(String::from);
    cell.verdict = match observed {
        "pass" => Verdict::Expected,
        "fail" => Verdict::Unexpected,
        _ => Verdict::Skipped,
    };
    if let (Some(why), "fail") = (reason, observed) {
        cell.details.insert("selftest".into(), model::Detail::from(why));
    }
    row.cells.insert(kernel.to_string(), cell);
}

#[test]
fn selftests_that_disagree_with_our_behaviours_are_named() {
    let mut c = crate::util::fixture();
    // api.features observed the handshake on both kernels (expected); the 6.1 one's selftest
    // failed (the reason as uffd-unit-tests words it).
    let related: &[(&str, &[&str])] = &[
        ("selftests.unit_uffdio_api", &["api.features"]),
        ("selftests.unit_poison", &["api.features"]),
        ("selftests.userfaultfd_hugetlb", &["populate.hugetlb_missing"]),
        ("selftests.unit_move", &["populate.hugetlb_missing"]),
    ];
    for (case, ids) in related {
        for id in *ids {
            c.behaviours.get_mut(*id).unwrap().selftests.push(case.to_string());
        }
    }
    with_selftest(&mut c, "selftests.unit_uffdio_api_syscall", "debian-5.10-cloud", "pass", None);
    with_selftest(
        &mut c,
        "selftests.unit_uffdio_api_syscall",
        "debian-6.1-cloud",
        "fail",
        Some("UFFDIO_API should fail with wrong api but didn't"),
    );
    // Skips are not observations: neither a missing feature (ours may have found the same
    // absence) nor the machine's (no memory).
    with_selftest(
        &mut c,
        "selftests.unit_poison_anon",
        "debian-6.1-cloud",
        "skip",
        Some("the selftest skipped it: feature missing"),
    );
    with_selftest(
        &mut c,
        "selftests.unit_poison_hugetlb",
        "debian-6.1-cloud",
        "skip",
        Some("the selftest skipped it: memory allocation failed"),
    );
    // 5.10's populate.hugetlb_missing is unsupported for lack of MADV_POPULATE_READ, which the
    // hugetlb stress does not use: no disagreement when it passes.
    with_selftest(&mut c, "selftests.userfaultfd_hugetlb", "debian-5.10-cloud", "pass", None);
    assert!(selftest_disagreements(&c).iter().all(|d| d.selftest != "selftests.userfaultfd_hugetlb"));
    // ... but where ours found userfaultfd itself lacking, a pass disagrees.
    c.behaviours.remove("selftests.userfaultfd_hugetlb");
    c.behaviours
        .get_mut("populate.hugetlb_missing")
        .unwrap()
        .cells
        .get_mut("debian-5.10-cloud")
        .unwrap()
        .reason = Some("the kernel does not offer UFFD_FEATURE_MOVE".into());
    with_selftest(&mut c, "selftests.unit_move_anon", "debian-5.10-cloud", "pass", None);
    // The host's api.features is missing: nothing learnt, nothing to disagree with.
    with_selftest(&mut c, "selftests.unit_uffdio_api_syscall", "host", "fail", Some("boom"));
    let found: Vec<(String, String, String)> =
        selftest_disagreements(&c).into_iter().map(|d| (d.kernel, d.selftest, d.behaviour)).collect();
    let want = |k: &str, s: &str, b: &str| (k.to_string(), s.to_string(), b.to_string());
    assert_eq!(
        found,
        [
            want("debian-5.10-cloud", "selftests.unit_move_anon", "populate.hugetlb_missing"),
            want("debian-6.1-cloud", "selftests.unit_uffdio_api_syscall", "api.features"),
        ]
    );
    let all = selftest_disagreements(&c);
    assert!(all[1].how.contains("UFFDIO_API should fail with wrong api but didn't"), "{}", all[1].how);
    assert!(all[0].how.contains("UFFD_FEATURE_MOVE"), "{}", all[0].how);
    // The report's section names them, and counts each kernel's cases.
    c.kernels.get_mut("debian-6.1-cloud").unwrap().selftests = Some("linux-source-6.1 6.1.192-2".into());
    let (p, h) = (profiles(), History::new());
    let md = markdown(&View::new(&c, &p, &h));
    assert!(md.contains("## The kernels' own selftests"), "{md}");
    assert!(md.contains("| debian-6.1-cloud | 0 | 1 | 2 | linux-source-6.1 6.1.192-2 |"), "{md}");
    // With the relations the behaviours declare, the 6.1 failure disagrees with api.features.
    assert!(
        md.contains("| debian-6.1-cloud | `selftests.unit_uffdio_api_syscall` | `api.features` |"),
        "{md}"
    );
}

#[test]
fn the_go_release_is_shown_when_a_column_ran_one() {
    let mut c = crate::util::fixture();
    let (p, h) = (profiles(), History::new());
    assert_eq!(go_line(&c), None);
    assert!(!markdown(&View::new(&c, &p, &h)).contains("Go runtime"));
    for k in c.kernels.values_mut() {
        k.go = Some("go1.27.3".into());
    }
    let line = go_line(&c).unwrap();
    assert!(line.contains("go1.27.3 on every kernel"), "{line}");
    let view = View::new(&c, &p, &h);
    assert!(markdown(&view).contains(&line) && html(&view).unwrap().contains("go1.27.3 on every kernel"));
    let first = c.kernels.keys().next().unwrap().clone();
    c.kernels.get_mut(&first).unwrap().go = Some("go1.28.0".into());
    let line = go_line(&c).unwrap();
    assert!(line.contains(&format!("go1.28.0 on {first}")) && line.contains("go1.27.3 on "), "{line}");
}

#[test]
fn markdown_answers_first_groups_findings_and_has_every_cell() {
    let c = crate::util::fixture();
    let (p, h) = (profiles(), history(&c));
    let md = markdown(&View::new(&c, &p, &h));
    let at = |s: &str| md.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{md}"));
    assert!(at("## Can I run it here? Profiles") < at("## Findings"));
    assert!(at("## Findings") < at("\n## api\n"));
    // Kernels in version order, a profile verdict, and what it lacks where.
    assert!(
        md.contains(
            "| [page-server](../profiles/page-server.toml) | 5.14 | ❌ violates (1) | ✅ satisfies | ✅ satisfies |"
        ),
        "{md}"
    );
    assert!(md.contains("- `populate.read_missing` needs `fault read`: observed `EINVAL` on 5.10.262 (debian-5.10-cloud)."), "{md}");
    // One finding per behaviour, its kernels as a range, its claim quoted.
    assert_eq!(md.matches("- **`api.handshake_twice`**").count(), 1, "{md}");
    assert!(
        md.contains("Observed `EINVAL` on every kernel (3).\n  > UFFDIO_API(2const), man-pages 6.20, ERRORS: \"Calling UFFDIO_API twice"),
        "{md}"
    );
    // The change since the previous matrix, and along the versions.
    assert!(md.contains("- debian-6.1-cloud moved from 6.1.176 to 6.1.192."), "{md}");
    assert!(md.contains("- `remove.madv_free` on debian-6.1-cloud: `REMOVE pages [1,3)` on 6.1.176 (first seen 2026-09-01T00:00:00Z) → `no event` on 6.1.192."), "{md}");
    assert!(
        md.contains("- Between 6.1.192 (debian-6.1-cloud) and 6.18.44 (host):\n  - `remove.copy_field`: `untouched` → `-EAGAIN`\n"),
        "{md}"
    );
    assert!(
        md.contains(
            "  - `api.features`: `+MINOR_HUGETLBFS +MINOR_SHMEM +EXACT_ADDRESS +WP_HUGETLBFS_SHMEM`\n"
        ),
        "{md}"
    );
    // Feature names on a timeline, and the cells as counts.
    assert!(md.contains("| MINOR_HUGETLBFS | 6.1.192 | |"), "{md}");
    assert!(md.contains("✅ 13 (+4 −0 vs 5.10.262) |"), "{md}");
    let cells = md
        .split("\n## api\n")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.matches(" |").count() - 1)
        .sum::<usize>();
    assert_eq!(cells, c.behaviours.len() * c.kernels.len());
}

#[test]
fn the_history_is_recorded_beside_the_matrix_once() {
    let dir = crate::util::project_root().join("target/uffdc/tests/report-history");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let c = crate::util::fixture();
    let facts = c
        .behaviours
        .values()
        .flat_map(|b| b.cells.values())
        .filter(|c| observes_the_kernel(c.verdict))
        .count();
    assert_eq!(history::record(&dir, &c).unwrap(), facts);
    assert_eq!(history::record(&dir, &c).unwrap(), 0);
    let h = model::history::load(&dir.join(HISTORY)).unwrap();
    assert_eq!(h.behaviours.values().map(Vec::len).sum::<usize>(), facts);
}

/// The page's own measurements, in the browser: each function returns what the test asserts on.
const PROBES: &str = r#"
window.uffdcProbe = {
  // The profile table in the window as it opens: its box, and every kernel column's head.
  top() {
    const t = document.querySelector("table.profiles"), r = t.getBoundingClientRect();
    const box = t.closest(".scroll");
    const heads = [...t.querySelectorAll("thead th.k")].map(h => { const x = h.getBoundingClientRect(); return {id: h.title.split(":")[0], right: x.right, bottom: x.bottom}; });
    return {scrollY: scrollY, width: innerWidth, height: innerHeight, right: r.right, bottom: r.bottom,
            boxScrolls: box.scrollWidth > box.clientWidth, heads};
  },
  overflow() { return {scrollWidth: document.documentElement.scrollWidth, width: innerWidth}; },
  // Where a permalink's cell and row landed: below the sticky bar, above the details panel, and
  // not covered by anything (the element at its centre is the cell or inside it).
  landed(hash) {
    const cell = document.getElementById(hash), row = document.getElementById(hash.split("/")[0]);
    const c = cell.getBoundingClientRect(), r = row.getBoundingClientRect();
    const bar = document.getElementById("controls").getBoundingClientRect().bottom;
    const panel = document.getElementById("panel");
    const bottom = getComputedStyle(panel).display === "none" ? innerHeight : panel.getBoundingClientRect().top;
    const at = document.elementFromPoint((c.left + c.right) / 2, (c.top + c.bottom) / 2);
    return {bar, bottom, cellTop: c.top, cellBottom: c.bottom, rowTop: r.top, left: c.left, right: c.right, width: innerWidth,
            onTop: !!at && cell.contains(at), open: panel.dataset.open || null, panel: panel.textContent};
  },
  // The contrast of every cell state: text colour against the first opaque background behind it.
  contrast() {
    const rgb = s => { const m = s.match(/[\d.]+/g).map(Number); return {c: m.slice(0, 3), a: m.length > 3 ? m[3] : 1}; };
    const lum = c => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const bg = e => { for (; e; e = e.parentElement) { const b = rgb(getComputedStyle(e).backgroundColor); if (b.a > 0) return b.c; } return [255, 255, 255]; };
    const out = {};
    const cls = e => [...e.classList].find(c => /^(s|pv|cl)-/.test(c));
    for (const e of document.querySelectorAll("[class*='s-'], [class*='pv-'], [class*='cl-']")) {
      const state = cls(e); if (!state || !e.textContent.trim() || !e.getClientRects().length) continue;
      // The cell and everything in it that holds text of its own (a link, a letter).
      const texts = [e, ...e.querySelectorAll("*")].filter(x => [...x.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
      for (const x of texts) {
        const fg = rgb(getComputedStyle(x).color).c, back = bg(x), l1 = lum(fg), l2 = lum(back);
        const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
        if (!(state in out) || ratio < out[state].ratio) out[state] = {ratio, fg: getComputedStyle(x).color, bg: back.join(","), tag: x.tagName};
      }
    }
    return out;
  },
  active() {
    const a = document.activeElement, s = getComputedStyle(a), cl = a.closest("td.cl");
    return {tag: a.tagName, cls: a.className, profile: a.dataset.profile || null, kernel: a.dataset.kernel || null,
            client: cl ? cl.dataset.kernel : null, href: a.getAttribute("href"),
            outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth)};
  },
  // The clients table: whether its box scrolls sideways, and whether the table fits the window.
  clients() {
    const t = document.getElementById("clients-table");
    if (!t) return null;
    const box = t.closest(".scroll"), r = t.getBoundingClientRect(), b = box.getBoundingClientRect();
    return {boxScrolls: box.scrollWidth > box.clientWidth, overflowX: getComputedStyle(box).overflowX,
            right: r.right, boxRight: b.right, width: innerWidth, hidden: document.getElementById("clients-section").hidden,
            heads: t.querySelectorAll("thead th.k").length, cells: t.querySelectorAll("td.cl a").length};
  },
  shown() { return +document.body.dataset.shownRows; },
};
"#;

/// The fixture with a cell in every state a cell can have: each verdict (hung and crashed put on
/// cells of the fixture's host column) and a selftest case one kernel's selftests do not have.
fn every_state() -> Compat {
    let mut c = crate::util::fixture();
    for (id, verdict) in [("remove.madv_free", Verdict::Hung), ("remove.copy_field", Verdict::Crashed)] {
        let cell = c.behaviours.get_mut(id).unwrap().cells.get_mut("host").unwrap();
        cell.verdict = verdict;
        cell.reason = Some(format!("the probe {verdict}"));
    }
    let case = "selftests.unit_move_anon";
    with_selftest(&mut c, case, "debian-6.1-cloud", "pass", None);
    with_selftest(&mut c, case, "host", "fail", Some("boom"));
    let mut absent = model::Cell::absent(model::compile::NO_SUCH_SELFTEST);
    absent.observed = "-".into();
    c.behaviours.get_mut(case).unwrap().cells.insert("debian-5.10-cloud".into(), absent);
    for k in c.kernels.values_mut() {
        k.selftests = Some("linux-source 1.0".into());
    }
    with_clients(&mut c);
    c
}

/// Adds the `clients` family to a matrix, on every kernel column (by its place in version order, so
/// that any number of columns gets each state): CRIU of two releases (declared as the suite declares
/// them, their package in the details) and four behaviours of the userfaultfd crate.
fn with_clients(c: &mut Compat) {
    let order: Vec<String> = model::columns::by_version(&c.kernels).iter().map(|k| k.to_string()).collect();
    let last = order.len() - 1;
    let cell = |observed: &str, verdict: Verdict, details: &[(&str, &str)]| {
        let mut x = model::Cell::missing("");
        x.observed = observed.to_string();
        x.verdict = verdict;
        x.reason = match verdict {
            Verdict::Unsupported => Some("the kernel has no UFFD_FEATURE_EVENT_REMOVE".into()),
            Verdict::Skipped => Some("no huge pages reserved".into()),
            _ => None,
        };
        for (k, v) in details {
            x.details.insert(k.to_string(), model::Detail::from(*v));
        }
        x
    };
    // A clients behaviour as the suite declares one (no expectation table: the section reads cells).
    let declare = |id: &str, summary: String, citation: &str| {
        let mut b = model::data::selftest_behaviour(id);
        b.family = CLIENTS.into();
        b.summary = summary;
        b.citation = citation.into();
        b
    };
    let rseq = "dump fails: TID has rseq but kernel lacks get_rseq_conf feature";
    let vdso = "dump fails: kerndat_vdso_fill_symtable failed when initializing kerndat";
    let works = "restores, pages right, served lazily";
    let criu = [
        ("bookworm", "CRIU 3.17 (Debian 12)", "criu 3.17.1-2+deb12u2 (bookworm)"),
        ("trixie", "CRIU 4.1 (Debian 13)", "criu 4.1.1-1 (trixie)"),
    ];
    for (release, name, package) in criu {
        let id = format!("clients.criu_{release}_lazy_restore");
        let summary = format!("{name}: a process dumped and restored with --lazy-pages gets every page back");
        let mut b = declare(&id, summary, "CRIU criu/uffd.c (v3.17.1, v4.1.1)");
        for (i, k) in order.iter().enumerate() {
            let (observed, verdict) = match (release, i) {
                (_, 0) => (rseq, Verdict::Expected),
                ("bookworm", i) if i % 3 == 2 || i == last => (vdso, Verdict::Expected),
                ("trixie", i) if i == last => ("-", Verdict::Skipped),
                _ => (works, Verdict::Expected),
            };
            b.cells.insert(k.clone(), cell(observed, verdict, &[("criu", package)]));
        }
        c.behaviours.insert(id, b);
    }
    let crate_ = [
        (
            "copy_eagain",
            "agrees: EAGAIN, 0 bytes copied",
            "disagrees: crate PartiallyCopied(18446744073709551605), kernel copied 0 bytes",
        ),
        (
            "zeropage_partial",
            "agrees: EAGAIN, 4096 bytes zeroed",
            "disagrees: crate ZeropageFailed(EAGAIN), kernel zeroed 4096 bytes",
        ),
        ("wake", "agrees: waiter woke", "agrees: waiter woke"),
        ("event_remove", "agrees: REMOVE pages [1,3)", "agrees: REMOVE pages [1,3)"),
    ];
    for (what, agrees, disagrees) in crate_ {
        let id = format!("clients.crate_{what}");
        // Both ways the suite words them: "The userfaultfd crate's Uffd::wake ...", "The
        // userfaultfd crate decodes ...".
        let summary = match what {
            "event_remove" => {
                "The userfaultfd crate decodes a REMOVE message as the kernel wrote it".to_string()
            }
            _ => format!("The userfaultfd crate's {what} reports what the kernel did"),
        };
        let mut b = declare(&id, summary, "userfaultfd 0.9.0 src/lib.rs");
        for (i, k) in order.iter().enumerate() {
            let x = match i % 3 {
                0 => cell(disagrees, Verdict::Unexpected, &[]),
                1 => cell(agrees, Verdict::Expected, &[]),
                _ => cell("-", Verdict::Unsupported, &[]),
            };
            b.cells.insert(k.clone(), x);
        }
        c.behaviours.insert(id, b);
    }
}

/// Writes the page of a matrix to `dir/index.html` and returns its URL.
fn write_page(view: &View<'_>, dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let page = dir.join("index.html");
    std::fs::write(&page, html(view).unwrap()).unwrap();
    format!("file://{}", page.display())
}

fn browser(dir: &Path, width: u32, height: u32) -> super::browser::Browser {
    let chromium = std::env::var("UFFDC_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = dir.join(format!("chromium-profile-{width}"));
    let _ = std::fs::remove_dir_all(&profile);
    super::browser::Browser::launch(&chromium, &profile, width, height)
}

/// Opens `url` (with `fragment`) and installs the probes.
fn open(b: &mut super::browser::Browser, url: &str, fragment: &str) {
    // A fragment-only change does not reload: go through a blank page first.
    b.navigate("about:blank");
    b.open(&format!("{url}{fragment}"));
    b.eval(PROBES);
}

/// The acceptance checks every page must pass, at desktop and phone widths: the top screen holds
/// the profile table with every kernel column; no horizontal page overflow on a phone; a
/// permalink lands visible below the sticky bar (and above the details panel); every cell state
/// has a text contrast of at least 4.5:1 (WCAG AA); Tab reaches a profile cell, whose focus is
/// visible; screenshots of the top screen go to `dir`.
fn acceptance(view: &View<'_>, dir: &Path, permalinks: &[String]) {
    let url = write_page(view, dir);
    let kernels = view.order.len();
    let mut desk = browser(dir, 1400, 900);
    open(&mut desk, &url, "");
    let top = desk.eval("uffdcProbe.top()");
    assert_eq!(top["scrollY"], 0, "{top}");
    let heads = top["heads"].as_array().unwrap();
    let ids: Vec<&str> = heads.iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, view.order, "one column per kernel, in version order");
    let (w, h) = (top["width"].as_f64().unwrap(), top["height"].as_f64().unwrap());
    assert!(
        top["right"].as_f64().unwrap() <= w
            && top["bottom"].as_f64().unwrap() <= h
            && top["boxScrolls"] == false,
        "the profile table (every one of {kernels} columns) does not fit the top screen at 1400×900: {top}"
    );
    desk.screenshot(&dir.join("report-1400.png"));

    // Keyboard: Tab from the top reaches a profile cell, with a visible focus ring; Enter opens it.
    let a = tab_to(&mut desk, 40, "a profile cell", |a| {
        a["profile"].is_string() && a["cls"].as_str().unwrap_or("").contains("pv")
    });
    desk.press("Enter", 13);
    let shown = desk.eval("document.getElementById('profile-detail').textContent");
    assert!(
        shown.as_str().unwrap().contains(a["kernel"].as_str().unwrap()),
        "Enter did not open the cell: {shown}"
    );

    // Contrast of every state a cell can have (the picker's cells too: a profile's needs picked).
    desk.eval("(() => { const s = document.getElementById('pick-profile'); s.selectedIndex = 1; s.dispatchEvent(new Event('change')); })()");
    // ... whose answer shows every kernel at 1400 px, as the profile table does.
    let answer = desk.eval("(() => { const b = document.getElementById('pick-table').closest('.scroll'); return [b.scrollWidth, b.clientWidth]; })()");
    assert!(answer[0].as_f64() <= answer[1].as_f64(), "the picker's answer scrolls at 1400 px: {answer}");
    let contrast = desk.eval("uffdcProbe.contrast()");
    let mut states: Vec<String> = Verdict::ALL.iter().map(|v| format!("s-{v}")).collect();
    states.extend(["s-absent", "pv-satisfies", "pv-violates", "pv-not-checked"].map(String::from));
    if !view.clients.is_empty() {
        states.extend(["cl-works", "cl-fails", "cl-unsupported", "cl-not-checked"].map(String::from));
    }
    for s in &states {
        let c = &contrast[s.as_str()];
        assert!(!c.is_null(), "no element in state {s} on the page: {contrast}");
        assert!(c["ratio"].as_f64().unwrap() >= 4.5, "{s} has a contrast below 4.5:1: {c}");
    }

    let mut phone = browser(dir, 390, 844);
    open(&mut phone, &url, "");
    let o = phone.eval("uffdcProbe.overflow()");
    assert!(o["scrollWidth"].as_f64() <= o["width"].as_f64(), "the page overflows sideways at 390 px: {o}");
    phone.screenshot(&dir.join("report-390.png"));
    clients_acceptance(view, dir, &url, &mut desk, &mut phone);

    for (b, width) in [(&mut desk, 1400), (&mut phone, 390)] {
        for hash in permalinks {
            open(b, &url, &format!("#{hash}"));
            let l = b.eval(&format!("uffdcProbe.landed({})", json_str(hash)));
            let f = |k: &str| l[k].as_f64().unwrap();
            assert_eq!(
                l["open"],
                json_str(hash).trim_matches('"'),
                "the permalink did not open its cell: {l}"
            );
            assert!(
                f("cellTop") >= f("bar") - 1.0
                    && f("rowTop") >= f("bar") - 1.0
                    && f("cellBottom") <= f("bottom"),
                "#{hash} at {width} px: its row is not visible below the sticky bar: {l}"
            );
            assert!(
                f("left") >= 0.0 && f("right") <= f("width") && l["onTop"] == true,
                "#{hash} at {width} px is covered or off screen: {l}"
            );
            let o = b.eval("uffdcProbe.overflow()");
            assert!(
                o["scrollWidth"].as_f64() <= o["width"].as_f64(),
                "#{hash} at {width} px overflows sideways: {o}"
            );
        }
    }
    phone.screenshot(&dir.join("report-390-permalink.png"));
}

/// The clients section, where the matrix has one (else it is absent): every kernel column in view
/// at 1400 px without scrolling; at 390 px the page does not scroll sideways, the table scrolls in
/// its own box; Tab reaches a client cell, with a visible focus, and Enter opens that cell's
/// details; screenshots of the section at both widths go to `dir`.
fn clients_acceptance(
    view: &View<'_>,
    dir: &Path,
    url: &str,
    desk: &mut super::browser::Browser,
    phone: &mut super::browser::Browser,
) {
    open(desk, url, "");
    let at = desk.eval("uffdcProbe.clients()");
    if view.clients.is_empty() {
        assert!(at.is_null(), "a clients table without clients behaviours: {at}");
        assert_eq!(desk.eval("document.getElementById('clients-section').hidden"), true);
        return;
    }
    let cells: usize = view.clients.iter().map(|r| r.cells.len()).sum();
    assert_eq!(at["heads"].as_u64(), Some(view.order.len() as u64), "{at}");
    assert_eq!(at["cells"].as_u64(), Some(cells as u64), "one link per client cell: {at}");
    assert!(
        at["boxScrolls"] == false && at["right"].as_f64() <= at["width"].as_f64(),
        "the clients table scrolls or overflows at 1400 px: {at}"
    );
    desk.eval("document.getElementById('clients-answer').scrollIntoView()");
    desk.screenshot(&dir.join("clients-1400.png"));
    // From the top of the page: past the controls and every profile cell.
    open(desk, url, "");
    let a = tab_to(desk, 400, "a client cell", |a| a["client"].is_string());
    let href = a["href"].as_str().unwrap_or("").trim_start_matches('#').to_string();
    // Enter follows the link; the page opens the cell's details on the hash change.
    let opened = format!(
        "new Promise(r => {{ const p = document.getElementById('panel'); const done = () => p.dataset.open === {0};
           if (done()) return r(p.dataset.open); const o = new MutationObserver(() => {{ if (done()) {{ o.disconnect(); r(p.dataset.open); }} }});
           o.observe(p, {{attributes: true}}); setTimeout(() => {{ o.disconnect(); r(p.dataset.open || null); }}, 5000); }})",
        json_str(&href)
    );
    desk.press("Enter", 13);
    let open_cell = desk.eval(&opened);
    assert_eq!(
        Some(open_cell.as_str().unwrap_or("")),
        a["href"].as_str().map(|h| h.trim_start_matches('#')),
        "Enter on a client cell did not open its details: {a}"
    );

    open(phone, url, "");
    let o = phone.eval("uffdcProbe.overflow()");
    assert!(o["scrollWidth"].as_f64() <= o["width"].as_f64(), "the page overflows sideways at 390 px: {o}");
    let at = phone.eval("uffdcProbe.clients()");
    assert!(
        at["overflowX"] == "auto" && at["boxRight"].as_f64() <= at["width"].as_f64(),
        "the clients table does not scroll in its own box at 390 px: {at}"
    );
    if view.order.len() > 3 {
        assert_eq!(at["boxScrolls"], true, "{} kernels fit 390 px? {at}", view.order.len());
    }
    phone.eval("document.getElementById('clients-answer').scrollIntoView()");
    phone.screenshot(&dir.join("clients-390.png"));
}

/// Presses Tab (at most `max` times) until the focused element is what `wanted` says, and returns
/// it, after checking that its focus is visible.
fn tab_to(
    b: &mut super::browser::Browser,
    max: usize,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..max {
        b.press("Tab", 9);
        let a = b.eval("uffdcProbe.active()");
        if wanted(&a) {
            assert!(
                a["outline"] != "none" && a["outlineWidth"].as_f64().unwrap() >= 2.0,
                "no visible focus: {a}"
            );
            return a;
        }
    }
    panic!("Tab never reached {what} in {max} presses");
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[test]
#[ignore = "needs Chromium: run through `cargo xtask test`"]
fn the_committed_matrix_answers_at_a_glance_in_chromium() {
    let root = crate::util::project_root();
    let compat: Compat = model::data::load(&root.join("matrix/compat.toml")).unwrap();
    let profiles = crate::inputs::profiles::all(&root).unwrap();
    let history = model::history::load(&root.join("matrix/history.toml")).unwrap();
    let view = View::new(&compat, &profiles, &history);
    // The last kernel's cell of a behaviour near the end of the page, and of a folded selftest case.
    let last = view.order.last().unwrap();
    let ours = compat.behaviours.iter().rev().find(|(_, b)| b.family != model::data::SELFTESTS).unwrap().0;
    let mut links = vec![format!("{ours}/{last}")];
    if let Some((case, _)) = compat.behaviours.iter().find(|(_, b)| b.family == model::data::SELFTESTS) {
        links.push(format!("{case}/{}", view.order[0]));
    }
    acceptance(&view, &root.join("target/uffdc/tests/report-matrix"), &links);
}

#[test]
#[ignore = "needs Chromium: run through `cargo xtask test`"]
fn the_page_answers_at_a_glance_in_chromium() {
    let c = every_state();
    let (p, h) = (profiles(), history(&c));
    let view = View::new(&c, &p, &h);
    let dir = crate::util::project_root().join("target/uffdc/tests/report");
    let _ = std::fs::remove_dir_all(&dir);
    acceptance(
        &view,
        &dir,
        &["populate.read_missing/debian-6.1-cloud".into(), "selftests.unit_move_anon/host".into()],
    );
    let url = format!("file://{}", dir.join("index.html").display());
    let mut b = browser(&dir, 1400, 900);
    open(&mut b, &url, "");
    let cells = c.behaviours.len() * c.kernels.len();
    // The overview: one square per cell, each a permalink coloured by its verdict; every cell in
    // the family tables.
    let count = |b: &mut super::browser::Browser, sel: &str| {
        b.eval(&format!("document.querySelectorAll({}).length", json_str(sel))).as_u64().unwrap() as usize
    };
    assert_eq!(count(&mut b, "#overview-grid a.ov"), cells, "one square per matrix cell");
    assert_eq!(count(&mut b, "#families td.cell a"), cells, "one linked cell per matrix cell");
    assert_eq!(count(&mut b, "a.ov.s-unexpected[href='#remove.copy_field/debian-6.1-cloud']"), 0);
    assert_eq!(count(&mut b, "a.ov.s-hung[href='#remove.madv_free/host']"), 1, "coloured by verdict");
    // The selftest cases are folded, and a case a kernel's selftests lack is not `missing`.
    assert_eq!(count(&mut b, "details.fold[open]"), 0, "selftests folded by default");
    assert_eq!(count(&mut b, "details.fold"), 2);
    let absent = b.eval("document.getElementById('selftests.unit_move_anon/debian-5.10-cloud').textContent");
    assert!(absent.as_str().unwrap().contains("not in this kernel's selftests"), "{absent}");
    assert_eq!(count(&mut b, "[id^='selftests.'].s-missing"), 0);
    // Profile verdicts, every one as the profile check gives it.
    for (profile, per) in &view.profiles {
        for (k, check) in per {
            let sel = format!(
                "button.pv[data-profile='{}'][data-kernel='{k}'][data-outcome='{}']",
                profile.name,
                check.outcome.as_str()
            );
            assert_eq!(count(&mut b, &sel), 1, "no {sel}");
        }
    }
    // "Supported since", from the expectation table.
    let since =
        b.eval("document.getElementById('populate.read_missing').querySelector('.since').textContent");
    assert_eq!(since, "supported since 5.14", "populate.read_missing's table: unsupported before 5.14");
    // Picking a profile's behaviours gives the profile's verdict on every kernel, and its minimum.
    for (profile, per) in &view.profiles {
        b.eval(&format!(
            "(() => {{ const s = document.getElementById('pick-profile'); s.value = {}; s.dispatchEvent(new Event('change')); }})()",
            json_str(&profile.name)
        ));
        for (k, check) in per {
            let got = b.eval(&format!(
                "document.querySelector('#pick-table tr.total td[data-kernel=\"{k}\"]').dataset.verdict"
            ));
            assert_eq!(got, check.outcome.as_str(), "picking {}'s needs on {k}", profile.name);
        }
        let (overall, _) = model::documented::minimum(profile, &c.behaviours);
        let text = b.eval("document.getElementById('pick-min').textContent");
        if let Some(model::documented::Since::From(v)) = overall {
            assert!(
                text.as_str().unwrap().contains(&format!("Needs Linux {v} or later")),
                "{}: {text}",
                profile.name
            );
        }
    }
    // The picks are a link: ticking a behaviour puts it into the fragment, and the fragment picks.
    b.eval("(() => { const x = document.getElementById('pick:api.handshake_twice'); x.click(); })()");
    let hash = b.eval("decodeURIComponent(location.hash)");
    assert!(hash.as_str().unwrap().contains("pick=api.handshake_twice:"), "{hash}");
    open(&mut b, &url, "#pick=populate.read_missing:fault+read&pick=no.such:thing");
    let rows =
        b.eval("[...document.querySelectorAll('#pick-table tbody tr[data-id]')].map(r => r.dataset.id)");
    assert_eq!(rows, serde_json::json!(["populate.read_missing"]), "an unknown pick is left out");
    let verdicts = b.eval("[...document.querySelectorAll('#pick-table tr.total td[data-kernel]')].map(td => td.dataset.verdict)");
    let want: Vec<&str> = view
        .order
        .iter()
        .map(|k| match c.behaviours["populate.read_missing"].cells[*k].observed.as_str() {
            "fault read" => "satisfies",
            _ if !observes_the_kernel(c.behaviours["populate.read_missing"].cells[*k].verdict) => {
                "not checked"
            }
            _ => "violates",
        })
        .collect();
    assert_eq!(verdicts, serde_json::json!(want), "one need: each kernel's own cell");
    // A cell's details give the command that observes it again.
    open(&mut b, &url, "#populate.read_missing/debian-6.1-cloud");
    let panel = b.eval("document.getElementById('panel').textContent");
    let repro = "cargo xtask matrix --kernel debian-6.1-cloud --no-selftests --out target/repro -- --exact populate::read_missing";
    assert!(panel.as_str().unwrap().contains(repro), "{panel}");
    // A finding grouped: one entry for a behaviour that holds on every kernel, its source quoted.
    let finding = b.eval("[...document.querySelectorAll('li.finding[data-behaviour=\"api.handshake_twice\"]')].map(e => e.innerHTML)");
    let finding = finding.as_array().unwrap();
    assert_eq!(finding.len(), 1);
    let finding = finding[0].as_str().unwrap();
    assert!(
        finding.contains("every kernel (3)")
            && finding.contains("<blockquote>UFFDIO_API(2const), man-pages 6.20"),
        "{finding}"
    );
    // What changed since the previous matrix, and between which point releases.
    assert_eq!(
        count(&mut b, "li.change[data-behaviour='remove.madv_free'][data-kernel='debian-6.1-cloud']"),
        1
    );
    let steps = b.eval("document.getElementById('steps-list').textContent");
    assert!(
        steps.as_str().unwrap().contains("Changed between 6.1.192 (debian-6.1-cloud) and 6.18.44 (host)"),
        "{steps}"
    );

    filters_follow_the_url(&mut b, &url, &c);
}

/// Search, and the family and "differs" filters, as the URL sets them, on load and in an open
/// page (hashchange).
fn filters_follow_the_url(b: &mut super::browser::Browser, url: &str, c: &model::Compat) {
    let matching = c
        .behaviours
        .iter()
        .filter(|(id, b)| {
            let text = format!(
                "{id} {} {}",
                b.summary,
                b.cells.values().map(|c| c.observed.as_str()).collect::<Vec<_>>().join(" ")
            );
            text.to_lowercase().contains("copy")
        })
        .count();
    assert!(matching > 0 && matching < c.behaviours.len());
    open(b, url, "#q=copy");
    assert_eq!(b.eval("uffdcProbe.shown()"), matching, "search from the URL");
    open(b, url, "");
    assert_eq!(b.eval("uffdcProbe.shown()"), c.behaviours.len());
    b.eval("new Promise(r => { addEventListener('hashchange', () => setTimeout(r, 0), {once: true}); location.hash = '#q=copy'; })");
    assert_eq!(b.eval("uffdcProbe.shown()"), matching, "a changed #q= re-filters the open page");
    let differs = |b: &model::Behaviour| {
        let seen: BTreeSet<&str> = b
            .cells
            .values()
            .filter(|cell| observes_the_kernel(cell.verdict))
            .map(|cell| cell.observed.as_str())
            .collect();
        seen.len() > 1
    };
    let (family, _, differing) = families(c)
        .into_iter()
        .map(|(f, ids)| (f, ids.len(), ids.iter().filter(|id| differs(&c.behaviours[**id])).count()))
        .find(|(_, total, differing)| differing < total)
        .expect("a family where some behaviour is observed the same everywhere");
    b.eval(&format!(
        "new Promise(r => {{ addEventListener('hashchange', () => setTimeout(r, 0), {{once: true}}); location.hash = {}; }})",
        json_str(&format!("#family={family}&differs=1"))
    ));
    assert_eq!(b.eval("uffdcProbe.shown()"), differing, "family and differs filters from a changed fragment");
}

/// The clients section on every kernel of the committed matrix (clients cells added where it has
/// none yet): its columns are the committed ones, thirteen at the time of writing.
#[test]
#[ignore = "needs Chromium: run through `cargo xtask test`"]
fn the_clients_section_fits_every_committed_kernel_in_chromium() {
    let root = crate::util::project_root();
    let mut compat: Compat = model::data::load(&root.join("matrix/compat.toml")).unwrap();
    if !compat.behaviours.values().any(|b| b.family == CLIENTS) {
        with_clients(&mut compat);
    }
    let profiles = crate::inputs::profiles::all(&root).unwrap();
    let history = History::new();
    let view = View::new(&compat, &profiles, &history).with_writeups(&writeups().unwrap());
    assert!(!view.clients.is_empty());
    let dir = root.join("target/uffdc/tests/report-clients");
    let _ = std::fs::remove_dir_all(&dir);
    let first = format!("{}/{}", view.clients[0].behaviours[0], view.order[0]);
    acceptance(&view, &dir, &[first]);
}

/// The clients rows come from the `clients` cells: one per client and version, named by the
/// declaration (the version made exact by the package that ran), each kernel works or fails with
/// why; a changed observation changes the answer; without clients behaviours the section is absent.
#[test]
fn clients_are_answered_per_client_version_and_kernel() {
    let mut c = crate::util::fixture();
    let (p, h) = (profiles(), History::new());
    let view = View::new(&c, &p, &h);
    assert!(view.clients.is_empty());
    let md = markdown(&view);
    assert!(!md.contains("Real clients"), "a clients section without clients behaviours");
    assert_eq!(page_data(&view)["clients"], serde_json::json!([]));

    with_clients(&mut c);
    let docs = [
        ("docs/findings/a.md".to_string(), "`clients.crate_copy_eagain` reports 2^64-11".to_string()),
        ("docs/findings/b.md".to_string(), "nothing about clients".to_string()),
    ];
    let view = View::new(&c, &p, &h).with_writeups(&docs);
    assert_eq!(view.clients[0].writeups, ["docs/findings/a.md"], "the write-up that names a crate behaviour");
    assert!(view.clients[1].writeups.is_empty());
    let names: Vec<&str> = view.clients.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["the userfaultfd crate 0.9.0", "CRIU 3.17.1 (Debian 12)", "CRIU 4.1.1 (Debian 13)"]);
    let at = |row: usize, k: &str| &view.clients[row].cells[k];
    let (k510, k61, host) = ("debian-5.10-cloud", "debian-6.1-cloud", "host");
    assert_eq!(at(0, k510).state, ClientState::Fails);
    assert_eq!(at(0, k510).text, "disagrees on 2 of 4");
    assert_eq!(at(0, k510).why, "copy_eagain, zeropage_partial");
    assert_eq!(at(0, k510).link, "clients.crate_copy_eagain");
    assert_eq!((at(0, k61).state, at(0, k61).text.as_str()), (ClientState::Works, "agrees on all 4"));
    assert_eq!(at(0, host).state, ClientState::Unsupported);
    assert_eq!(
        (at(1, k510).state, at(1, k510).why.as_str()),
        (ClientState::Fails, "dump fails: TID has rseq but kernel lacks get_rseq_conf feature")
    );
    assert_eq!((at(1, k61).state, at(1, k61).text.as_str()), (ClientState::Works, "works"));
    assert!(at(1, host).why.contains("kerndat_vdso_fill_symtable"));
    assert_eq!(at(2, host).state, ClientState::NotChecked);
    assert_eq!(at(2, k61).state, ClientState::Works);

    // Right after the profiles, before the findings, in the text version too.
    let md = markdown(&view);
    let (profiles_at, clients_at, findings_at) = (
        md.find("## Can I run it here?").unwrap(),
        md.find("## Real clients").unwrap(),
        md.find("## Findings").unwrap(),
    );
    assert!(profiles_at < clients_at && clients_at < findings_at);
    assert!(md.contains("| CRIU 3.17.1 (Debian 12) (`clients.criu_bookworm_lazy_restore`) | ❌ fails: dump fails: TID has rseq"), "{md}");
    assert!(md.contains("| the userfaultfd crate 0.9.0 (4 behaviours `clients.crate_*`; write-up: [docs/findings/a.md](../docs/findings/a.md)) | ❌ disagrees on 2 of 4: copy_eagain, zeropage_partial | ✅ agrees on all 4 | ➖ unsupported"), "{md}");

    assert!(client_fails("restores, 3 pages wrong") && client_fails("restore fails: E"));
    assert!(!client_fails("agrees: EEXIST, 0 bytes copied (CopyFailed failed)"));
    // The answer follows the cells: a crate call that disagrees on 6.1 makes it fail there.
    let cell = c.behaviours.get_mut("clients.crate_wake").unwrap().cells.get_mut(k61).unwrap();
    cell.observed = "disagrees: crate Ok, kernel the waiter still waits".into();
    cell.verdict = Verdict::Unexpected;
    let view = View::new(&c, &p, &h);
    let cell = &view.clients[0].cells[k61];
    assert_eq!(
        (cell.state, cell.text.as_str(), cell.why.as_str()),
        (ClientState::Fails, "disagrees on 1 of 4", "wake")
    );
    // ... and one that learnt nothing there is not counted.
    let cell = c.behaviours.get_mut("clients.crate_event_remove").unwrap().cells.get_mut(k61).unwrap();
    cell.verdict = Verdict::Error;
    let view = View::new(&c, &p, &h);
    assert_eq!(view.clients[0].cells[k61].text, "disagrees on 1 of 3 checked");
}

/// The command a cell's details give is one `cargo xtask` accepts, and it runs what the cell
/// observed: that kernel, that behaviour alone, into a directory of its own.
#[test]
fn the_command_that_reproduces_a_cell_is_a_real_one() {
    let c = every_state();
    let line = reproduce(&c, "populate.read_missing", "debian-6.1-cloud").unwrap();
    let args: Vec<std::ffi::OsString> =
        line.strip_prefix("cargo xtask ").unwrap().split(' ').map(Into::into).collect();
    match crate::flags::parse(args).unwrap().subcommand {
        crate::flags::XtaskCmd::Matrix(m) => {
            assert_eq!(m.kernel, ["debian-6.1-cloud"]);
            assert!(m.no_selftests);
            assert_eq!(m.out.as_deref(), Some(Path::new("target/repro")));
            assert_eq!(m.suite_args, ["--exact", "populate::read_missing"].map(std::ffi::OsString::from));
        }
        other => panic!("not a matrix command: {other:?}"),
    }
    // A selftest case needs its kernel's selftests; the host column is the suite run directly.
    let case = reproduce(&c, "selftests.unit_move_anon", "debian-6.1-cloud");
    assert_eq!(case.as_deref(), Some("cargo xtask matrix --kernel debian-6.1-cloud --out target/repro"));
    assert_eq!(
        reproduce(&c, "api.features", "host").as_deref(),
        Some("sudo cargo run -p suite -- --exact api::features")
    );
    assert_eq!(reproduce(&c, "selftests.unit_move_anon", "host"), None, "the host runs no selftests");
}

#[test]
fn supported_since_is_read_from_the_expectation_table() {
    use model::documented::Since;
    use model::expect::Rule;
    let with = |rows: &[(&str, &str)]| {
        let mut b = model::data::selftest_behaviour("selftests.x");
        b.family = "populate".into();
        b.expectation = rows.iter().map(|(k, e)| Rule::new(k, e)).collect();
        supported_since(&b)
    };
    let v = |s: &str| s.parse().unwrap();
    let no_uffd = ("* when CONFIG_USERFAULTFD!=y", "unsupported: no userfaultfd");
    assert_eq!(
        with(&[no_uffd, ("<5.14", "unsupported: new in 5.14"), (">=5.14", "fault read")]),
        Some(Since::From(v("5.14")))
    );
    assert_eq!(
        with(&[(">=5.7", "includes: WP")]),
        Some(Since::From(v("5.7"))),
        "no row before 5.7: not supported there"
    );
    assert_eq!(
        with(&[no_uffd, ("*", "EPERM")]),
        Some(Since::Any),
        "the configuration's rows are not versions"
    );
    assert_eq!(with(&[("<6.1", "absent"), (">=6.1", "unsupported: gone")]), Some(Since::Never));
    assert_eq!(
        with(&[("<5.11", "a"), (">=5.11, <6.1", "unsupported: briefly gone"), (">=6.1", "b")]),
        Some(Since::From(v("6.1"))),
        "the last stretch counts"
    );
    assert_eq!(with(&[no_uffd]), Some(Since::Undetermined));
    assert_eq!(
        supported_since(&model::data::selftest_behaviour("selftests.x")),
        None,
        "selftests have no table"
    );
}

#[test]
fn markdown_folds_the_selftests_and_says_what_a_kernels_selftests_lack() {
    let c = every_state();
    let (p, h) = (profiles(), History::new());
    let md = markdown(&View::new(&c, &p, &h));
    assert!(md.contains("(supported since 5.14) |"), "{md}");
    let folded = md.split("\n## selftests\n").nth(1).expect("a selftests section");
    assert!(folded.starts_with("\n<details><summary>1 cases of the kernels' own selftests: 1 passed, 1 failed, 0 skipped, 1 not in a kernel's selftests"), "{folded}");
    assert!(
        folded.contains("| · not in this kernel's selftests |") && folded.contains("\n</details>\n"),
        "{folded}"
    );
    assert!(!folded.contains("❔"), "a case a kernel's selftests lack is not missing: {folded}");
}

/// The fixture with `ID-arm64` beside the x86 column `ID`: the same kernel version on arm64 (a
/// configuration with `CONFIG_ARM64=y`), every one of the x86 column's cells copied to it.
fn with_arm64_twin(c: &mut Compat, x86: &str) -> String {
    let id = format!("{x86}-arm64");
    let mut info = c.kernels[x86].clone();
    info.machine = "aarch64".into();
    info.arch = Some(model::arch::Arch::Arm64);
    info.config = Some(model::config::Config::parse("test", "CONFIG_ARM64=y\nCONFIG_USERFAULTFD=y\n"));
    c.kernels.insert(id.clone(), info);
    for b in c.behaviours.values_mut() {
        if let Some(cell) = b.cells.get(x86).cloned() {
            b.cells.insert(id.clone(), cell);
        }
    }
    id
}

#[test]
fn where_x86_and_arm64_differ_on_one_kernel_is_listed_with_each_sides_row() {
    let mut c = crate::util::fixture();
    let arm = with_arm64_twin(&mut c, "debian-6.1-cloud");
    // An arm64 row for api.features, before the rows without a condition (arm64 before 6.10 has
    // no write-protect), and the arm64 kernel observing the list without PAGEFAULT_FLAG_WP.
    let features = c.behaviours.get_mut("api.features").unwrap();
    let without_wp =
        "EVENT_FORK EVENT_REMAP EVENT_REMOVE MISSING_HUGETLBFS MISSING_SHMEM EVENT_UNMAP SIGBUS THREAD_ID";
    features
        .expectation
        .insert(0, model::expect::Rule::new("<6.10 when arch=arm64", &format!("includes: {without_wp}")));
    features.cells.get_mut(&arm).unwrap().observed = without_wp.into();
    // remove.madv_free raises its event on arm64 where the x86 column did not: a difference
    // whose verdicts differ too.
    let cell = c.behaviours.get_mut("remove.madv_free").unwrap().cells.get_mut(&arm).unwrap();
    (cell.observed, cell.verdict, cell.reason) = ("REMOVE pages [1,3)".into(), Verdict::Expected, None);
    // Not differences: the same observation with another verdict, and a cell that learnt nothing.
    c.behaviours.get_mut("api.handshake_twice").unwrap().cells.get_mut(&arm).unwrap().verdict =
        Verdict::Unexpected;
    let lost = c.behaviours.get_mut("populate.read_missing").unwrap().cells.get_mut(&arm).unwrap();
    (lost.observed, lost.verdict) = ("-".into(), Verdict::Error);
    // A selftest case is the kernels' own test, not one of our behaviours.
    with_selftest(&mut c, "selftests.unit_move", "debian-6.1-cloud", "pass", None);
    with_selftest(&mut c, "selftests.unit_move", &arm, "fail", Some("boom"));

    let pairs = arch_differences(&c);
    assert_eq!(pairs.len(), 1, "one pair: host and debian-5.10-cloud have no arm64 twin");
    let p = &pairs[0];
    assert_eq!((p.x86, p.other), ("debian-6.1-cloud", arm.as_str()));
    let listed: Vec<&str> = p.differences.iter().map(|d| d.behaviour).collect();
    assert_eq!(listed, ["api.features", "remove.madv_free"]);
    let both_observed = c
        .behaviours
        .values()
        .filter(|b| b.family != model::data::SELFTESTS)
        .filter(|b| {
            [p.x86, p.other].iter().all(|k| b.cells.get(*k).is_some_and(|c| observes_the_kernel(c.verdict)))
        })
        .count();
    assert_eq!(p.compared, both_observed);
    let f = &p.differences[0];
    assert_eq!((f.x86.arch, f.other.arch), (model::arch::Arch::X86_64, model::arch::Arch::Arm64));
    assert!(f.other.row.starts_with("before 6.10 with arch=arm64: includes: EVENT_FORK"), "{}", f.other.row);
    assert!(f.x86.row.starts_with("5.19 up to (not incl.) 6.4: includes:"), "{}", f.x86.row);
    let m = &p.differences[1];
    assert_eq!((m.x86.verdict, m.other.verdict), (Verdict::Unexpected, Verdict::Expected));
    assert_eq!((m.x86.observed.as_str(), m.other.observed.as_str()), ("no event", "REMOVE pages [1,3)"));

    // Both renderings list the same, with the citation; the arm64 column comes after the x86 ones.
    let (profiles, history) = (profiles(), History::new());
    let view = View::new(&c, &profiles, &history);
    assert_eq!(view.order.last(), Some(&arm.as_str()));
    // Its set-valued cell is compared with the arm64 kernel before it (none), not an x86 one.
    assert_eq!(view.set_cell("api.features", &arm).unwrap().0, "8 listed");
    let md = markdown(&view);
    let section = md
        .split("\n## Where x86-64 and arm64 differ")
        .nth(1)
        .expect("the section")
        .split("\n## ")
        .next()
        .unwrap();
    assert!(
        section.contains(&format!("### debian-6.1-cloud (x86_64, 6.1.192) and {arm} (arm64, 6.1.192)")),
        "{section}"
    );
    assert!(section.contains("2 of the"), "{section}");
    for id in ["api.features", "remove.madv_free"] {
        assert!(section.contains(&format!("**`{id}`**")), "{id} missing: {section}");
        assert!(section.contains(&c.behaviours[id].citation), "{id}'s citation missing");
    }
    for id in ["api.handshake_twice", "populate.read_missing", "selftests.unit_move", "remove.copy_field"] {
        assert!(!section.contains(&format!("`{id}`")), "{id} listed: {section}");
    }
    assert!(section.contains("`−PAGEFAULT_FLAG_WP −MINOR_HUGETLBFS"), "{section}");
    assert!(section.contains("row: before 6.10 with arch=arm64"), "{section}");
    let data = page_data(&view);
    let listed: Vec<&str> = data["arch"][0]["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["behaviour"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["api.features", "remove.madv_free"]);
    assert_eq!(data["kernels"].as_array().unwrap().last().unwrap()["arch"], "arm64");
    assert_eq!(data["kernels"][0]["arch"], "x86_64");

    // Without an arm64 twin the section is left out.
    let plain = crate::util::fixture();
    let view = View::new(&plain, &profiles, &history);
    assert!(!markdown(&view).contains("Where x86-64 and arm64 differ"));
    assert_eq!(page_data(&view)["arch"], serde_json::json!([]));
}

//! The report's tests: the view, both renderings and the page in a browser.

use super::markdown::*;
use super::page::*;
use super::view::*;
use super::*;
use model::history::{observes_the_kernel, History};
use model::profile::Profile;
use model::{Compat, Verdict};

use std::collections::BTreeSet;
use std::process::Command;

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
            "| [page-server](../profiles/page-server.toml) | ❌ violates (1) | ✅ satisfies | ✅ satisfies |"
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

/// Renders the page in headless Chromium, `width` pixels wide, and reads back the DOM the
/// page's own script built.
fn chromium(page: &Path, fragment: &str, width: u32) -> String {
    chromium_run(page, fragment, width, None)
}

/// A screenshot of the whole page at `width`: headless Chromium's `--screenshot` shows a
/// scrolled window blank, so the window is made taller than the page (which reports its height).
fn screenshot(page: &Path, fragment: &str, width: u32, png: &Path) {
    // With room to spare: a page that fits leaves a fragment's scroll nothing to do.
    let height = (attr(&chromium(page, fragment, width), "data-height") + 600).clamp(600, 16_000);
    chromium_run(page, fragment, width, Some((png, height as u32)));
    assert!(
        std::fs::metadata(png).map(|m| m.len() > 10_000).unwrap_or(false),
        "no screenshot at {}",
        png.display()
    );
}

fn chromium_run(page: &Path, fragment: &str, width: u32, screenshot: Option<(&Path, u32)>) -> String {
    let chromium = std::env::var("UFFDC_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = page.parent().unwrap().join(format!("profile{n}"));
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
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some((png, height)) => {
            cmd.arg(format!("--screenshot={}", png.display())).arg(format!("--window-size={width},{height}"))
        }
        None => cmd.arg("--dump-dom").arg(format!("--window-size={width},900")),
    };
    let out = cmd.arg(format!("file://{}{fragment}", page.display())).output().expect("running chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn attr(dom: &str, name: &str) -> usize {
    let at = dom.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in the rendered page"));
    dom[at + name.len() + 2..].split('"').next().unwrap().parse().unwrap()
}

/// The element with this opening tag's attributes, up to its end: `<li class="finding" ...>`.
fn element<'d>(dom: &'d str, start: &str, end: &str) -> &'d str {
    let at = dom.find(start).unwrap_or_else(|| panic!("no {start} in the rendered page"));
    let rest = &dom[at..];
    &rest[..rest.find(end).map_or(rest.len(), |e| e + end.len())]
}

#[test]
#[ignore = "needs Chromium: run through `cargo xtask test`"]
fn the_page_answers_at_a_glance_in_chromium() {
    let c = crate::util::fixture();
    let (p, h) = (profiles(), history(&c));
    let view = View::new(&c, &p, &h);
    let dir = crate::util::project_root().join("target/uffdc/tests/report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("index.html");
    std::fs::write(&page, html(&view).unwrap()).unwrap();
    let cells = c.behaviours.len() * c.kernels.len();

    let dom = chromium(&page, "", 1400);
    assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
    // The overview: one square per cell, each a permalink, each with its verdict's mark.
    assert_eq!(attr(&dom, "data-overview-cells"), cells);
    assert_eq!(dom.matches("<a class=\"ov ").count(), cells, "one square per matrix cell");
    assert_eq!(dom.matches("class=\"cell ").count(), cells, "one detail cell per matrix cell");
    assert!(dom.contains("href=\"#populate.read_missing/debian-5.10-cloud\" data-cell=\"populate.read_missing/debian-5.10-cloud\""));
    assert_eq!(attr(&dom, "data-shown-cells"), cells);
    // Profile verdicts, every one as the profile check gives it.
    for (profile, per) in &view.profiles {
        for (k, check) in per {
            let want = format!(
                "data-profile=\"{}\" data-kernel=\"{k}\" data-outcome=\"{}\"",
                profile.name,
                check.outcome.as_str()
            );
            assert!(dom.contains(&want), "no {want} in the page");
        }
    }
    assert!(dom.contains(
        "data-profile=\"page-server\" data-kernel=\"debian-5.10-cloud\" data-outcome=\"violates\""
    ));
    // A finding grouped: one entry for a behaviour that holds on every kernel, its source quoted.
    assert_eq!(dom.matches("<li class=\"finding\" data-behaviour=\"api.handshake_twice\"").count(), 1);
    let finding = element(&dom, "<li class=\"finding\" data-behaviour=\"api.handshake_twice\"", "</li>");
    assert!(
        finding.contains("every kernel (3)")
            && finding.contains("<blockquote>UFFDIO_API(2const), man-pages 6.20"),
        "{finding}"
    );
    // What changed since the previous matrix, and between which point releases.
    assert!(
        dom.contains("class=\"change\" data-behaviour=\"remove.madv_free\" data-kernel=\"debian-6.1-cloud\"")
    );
    assert!(
        dom.contains("Changed between 6.1.192 (debian-6.1-cloud) and 6.18.44 (host)"),
        "along the versions"
    );
    // The feature timeline.
    assert!(element(&dom, "<table class=\"timeline\">", "</table>").contains("MINOR_HUGETLBFS"));

    // A permalink opens its cell.
    let dom = chromium(&page, "#populate.read_missing/debian-6.1-cloud", 390);
    let panel = element(&dom, "<div id=\"panel\"", ">");
    assert!(
        panel.contains("data-open=\"populate.read_missing/debian-6.1-cloud\"")
            && panel.contains("display: block"),
        "{panel}"
    );
    assert!(element(
        &dom,
        "<td class=\"cell expected target\" id=\"populate.read_missing/debian-6.1-cloud\"",
        ">"
    )
    .contains("target"));

    // Search, and the family and "differs" filters, as the URL sets them.
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
    assert_eq!(attr(&chromium(&page, "#q=copy", 1400), "data-shown-rows"), matching, "search");
    let differs = |b: &model::Behaviour| {
        let seen: BTreeSet<&str> = b
            .cells
            .values()
            .filter(|cell| observes_the_kernel(cell.verdict))
            .map(|cell| cell.observed.as_str())
            .collect();
        seen.len() > 1
    };
    let (family, total, differing) = families(&c)
        .into_iter()
        .map(|(f, ids)| (f, ids.len(), ids.iter().filter(|id| differs(&c.behaviours[**id])).count()))
        .find(|(_, total, differing)| differing < total)
        .expect("a family where some behaviour is observed the same everywhere");
    assert_eq!(
        attr(&chromium(&page, &format!("#family={family}"), 1400), "data-shown-rows"),
        total,
        "family filter"
    );
    let dom = chromium(&page, &format!("#family={family}&differs=1"), 1400);
    assert_eq!(attr(&dom, "data-shown-rows"), differing, "differs filter");

    // Screenshots at desktop and phone widths (a permalink open on the phone), kept as artifacts.
    for (name, width, fragment) in [
        ("report-desktop.png", 1400, ""),
        ("report-phone.png", 390, ""),
        ("report-phone-permalink.png", 390, "#remove.copy_field/debian-6.1-cloud"),
    ] {
        screenshot(&page, fragment, width, &dir.join(name));
    }
}

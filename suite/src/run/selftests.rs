//! The kernel's own userfaultfd selftests, run in a guest after the suite: xtask builds them from
//! the kernel's own Debian source package and packs them under `/selftests/` (`uffd-unit-tests`
//! and `uffd-stress` from tools/testing/selftests/mm, or `userfaultfd` from
//! tools/testing/selftests/vm before 6.3). Each case becomes a cell of the family `selftests`:
//! `pass`, `fail` or `skip` with the selftest's own reason, graded by `model::data::selftest_rules`.
//! The stress programs run with small parameters (4 MiB, 2 bounces) and every program has a time
//! limit, so they add seconds, not minutes, to a guest.

use crate::run::harness::Sink;
use model::expect::{grade_on, Reported};
use model::{Cell, Detail, Details, Verdict};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub const DIR: &str = "/selftests";
/// The most any one program may take in this guest (its architecture's limit).
fn limit() -> Duration {
    Duration::from_secs(model::data::selftest_limit_s(model::arch::Arch::native()))
}
/// The stress programs' size and rounds: small, to bound their time under emulation.
const STRESS: [&str; 2] = ["4", "2"];

/// Where the old `userfaultfd` program (5.10, 6.1) gets its hugetlb file: it takes a path on a
/// hugetlbfs mount, which the guest mounts here.
const HUGETLBFS: &str = "/selftests-hugetlbfs";

/// One run of a selftest program: its file under [`DIR`], its arguments, and the case it is (for
/// the stress programs; `uffd-unit-tests` reports its own cases).
struct Program {
    file: &'static str,
    args: Vec<String>,
    case: Option<String>,
}

/// The programs to run, from what the guest was given.
fn programs(have: &dyn Fn(&str) -> bool) -> Vec<Program> {
    let mut programs = Vec::new();
    if have("uffd-unit-tests") {
        programs.push(Program { file: "uffd-unit-tests", args: Vec::new(), case: None });
    }
    for (file, id) in [("uffd-stress", "stress"), ("userfaultfd", "userfaultfd")] {
        if !have(file) {
            continue;
        }
        for mem in model::data::SELFTEST_MEMORIES {
            let mut args: Vec<String> = [mem].into_iter().chain(STRESS).map(String::from).collect();
            if file == "userfaultfd" {
                // Its hugetlb test needs a file on hugetlbfs (the others ignore the argument).
                args.push(format!("{HUGETLBFS}/uffd"));
            }
            programs.push(Program { file, args, case: Some(format!("{id}_{mem}")) });
        }
    }
    programs
}

/// Runs the selftests the guest was given, recording a cell per case.
pub fn run(sink: &Sink) {
    let have = |p: &str| Path::new(DIR).join(p).is_file();
    let uname = crate::kit::machine::uname();
    let version = model::version::KernelVersion::from_uname(&uname.release, &uname.version);
    let config = crate::kit::machine::kernel_config();
    let programs = programs(&have);
    if programs.is_empty() {
        return;
    }
    // Without userfaultfd(2) the selftests cannot run: one cell per program says why.
    if let Err(crate::kit::outcome::Fail::Unsupported { observed, reason, .. }) =
        crate::kit::require::userfaultfd()
    {
        for p in &programs {
            let case = p.case.clone().unwrap_or_else(|| "unit".to_string());
            let rules = model::data::selftest_rules(&case);
            let g = grade_on(
                &rules,
                version,
                config.as_ref(),
                Some(model::arch::Arch::native()),
                Reported::Unsupported,
            );
            let cell = Cell {
                observed: observed.clone(),
                verdict: g.verdict,
                reason: Some(reason.clone()),
                expected: g.rule.clone(),
                details: Details::new(),
            };
            sink.record(&format!("selftests.{case}"), &cell);
        }
        return;
    }
    if programs.iter().any(|p| p.file == "userfaultfd") {
        mount_hugetlbfs();
    }
    let hugetlbfs = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.ends_with("\thugetlbfs")));
    let kernel = Grading { version, config, hugetlbfs };
    for p in programs {
        // Each run within limit(); the program with its reruns within twice that, from its start
        // (model::data::selftest_time_s, which xtask adds to the guest's hard limit).
        let mut reruns_end: Option<Instant> = None;
        let most = limit();
        let mut exec = |args: &[String]| -> Option<Ran> {
            let limit = match reruns_end {
                None => {
                    reruns_end = Some(Instant::now() + 2 * most);
                    most
                }
                Some(end) => end.saturating_duration_since(Instant::now()).min(most),
            };
            if limit < Duration::from_secs(1) {
                println!("uffdc selftest: {}: no time left for another run", p.file);
                return None;
            }
            let started = Instant::now();
            let command = format!("{} {}", p.file, args.join(" ")).trim().to_string();
            let (output, status) = execute(&Path::new(DIR).join(p.file), args, limit);
            // Its whole output goes to the console (the run's console.log), as the selftest printed it.
            println!("uffdc selftest: {command}: {status:?}\n{output}\nuffdc selftest end: {command}");
            Some(Ran { command, output, status, us: started.elapsed().as_micros() as u64 })
        };
        let runs = observe(&p, &mut exec);
        for (id, cell) in merged(&runs, &kernel) {
            sink.record(&id, &cell);
        }
    }
}

/// A case as one run of its program reported it: its name, `pass`, `fail` or `skip`, and why.
type Case = (String, &'static str, Option<String>);

/// One run of a selftest program: its command line, its output, its exit status (or why there is
/// none) and its time.
struct Ran {
    command: String,
    output: String,
    status: Result<i32, String>,
    us: u64,
}

impl Ran {
    /// It ran to its end and said so: exit status 0, or 4 (KSFT_SKIP).
    fn passed(&self) -> bool {
        matches!(self.status, Ok(0) | Ok(4))
    }
}

/// The cases one run of `p` reported.
fn cases_of(p: &Program, ran: &Ran) -> Vec<Case> {
    match &p.case {
        None if ran.output.contains("TAP version") => tap_cases(&ran.output, &ran.status),
        None => unit_cases(&ran.output, &ran.status),
        Some(_) if p.file == "userfaultfd" => old_cases(&p.args[0], &ran.output, &ran.status),
        Some(case) => {
            vec![(case.clone(), program_result(&ran.status), program_why(&ran.output, &ran.status))]
        }
    }
}

/// Runs program `p` through `exec` (which runs it with the arguments it is given, or answers
/// `None` when the program's time is spent) and, when it failed or died, runs it again, at most
/// [`model::data::SELFTEST_RERUNS`] more times, before its cases are recorded: a failure seen
/// once is not published as the kernel's, and the cases a crash left unrun are observed.
/// `uffd-unit-tests` takes a filter (`-f NAME`: the tests whose name holds NAME, on every kind
/// of memory; `-l` lists the tests: main() of tools/testing/selftests/mm/uffd-unit-tests.c, in
/// 6.12's source as in 7.x's KTAP one), so only its tests that failed or were not reached run
/// again ([`targets`]); the other programs run whole. Returns every run, in order, with its cases.
fn observe(p: &Program, exec: &mut dyn FnMut(&[String]) -> Option<Ran>) -> Vec<(Ran, Vec<Case>)> {
    let Some(first) = exec(&p.args) else { return Vec::new() };
    let cases = cases_of(p, &first);
    let mut runs = vec![(first, cases)];
    if runs[0].0.passed() {
        return runs;
    }
    let targets = match p.case {
        None => targets(&runs[0].0, &runs[0].1, &mut *exec),
        Some(_) => None,
    };
    let mut again = |args: Vec<String>, runs: &mut Vec<(Ran, Vec<Case>)>| -> Option<bool> {
        let ran = exec(&args)?;
        let cases = cases_of(p, &ran);
        let passed = ran.passed();
        runs.push((ran, cases));
        Some(passed)
    };
    match targets {
        Some(targets) => {
            // A filter's run covers every test whose name holds it (`-f minor`: minor-wp too).
            let mut covered: Vec<&str> = Vec::new();
            for t in &targets {
                if covered.iter().any(|c| t.contains(c)) {
                    continue;
                }
                for _ in 0..model::data::SELFTEST_RERUNS {
                    match again(vec!["-f".into(), t.clone()], &mut runs) {
                        None => return runs,
                        Some(true) => {
                            covered.push(t);
                            break;
                        }
                        Some(false) => {}
                    }
                }
            }
        }
        None => {
            for _ in 0..model::data::SELFTEST_RERUNS {
                if again(p.args.clone(), &mut runs) != Some(false) {
                    break;
                }
            }
        }
    }
    runs
}

/// What of `uffd-unit-tests` to run again after a `first` run that failed or died, as its test
/// names (the `-f` filters): every test with a failed case, and, when the run ended before its
/// report (`Userfaults unit tests: ...`, KTAP's `# Totals: ...`), every test from the last one it
/// reported on. `None` (run the whole program again) when the program does not list its tests
/// (`-l`), when a failed case is none of them (the UFFDIO_API cases run only unfiltered), or when
/// the run reported nothing.
fn targets(
    first: &Ran,
    cases: &[Case],
    exec: &mut dyn FnMut(&[String]) -> Option<Ran>,
) -> Option<Vec<String>> {
    let listed = exec(&["-l".to_string()])?;
    if listed.status != Ok(0) {
        return None;
    }
    let names: Vec<&str> =
        listed.output.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    // A program without `-l` runs its tests instead of listing them.
    if names.is_empty() || names.iter().any(|n| n.contains(char::is_whitespace)) {
        return None;
    }
    // `unit_register-ioctls on shmem` -> `register-ioctls`.
    let test =
        |case: &str| case.strip_prefix("unit_").map(|c| c.split(" on ").next().unwrap_or(c).to_string());
    let mut failed = Vec::new();
    for (case, result, _) in cases.iter().filter(|(c, ..)| c != "unit") {
        let name = test(case)?;
        if *result == "fail" {
            failed.push(names.iter().position(|n| *n == name)?);
        }
    }
    let reported = first.output.contains("Userfaults unit tests: ") || first.output.contains("# Totals: ");
    let from = match cases.iter().rev().find_map(|(c, ..)| test(c)) {
        _ if reported => names.len(),
        Some(last) => names.iter().position(|n| *n == last).unwrap_or(0),
        None => return None,
    };
    let targets: Vec<String> =
        (0..names.len()).filter(|i| failed.contains(i) || *i >= from).map(|i| names[i].to_string()).collect();
    Some(targets)
}

/// How grading sees the guest's kernel.
struct Grading {
    version: Option<model::version::KernelVersion>,
    config: Option<model::config::Config>,
    /// hugetlbfs is in /proc/filesystems.
    hugetlbfs: bool,
}

/// One cell per case from a program's runs, in the order they first reported it: a case every
/// run that reported it saw the same is that observation; one that differed between runs (failed,
/// then passed on a rerun) is `flaky` with each observation (`harness::merge_runs`). The program
/// ending before its plan (the case `unit`) passed in the runs that did not report it.
fn merged(runs: &[(Ran, Vec<Case>)], kernel: &Grading) -> Vec<(String, Cell)> {
    let mut cells: Vec<(String, Vec<(u32, Cell)>)> = Vec::new();
    let cut_short = runs.iter().any(|(_, cases)| cases.iter().any(|(c, r, _)| c == "unit" && *r == "fail"));
    for (i, (ran, cases)) in runs.iter().enumerate() {
        let run = i as u32 + 1;
        let mut details = Details::new();
        details.insert("program".into(), Detail::from(ran.command.as_str()));
        // The program's time, shared by every case it reports.
        details.insert("program_us".into(), Detail::from(ran.us));
        if run > 1 {
            // A rerun in the same guest (its command says which cases it ran).
            details.insert("program_run".into(), Detail::from(u64::from(run)));
        }
        let mut observed: Vec<Case> = cases.clone();
        if cut_short && !cases.iter().any(|(c, ..)| c == "unit") {
            observed.push(("unit".to_string(), "pass", None));
        }
        for (case, result, why) in observed {
            let id = format!("selftests.{}", sanitize(&case));
            let cell = kernel.cell(&id, result, why, details.clone());
            match cells.iter_mut().find(|(c, _)| *c == id) {
                Some((_, runs)) => runs.push((run, cell)),
                None => cells.push((id, vec![(run, cell)])),
            }
        }
    }
    cells.into_iter().map(|(id, runs)| (id, crate::run::harness::merge_runs(runs))).collect()
}

impl Grading {
    /// Case `id`'s cell from one run's `result` and the selftest's `why`.
    fn cell(&self, id: &str, result: &'static str, why: Option<String>, mut d: Details) -> Cell {
        let rules = model::data::selftest_rules(id);
        match result {
            "skip" => Cell {
                observed: "skip".into(),
                verdict: Verdict::Skipped,
                reason: Some(format!("the selftest skipped it: {}", why.unwrap_or_default())),
                expected: None,
                details: d,
            },
            // A hugetlb case that failed on a kernel without hugetlbfs found a prerequisite
            // missing (uffd-stress: "Unable to determine page size"): graded as such.
            "fail" if id.contains("hugetlb") && !self.hugetlbfs => {
                if let Some(why) = &why {
                    d.insert("selftest".into(), Detail::from(why.as_str()));
                }
                let g = grade_on(
                    &rules,
                    self.version,
                    self.config.as_ref(),
                    Some(model::arch::Arch::native()),
                    Reported::Unsupported,
                );
                let reason = format!(
                    "the kernel has no hugetlbfs (not in /proc/filesystems): {}",
                    why.as_deref().unwrap_or("the selftest failed")
                );
                let reason = match g.reason {
                    Some(r) => format!("{r}: {reason}"),
                    None => reason,
                };
                Cell {
                    observed: result.into(),
                    verdict: g.verdict,
                    reason: Some(reason),
                    expected: g.rule,
                    details: d,
                }
            }
            _ => {
                if let Some(why) = &why {
                    d.insert("selftest".into(), Detail::from(why.as_str()));
                }
                let g = grade_on(
                    &rules,
                    self.version,
                    self.config.as_ref(),
                    Some(model::arch::Arch::native()),
                    Reported::Observed(result),
                );
                let reason = match (g.reason, why) {
                    (Some(r), Some(why)) => Some(format!("{r}: {why}")),
                    (r, _) => r,
                };
                Cell { observed: result.into(), verdict: g.verdict, reason, expected: g.rule, details: d }
            }
        }
    }
}

/// A whole program's result from its exit status: 0 pass, 4 (KSFT_SKIP) skip, else fail.
fn program_result(status: &Result<i32, String>) -> &'static str {
    match status {
        Ok(0) => "pass",
        Ok(4) => "skip",
        _ => "fail",
    }
}

/// Why, for a program that did not pass: its last line of output (and the exit status).
fn program_why(output: &str, status: &Result<i32, String>) -> Option<String> {
    match status {
        Ok(0) => None,
        Ok(4) => last_line(output),
        Ok(code) => Some(format!("exit status {code}: {}", last_line(output).unwrap_or_default())),
        Err(e) => Some(with_last_line(e.clone(), output)),
    }
}

/// Mounts hugetlbfs for the old `userfaultfd` program's hugetlb file; where it cannot be mounted
/// (no hugetlbfs), that program's hugetlb case fails saying so.
fn mount_hugetlbfs() {
    use nix::mount::{mount, MsFlags};
    if std::fs::create_dir_all(HUGETLBFS).is_ok() {
        if let Err(e) = mount(Some("none"), HUGETLBFS, Some("hugetlbfs"), MsFlags::empty(), None::<&str>) {
            println!("uffdc selftest: mount hugetlbfs on {HUGETLBFS}: {e}");
        }
    }
}

/// `uffd-unit-tests`' cases in KTAP (7.x): `ok N NAME`, `ok N # SKIP NAME (REASON)`, and a failure
/// as `# failed reason: [REASON]` then `not ok N NAME`. When the program ended before its plan
/// (`1..N`) was done, a case `unit` fails saying where it stopped (KTAP does not say which case
/// was running).
fn tap_cases(output: &str, status: &Result<i32, String>) -> Vec<(String, &'static str, Option<String>)> {
    let mut cases = Vec::new();
    let mut plan = None;
    let mut why: Option<String> = None;
    for line in output.lines().map(str::trim_end) {
        if let Some(n) = line.strip_prefix("1..") {
            plan = n.trim().parse::<usize>().ok();
        } else if let Some(msg) = line.strip_prefix("# ") {
            if let Some(r) =
                msg.strip_prefix("failed reason: [").or_else(|| msg.strip_prefix("failed [reason: "))
            {
                why = Some(r.trim_end_matches(']').to_string());
            }
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            let name = rest.split_once(' ').map_or("", |(_, n)| n);
            let reason = why.take().unwrap_or_else(|| "the selftest reported it failed".to_string());
            cases.push((format!("unit_{name}"), "fail", Some(reason)));
        } else if let Some(rest) = line.strip_prefix("ok ") {
            let name = rest.split_once(' ').map_or("", |(_, n)| n);
            match name.strip_prefix("# SKIP ") {
                Some(skipped) => {
                    let (name, reason) = skip_reason(skipped);
                    cases.push((format!("unit_{name}"), "skip", Some(reason.to_string())));
                }
                None => cases.push((format!("unit_{name}"), "pass", None)),
            }
            why = None;
        }
    }
    let ended_early = plan.is_none_or(|n| cases.len() < n);
    if ended_early && !matches!(status, Ok(4)) {
        let how = match status {
            Ok(code) => format!("the program ended (exit status {code})"),
            Err(e) => e.clone(),
        };
        let done =
            format!("after {} of {} cases", cases.len(), plan.map_or("?".to_string(), |n| n.to_string()));
        cases.push(("unit".to_string(), "fail", Some(with_last_line(format!("{how} {done}"), output))));
    } else if cases.is_empty() {
        cases.push(("unit".to_string(), "skip", last_line(output)));
    }
    cases
}

/// `wp-fork-pin on anon (Possibly CONFIG_GUP_TEST missing)` -> the name and the reason: the
/// reason is in the parentheses after `on MEM` (a name may hold some: `UFFDIO_API (with syscall)`).
fn skip_reason(text: &str) -> (&str, &str) {
    let from = text.find(" on ").unwrap_or(0);
    match text[from..].find(" (") {
        Some(at) if text.ends_with(')') => (&text[..from + at], &text[from + at + 2..text.len() - 1]),
        _ => (text, ""),
    }
}

/// `uffd-unit-tests`' cases: `Testing NAME on MEM... done | skipped [reason: R] | failed [reason: R]`.
/// A case without a result (the program died or timed out in it) failed.
fn unit_cases(output: &str, status: &Result<i32, String>) -> Vec<(String, &'static str, Option<String>)> {
    let mut cases = Vec::new();
    for chunk in output.split("Testing ").skip(1) {
        let Some((name, rest)) = chunk.split_once("... ") else { continue };
        let reason = |after: &str| {
            rest.split_once(after).map(|(_, r)| r.split(']').next().unwrap_or("").trim().to_string())
        };
        let (result, why) = if rest.trim_start().starts_with("done") {
            ("pass", None)
        } else if let Some(r) = reason("skipped [reason: ") {
            ("skip", Some(r))
        } else if let Some(r) = reason("failed [reason: ") {
            ("fail", Some(r))
        } else {
            let how = match status {
                Ok(code) => format!("the program ended (exit status {code}) before the case finished"),
                Err(e) => e.clone(),
            };
            ("fail", Some(with_last_line(how, rest)))
        };
        cases.push((format!("unit_{name}"), result, why));
    }
    if cases.is_empty() {
        let why = last_line(output).unwrap_or_else(|| format!("{status:?}"));
        cases.push(("unit".to_string(), if matches!(status, Ok(4)) { "skip" } else { "fail" }, Some(why)));
    }
    cases
}

/// The old `userfaultfd` program's parts (5.10, 6.1): the stress (its `bounces:` lines), then
/// each `testing NAME: ...` it printed (`UFFDIO_ZEROPAGE`, `signal delivery`, `events (fork, remap,
/// remove)`, `minor faults`, ...), as cases `userfaultfd_MEM_PART`. It stops at the first failure:
/// every part before the last one it printed passed; the last one passed only when the program
/// did (exit status 0), and is skipped with exit status 4.
fn old_cases(
    mem: &str,
    output: &str,
    status: &Result<i32, String>,
) -> Vec<(String, &'static str, Option<String>)> {
    let mut parts: Vec<(String, String)> = vec![("stress".to_string(), String::new())];
    for line in output.lines() {
        match line.strip_prefix("testing ").and_then(|l| l.split_once(':')) {
            Some((name, rest)) => parts.push((sanitize(name), rest.trim().to_string())),
            None => {
                let text = &mut parts.last_mut().expect("stress is first").1;
                if !line.trim().is_empty() {
                    *text += &format!("{}{}", if text.is_empty() { "" } else { " / " }, line.trim());
                }
            }
        }
    }
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (part, text))| {
            let case = format!("userfaultfd_{mem}_{part}");
            match status {
                _ if i < last => (case, "pass", None),
                Ok(0) => (case, "pass", None),
                Ok(4) => (case, "skip", Some(text)),
                Ok(code) => (case, "fail", Some(format!("exit status {code}: {text}"))),
                Err(e) => (case, "fail", Some(format!("{e}: {text}"))),
            }
        })
        .collect()
}

/// `how`, with the last line the program printed in `text` (when there is one).
fn with_last_line(how: String, text: &str) -> String {
    match last_line(text) {
        Some(line) => format!("{how}; its last line: {line}"),
        None => how,
    }
}

/// The last line that says something (not KTAP's closing counts).
fn last_line(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("# Totals") && !l.contains("skipped test(s) detected"))
        .map(|l| l.chars().take(300).collect())
}

/// `register-ioctls on anon` -> `register_ioctls_on_anon` -> `register_ioctls_anon`.
fn sanitize(case: &str) -> String {
    let words: Vec<String> = case
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && *w != "on" && *w != "with")
        .map(|w| w.to_ascii_lowercase())
        .collect();
    words.join("_")
}

/// Runs a program with its output captured (stdout and stderr together), in a process group of
/// its own, killed with the group after `limit` ([`limit()`] in a guest). Returns the output and the exit status (or why
/// there is none).
fn execute(program: &Path, args: &[String], limit: Duration) -> (String, Result<i32, String>) {
    let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return (String::new(), Err(format!("pipe: {e}"))),
    };
    let spawned = std::process::Command::new(program)
        .args(args)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(match write.try_clone() {
            Ok(w) => w,
            Err(e) => return (String::new(), Err(format!("dup: {e}"))),
        })
        .stderr(write)
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return (String::new(), Err(format!("cannot run {}: {e}", program.display()))),
    };
    let pid = child.id() as i32;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::fs::File::from(read).read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let exited = match crate::run::isolate::pidfd_open(pid) {
        Ok(fd) => crate::kit::poll::wait_readable(std::os::fd::AsFd::as_fd(&fd), limit).unwrap_or(false),
        Err(_) => false,
    };
    // SAFETY: signals the program's own process group (gone already, or strays of it, or the
    // program itself when its time is up).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child.wait();
    let output = reader.join().unwrap_or_default();
    let status = match status {
        _ if !exited => Err(format!("timed out after {}s (killed)", limit.as_secs_f64())),
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => Ok(code),
            (None, Some(sig)) => Err(format!("killed by signal {sig}")),
            _ => Err("ended without a status".into()),
        },
        Err(e) => Err(format!("wait: {e}")),
    };
    (output, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output captured from real guests (the console logs of `cargo xtask matrix`), in
    /// suite/testdata/selftests/.
    fn captured(name: &str) -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/selftests").join(name))
            .unwrap()
    }

    fn results(cases: &[(String, &str, Option<String>)]) -> Vec<(String, String)> {
        cases.iter().map(|(c, r, _)| (sanitize(c), r.to_string())).collect()
    }

    fn count(cases: &[(String, &str, Option<String>)], result: &str) -> usize {
        cases.iter().filter(|(_, r, _)| *r == result).count()
    }

    #[test]
    fn reads_uffd_unit_tests_of_6_12() {
        // debian-6.12-rt: "Userfaults unit tests: pass=53, skip=13, fail=0 (total=66)".
        let cases = unit_cases(&captured("uffd-unit-tests-6.12-rt.txt"), &Ok(0));
        assert_eq!((cases.len(), count(&cases, "pass"), count(&cases, "skip")), (66, 53, 13));
        let r = results(&cases);
        assert_eq!(r[0], ("unit_uffdio_api_syscall".into(), "pass".into()));
        assert_eq!(r[1], ("unit_uffdio_api_dev_userfaultfd".into(), "pass".into()));
        assert_eq!(r[2], ("unit_register_ioctls_anon".into(), "pass".into()));
        let pmd = cases.iter().find(|(c, ..)| sanitize(c) == "unit_move_pmd_anon").unwrap();
        assert_eq!((pmd.1, pmd.2.as_deref()), ("skip", Some("CONFIG_TRANSPARENT_HUGEPAGE is not set")));
        let collapse = cases.iter().find(|(c, ..)| sanitize(c) == "unit_minor_collapse_shmem").unwrap();
        assert_eq!(collapse.2.as_deref(), Some("MADV_COLLAPSE failed"));
    }

    #[test]
    fn reads_uffd_unit_tests_failures_and_cut_short_runs() {
        // The 6.12 format of a failure (uffd_test_fail: "failed [reason: " fmt "]"), then a case
        // the program died in (killed when its time was up).
        let out = "Testing UFFDIO_API (with syscall)... done\n\
                   Testing minor on shmem... failed [reason: stats check error]\n\
                   Testing poison on anon... skipped [reason: feature missing]\n\
                   Testing events on anon... ERROR: UFFDIO_COPY error: -22 (errno=22, @uffd-common.c:591)\n";
        let cases = unit_cases(out, &Err("timed out after 60s (killed)".into()));
        let r = results(&cases);
        assert_eq!(
            r,
            [
                ("unit_uffdio_api_syscall".to_string(), "pass".to_string()),
                ("unit_minor_shmem".into(), "fail".into()),
                ("unit_poison_anon".into(), "skip".into()),
                ("unit_events_anon".into(), "fail".into()),
            ]
        );
        assert_eq!(cases[1].2.as_deref(), Some("stats check error"));
        assert_eq!(cases[2].2.as_deref(), Some("feature missing"));
        let died = cases[3].2.as_deref().unwrap();
        assert!(
            died.starts_with("timed out after 60s (killed); its last line: ERROR: UFFDIO_COPY error"),
            "{died}"
        );
        // Without userfaultfd it skips everything (exit status 4).
        let none = unit_cases("Userfaultfd not supported or unprivileged, skip all tests\n", &Ok(4));
        assert_eq!(results(&none), [("unit".to_string(), "skip".to_string())]);
    }

    #[test]
    fn reads_uffd_unit_tests_in_ktap_of_7_x() {
        // debian-7.3-cloud: "# Totals: pass:102 fail:0 xfail:0 xpass:0 skip:12 error:0", plan 1..114.
        let out = captured("uffd-unit-tests-7.3.txt");
        let cases = tap_cases(&out, &Ok(0));
        assert_eq!((cases.len(), count(&cases, "pass"), count(&cases, "skip")), (114, 102, 12));
        // The same ids as the older format's, for the same cases.
        let r = results(&cases);
        assert_eq!(r[0], ("unit_uffdio_api_syscall".into(), "pass".into()));
        assert_eq!(r[12], ("unit_move_anon".into(), "pass".into()));
        let pin = cases.iter().find(|(c, ..)| sanitize(c) == "unit_wp_fork_pin_anon").unwrap();
        assert_eq!(
            (pin.1, pin.2.as_deref()),
            ("skip", Some("Possibly CONFIG_GUP_TEST missing or unprivileged"))
        );
        let swap = cases.iter().find(|(c, ..)| sanitize(c) == "unit_rwp_swap_cow_anon").unwrap();
        assert_eq!(swap.2.as_deref(), Some("MADV_PAGEOUT did not swap the page; is swap enabled?"));
        // A failure (ksft_print_msg("failed reason: [...]") then "not ok"), and a run cut short.
        let cut: String = out.lines().take(17).map(|l| format!("{l}\n")).collect::<String>()
            + "# failed reason: [UFFDIO_MOVE returned -16]\nnot ok 14 move-pmd on anon\n";
        let cases = tap_cases(&cut, &Err("killed by signal 9".into()));
        let failed = cases.iter().find(|(c, ..)| sanitize(c) == "unit_move_pmd_anon").unwrap();
        assert_eq!((failed.1, failed.2.as_deref()), ("fail", Some("UFFDIO_MOVE returned -16")));
        let stopped = cases.last().unwrap();
        assert_eq!((stopped.0.as_str(), stopped.1), ("unit", "fail"));
        assert!(
            stopped.2.as_deref().unwrap().starts_with("killed by signal 9 after 14 of 114 cases"),
            "{:?}",
            stopped.2
        );
    }

    #[test]
    fn reads_the_old_userfaultfd_program_part_by_part() {
        // debian-5.10-cloud, anonymous memory: the signal test failed ("Signal repeated").
        let cases = old_cases("anon", &captured("userfaultfd-anon-5.10.txt"), &Ok(1));
        assert_eq!(
            results(&cases),
            [
                ("userfaultfd_anon_stress".to_string(), "pass".to_string()),
                ("userfaultfd_anon_uffdio_zeropage".into(), "pass".into()),
                ("userfaultfd_anon_signal_delivery".into(), "fail".into()),
            ]
        );
        assert_eq!(cases[2].2.as_deref(), Some("exit status 1: Signal repeated / faulting process failed"));
        // debian-6.1-cloud, shmem: every part passed.
        let cases = old_cases("shmem", &captured("userfaultfd-shmem-6.1.txt"), &Ok(0));
        assert_eq!(
            results(&cases),
            [
                ("userfaultfd_shmem_stress".to_string(), "pass".to_string()),
                ("userfaultfd_shmem_uffdio_zeropage".into(), "pass".into()),
                ("userfaultfd_shmem_signal_delivery".into(), "pass".into()),
                ("userfaultfd_shmem_events_fork_remap_remove".into(), "pass".into()),
                ("userfaultfd_shmem_minor_faults".into(), "pass".into()),
            ]
        );
    }

    #[test]
    fn a_program_past_its_limit_is_killed_with_what_it_started_and_its_output_kept() {
        // A program that prints, starts a child of its own, and hangs.
        let args = ["-c".to_string(), "echo started; sleep 300 & echo $! > /dev/null; sleep 300".to_string()];
        let t = Instant::now();
        let (output, status) = execute(Path::new("/bin/sh"), &args, Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        assert_eq!(output, "started\n");
        assert_eq!(status, Err("timed out after 0.3s (killed)".to_string()));
        // One that ends in time: its exit status.
        let (output, status) =
            execute(Path::new("/bin/sh"), &["-c".into(), "echo out; echo err >&2; exit 4".into()], limit());
        assert_eq!((output.as_str(), status), ("out\nerr\n", Ok(4)));
        let (_, status) = execute(Path::new("/nonexistent/uffd-stress"), &[], limit());
        assert!(status.unwrap_err().starts_with("cannot run /nonexistent/uffd-stress"));
    }

    #[test]
    fn a_stress_program_is_one_case_by_its_exit_status() {
        // debian-7.2-cloud's uffd-stress on hugetlb (KTAP); exit status 0.
        let out = captured("uffd-stress-hugetlb-7.2.txt");
        assert_eq!((program_result(&Ok(0)), program_why(&out, &Ok(0))), ("pass", None));
        let skipped = "skip: Skipping userfaultfd... not enough hugepages\n";
        assert_eq!(program_result(&Ok(4)), "skip");
        assert_eq!(
            program_why(skipped, &Ok(4)).as_deref(),
            Some("skip: Skipping userfaultfd... not enough hugepages")
        );
        assert_eq!(program_result(&Err("timed out after 60s (killed)".into())), "fail");
        // KTAP's closing counts are not a reason.
        assert_eq!(program_why(&out, &Ok(1)).as_deref(), Some("exit status 1: ok 1 uffd-stress hugetlb"));
    }

    fn ran(command: &str, output: &str, status: Result<i32, String>) -> Ran {
        Ran { command: command.into(), output: output.into(), status, us: 1 }
    }

    /// The test of a `Testing NAME on MEM... RESULT` line.
    fn test_of(line: &str) -> Option<&str> {
        line.strip_prefix("Testing ")?.split_once(" on ").map(|(t, _)| t)
    }

    /// A stand-in for the 6.12 `uffd-unit-tests` whose answers are built from captured runs:
    /// `-l` lists the tests of the captured whole run `full` (when `lists`; else it refuses the
    /// option); `-f NAME` prints the lines of `full` whose test holds NAME
    /// (main()'s strstr filter) and its report, or dies again as the captured run died when NAME
    /// is `dies_in`; a plain run answers the next of `whole`. Every call's arguments are kept.
    fn unit_tests<'a>(
        full: &'a str,
        mut whole: Vec<(String, Result<i32, String>)>,
        lists: bool,
        dies_in: Option<&'a str>,
        calls: &'a std::cell::RefCell<Vec<Vec<String>>>,
    ) -> impl FnMut(&[String]) -> Option<Ran> + 'a {
        whole.reverse();
        move |args: &[String]| {
            calls.borrow_mut().push(args.to_vec());
            let command = format!("uffd-unit-tests {}", args.join(" ")).trim().to_string();
            let died = captured("constructed-uffd-unit-tests-6.12-died.txt");
            match args {
                [l] if l == "-l" && lists => {
                    let mut names: Vec<&str> = full.lines().filter_map(test_of).collect();
                    names.dedup();
                    Some(ran(&command, &(names.join("\n") + "\n"), Ok(0)))
                }
                // As getopt() answers an option the program does not take: its usage, KSFT_FAIL.
                [l] if l == "-l" => Some(ran(&command, "usage: uffd-unit-tests\n", Ok(1))),
                [f, name] if f == "-f" && dies_in == Some(name.as_str()) => {
                    let lines: Vec<&str> = died.lines().filter(|l| test_of(l) == Some(name)).collect();
                    Some(ran(&command, &(lines.join("\n") + "\n"), Ok(1)))
                }
                [f, name] if f == "-f" => {
                    let lines: Vec<&str> = full
                        .lines()
                        .filter(|l| test_of(l).is_some_and(|t| t.contains(name.as_str())))
                        .collect();
                    let done = |r: &str| lines.iter().filter(|l| l.ends_with(r)).count();
                    let report = format!(
                        "Userfaults unit tests: pass={}, skip={}, fail=0 (total={})",
                        done("... done"),
                        lines.len() - done("... done"),
                        lines.len()
                    );
                    Some(ran(&command, &format!("{}\n{report}\n", lines.join("\n")), Ok(0)))
                }
                _ => whole.pop().map(|(output, status)| ran(&command, &output, status)),
            }
        }
    }

    fn unit_program() -> Program {
        Program { file: "uffd-unit-tests", args: Vec::new(), case: None }
    }

    fn kernel_6_12() -> Grading {
        Grading {
            version: model::version::KernelVersion::from_release("6.12.118"),
            config: Some(model::config::Config::parse("test", "CONFIG_USERFAULTFD=y\nCONFIG_HUGETLBFS=y\n")),
            hugetlbfs: true,
        }
    }

    fn find<'a>(cells: &'a [(String, Cell)], id: &str) -> &'a Cell {
        &cells.iter().find(|(c, _)| c == id).unwrap_or_else(|| panic!("no cell {id}")).1
    }

    #[test]
    fn a_program_that_died_is_run_again_by_filter_and_its_later_cases_are_observed() {
        // build-6.12-no-thp's uffd-unit-tests died in register-ioctls on shmem (exit status 1);
        // the reruns, by `-f`, pass.
        let full = captured("uffd-unit-tests-6.12-rt.txt");
        let calls = Default::default();
        let mut exec = unit_tests(
            &full,
            vec![(captured("constructed-uffd-unit-tests-6.12-died.txt"), Ok(1))],
            true,
            None,
            &calls,
        );
        let runs = observe(&unit_program(), &mut exec);
        // The tests from the one it died in on, each filter once: `-f move` ran move-pmd and
        // move-pmd-split too, `-f wp-fork` the four wp-fork tests, `-f minor` and so on.
        let filters: Vec<String> =
            calls.borrow().iter().filter(|a| a.len() == 2).map(|a| a[1].clone()).collect();
        assert_eq!(
            filters,
            [
                "register-ioctls",
                "zeropage",
                "move",
                "wp-fork",
                "wp-unpopulated",
                "minor",
                "sigbus",
                "events",
                "poison"
            ]
        );
        assert_eq!(runs.len(), 1 + filters.len());
        let cells = merged(&runs, &kernel_6_12());
        // Every case of the whole run is observed, none left missing.
        let whole = unit_cases(&full, &Ok(0));
        assert_eq!(cells.len(), whole.len());
        for (case, result, _) in &whole {
            let cell = find(&cells, &format!("selftests.{}", sanitize(case)));
            assert_ne!(cell.verdict, Verdict::Unexpected, "{case}: {cell:?}");
            if cell.verdict != Verdict::Flaky {
                assert_eq!(cell.observed, *result, "{case}");
            }
        }
        // The case it died in failed, then passed: flaky, with both observations.
        let died = find(&cells, "selftests.unit_register_ioctls_shmem");
        assert_eq!(died.verdict, Verdict::Flaky);
        assert_eq!(died.details["observations"].to_string(), "1x unexpected \"fail\"; 1x expected \"pass\"");
        assert_eq!(died.details["repeats"].to_string(), "2");
        let other = died.details["other_runs"].to_string();
        assert!(other.starts_with("run 2: \"pass\": program=uffd-unit-tests -f register-ioctls"), "{other}");
        assert!(died.details["selftest"].to_string().contains("mmap of memfd failed at 0x40000000"));
        // A later case: observed once, by the rerun that ran it.
        let later = find(&cells, "selftests.unit_minor_collapse_shmem");
        assert_eq!((later.observed.as_str(), later.verdict), ("skip", Verdict::Skipped));
        assert_eq!(later.details["program"].to_string(), "uffd-unit-tests -f minor");
        assert_eq!(later.details["program_run"].to_string(), "7");
        // A case before it died, which no rerun ran: as the first run saw it.
        let api = find(&cells, "selftests.unit_uffdio_api_syscall");
        assert_eq!((api.verdict, api.details.get("repeats")), (Verdict::Expected, None));
    }

    #[test]
    fn a_program_that_cannot_filter_is_run_again_whole_and_merged_case_by_case() {
        // The same death; the program does not list its tests, so the rerun is the whole program, which passed (the full 6.12 run).
        let full = captured("uffd-unit-tests-6.12-rt.txt");
        let calls = Default::default();
        let died = captured("constructed-uffd-unit-tests-6.12-died.txt");
        let mut exec = unit_tests(&full, vec![(died, Ok(1)), (full.clone(), Ok(0))], false, None, &calls);
        let runs = observe(&unit_program(), &mut exec);
        assert_eq!(runs.len(), 2);
        let cells = merged(&runs, &kernel_6_12());
        assert_eq!(cells.len(), 66);
        assert_eq!(find(&cells, "selftests.unit_register_ioctls_shmem").verdict, Verdict::Flaky);
        let later = find(&cells, "selftests.unit_poison_hugetlb_private");
        assert_eq!((later.observed.as_str(), later.verdict), ("pass", Verdict::Expected));
        assert_eq!(later.details["program_run"].to_string(), "2");
        // Cases both runs saw alike are not flaky; they say they ran twice.
        let anon = find(&cells, "selftests.unit_register_ioctls_anon");
        assert_eq!((anon.verdict, anon.details["repeats"].to_string()), (Verdict::Expected, "2".into()));

        // 7.x (KTAP): killed 14 cases in, then a whole run that passed. The case `unit` (the
        // program ended before its plan) failed once and passed once: flaky; all 114 observed.
        let full = captured("uffd-unit-tests-7.3.txt");
        let cut: String = full.lines().take(17).map(|l| format!("{l}\n")).collect();
        let mut exec = unit_tests(
            &full,
            vec![(cut, Err("killed by signal 9".into())), (full.clone(), Ok(0))],
            false,
            None,
            &calls,
        );
        let cells = merged(&observe(&unit_program(), &mut exec), &kernel_6_12());
        assert_eq!(cells.len(), 115);
        assert_eq!(find(&cells, "selftests.unit").verdict, Verdict::Flaky);
        assert_eq!(find(&cells, "selftests.unit_mmap_changing_shmem").verdict, Verdict::Expected);
    }

    #[test]
    fn a_failure_that_repeats_stays_a_failure() {
        // It dies in register-ioctls on shmem on every run: the first, and each of its reruns.
        let full = captured("uffd-unit-tests-6.12-rt.txt");
        let calls = Default::default();
        let died = captured("constructed-uffd-unit-tests-6.12-died.txt");
        let mut exec = unit_tests(&full, vec![(died, Ok(1))], true, Some("register-ioctls"), &calls);
        let runs = observe(&unit_program(), &mut exec);
        let again = calls.borrow().iter().filter(|a| a[..] == ["-f", "register-ioctls"]).count();
        assert_eq!(again, model::data::SELFTEST_RERUNS as usize);
        let cells = merged(&runs, &kernel_6_12());
        let shmem = find(&cells, "selftests.unit_register_ioctls_shmem");
        assert_eq!((shmem.observed.as_str(), shmem.verdict), ("fail", Verdict::Unexpected));
        assert_eq!(shmem.details["repeats"].to_string(), (1 + model::data::SELFTEST_RERUNS).to_string());
        assert!(shmem.reason.as_deref().unwrap().contains("mmap of memfd failed"), "{:?}", shmem.reason);
        // The tests after it were still run, and observed.
        assert_eq!(find(&cells, "selftests.unit_zeropage_anon").verdict, Verdict::Expected);
        // A stress program (one case, run whole) that fails every time: a failure, not flaky.
        let stress =
            Program { file: "uffd-stress", args: vec!["anon".into()], case: Some("stress_anon".into()) };
        let mut n = 0;
        let mut exec = |_: &[String]| {
            n += 1;
            Some(ran("uffd-stress anon 4 2", "ERROR: UFFDIO_COPY error: -22\n", Ok(1)))
        };
        let runs = observe(&stress, &mut exec);
        assert_eq!(n, 1 + model::data::SELFTEST_RERUNS);
        let cells = merged(&runs, &kernel_6_12());
        assert_eq!(cells.len(), 1);
        assert_eq!((cells[0].1.observed.as_str(), cells[0].1.verdict), ("fail", Verdict::Unexpected));
    }

    #[test]
    fn reruns_stop_when_the_programs_time_is_spent() {
        // No time left after the first run (the stand-in answers None): its cases as it saw them.
        let mut first =
            Some(ran("uffd-unit-tests", &captured("constructed-uffd-unit-tests-6.12-died.txt"), Ok(1)));
        let mut exec = |_: &[String]| first.take();
        let cells = merged(&observe(&unit_program(), &mut exec), &kernel_6_12());
        assert_eq!(cells.len(), 4);
        assert_eq!(find(&cells, "selftests.unit_register_ioctls_shmem").verdict, Verdict::Unexpected);
    }

    #[test]
    fn a_guest_is_given_time_for_every_run_and_its_reruns() {
        // uffd-unit-tests once, uffd-stress on each kind of memory; each within twice the limit
        // of the guest's architecture (arm64's is longer: it is emulated more slowly).
        use model::arch::Arch;
        for arch in model::arch::ALL {
            let limit = model::data::selftest_limit_s(arch);
            let s = model::data::selftest_time_s(["uffd-unit-tests", "uffd-stress"], arch);
            assert_eq!(s, 4 * 2 * limit);
            assert_eq!(programs(&|f| f != "userfaultfd").len() as u64 * 2 * limit, s);
            let old = programs(&|f| f == "userfaultfd").len() as u64 * 2 * limit;
            assert_eq!(model::data::selftest_time_s(["userfaultfd"], arch), old);
        }
        assert_eq!(model::data::selftest_limit_s(Arch::X86_64), model::data::SELFTEST_LIMIT_S);
        assert!(model::data::selftest_limit_s(Arch::Arm64) > model::data::SELFTEST_LIMIT_S);
        assert_eq!(limit().as_secs(), model::data::selftest_limit_s(Arch::native()));
    }
}

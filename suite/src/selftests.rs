//! The kernel's own userfaultfd selftests, run in a guest after the suite: xtask builds them from
//! the kernel's own Debian source package and packs them under `/selftests/` (`uffd-unit-tests`
//! and `uffd-stress` from tools/testing/selftests/mm, or `userfaultfd` from
//! tools/testing/selftests/vm before 6.3). Each case becomes a cell of the family `selftests`:
//! `pass`, `fail` or `skip` with the selftest's own reason, graded by `model::data::selftest_rules`.
//! The stress programs run with small parameters (4 MiB, 2 bounces) and every program has a time
//! limit, so they add seconds, not minutes, to a guest.

use crate::harness::Sink;
use model::expect::{grade, Reported};
use model::{Cell, Detail, Details, Verdict};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub const DIR: &str = "/selftests";
/// The most any one program may take.
const LIMIT: Duration = Duration::from_secs(model::data::SELFTEST_LIMIT_S);
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
        for mem in ["anon", "shmem", "hugetlb"] {
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
    let uname = crate::machine::uname();
    let version = model::version::KernelVersion::from_uname(&uname.release, &uname.version);
    let config = crate::machine::kernel_config();
    let programs = programs(&have);
    if programs.is_empty() {
        return;
    }
    // Without userfaultfd(2) the selftests cannot run: one cell per program says why.
    if let Err(crate::outcome::Fail::Unsupported { observed, reason, .. }) = crate::require::userfaultfd() {
        let rules = model::data::selftest_rules();
        let g = grade(&rules, version, config.as_ref(), Reported::Unsupported);
        for p in &programs {
            let case = p.case.clone().unwrap_or_else(|| "unit".to_string());
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
    for p in programs {
        let started = Instant::now();
        let command = format!("{} {}", p.file, p.args.join(" ")).trim().to_string();
        let (output, status) = execute(&Path::new(DIR).join(p.file), &p.args);
        // Its whole output goes to the console (the run's console.log), as the selftest printed it.
        println!("uffdc selftest: {command}: {status:?}\n{output}\nuffdc selftest end: {command}");
        let mut details = Details::new();
        details.insert("program".into(), Detail::from(command));
        // The program's time, shared by every case it reports.
        details.insert("program_us".into(), Detail::from(started.elapsed().as_micros() as u64));
        let cases = match p.case {
            None => unit_cases(&output, &status),
            Some(case) => vec![(case, program_result(&status), program_why(&output, &status))],
        };
        for (case, result, why) in cases {
            let rules = model::data::selftest_rules();
            let mut d = details.clone();
            let cell = match result {
                "skip" => Cell {
                    observed: "skip".into(),
                    verdict: Verdict::Skipped,
                    reason: Some(format!("the selftest skipped it: {}", why.unwrap_or_default())),
                    expected: None,
                    details: d,
                },
                _ => {
                    if let Some(why) = &why {
                        d.insert("selftest".into(), Detail::from(why.as_str()));
                    }
                    let g = grade(&rules, version, config.as_ref(), Reported::Observed(result));
                    let reason = match (g.reason, why) {
                        (Some(r), Some(why)) => Some(format!("{r}: {why}")),
                        (r, _) => r,
                    };
                    Cell { observed: result.into(), verdict: g.verdict, reason, expected: g.rule, details: d }
                }
            };
            sink.record(&format!("selftests.{}", sanitize(&case)), &cell);
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
        Err(e) => Some(match last_line(output) {
            Some(line) => format!("{e}; its last line: {line}"),
            None => e.clone(),
        }),
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
            ("fail", Some(how))
        };
        cases.push((format!("unit_{name}"), result, why));
    }
    if cases.is_empty() {
        let why = last_line(output).unwrap_or_else(|| format!("{status:?}"));
        cases.push(("unit".to_string(), if matches!(status, Ok(4)) { "skip" } else { "fail" }, Some(why)));
    }
    cases
}

fn last_line(output: &str) -> Option<String> {
    output.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(300).collect())
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
/// its own, killed with the group after [`LIMIT`]. Returns the output and the exit status (or why
/// there is none).
fn execute(program: &Path, args: &[String]) -> (String, Result<i32, String>) {
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
    let exited = match crate::isolate::pidfd_open(pid) {
        Ok(fd) => crate::poll::wait_readable(std::os::fd::AsFd::as_fd(&fd), LIMIT).unwrap_or(false),
        Err(_) => false,
    };
    // SAFETY: signals the program's own process group (gone already, or strays of it, or the
    // program itself when its time is up).
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child.wait();
    let output = reader.join().unwrap_or_default();
    let status = match status {
        _ if !exited => Err(format!("timed out after {}s (killed)", LIMIT.as_secs())),
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

    #[test]
    fn reads_the_unit_tests_cases() {
        let out = "Testing UFFDIO_API (with syscall)... done\nTesting register-ioctls on anon... done\n\
                   Testing poison on anon... skipped [reason: feature missing]\n\
                   Testing minor on shmem... some noise\nfailed [reason: stats check error]\n\
                   Testing events on anon... ";
        let cases = unit_cases(out, &Ok(1));
        let got: Vec<(String, &str)> = cases.iter().map(|(c, r, _)| (sanitize(c), *r)).collect();
        assert_eq!(
            got,
            [
                ("unit_uffdio_api_syscall".to_string(), "pass"),
                ("unit_register_ioctls_anon".into(), "pass"),
                ("unit_poison_anon".into(), "skip"),
                ("unit_minor_shmem".into(), "fail"),
                ("unit_events_anon".into(), "fail"),
            ]
        );
        assert_eq!(cases[2].2.as_deref(), Some("feature missing"));
        assert_eq!(cases[3].2.as_deref(), Some("stats check error"));
        assert!(cases[4].2.as_deref().unwrap().contains("before the case finished"));
    }
}

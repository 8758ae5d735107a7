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
const LIMIT: Duration = Duration::from_secs(90);
/// The stress programs' size and rounds: small, to bound their time under emulation.
const STRESS: [&str; 2] = ["4", "2"];

/// Runs the selftests the guest was given, recording a cell per case.
pub fn run(sink: &Sink) {
    let have = |p: &str| Path::new(DIR).join(p).is_file();
    let uname = crate::machine::uname();
    let version = model::version::KernelVersion::from_uname(&uname.release, &uname.version);
    let config = crate::machine::kernel_config();
    let mut programs: Vec<(&str, Vec<&str>, &str)> = Vec::new();
    if have("uffd-unit-tests") {
        programs.push(("uffd-unit-tests", Vec::new(), "unit"));
    }
    for (program, id) in [("uffd-stress", "stress"), ("userfaultfd", "userfaultfd")] {
        if have(program) {
            for mem in ["anon", "shmem", "hugetlb"] {
                programs.push((program, [mem].into_iter().chain(STRESS).collect(), id));
            }
        }
    }
    // Without userfaultfd(2) the selftests cannot run: one cell per program says why.
    if let Err(crate::outcome::Fail::Unsupported { observed, reason, .. }) = crate::require::userfaultfd() {
        let rules = model::data::selftest_rules();
        let g = grade(&rules, version, config.as_ref(), Reported::Unsupported);
        for (_, args, id) in &programs {
            let case = if args.is_empty() { id.to_string() } else { format!("{id}_{}", args[0]) };
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
    for (program, args, id) in programs {
        let started = Instant::now();
        let (output, status) = execute(&Path::new(DIR).join(program), &args);
        let mut details = Details::new();
        details.insert(
            "program".into(),
            Detail::from(format!("{program} {}", args.join(" ")).trim().to_string()),
        );
        details.insert("us".into(), Detail::from(started.elapsed().as_micros() as u64));
        let cases = if args.is_empty() {
            unit_cases(&output, &status)
        } else {
            let (result, why) = match status {
                Ok(0) => ("pass", None),
                Ok(4) => ("skip", last_line(&output)),
                Ok(code) => {
                    ("fail", Some(format!("exit status {code}: {}", last_line(&output).unwrap_or_default())))
                }
                Err(e) => ("fail", Some(e.clone())),
            };
            vec![(format!("{id}_{}", args[0]), result, why)]
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
fn execute(program: &Path, args: &[&str]) -> (String, Result<i32, String>) {
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

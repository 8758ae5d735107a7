//! `cargo xtask check`'s exit status, as a script or a deploy pipeline sees it: 1 when a kernel
//! lacks what a profile needs, 0 when every kernel asked about has it, 2 on a malformed profile
//! (a typo'd `expect` value included).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn check(args: &[&str]) -> (i32, String, String) {
    let data = root().join("xtask/testdata");
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("check")
        .arg("--matrix")
        .arg(data.join("compat.toml"))
        .args(args.iter().map(|a| a.replace("TESTDATA", &data.display().to_string())))
        .current_dir(root())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn a_profile_that_needs_what_a_kernel_lacks_exits_non_zero() {
    let (status, out, err) = check(&["TESTDATA/profiles/page-server.toml"]);
    assert_eq!(status, 1, "{out}{err}");
    assert!(out.contains("debian-5.10-cloud  5.10.262     violates"), "{out}");
    let (status, out, err) = check(&["TESTDATA/profiles/page-server.toml", "--kernel", "debian-6.1-cloud"]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("debian-6.1-cloud  6.1.192      satisfies"), "{out}");
    let (status, out, err) = check(&["TESTDATA/profiles/hugetlb-user.toml", "--kernel", "host"]);
    assert_eq!(status, 3, "not checked: {out}{err}");
    let (status, _, err) = check(&["TESTDATA/profiles/unknown-behaviour.toml"]);
    assert_eq!(status, 2, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("unknown-behaviour.toml:9: unknown behaviour id"),
        "{err}"
    );
    // A typo in the profile is the profile's error, not every kernel's violation.
    let (status, out, err) = check(&["TESTDATA/profiles/typo.toml"]);
    assert_eq!(status, 2, "{out}{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("typo.toml:7: populate.read_missing never takes the value \"fault reed\"")
            && err.contains("the closest valid values are \"fault read\"")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    let (status, _, err) = check(&["--no-such-flag"]);
    assert_eq!(status, 2, "a usage error is an error, not a violation: {err}");
}

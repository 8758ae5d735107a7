//! The guest's initramfs, written here as a `newc` cpio archive: the static suite as `/init`,
//! the mount points it needs and `/dev/console` (the kernel opens it for init's stdio before
//! devtmpfs is mounted).

use std::io::Write;

struct Entry<'a> {
    name: &'a str,
    mode: u32,
    rdev: (u32, u32),
    data: &'a [u8],
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// The archive for a suite binary, with more executables beside it (`/uffdc-go`, the Go
/// workload; `selftests/uffd-stress`, the kernel's own selftests: their directories are made) and
/// the kernel's configuration (`/kernel.config`, headed by a line naming where it came from) when
/// it is known.
pub fn for_suite(suite: &[u8], programs: &[(&str, &[u8])], config: Option<(&str, &[u8])>) -> Vec<u8> {
    let config =
        config.map(|(source, text)| [format!("# uffdc source: {source}\n").as_bytes(), text].concat());
    let mut entries = vec![
        Entry { name: "dev", mode: S_IFDIR | 0o755, rdev: (0, 0), data: &[] },
        Entry { name: "dev/console", mode: S_IFCHR | 0o600, rdev: (5, 1), data: &[] },
        Entry { name: "proc", mode: S_IFDIR | 0o555, rdev: (0, 0), data: &[] },
        Entry { name: "sys", mode: S_IFDIR | 0o555, rdev: (0, 0), data: &[] },
        Entry { name: "init", mode: S_IFREG | 0o755, rdev: (0, 0), data: suite },
    ];
    let dirs = parents(programs.iter().map(|(name, _)| *name));
    for dir in dirs {
        entries.push(Entry { name: dir, mode: S_IFDIR | 0o755, rdev: (0, 0), data: &[] });
    }
    for (name, data) in programs {
        entries.push(Entry { name, mode: S_IFREG | 0o755, rdev: (0, 0), data });
    }
    if let Some(config) = &config {
        entries.push(Entry { name: "kernel.config", mode: S_IFREG | 0o644, rdev: (0, 0), data: config });
    }
    let mut out = Vec::with_capacity(suite.len() + 4096);
    for (ino, e) in entries.iter().enumerate() {
        write_entry(&mut out, ino as u32 + 1, e);
    }
    write_entry(&mut out, 0, &Entry { name: "TRAILER!!!", mode: 0, rdev: (0, 0), data: &[] });
    out
}

/// Every directory above the names (`criu/trixie/lib/x.so`: `criu`, `criu/trixie`, `criu/trixie/lib`),
/// each once, parents first: the kernel's unpacker makes no directory an archive does not list.
fn parents<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut dirs: Vec<&str> = Vec::new();
    for name in names {
        for (i, _) in name.match_indices('/') {
            if !dirs.contains(&&name[..i]) {
                dirs.push(&name[..i]);
            }
        }
    }
    dirs
}

fn write_entry(out: &mut Vec<u8>, ino: u32, e: &Entry<'_>) {
    let name_size = e.name.len() + 1;
    let fields = [
        ino,
        e.mode,
        0, // uid
        0, // gid
        if e.mode & S_IFDIR != 0 { 2 } else { 1 },
        0, // mtime: fixed, so the archive is reproducible
        e.data.len() as u32,
        0, // dev major
        0, // dev minor
        e.rdev.0,
        e.rdev.1,
        name_size as u32,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        write!(out, "{f:08x}").expect("writing to a Vec");
    }
    out.extend_from_slice(e.name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(e.data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the archive back with a reader of its own (a minimal `newc` parse written from the
    /// format's description, not from the writer above); the kernel itself reads every archive
    /// in the end-to-end tests.
    #[test]
    fn round_trips() {
        let data = b"\x7fELF pretend";
        let archive = for_suite(
            data,
            &[("uffdc-go", b"go"), ("selftests/t", b"st"), ("criu/trixie/lib/l.so", b"so")],
            Some(("test", b"CONFIG_USERFAULTFD=y\n")),
        );
        assert_eq!(archive.len() % 4, 0);
        let mut at = 0;
        let mut names = Vec::new();
        loop {
            assert_eq!(&archive[at..at + 6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&archive[at + 6 + i * 8..at + 14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6) as usize, field(9), field(10), field(11) as usize);
            let name_at = at + 110;
            let name = std::str::from_utf8(&archive[name_at..name_at + namesize - 1]).unwrap().to_string();
            let data_at = (name_at + namesize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                break;
            }
            if name == "init" {
                assert_eq!(&archive[data_at..data_at + size], data);
                assert_eq!(mode, S_IFREG | 0o755);
            }
            if name == "uffdc-go" {
                assert_eq!((&archive[data_at..data_at + size], mode), (&b"go"[..], S_IFREG | 0o755));
            }
            if name == "selftests/t" {
                assert_eq!((&archive[data_at..data_at + size], mode), (&b"st"[..], S_IFREG | 0o755));
            }
            if name == "dev/console" {
                assert_eq!((rmaj, rmin), (5, 1));
            }
            names.push(name);
            at = (data_at + size).next_multiple_of(4);
        }
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "proc",
                "sys",
                "init",
                "selftests",
                "criu",
                "criu/trixie",
                "criu/trixie/lib",
                "uffdc-go",
                "selftests/t",
                "criu/trixie/lib/l.so",
                "kernel.config"
            ]
        );
    }
}

//! `clients.criu_*`: a real userfaultfd client in the loop, CRIU's lazy restore (Debian's `criu`
//! of each release, packed by `cargo xtask` as `/criu/<release>/`: `inputs/criu.rs`).
//!
//! The probe forks a test process: three threads write seeded pages into anonymous private
//! memory, it writes a shared anonymous mapping and a 2 MiB-aligned one advised MADV_HUGEPAGE,
//! records every page's checksum (`before`), then waits for SIGUSR1. `criu dump` checkpoints it
//! (and kills it); `criu lazy-pages` serves the dump's pages; `criu restore --lazy-pages`
//! restores it with its anonymous private memory left for the daemon to serve through
//! userfaultfd. The restored process is then woken: it forks a child (EVENT_FORK), which
//! checksums every page (`after-child`), and meanwhile unmaps one range (EVENT_UNMAP), moves
//! another with mremap (EVENT_REMAP) and drops a third with MADV_DONTNEED (EVENT_REMOVE) before
//! checksumming what it still has (`after`). The probe compares the three files, and reads how
//! many pages the daemon placed from its log.
//!
//! A CRIU that stops is an observation: which of its commands stopped and the first error line
//! of its log (`dump fails: kerndat_vdso_fill_symtable failed when initializing kerndat`), not an error of the probe.

mod diagnosis;
pub mod hook;
mod logs;
mod target;

use crate::kit::behaviour::Behaviour;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult, Sabotage};
use crate::kit::variant::Variant;
use logs::*;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use target::*;

/// Where the CRIU trees are: `UFFDC_CRIU_DIR`, else `criu/` beside the suite (`/criu` in a guest).
pub const ENV: &str = "UFFDC_CRIU_DIR";

const OBSERVES: &str = "A test process (three threads; 48 anonymous private pages, 16 shared \
     anonymous pages, 512 pages of a 2 MiB-aligned anonymous mapping advised MADV_HUGEPAGE, each \
     filled from a seed and checksummed before the dump) is dumped with `criu dump`, served by \
     `criu lazy-pages` and restored with `criu restore --lazy-pages`; once restored it forks a \
     child that checksums every page, and unmaps 4 pages, moves 4 with mremap and drops 4 with \
     MADV_DONTNEED before checksumming the rest. `restores, pages right, served lazily` when \
     restore completes, every page of parent and child holds what it held before the dump (zeros \
     after MADV_DONTNEED) and the lazy-pages daemon placed pages through userfaultfd; `restores, \
     pages right, none served lazily`; `restores, N pages wrong`; `restored process failed: ...`; \
     `dump fails: E`, `lazy-pages fails: E`, `restore fails: E` with E the error line of that CRIU \
     command's log that says what failed (its message, without time stamp and source line: the \
     last before the lines CRIU adds to every failure, `Could not initialize kernel features \
     detection`, `Dumping FAILED`...); `dump stalls`, `lazy-pages stalls`, `restore stalls` when \
     that command has not finished (or the daemon is not ready) within twice `--timeout-ms` (it is \
     killed: its log's tail and the daemon's are details, and where each of its processes and the \
     test process's threads was, `stalled_tasks`), with `: a restored thread stopped at a pointer \
     authentication fault (AUTIASP)` when one of those threads waits for its tracer at a failed \
     pointer authentication instruction. On arm64 `criu restore` runs the suite as its post-restore \
     action script, which lets CRIU attach only once every restored thread waits for its next \
     stage, as on real hardware (under TCG a thread can still be on its way: detail \
     `post_restore`). Details: the \
     CRIU package, the pages the daemon reported transferred (its `UFFD transferred pages` \
     lines), the faults it served (`#PF`), each step's time and CPU time, CRIU's later error lines.";

macro_rules! uffd_c {
    () => {
        "CRIU criu/uffd.c (v3.17.1, v4.1.1): setup_uffd asks UFFDIO_API for NEED_UFFD_API_FEATURES \
         (EVENT_FORK, EVENT_REMAP, EVENT_REMOVE, EVENT_UNMAP), handle_fork/handle_remap/handle_remove \
         follow the restored tree, uffd_copy and uffd_zero place pages, complete_page_fault and \
         handle_requests serve faults and the background transfer, and lazy_pages_summary logs \
         'UFFD transferred pages'; criu/kerndat.c kerndat_init runs before every command. "
    };
}

// Not `slow`: started first, the two CRIU probes (about 4 s of CPU each under TCG, and kernel work
// beside it: network namespaces, module loads) slowed every probe beside them and the 6.1 guest's
// suite went from 10 s to 33 s; started last (the catalogue's last family), they overlap its tail.
macro_rules! rseq {
    () => {
        "The test process is the suite's own code, whose C library (glibc 2.35 and later) registers \
         rseq for every thread; CRIU's criu/cr-dump.c check_thread_rseq then needs \
         PTRACE_GET_RSEQ_CONFIGURATION (criu/kerndat.c kerndat_has_ptrace_get_rseq_conf), which \
         Linux has from 5.13, and without it stops the dump ('TID has rseq but kernel lacks \
         get_rseq_conf feature'; checkpoint-restore/criu#2070). "
    };
}

/// Before 5.13 no process with rseq registered can be dumped (see `rseq!`).
const NO_GET_RSEQ_CONF_ROW: (&str, &str) =
    ("<5.13", "dump fails: TID has rseq but kernel lacks get_rseq_conf feature");

// On arm64 the test process is the arm64 suite's, a static musl program: musl registers no rseq,
// so the rseq row is x86-64's only; there the two releases differ by what they do on arm64.
macro_rules! arm64 {
    () => {
        "On arm64 the test process is the suite built for aarch64-unknown-linux-musl: musl registers \
         no rseq, so the dump needs no PTRACE_GET_RSEQ_CONFIGURATION there. "
    };
}

/// CRIU 4.1.1 built with branch protection, on a CPU with pointer authentication (see the
/// citation of `clients.criu_trixie_lazy_restore`).
const PAC_STALL: &str =
    "restore stalls: a restored thread stopped at a pointer authentication fault (AUTIASP)";

/// CRIU 3.17.1's vDSO parser needs DT_HASH; arm64's vDSO has only DT_GNU_HASH from Linux 6.11.
const ARM64_GNU_HASH_ROW: (&str, &str) =
    (">=6.11 when arch=arm64", "dump fails: kerndat_vdso_fill_symtable failed when initializing kerndat");

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "clients.criu_bookworm_lazy_restore",
        summary: "CRIU 3.17 (Debian 12): a process dumped and restored with --lazy-pages gets every page back through criu lazy-pages, across a fork, an munmap, an mremap and an MADV_DONTNEED",
        observes: OBSERVES,
        expect: &[
            NO_CHECKPOINT_RESTORE_ROW,
            ARM64_GNU_HASH_ROW,
            ("<6.11 when arch=arm64", "restores, pages right, served lazily"),
            NO_GET_RSEQ_CONF_ROW,
            (">=5.13, <6.13", "restores, pages right, served lazily"),
            (">=6.13", "dump fails: kerndat_vdso_fill_symtable failed when initializing kerndat"),
        ],
        citation: concat!(
            uffd_c!(),
            rseq!(),
            arm64!(),
            "On arm64 from Linux 6.11 (48f6430505c0, arm64/vdso: Remove --hash-style=sysv) the vDSO \
             has a DT_GNU_HASH and no DT_HASH; CRIU 3.17.1's criu/pie/util-vdso.c parse_elf_dynamic \
             needs DT_HASH ('Not all dynamic entries are present'), and every command stops in \
             kerndat_vdso_fill_symtable (fixed in CRIU 4.0: checkpoint-restore/criu 8a06ca27c, vdso: \
             switch from DT_HASH to DT_GNU_HASH (aarch64)). ",
            "Debian criu 3.17.1-2+deb12u2. From Linux 6.13 (e93d2521b27f, x86/vdso: Split virtual clock \
             pages into dedicated mapping) a process has a [vvar_vclock] mapping between [vvar] and \
             [vdso]; CRIU 3.17.1's criu/vdso.c validate_vdso_addr (from vdso_fill_self_symtable, \
             kerndat_vdso_fill_symtable in criu/kerndat.c kerndat_init) then finds [vdso] adjacent to \
             no [vvar] and stops every command ('Unexpected rt vDSO area bounds'); CRIU 4.1 handles it \
             (checkpoint-restore/criu 8ee2eba47, vdso: handle vvar_vclock vma-s, tested on 6.13-rc1)."
        ),
        notes: "Debian 12 ships this CRIU with a 6.1 kernel; it works on 6.1 and 6.12 (Debian's cloud \
                kernels), and on any kernel from 6.13 it cannot start.",
        probe: bookworm,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "clients.criu_trixie_lazy_restore",
        summary: "CRIU 4.1 (Debian 13): a process dumped and restored with --lazy-pages gets every page back through criu lazy-pages, across a fork, an munmap, an mremap and an MADV_DONTNEED",
        observes: OBSERVES,
        expect: &[
            NO_CHECKPOINT_RESTORE_ROW,
            ("<5.13 when arch=arm64", "dump fails: Failed to get authentication key mask for TID: Invalid argument"),
            (">=5.13 when arch=arm64", PAC_STALL),
            NO_GET_RSEQ_CONF_ROW,
            (">=5.13", "restores, pages right, served lazily"),
        ],
        citation: concat!(
            uffd_c!(),
            rseq!(),
            arm64!(),
            "CRIU 4.1 saves and restores arm64's pointer authentication keys (checkpoint-restore/criu \
             8ae5db37b, arm64: C/R PAC keys): on a CPU with PAC (QEMU's -cpu max has it) \
             criu/arch/aarch64/crtools.c reads each thread's enabled keys with PTRACE_GETREGSET \
             NT_ARM_PAC_ENABLED_KEYS, which Linux has from 5.13 (201698626fbc, arm64: Introduce \
             prctl(PR_PAC_{SET,GET}_ENABLED_KEYS)); before, the dump stops there (EINVAL). \
             Debian criu 4.1.1-1. From 5.13 the keys are restored, and the restore stalls: Debian \
             builds CRIU with its default flags, on arm64 -mbranch-protection=standard, which reach \
             the restorer blob (its out-of-line futex_wait_while, include/common/lock.h, signs its \
             return address with PACIASP); criu/cr-restore.c attach_to_tasks sets the dumped keys \
             (arch_ptrace_restore) while the restored leader waits in that function, so its AUTIASP \
             fails once the stage advances; with FEAT_FPAC (QEMU's max CPU) the thread takes the \
             fault there (el0_fpac, SIGILL) and stops for its tracer, CRIU, which waits for the \
             thread in restore_switch_stage and never collects it (checkpoint-restore/criu#2709; \
             fixed in CRIU 4.2 by dcee5bd6f, make: Disable branch-protection for PIE code on ARM64). \
             The other threads wait in an inlined loop whose frame never returns, and pass. \
             Whether the leader is still in that frame when CRIU changes its keys is a race in CRIU \
             itself, which the post-restore hook narrows but cannot close (checkpoint-restore/criu#2720 \
             reports the same hang on arm64 hardware): about one restore in five or six passes. \
             So where CRIU's code signs its returns (PACIASP in the binary, a CPU with PAC) the \
             probe restores the same dump again after a restore that came back whole (every page \
             right), up to four times: the cell is the first that did not (the stall), and detail \
             `restores` says how many came back whole."
        ),
        probe: trixie,
        ..Behaviour::DEFAULT
    },
];

fn bookworm(ctx: &Ctx, _: Variant) -> ProbeResult {
    lazy_restore(ctx, "bookworm")
}

fn trixie(ctx: &Ctx, _: Variant) -> ProbeResult {
    lazy_restore(ctx, "trixie")
}

/// How long one CRIU command may take before it counts as stalled: twice the suite's window for
/// something that should happen (`--timeout-ms`, 10 s by default). Each step takes a second or
/// two under TCG on a loaded machine (the dump, which initialises CRIU's kernel data, up to 4 s).
fn window(ctx: &Ctx) -> Duration {
    ctx.timeout * 2
}

/// The test process's memory: (region tag, pages).
const ANON: usize = 48;
const SHARED: usize = 16;
const HUGE: usize = 512;
/// What the restored process does to its anonymous pages: [start, end) of each.
const UNMAP: (usize, usize) = (8, 12);
const REMAP: (usize, usize) = (16, 20);
const DONTNEED: (usize, usize) = (24, 28);
/// The anonymous page the self-test corrupts in the dump (`--inject-fault serve-zero=ID`).
const CORRUPTED: usize = 37;

/// A CRIU of one release, run through its own dynamic loader.
struct Criu {
    dir: PathBuf,
    package: String,
}

impl Criu {
    fn find(release: &str) -> Result<Criu, Fail> {
        let base = match std::env::var_os(ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => std::env::current_exe()
                .ctx("current_exe")?
                .parent()
                .map(|p| p.join("criu"))
                .unwrap_or_default(),
        };
        let dir = base.join(release);
        let package = std::fs::read_to_string(dir.join("package")).map_err(|_| {
            Fail::Skipped(format!(
                "this host has no CRIU of {release} ({}): `cargo xtask` packs Debian's (images/criu.lock) beside the suite; or set {ENV}=DIR",
                dir.display()
            ))
        })?;
        Ok(Criu { dir, package: package.trim().to_string() })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.dir.join("ld.so"));
        c.arg("--library-path").arg(self.dir.join("lib")).arg(self.dir.join("criu")).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        c
    }
}

fn lazy_restore(ctx: &Ctx, release: &str) -> ProbeResult {
    let criu = Criu::find(release)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(Fail::Skipped(
            "this host runs the suite without root, and CRIU dumps and restores as root only".to_string(),
        ));
    }
    crate::kit::require::userfaultfd()?;
    let _one = one_at_a_time()?;
    run_dir(ctx)?;
    let _kdat = KdatCache::note();
    // CRIU's network checks need the loopback device up, and the modules a booted Debian system
    // loads on demand, as every booted system has them.
    loopback_up(ctx)?;
    let t = Instant::now();
    let modules = load_modules(&criu.dir.join("../modules"))?;
    let modules_ms = t.elapsed().as_millis() as u64;
    let work = std::env::temp_dir().join(format!("uffdc-criu-{release}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let images = work.join("images");
    std::fs::create_dir_all(&images).ctx("mkdir")?;
    let _cleanup = Cleanup(work.clone());
    // The restored process is a child of `criu restore -d`, which exits: it becomes ours.
    // SAFETY: prctl with an integer argument.
    nix::errno::Errno::result(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
        .ctx("PR_SET_CHILD_SUBREAPER")?;
    let mut obs = Observation::new("");
    obs.detail("criu", criu.package.clone());
    if !modules.is_empty() {
        obs.detail("modules_loaded", modules);
        obs.detail("modules_ms", modules_ms);
    }
    let step = window(ctx);
    let mut klog = diagnosis::KernelLog::mark();
    let started = Instant::now();
    let target = Target::start(&work, step)?;
    let pid = target.pid;
    obs.detail("setup_ms", started.elapsed().as_millis() as u64);

    let log = |name: &str| work.join(format!("{name}.log")).display().to_string();
    let pid_s = pid.to_string();
    let images_s = images.display().to_string();
    let t = Instant::now();
    let (dumped, cpu) = run(
        criu.command(&["dump", "-t", &pid_s, "-D", &images_s, "-o", &log("dump"), "-v4"]),
        step,
        (&mut obs, pid),
        None,
    )?;
    obs.detail("dump_ms", t.elapsed().as_millis() as u64);
    obs.detail("dump_cpu_ms", cpu);
    obs.detail("target_cpu_ms", reap_dumped(pid));
    if !dumped.success() {
        klog.note(&mut obs);
        return Err(failed(obs, "dump", &log("dump"), dumped, &target.tids));
    }
    obs.detail("dumped_pages_kib", pages_kib(&images));
    if ctx.sabotage == Some(Sabotage::ZeroPage) {
        let page = pattern('A', CORRUPTED);
        obs.detail("sabotage", corrupt_in_images(&images, &page)?);
    }

    // Where the restorer signs its return addresses and CRIU changes the keys under it (CRIU
    // 4.1.1 on arm64), whether a restore stalls is a race: after one that came back whole (every
    // page right) the dump is restored again, up to RACY_RESTORES times, and the cell is the first
    // restore that did not come back whole, or the last when all did (detail `restores`).
    let attempts = match std::env::var(RESTORES_ENV).ok().and_then(|n| n.parse().ok()) {
        Some(n) if n > 0 => n,
        _ if restorer_signs_returns(&criu) => RACY_RESTORES,
        _ => 1,
    };
    let dump = Dump { criu: &criu, ctx, work: &work, images: &images_s, pid, tids: &target.tids, step };
    let mut completed = 0;
    loop {
        let attempt = restore(&dump, completed + 1, obs.clone(), &mut klog);
        let passed = matches!(&attempt, Ok(o) if o.observed.starts_with("restores, pages right"));
        completed += usize::from(passed);
        if !passed || completed == attempts {
            let said = format!("{completed} of {} restored whole", completed + usize::from(!passed));
            return match attempt {
                Ok(mut o) if attempts > 1 => Ok({
                    o.detail("restores", said);
                    o
                }),
                Err(Fail::Observed(mut o)) if attempts > 1 => {
                    o.detail("restores", said);
                    Err(Fail::Observed(o))
                }
                other => other,
            };
        }
    }
}

/// How many times one dump is restored where whether a restore stalls is a race
/// ([`restorer_signs_returns`]): a restore that completed is followed by another, until one stalls
/// or this many completed. Measured on 6.1- and 7.2-arm64, one restore in five or six completed:
/// four in a row would come one time in several hundred.
const RACY_RESTORES: usize = 4;

/// Restores each dump this many times, where it would be once (a self-test of restoring one dump
/// again: `suite/tests/host.rs`).
const RESTORES_ENV: &str = "UFFDC_CRIU_RESTORES";

/// What one dump left to restore from.
struct Dump<'a> {
    criu: &'a Criu,
    ctx: &'a Ctx,
    work: &'a Path,
    images: &'a str,
    pid: nix::unistd::Pid,
    tids: &'a [i32],
    step: Duration,
}

/// Whether this CRIU's code signs return addresses with arm64's pointer authentication (PACIASP,
/// which Debian's `-mbranch-protection=standard` puts in every function that saves its link
/// register, the restorer blob's among them) on a CPU that has it: then CRIU setting the dumped
/// keys in a restored thread that waits in a signed frame makes its return fail.
fn restorer_signs_returns(criu: &Criu) -> bool {
    const PACIASP: [u8; 4] = 0xd503_233f_u32.to_le_bytes();
    cfg!(target_arch = "aarch64")
        // SAFETY: getauxval reads the process's auxiliary vector.
        && unsafe { libc::getauxval(libc::AT_HWCAP) } & HWCAP_PACA != 0
        && std::fs::read(criu.dir.join("criu"))
            .is_ok_and(|elf| elf.chunks_exact(4).any(|w| w == PACIASP))
}

/// arm64's `HWCAP_PACA` (address authentication), from Linux's uapi asm/hwcap.h.
const HWCAP_PACA: u64 = 1 << 30;

/// One restore of the dump: a `criu lazy-pages` of its own serving the images, `criu restore
/// --lazy-pages`, the restored process woken to do its work, its pages checked. Restore `n`
/// writes its logs as `lazy-n.log` and `restore-n.log` (the first: `lazy.log`, `restore.log`).
fn restore(d: &Dump, n: usize, mut obs: Observation, klog: &mut diagnosis::KernelLog) -> ProbeResult {
    let (criu, work, images_s, pid, step) = (d.criu, d.work, d.images, d.pid, d.step);
    let suffix = if n == 1 { String::new() } else { format!("-{n}") };
    let log = |name: &str| work.join(format!("{name}{suffix}.log")).display().to_string();
    for stale in ["post-restore", "after", "after-child", "error"] {
        let _ = std::fs::remove_file(work.join(stale));
    }
    let t = Instant::now();
    let (mut daemon, ready) = spawn_lazy_pages(criu, images_s, &log("lazy"), step)?;
    if !ready {
        obs.detail("stalled_tasks", diagnosis::snapshot(&[daemon.0.id() as i32]));
        klog.note(&mut obs);
        let status = wait_child(&mut daemon.0, Duration::from_secs(1)).map(|(s, _)| s);
        return Err(failed(obs, "lazy-pages", &log("lazy"), status.unwrap_or_else(timed_out), d.tids));
    }
    obs.detail("lazy_pages_ready_ms", t.elapsed().as_millis() as u64);

    let t = Instant::now();
    let mut restore =
        criu.command(&["restore", "-D", images_s, "-o", &log("restore"), "-v4", "--lazy-pages", "-d"]);
    // Only arm64's CRIU changes a restored thread's state when it attaches (its pointer
    // authentication keys); elsewhere the hook would cost four executions of the suite (CRIU runs
    // an action script at each of pre-restore, post-restore, pre-resume and post-resume).
    let parked = work.join("post-restore");
    if cfg!(target_arch = "aarch64") {
        restore.arg("--action-script").arg(std::env::current_exe().ctx("current_exe")?);
        restore.env(hook::ENV, format!("{}:{}", parked.display(), step.as_millis() / 4));
    }
    // A restored thread can stop at a pointer authentication fault only on arm64.
    let fault_window = cfg!(target_arch = "aarch64").then_some(d.ctx.window);
    let (restored, cpu) = run(restore, step, (&mut obs, pid), fault_window)?;
    if let Ok(seen) = std::fs::read_to_string(&parked) {
        obs.detail("post_restore", seen);
    }
    obs.detail("restore_ms", t.elapsed().as_millis() as u64);
    obs.detail("restore_cpu_ms", cpu);
    if !restored.success() {
        // What the daemon it waited on had done.
        obs.detail("lazy_log_tail", tail(&log("lazy"), 8));
        klog.note(&mut obs);
        return Err(failed(obs, "restore", &log("restore"), restored, d.tids));
    }
    let _restored = KillPid(pid);
    // Wake the restored process: it does its work and exits.
    let t = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1)
        .ctx("kill SIGUSR1 the restored process")?;
    let (exited, cpu) = wait_pid(pid, step)?;
    obs.detail("after_restore_ms", t.elapsed().as_millis() as u64);
    // The restored process's CPU: CRIU's restorer run in it, its work after, its child's.
    obs.detail("restored_cpu_ms", cpu);
    let daemon_status = wait_child(&mut daemon.0, step).map(|(s, cpu)| {
        obs.detail("lazy_pages_cpu_ms", cpu);
        s
    });
    let (transferred, faults) = lazy_counts(&log("lazy"));
    obs.detail("pages_transferred", transferred);
    obs.detail("faults_served", faults);
    match daemon_status {
        Some(s) if !s.success() => {
            obs.detail("lazy_pages_exit", format!("{s}: {}", first_error(&log("lazy")).unwrap_or_default()))
        }
        None => obs.detail("lazy_pages_exit", "still running after the restored process exited"),
        Some(_) => {}
    }
    let cached: Vec<&str> = ["dump", "lazy", "restore"]
        .into_iter()
        .filter(|name| {
            let path = if *name == "dump" { work.join("dump.log").display().to_string() } else { log(name) };
            std::fs::read_to_string(path).is_ok_and(|t| t.contains("Loaded kdat cache"))
        })
        .collect();
    obs.detail("kdat_cache_used_by", cached.join(" "));
    if let Some(e) = errors(&log("restore")).first() {
        obs.detail("restore_error", e.clone());
    }
    match exited {
        nix::sys::wait::WaitStatus::Exited(_, 0) => {}
        other => {
            let why = std::fs::read_to_string(work.join("error")).unwrap_or_default();
            obs.observed = format!("restored process failed: {}", describe(other));
            obs.detail("restored_process", why.trim().to_string());
            klog.note(&mut obs);
            return Ok(obs);
        }
    }
    let wrong = compare(work, &mut obs)?;
    obs.observed = if wrong > 0 {
        format!("restores, {wrong} pages wrong")
    } else if transferred > 0 {
        "restores, pages right, served lazily".to_string()
    } else {
        // What the daemon and the restore said about lazy pages: why none were served.
        obs.detail("lazy_log_tail", tail(&log("lazy"), 12));
        obs.detail("restore_lazy_lines", lines_about_lazy(&log("restore")));
        // Whether the restore found lazy pages in the dump's pagemap (`nr_lazy`) and left them
        // to the daemon: tells a dump that marked none lazy from a daemon that did not see them.
        obs.detail("restore_page_counts", page_counts(&log("restore")));
        "restores, pages right, none served lazily".to_string()
    };
    Ok(obs)
}

/// Starts `criu lazy-pages` serving from `images`, and says whether it said it was ready (on its
/// status fd) within `step`.
fn spawn_lazy_pages(criu: &Criu, images: &str, log: &str, step: Duration) -> Result<(Killed, bool), Fail> {
    let (ready_r, ready_w) = nix::unistd::pipe().ctx("pipe")?;
    let status_fd = ready_w.as_raw_fd().to_string();
    let mut lazy = criu.command(&["lazy-pages", "-D", images, "-o", log, "-v4", "--status-fd", &status_fd]);
    // SAFETY: clears close-on-exec of the status pipe's write end in the child only.
    let raw = ready_w.as_raw_fd();
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut lazy, move || {
            match libc::fcntl(raw, libc::F_SETFD, 0) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    let daemon = Killed(lazy.spawn().ctx("starting criu lazy-pages")?);
    drop(ready_w);
    let ready = crate::kit::poll::wait_readable(ready_r.as_fd(), step).ctx("poll")?
        && nix::unistd::read(&ready_r, &mut [0u8; 1]).is_ok_and(|n| n == 1);
    Ok((daemon, ready))
}

/// Reaps the dumped test process (`criu dump` kills it; on failure it may still be there) and
/// says its CPU time, ms (its pages and checksums, and CRIU's parasite code run in it), read
/// while it is a zombie.
fn reap_dumped(pid: nix::unistd::Pid) -> u64 {
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(pid),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    );
    let cpu = crate::kit::goworkload::cpu_ms(pid.as_raw(), true);
    let _ = nix::sys::wait::waitpid(pid, None);
    cpu
}

/// The observation of a CRIU command that failed: the error line that says what failed (the last
/// one before CRIU's own wrappers: earlier ones are often recovered from, such as a missing
/// socket diag module). On a kernel built without CONFIG_CHECKPOINT_RESTORE, which CRIU needs,
/// the failure is the missing prerequisite's (`unsupported`, with the line as what showed it).
fn failed(
    mut obs: Observation,
    step: &str,
    log: &str,
    status: std::process::ExitStatus,
    tids: &[i32],
) -> Fail {
    let fail = observed_failure(&mut obs, step, log, status, tids);
    let config = crate::kit::machine::kernel_config();
    match config {
        Some(c) if c.value("CONFIG_CHECKPOINT_RESTORE") != "y" => Fail::Unsupported {
            observed: obs.observed.clone(),
            reason: NO_CHECKPOINT_RESTORE.to_string(),
            details: obs.details,
        },
        _ => fail,
    }
}

macro_rules! no_checkpoint_restore {
    () => {
        "the kernel is built without CONFIG_CHECKPOINT_RESTORE, which CRIU needs (kcmp, /proc/PID/map_files, PR_SET_MM, ns_last_pid)"
    };
}
const NO_CHECKPOINT_RESTORE: &str = no_checkpoint_restore!();
/// The row every CRIU behaviour starts with.
const NO_CHECKPOINT_RESTORE_ROW: (&str, &str) =
    ("* when CONFIG_CHECKPOINT_RESTORE!=y", concat!("unsupported: ", no_checkpoint_restore!()));

fn observed_failure(
    obs: &mut Observation,
    step: &str,
    log: &str,
    status: std::process::ExitStatus,
    tids: &[i32],
) -> Fail {
    let errors: Vec<String> = errors(log).iter().map(|e| name_threads(e, tids)).collect();
    let cause = errors.iter().rev().find(|e| !wrapper(e));
    obs.observed = match cause {
        // Its error lines, if any, are from before it stalled (often recovered from).
        _ if status == timed_out() => format!("{step} stalls"),
        Some(e) => format!("{step} fails: {e}"),
        None => format!("{step} fails: {status}, no error line"),
    };
    obs.detail("errors", errors.iter().take(6).cloned().collect::<Vec<_>>().join(" | "));
    if let (true, Some(model::Detail::Text(why))) = (status == timed_out(), obs.details.get("stalled_at")) {
        obs.observed = format!("{step} stalls: {why}");
    }
    let exit = match status == timed_out() {
        true => "still running after the window (twice --timeout-ms): killed".to_string(),
        false => status.to_string(),
    };
    obs.detail("exit", exit);
    obs.detail("log_tail", tail(log, 12));
    Fail::Observed(obs.clone())
}

/// The status of a command that did not exit (what `wait` reports for a stopped process).
fn timed_out() -> std::process::ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(0x7f00)
}

/// Runs `c` to its end within `limit`: its status and CPU time (ms, with its children's). One
/// that has not finished by then is killed, with the [`timed_out`] status: a CRIU command that
/// stalls (seconds are enough for every step under TCG: `limit` is many times that); where its
/// processes and the test process's were is then the detail `stalled_tasks`.
///
/// With `fault_window`, a thread of the test process found stopped at a pointer authentication
/// fault ([`diagnosis::fault_stop`]) and still there, at the same address, one window later ends
/// the wait at once: its tracer (CRIU) never resumes it (`criu restore` on arm64, CRIU before
/// 4.2), so waiting out `limit` would observe nothing more.
fn run(
    mut c: Command,
    limit: Duration,
    (obs, target): (&mut Observation, nix::unistd::Pid),
    fault_window: Option<Duration>,
) -> Result<(std::process::ExitStatus, u64), Fail> {
    let child = c.spawn().ctx("starting criu")?;
    let mut child = Killed(child);
    let done = match fault_window {
        None => wait_child(&mut child.0, limit),
        Some(window) => wait_unless_stopped_at_fault(&mut child.0, limit, target.as_raw(), window, obs),
    };
    Ok(done.unwrap_or_else(|| {
        let id = child.0.id() as i32;
        obs.detail("stalled_tasks", diagnosis::snapshot(&[id, target.as_raw()]));
        if let Some(why) = diagnosis::stopped_at_fault(target.as_raw()) {
            obs.detail("stalled_at", why);
        }
        (timed_out(), crate::kit::goworkload::cpu_ms(id, true))
    }))
}

/// [`wait_child`], looking every `window` for a thread of `target` stopped at a pointer
/// authentication fault: `None` (as a stall) as soon as one has stayed there a whole window.
fn wait_unless_stopped_at_fault(
    child: &mut std::process::Child,
    limit: Duration,
    target: i32,
    window: Duration,
    obs: &mut Observation,
) -> Option<(std::process::ExitStatus, u64)> {
    let start = Instant::now();
    let end = start + limit;
    let mut seen = None;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        if let Some(done) = wait_child(child, left.min(window.max(Duration::from_millis(1)))) {
            return Some(done);
        }
        let now = diagnosis::fault_stop(target);
        if now.is_some() && now == seen {
            obs.detail("fault_stop_confirmed_ms", start.elapsed().as_millis() as u64);
            return None;
        }
        seen = now;
    }
}

/// The child's exit status and CPU time (ms, with the children it waited for: read while it is
/// a zombie), or `None` when it has not exited within `limit`.
fn wait_child(child: &mut std::process::Child, limit: Duration) -> Option<(std::process::ExitStatus, u64)> {
    let pidfd = pidfd(nix::unistd::Pid::from_raw(child.id() as i32)).ok()?;
    if !crate::kit::poll::wait_readable(pidfd.as_fd(), limit).unwrap_or(false) {
        return None;
    }
    let cpu = crate::kit::goworkload::cpu_ms(child.id() as i32, true);
    child.wait().ok().map(|s| (s, cpu))
}

/// The same for the restored process, which is not a `Child` of ours (`criu restore` forked it).
fn wait_pid(pid: nix::unistd::Pid, limit: Duration) -> Result<(nix::sys::wait::WaitStatus, u64), Fail> {
    let fd = pidfd(pid).ctx("pidfd_open the restored process")?;
    if !crate::kit::poll::wait_readable(fd.as_fd(), limit).ctx("poll")? {
        return Err(Fail::Observed(
            Observation::new("restored process failed: did not finish")
                .with("limit_s", limit.as_secs())
                .with("stalled_tasks", diagnosis::snapshot(&[pid.as_raw()])),
        ));
    }
    let cpu = crate::kit::goworkload::cpu_ms(pid.as_raw(), true);
    Ok((nix::sys::wait::waitpid(pid, None).ctx("waitpid the restored process")?, cpu))
}

fn pidfd(pid: nix::unistd::Pid) -> Result<OwnedFd, nix::errno::Errno> {
    // SAFETY: pidfd_open returns a new descriptor that we own.
    let raw = nix::errno::Errno::result(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

fn describe(status: nix::sys::wait::WaitStatus) -> String {
    match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => format!("exit {code}"),
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => sig.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// A child process killed when the probe leaves early.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct KillPid(nix::unistd::Pid);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A lock held through a probe's CRIU commands (each probe is a process of its own): the two
/// releases share `/run/criu.kdat` (one path in 3.17.1 and 4.1.1), which CRIU checks for its size
/// and two magic numbers only, so one release must not read what the other wrote; each probe
/// removes the file it made ([`KdatCache`]) before it lets the next one start. The lock is the
/// suite's own executable (flock takes a descriptor opened read-only), which leaves no file behind.
fn one_at_a_time() -> Result<nix::fcntl::Flock<std::fs::File>, Fail> {
    let exe = std::fs::File::open(std::env::current_exe().ctx("current_exe")?)
        .ctx("open the suite's executable")?;
    nix::fcntl::Flock::lock(exe, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .ctx("flock the suite's executable")
}

/// Makes `/run` a tmpfs when there is none (a guest: its initramfs has no `/run`), as a booted
/// system has it: CRIU keeps what `kerndat_init` learnt about the kernel in `/run/criu.kdat`, on a
/// tmpfs only (criu/kerndat.c kerndat_save_cache, 'Can't keep kdat cache on non-tempfs'), and
/// without it every command (dump, lazy-pages, restore) probes the kernel anew, about a second
/// of CPU each under TCG.
fn run_dir(ctx: &Ctx) -> Result<(), Fail> {
    let run = Path::new("/run");
    if run.exists() {
        return Ok(());
    }
    ctx.may_change("/run (there is none: a tmpfs there, as a booted system has)")?;
    std::fs::create_dir(run).ctx("mkdir /run")?;
    nix::mount::mount(Some("tmpfs"), run, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("mode=0755"))
        .ctx("mount a tmpfs on /run")?;
    Ok(())
}

/// CRIU keeps what it learnt about the kernel in `/run/criu.kdat` (criu/kerndat.c
/// kerndat_save_cache, through `criu.kdat.tmp`): files the probe's commands created are removed
/// when it ends, so a host run leaves the host as it found it. (A mount namespace of the probe's
/// own with /run private would not do: CRIU then cannot find the mount of the suite's own
/// executable, mapped before it, and the dump fails.)
struct KdatCache(Vec<&'static str>);

impl KdatCache {
    const FILES: [&'static str; 2] = ["/run/criu.kdat", "/run/criu.kdat.tmp"];

    fn note() -> KdatCache {
        KdatCache(Self::FILES.into_iter().filter(|f| std::fs::symlink_metadata(f).is_err()).collect())
    }
}

impl Drop for KdatCache {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Brings `lo` up when it is down (a guest's is: no init did it), as a booted system has it.
fn loopback_up(ctx: &Ctx) -> Result<(), Fail> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    // Any socket takes the device ioctls; a Unix one exists without CONFIG_INET (the builds).
    let sock = socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).ctx("socket")?;
    // SAFETY: ifreq is plain data; the name is NUL-terminated.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the named interface.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } != 0 {
        // No loopback device to bring up: CRIU will say what it lacks.
        return Ok(());
    }
    // SAFETY: the union's flags member, which SIOCGIFFLAGS set.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as i16 != 0 {
        return Ok(());
    }
    ctx.may_change("the loopback device's state (it is down)")?;
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as i16;
    // SAFETY: as above, setting the flags.
    nix::errno::Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) })
        .ctx("SIOCSIFFLAGS lo up")?;
    Ok(())
}

/// Loads the kernel modules `cargo xtask` packed for this kernel (`dir/order`, dependencies
/// first), as modprobe would on demand on a booted system; says which it loaded. None on a host.
/// A module the kernel already has (`/proc/modules`: the other CRIU probe loaded it) is left alone,
/// as modprobe leaves it: `finit_module` would refuse it only after reading, checking and placing
/// it anew, tens of milliseconds each under TCG (kmod's libkmod-module.c
/// kmod_module_probe_insert_module skips a module whose state is live).
fn load_modules(dir: &Path) -> Result<String, Fail> {
    let Ok(order) = std::fs::read_to_string(dir.join("order")) else { return Ok(String::new()) };
    let present = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let mut loaded = Vec::new();
    for file in order.lines().filter(|l| !l.is_empty()) {
        let name = module_name(file);
        if present.lines().any(|l| l.split(' ').next() == Some(name.as_str())) {
            continue;
        }
        let f = std::fs::File::open(dir.join(file)).ctx(&format!("open {file}"))?;
        // SAFETY: finit_module reads the module from the descriptor; the parameters are empty.
        let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
        match nix::errno::Errno::result(r) {
            Ok(_) => loaded.push(name),
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(Fail::error(format!(
                    "loading the module {file}: {}",
                    crate::kit::outcome::errno_name(e)
                )))
            }
        }
    }
    Ok(loaded.join(" "))
}

/// A module's name as the kernel lists it from its file's name: `nf_tables.ko` is `nf_tables`,
/// `crc32c-generic.ko` is `crc32c_generic` (kmod's modname_normalize).
fn module_name(file: &str) -> String {
    file.trim_end_matches(".ko").replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_and_counts_are_read_without_time_stamp_and_source_line() {
        let dir = std::env::temp_dir().join(format!("uffdc-criu-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("dump.log");
        std::fs::write(
            &log,
            "(00.001) Version: 3.17.1\n(00.012) Error (criu/vdso.c:612): Failed to fill self vdso symtable\n\
             (00.013) Error (criu/kerndat.c:1677): kerndat_vdso_fill_symtable failed when initializing kerndat.\n\
             (00.014) Error (criu/crtools.c:260): Could not initialize kernel features detection.\n\
             (00.5) uffd: 12-1: UFFD transferred pages: (40/40)\n(00.6) uffd: 12-2: UFFD transferred pages: (7/40)\n\
             (00.4) uffd: 12: #PF at 0x7f0000\n(00.120) nr_restored_pages: 580\n(00.120) nr_lazy:           0\n",
        )
        .unwrap();
        let log = log.display().to_string();
        assert_eq!(
            errors(&log),
            [
                "Failed to fill self vdso symtable",
                "kerndat_vdso_fill_symtable failed when initializing kerndat",
                "Could not initialize kernel features detection"
            ]
        );
        assert_eq!(lazy_counts(&log), (47, 1));
        assert_eq!(page_counts(&log), "nr_restored_pages: 580 | nr_lazy: 0");
        assert_eq!(tail(&log, 2), "nr_restored_pages: 580 | nr_lazy:           0");
        assert_eq!(
            lines_about_lazy(&log),
            "uffd: 12-1: UFFD transferred pages: (40/40) | uffd: 12-2: UFFD transferred pages: (7/40) | \
             uffd: 12: #PF at 0x7f0000 | nr_lazy:           0"
        );
        assert_eq!(first_error(&log).unwrap(), "Failed to fill self vdso symtable");
        let Err(Fail::Observed(o)) = Err::<(), _>(observed_failure(
            &mut Observation::new(""),
            "dump",
            &log,
            std::os::unix::process::ExitStatusExt::from_raw(256),
            &[],
        )) else {
            unreachable!()
        };
        assert_eq!(o.observed, "dump fails: kerndat_vdso_fill_symtable failed when initializing kerndat");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn thread_ids_and_step_wrappers_do_not_make_the_observation() {
        assert_eq!(
            name_threads("95 has rseq but kernel lacks get_rseq_conf feature", &[95, 96]),
            "TID has rseq but kernel lacks get_rseq_conf feature"
        );
        assert_eq!(name_threads("Diag module missing (-2)", &[2]), "Diag module missing (-2)");
        assert_eq!(
            name_threads("Failed to get authentication key mask for 95: Invalid argument", &[95]),
            "Failed to get authentication key mask for TID: Invalid argument"
        );
        assert_eq!(name_threads("(pid: 95) 950: 95x", &[95]), "(pid: TID) 950: 95x");
        assert!(
            wrapper("Can't infect (pid: 95) with parasite") && wrapper("Can't obtain regs for thread 96")
        );
        assert!(wrapper("Dump core (pid: 95) failed with -1") && !wrapper("TID has rseq"));
    }

    #[test]
    fn module_names_are_the_kernels() {
        assert_eq!(module_name("nf_tables.ko"), "nf_tables");
        assert_eq!(module_name("crc32c-generic.ko"), "crc32c_generic");
    }

    #[test]
    fn patterns_differ_per_page_and_region() {
        assert_ne!(pattern('A', 1), pattern('A', 2));
        assert_ne!(pattern('A', 1), pattern('S', 1));
        assert_ne!(checksum(&pattern('A', 1)), checksum(&vec![0; crate::kit::memory::page_size()]));
    }
}

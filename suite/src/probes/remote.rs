//! `remote`: accesses to registered memory that do not come from a user-mode load or store:
//! /proc/self/mem, ptrace, process_vm_readv/writev, and syscalls copying to or from user memory.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{Region, MADV_POPULATE_READ};
use crate::kit::outcome::errno_name;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::require;
use crate::kit::rows;
use crate::kit::signals::SignalFlag;
use crate::kit::uapi::UFFD_USER_MODE_ONLY;
use crate::kit::uffd;
use crate::kit::uffd::{describe_fault, Event, Next, RegisterMode, Uffd};
use crate::kit::variant::Variant;
use crate::kit::worker;
use crate::kit::{helpers, memory, threads};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// The shape every observation of this family takes.
const OBSERVES: &str = "The access's result (an errno name, or `N bytes`) and whether a uffd message \
                        arrived: `RESULT, no message` when it returned without one (watched for the quiet \
                        window afterwards), `fault KIND (waits in STATE), then RESULT` when it blocked on a \
                        fault that was then served; STATE is the thread's scheduler state while it waited \
                        (`S` interruptible, `D` uninterruptible or killable), what a runtime that stops \
                        threads with signals depends on.";

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "remote.proc_mem_read",
        summary: "Reading a missing page through /proc/self/mem fails with EIO and never reaches the uffd",
        observes: OBSERVES,
        expect: &[("*", "EIO, no message")],
        citation: "fs/proc/base.c mem_rw (returns -EIO when access_remote_vm copies nothing); \
                   mm/memory.c __access_remote_vm (GUP without FAULT_FLAG_ALLOW_RETRY); \
                   fs/userfaultfd.c handle_userfault (v6.1): a fault that may not retry gets VM_FAULT_SIGBUS",
        notes: "Debuggers, CRIU and anything reading another process's memory through /proc/<pid>/mem \
                see EIO on pages a uffd has not served yet; nothing tells the page server.",
        slow: 1,
        probe: proc_mem_read,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.proc_mem_write",
        summary: "Writing a missing page through /proc/self/mem fails with EIO and never reaches the uffd",
        observes: OBSERVES,
        expect: &[("*", "EIO, no message")],
        citation: "fs/proc/base.c mem_rw with FOLL_WRITE; mm/memory.c __access_remote_vm; \
                   fs/userfaultfd.c handle_userfault (v6.1)",
        slow: 1,
        probe: proc_mem_write,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.ptrace_peek",
        summary: "PTRACE_PEEKDATA of a tracee's missing page fails with EIO and never reaches the uffd",
        observes: OBSERVES,
        expect: &[("*", "EIO, no message")],
        citation: "ptrace(2): PTRACE_PEEKDATA; kernel/ptrace.c generic_ptrace_peekdata -> ptrace_access_vm \
                   (returns -EIO when nothing is copied); mm/memory.c __access_remote_vm",
        notes: "The tracee is a helper process that registered its own page; the probe serves its uffd.",
        slow: 1,
        probe: ptrace_peek,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.process_vm_readv",
        summary: "process_vm_readv(2) of a missing page blocks on a uffd fault until the page is served",
        observes: OBSERVES,
        expect: &[("*", "fault read (waits in D), then 8 bytes")],
        citation: "mm/process_vm_access.c process_vm_rw_single_vec (v6.1): pin_user_pages_remote with \
                   `locked`, so the fault may retry and handle_userfault waits",
        notes: "Unlike /proc/<pid>/mem and ptrace, this remote access waits for the page server.",
        probe: process_vm_readv,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.process_vm_writev",
        summary: "process_vm_writev(2) to a missing page blocks on a uffd write fault until the page is served",
        observes: OBSERVES,
        expect: &[("*", "fault write (waits in D), then 8 bytes")],
        citation: "mm/process_vm_access.c process_vm_rw_single_vec (v6.1): FOLL_WRITE pin with `locked`",
        probe: process_vm_writev,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.syscall_into",
        summary: "read(2) from a pipe into a missing page raises a uffd write fault and completes once served",
        observes: OBSERVES,
        expect: &[("*", "fault write (waits in S), then 8 bytes")],
        citation: "ioctl_userfaultfd(2): faults from kernel-mode accesses are reported unless \
                   UFFD_USER_MODE_ONLY; arch/x86/mm/fault.c do_user_addr_fault (v6.1)",
        notes: "Needs root or vm.unprivileged_userfaultfd=1 (see api.unprivileged).",
        probe: syscall_into,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.syscall_from",
        summary: "write(2) to a pipe from a missing page raises a uffd read fault and completes once served",
        observes: OBSERVES,
        expect: &[("*", "fault read (waits in S), then 8 bytes")],
        citation: "ioctl_userfaultfd(2); arch/x86/mm/fault.c do_user_addr_fault (v6.1)",
        probe: syscall_from,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.syscall_signal",
        summary: "A non-fatal signal to a thread blocked in read(2) on a kernel-mode uffd fault is handled only after the page is served",
        observes: "A worker read(2)s from a pipe into a missing page; once its fault message arrived and it \
                   sleeps, SIGUSR1 (SA_RESTART not set) is sent. Then the probe reads the uffd until the fault \
                   has been raised again RERAISED times (4, each a new message for the same page: the thread \
                   retries its fault while the signal is pending), up to the timeout: `fault raised again N \
                   times` (N < 4 when no more came), and whether the handler ran while the page was still \
                   missing, within the quiet window after that: `handler ran while blocked` or `handler waited \
                   for the page` (it ran only after the page was served); then `, read RESULT`. Details: the \
                   CPU ticks the thread used meanwhile (a thread that retries spins), messages for other pages.",
        expect: &[("*", "fault raised again 4 times; handler waited for the page, read 8 bytes")],
        citation: "include/linux/sched/signal.h fault_signal_pending (since 5.7): a fault taken in kernel \
                   mode is abandoned only for a fatal signal; arch/x86/mm/fault.c do_user_addr_fault \
                   (v5.10, v6.12) retries it otherwise; fs/userfaultfd.c handle_userfault queues a new \
                   message on each try, sleeps TASK_INTERRUPTIBLE (schedule() returns at once while a signal \
                   is pending) and returns VM_FAULT_RETRY",
        notes: "The thread sleeps interruptibly (state S) yet cannot take a non-fatal signal until its page \
                arrives: a signal-based stop-the-world cannot stop a thread blocked in a syscall on a missing \
                page. Meanwhile the kernel spins retrying the fault and the page server sees the same fault \
                again and again: it must treat repeated messages for a page it is serving as one.",
        slow: 1,
        probe: syscall_signal,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.user_mode_only",
        summary: "On a UFFD_USER_MODE_ONLY uffd, read(2) into a missing page fails with EFAULT and sends no message",
        observes: OBSERVES,
        expect: &[
            rows::BEFORE_5_11,
            (">=5.11", "EFAULT, no message"),
        ],
        citation: "userfaultfd(2), man-pages 6.20: UFFD_USER_MODE_ONLY \"only handle page faults \
                   resulting from user-space accesses\"; fs/userfaultfd.c handle_userfault (v6.1)",
        notes: "This is what unprivileged processes get by default since 5.11 (see api.unprivileged).",
        slow: 1,
        probe: user_mode_only,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "remote.proc_mem_after_populate",
        summary: "Once a page has been populated and served, /proc/self/mem reads the served bytes",
        observes: "The page is populated through the uffd (MADV_POPULATE_READ where the kernel has it, \
                   else a plain load) and served with a known byte; then 8 bytes are read through \
                   /proc/self/mem: `served bytes`, or what the read returned instead.",
        expect: &[("*", "served bytes")],
        citation: "fs/proc/base.c mem_rw; mm/memory.c __access_remote_vm: a present page needs no fault",
        probe: proc_mem_after_populate,
        ..Behaviour::DEFAULT
    },
];

/// `N bytes` or the errno name.
fn outcome(r: std::io::Result<usize>) -> String {
    match r {
        Ok(n) => format!("{n} bytes"),
        Err(e) => e.raw_os_error().map_or(e.to_string(), |n| errno_name(Errno::from_raw(n))),
    }
}

fn raw_outcome(r: isize) -> std::io::Result<usize> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Runs `access` on the first page of a fresh MISSING-registered page from a worker, serving
/// whatever fault it raises.
fn remote_access(
    ctx: &Ctx,
    uffd: Uffd,
    region: Region,
    access: impl FnOnce(usize) -> std::io::Result<usize> + Send + 'static,
) -> ProbeResult {
    let addr = region.base();
    let worker = worker::spawn("access", move || access(addr));
    Ok(match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Done(result) => {
            let result = outcome(result);
            uffd.watch_quiet(ctx, Some(&region), format!("{result}, no message"), &format!("{result}, then"))?
        }
        Next::Event(Event::Pagefault { kind, rw, .. }) => {
            let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
            uffd.serve(region.base(), region.page_size(), 0xA5)?;
            let after = worker.wait(ctx.timeout).map_or("still blocked".to_string(), outcome);
            Observation::new(format!(
                "fault {} (waits in {}), then {after}",
                describe_fault(kind, rw),
                threads::describe_state(state)
            ))
        }
        Next::Event(e) => uffd::unexpected(&e, &region),
        Next::Timeout => Observation::new("blocked without a message"),
    })
}

/// One page of the variant's backing, registered for MISSING faults.
fn one_page(v: Variant) -> Result<(Uffd, Region), Fail> {
    v.registered(0, v.region(1)?)
}

/// Reads 8 bytes of `region`'s missing first page through /proc/self/mem.
pub(super) fn proc_mem_read(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    let mem = std::fs::File::open("/proc/self/mem").ctx("open /proc/self/mem")?;
    remote_access(ctx, uffd, region, move |addr| mem.read_at(&mut [0u8; 8], addr as u64))
}

fn proc_mem_write(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    let mem = std::fs::OpenOptions::new().write(true).open("/proc/self/mem").ctx("open /proc/self/mem")?;
    remote_access(ctx, uffd, region, move |addr| mem.write_at(&[0x5Au8; 8], addr as u64))
}

fn process_vm(write: bool) -> impl FnOnce(usize) -> std::io::Result<usize> + Send + 'static {
    move |addr| {
        let mut buf = [0x3Cu8; 8];
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: one local buffer we own and one remote range in our own address space.
        let r = unsafe {
            if write {
                libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0)
            } else {
                libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0)
            }
        };
        raw_outcome(r)
    }
}

/// Reads 8 bytes of `region`'s missing first page with process_vm_readv(2).
pub(super) fn process_vm_readv(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    remote_access(ctx, uffd, region, process_vm(false))
}

fn process_vm_writev(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    remote_access(ctx, uffd, region, process_vm(true))
}

/// A pipe with eight bytes waiting in it: (read end, write end).
fn loaded_pipe() -> Result<(OwnedFd, OwnedFd), Fail> {
    let (r, w) = nix::unistd::pipe().ctx("pipe")?;
    nix::unistd::write(&w, &[0x42u8; 8]).ctx("write to the pipe")?;
    Ok((r, w))
}

fn read_into(fd: OwnedFd) -> impl FnOnce(usize) -> std::io::Result<usize> + Send + 'static {
    // SAFETY (in the closure): read(2) into a registered page of a live Region.
    move |addr| raw_outcome(unsafe { libc::read(fd.as_raw_fd(), addr as *mut libc::c_void, 8) })
}

fn syscall_into(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    let (r, _w) = loaded_pipe()?;
    remote_access(ctx, uffd, region, read_into(r))
}

fn syscall_from(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    let (_r, w) = nix::unistd::pipe().ctx("pipe")?;
    // SAFETY (in the closure): write(2) from a registered page of a live Region.
    remote_access(ctx, uffd, region, move |addr| {
        raw_outcome(unsafe { libc::write(w.as_raw_fd(), addr as *const libc::c_void, 8) })
    })
}

/// How many re-raised fault messages `remote.syscall_signal` waits for after its signal.
const RERAISED: u64 = 4;

fn syscall_signal(ctx: &Ctx, v: Variant) -> ProbeResult {
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction")?;
    let (uffd, region) = one_page(v)?;
    let (r, _w) = loaded_pipe()?;
    let addr = region.base();
    let reader = read_into(r);
    let worker = worker::spawn("read", move || reader(addr));
    uffd.await_fault(&worker, &region, ctx.timeout)?;
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    let cpu_before = threads::thread_cpu_ticks(worker.tid());
    threads::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    // The retried fault raises its message again: wait for RERAISED of them (events; the timeout
    // bounds a kernel that does not retry).
    let (mut again, mut other) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + ctx.timeout;
    while again < RERAISED {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match uffd.next(left)? {
            Some(Event::Pagefault { addr: at, .. }) if region.page_index(at as u64) == 0 => again += 1,
            Some(_) => other += 1,
            // Nothing in time, or a message withdrawn before it was read (the retry that queued it
            // returned): go on until the deadline.
            None if left.is_zero() => break,
            None => {}
        }
    }
    let cpu_ticks =
        threads::thread_cpu_ticks(worker.tid()).zip(cpu_before).map_or(0, |(a, b)| a.saturating_sub(b));
    // Whether the handler runs while the page is still missing: the quiet window.
    let early = flag.wait(ctx.window).ctx("waiting for the handler")?;
    let state_after = threads::thread_state(worker.tid());
    uffd.serve(region.base(), region.page_size(), 0xA5)?;
    let result = worker.wait(ctx.timeout);
    let late = if early > 0 { 0 } else { flag.wait(ctx.timeout).ctx("waiting for the handler")? };
    let handler = match (early, late) {
        (n, _) if n > 0 => "handler ran while blocked",
        (_, n) if n > 0 => "handler waited for the page",
        _ => "handler never ran",
    };
    let read = result.map_or("still blocked".to_string(), outcome);
    Ok(Observation::new(format!("fault raised again {again} times; {handler}, read {read}"))
        .with("state", threads::describe_state(state))
        .with("state_after_window", threads::describe_state(state_after))
        .with("cpu_ticks_while_reraised", cpu_ticks)
        .with("messages_for_other_pages", other)
        .with("window_ms", ctx.window.as_millis() as u64))
}

fn user_mode_only(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::user_mode_only()?;
    let uffd = Uffd::open_with(UFFD_USER_MODE_ONLY, 0)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    let (r, _w) = loaded_pipe()?;
    remote_access(ctx, uffd, region, read_into(r))
}

fn ptrace_peek(ctx: &Ctx, _: Variant) -> ProbeResult {
    use nix::sys::ptrace;
    // A kernel without userfaultfd would show only as the tracee's error: say so first.
    require::userfaultfd()?;
    // The tracee registers its own page and hands over its uffd and the page's address.
    let tracee = helpers::fork_with(|sock| {
        let (uffd, region) = one_page(Variant::PLAIN).map_err(|f| f.to_string())?;
        helpers::send_fd(sock, uffd.raw_fd()).map_err(|e| format!("sending its uffd: {e}"))?;
        helpers::send_line(sock, &region.base().to_string());
        loop {
            std::thread::park();
        }
    })?;
    let run = || -> ProbeResult {
        let uffd = Uffd::from_fd(tracee.fd("its uffd", ctx.timeout)?);
        let line = tracee.line("its page's address", ctx.timeout)?;
        let addr: usize =
            line.parse().map_err(|_| Fail::error(format!("the tracee sent {line:?} as its address")))?;
        ptrace::seize(tracee.pid, ptrace::Options::empty()).ctx("PTRACE_SEIZE")?;
        ptrace::interrupt(tracee.pid).ctx("PTRACE_INTERRUPT")?;
        nix::sys::wait::waitpid(tracee.pid, None).ctx("waitpid for the stop")?;
        let peek = ptrace::read(tracee.pid, addr as ptrace::AddressType);
        let result = match peek {
            Ok(_) => "8 bytes".to_string(),
            Err(e) => errno_name(e),
        };
        // The tracee's page is not a region of ours: a late message is named by its kind.
        uffd.watch_quiet(ctx, None, format!("{result}, no message"), &format!("{result}, then"))
    };
    let result = run();
    tracee.kill();
    let _ = tracee.wait(ctx.timeout);
    result
}

fn proc_mem_after_populate(ctx: &Ctx, v: Variant) -> ProbeResult {
    let (uffd, region) = one_page(v)?;
    let addr = region.base();
    let by_populate =
        memory::madvise(Region::anonymous(1).ctx("mmap")?.base(), memory::page_size(), MADV_POPULATE_READ)
            .is_ok();
    let worker = worker::spawn("populate", move || {
        if by_populate {
            memory::madvise(addr, memory::page_size(), MADV_POPULATE_READ).map(drop)
        } else {
            memory::load(addr);
            Ok(())
        }
    });
    let served = uffd.serve_until_done(&worker, &region, 0xC3, ctx.timeout)?;
    match served.result {
        Some(Ok(())) => {}
        Some(Err(e)) => return Ok(Observation::new(format!("populate failed: {}", errno_name(e)))),
        None => return Ok(Observation::new("populate did not finish")),
    }
    let mem = std::fs::File::open("/proc/self/mem").ctx("open /proc/self/mem")?;
    let mut buf = [0u8; 8];
    let read = mem.read_at(&mut buf, addr as u64);
    let observed = match read {
        Ok(8) if buf == [0xC3; 8] => "served bytes".to_string(),
        Ok(n) => format!("{n} bytes, not the served ones ({:02x?})", &buf[..n.min(8)]),
        Err(e) => outcome(Err(e)),
    };
    Ok(Observation::new(observed)
        .with("populated_by", if by_populate { "MADV_POPULATE_READ" } else { "load" })
        .with("faults", served.events.len()))
}

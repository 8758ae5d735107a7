//! `populate`: MADV_POPULATE_READ / MADV_POPULATE_WRITE on userfaultfd-registered memory.

use crate::kit::behaviour::Behaviour;
use crate::kit::memory::{madvise, Region, MADV_POPULATE_READ, MADV_POPULATE_WRITE};
use crate::kit::outcome::errno_name;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult};
use crate::kit::require;
use crate::kit::rows;
use crate::kit::signals::SignalFlag;
use crate::kit::uapi::{
    FEATURE_MINOR_SHMEM, FEATURE_MISSING_HUGETLBFS, FEATURE_PAGEFAULT_FLAG_WP, FEATURE_SIGBUS,
    FEATURE_THREAD_ID, FEATURE_WP_ASYNC, FEATURE_WP_HUGETLBFS_SHMEM, UFFD_USER_MODE_ONLY,
};
use crate::kit::uffd;
use crate::kit::uffd::{describe_event, describe_fault, registered, Event, Next, RegisterMode, Uffd};
use crate::kit::variant::{Access, Backing, HugeSize, Variant};
use crate::kit::worker::{self, Worker};
use crate::kit::{helpers, memory, threads};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

pub const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        id: "populate.read_missing",
        summary: "MADV_POPULATE_READ on a missing page of a MISSING-registered anonymous range raises a uffd fault",
        observes: "`fault read` when a read-fault message arrives while madvise blocks and madvise \
                   returns 0 once the page is served; `fault read, then ERRNO` when it fails after \
                   serving; an errno name when madvise fails without a message. Unsupported when the \
                   advice itself is rejected (EINVAL on a plain mapping). Details: the faulting \
                   thread's state while blocked, whether the message names it, residency afterwards.",
        expect: &[
            rows::BEFORE_5_14,
            (">=5.14", "fault read"),
        ],
        citation: "madvise(2), man-pages 6.20: MADV_POPULATE_READ (since Linux 5.14), \"populate \
                   (prefault) page tables readable, faulting-in all pages ... as if manually reading \
                   from each page\"; mm/madvise.c madvise_populate (v5.14)",
        notes: "A plain load blocks in user-fault context (state S); the populate fault is taken by \
                GUP inside the madvise syscall, so the thread blocks in the kernel: compare the \
                `state` detail with stw.user_fault_signal.",
        probe: missing,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.write_missing",
        summary: "MADV_POPULATE_WRITE on a missing page of a MISSING-registered anonymous range raises a uffd write fault",
        observes: "As populate.read_missing, for MADV_POPULATE_WRITE: `fault write` when the message \
                   carries UFFD_PAGEFAULT_FLAG_WRITE and madvise returns 0 once served.",
        expect: &[
            rows::BEFORE_5_14,
            (">=5.14", "fault write"),
        ],
        citation: "madvise(2), man-pages 6.20: MADV_POPULATE_WRITE (since Linux 5.14), \"as if \
                   manually writing to each page\"; ioctl_userfaultfd(2): UFFD_PAGEFAULT_FLAG_WRITE",
        probe: missing,
        variant: Variant::access(Access::Write),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.no_refault",
        summary: "Once MADV_POPULATE_READ has returned on a served page, plain loads and stores raise no message",
        observes: "After a populate of one missing page is served, the page's residency (mincore) and whether \
                   a load and a store from another thread raise any message within the quiet window: \
                   `resident, no message`, or what happened instead.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "resident, no message")],
        citation: "madvise(2), man-pages 6.20: MADV_POPULATE_READ \"populate (prefault) page tables\"; \
                   ioctl_userfaultfd(2): UFFDIO_COPY maps the page",
        notes: "UFFDIO_COPY maps the served page writable, so neither a load nor a store faults again.",
        slow: 1,
        probe: no_refault,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.multi_page",
        summary: "MADV_POPULATE_READ over four missing pages raises one fault per page, in address order",
        observes: "The messages raised by one MADV_POPULATE_READ over four missing pages, each served as it \
                   arrives: `4 faults: pages 0 1 2 3` (page indices in arrival order), then madvise's result \
                   when it is not 0.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "4 faults: pages 0 1 2 3")],
        citation: "mm/madvise.c madvise_populate and mm/gup.c __get_user_pages (v6.1): pages are faulted in \
                   one at a time, in ascending order",
        notes: "Each fault blocks the populate until it is served: a page server sees them one at a time.",
        probe: multi_page,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.thread_state",
        summary: "A thread blocked in MADV_POPULATE_READ on a missing page sleeps in D state (killable, in the kernel)",
        observes: "The scheduler state letter of the faulting thread (/proc/self/task/<tid>/stat) once its \
                   fault message has arrived: `D` (uninterruptible or killable sleep) or `S`.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "D")],
        citation: "mm/gup.c faultin_page (v6.1, v6.12): GUP faults are FAULT_FLAG_KILLABLE and only \
                   interruptible with FOLL_INTERRUPTIBLE, which madvise does not pass; fs/userfaultfd.c \
                   userfaultfd_get_blocking_state: KILLABLE -> TASK_KILLABLE",
        notes: "Contrast stw.user_fault_state: a plain load sleeps in S. Monitoring that treats D as \
                \"stuck in the kernel\" will flag page-server waits during populate.",
        probe: thread_state,
        documented: &[(">=5.14", "S", crate::probes::sources::POPULATE_AS_IF_READING)],
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.signal",
        summary: "A non-fatal signal to a thread blocked in MADV_POPULATE_READ is handled only after the page is served",
        observes: "SIGUSR1 is sent to the thread blocked in populate: `handler ran while blocked` when its \
                   handler runs within the quiet window, else `handler waited for the page` when it runs \
                   only after the page is served; then `, madvise 0` or the errno madvise returned.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "handler waited for the page, madvise 0")],
        citation: "mm/gup.c faultin_page (v6.1): no FAULT_FLAG_INTERRUPTIBLE for madvise, so the wait is \
                   TASK_KILLABLE; mm/madvise.c madvise_populate returns -EINTR only for fatal signals",
        notes: "A signal-based stop-the-world (stw.signal_suspend_populate) cannot stop such a thread \
                until its page arrives.",
        slow: 1,
        probe: signal,
        documented: &[(">=5.14", "handler ran while blocked, madvise 0", crate::probes::sources::POPULATE_AS_IF_READING)],
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.sigkill",
        summary: "SIGKILL ends a process whose thread is blocked in MADV_POPULATE_READ, without the page being served",
        observes: "A helper process blocks a thread in populate on its own registered page (the uffd is \
                   served from the probe process); after the fault message it is sent SIGKILL: `died \
                   promptly` when it is reaped within the timeout, `still alive` otherwise.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "died promptly")],
        citation: "fs/userfaultfd.c handle_userfault: TASK_KILLABLE waits end on a fatal signal; mm/gup.c \
                   __get_user_pages returns -EINTR on fatal_signal_pending",
        probe: sigkill,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.sigbus_feature",
        summary: "With UFFD_FEATURE_SIGBUS, MADV_POPULATE_READ on a missing page fails with EFAULT, sends no message and raises no SIGBUS",
        observes: "madvise's errno, whether any message arrived in the quiet window, and whether a SIGBUS \
                   reached the process (a handler counts it) by the end of the window: `EFAULT, no message, \
                   no SIGBUS`.",
        expect: &[rows::BEFORE_5_14, (">=5.14", "EFAULT, no message, no SIGBUS")],
        documented: &[(
            ">=5.14",
            "one of: 0, no message, SIGBUS raised | EFAULT, no message, SIGBUS raised",
            crate::probes::sources::SIGBUS_FEATURE,
        )],
        citation: "UFFDIO_API(2const): UFFD_FEATURE_SIGBUS \"no page-fault events will be delivered\"; \
                   mm/madvise.c madvise_populate (v6.1): VM_FAULT_SIGBUS -> -EFAULT",
        notes: "A process that relies on SIGBUS to learn of missing pages gets no signal from populate: \
                the error comes back from the syscall instead.",
        slow: 1,
        selftests: &["selftests.unit_sigbus_anon", "selftests.userfaultfd_anon_signal_delivery"],
        probe: sigbus_feature,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.user_mode_only",
        summary: "On a UFFD_USER_MODE_ONLY uffd, MADV_POPULATE_READ on a missing page fails with EFAULT and sends no message",
        observes: "madvise's errno and whether any message arrived in the quiet window: `EFAULT, no message`.",
        expect: &[
            rows::BEFORE_5_11,
            (">=5.11, <5.14", rows::BEFORE_5_14.1),
            (">=5.14", "EFAULT, no message"),
        ],
        citation: "userfaultfd(2), man-pages 6.20: UFFD_USER_MODE_ONLY; fs/userfaultfd.c handle_userfault \
                   (v6.1): faults without FAULT_FLAG_USER on such a uffd get VM_FAULT_SIGBUS",
        notes: "populate faults are taken by the kernel on the caller's behalf (GUP), not in user mode.",
        slow: 1,
        probe: user_mode_only,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.wp",
        summary: "MADV_POPULATE_WRITE on a write-protected page: a WP fault with sync WP, none with WP_ASYNC",
        observes: "`sync: X; async: Y`. sync: a present page registered MISSING|WP and protected with \
                   UFFDIO_WRITEPROTECT, populated for write; X is the message (`fault wp write`), served by \
                   unprotecting. async: the same with UFFD_FEATURE_WP_ASYNC; Y is `no message` when madvise \
                   returns 0 without one, `not offered` when the kernel lacks WP_ASYNC.",
        expect: &[
            rows::ARM64_BEFORE_6_10,
            // WP_ASYNC needs the PTE markers (fs/userfaultfd.c userfaultfd_api, v6.12).
            (">=6.7 when CONFIG_PTE_MARKER_UFFD_WP!=y", "sync: fault wp write; async: not offered"),
            rows::BEFORE_5_14,
            (">=5.14, <6.7", "sync: fault wp write; async: not offered"),
            (">=6.7", "sync: fault wp write; async: no message"),
        ],
        citation: "UFFDIO_WRITEPROTECT(2const); UFFDIO_API(2const): UFFD_FEATURE_WP_ASYNC (since Linux \
                   6.7) \"write protection faults would be asynchronously resolved by the kernel\"; \
                   Documentation/admin-guide/mm/userfaultfd.rst (v6.7) \"Write Protect Notifications\"",
        probe: wp,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.shmem_missing",
        summary: "MADV_POPULATE_READ on a hole of a MISSING-registered shared memfd raises a uffd read fault",
        observes: "As populate.read_missing, on a MAP_SHARED memfd (shmem) page that is a hole: `fault read`.",
        expect: &[
            rows::BEFORE_5_14,
            (">=5.14", "fault read"),
        ],
        citation: "UFFDIO_API(2const): UFFD_FEATURE_MISSING_SHMEM (since Linux 4.11); mm/shmem.c \
                   shmem_get_folio_gfp (v6.1): a hole in a userfaultfd_missing() VMA -> handle_userfault",
        probe: missing,
        variant: Variant::on(Backing::Shmem),
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.shmem_minor",
        summary: "MADV_POPULATE_READ on a MINOR-registered memfd page that is in the page cache raises a minor fault",
        observes: "A memfd page written through the file, mapped but never touched, registered MINOR: the \
                   message (`fault minor read`), resolved with UFFDIO_CONTINUE; `, content wrong` if the \
                   mapping then does not show the file's bytes.",
        expect: &[
            rows::BEFORE_5_14,
            (">=5.14", "fault minor read"),
        ],
        citation: "UFFDIO_API(2const): UFFD_FEATURE_MINOR_SHMEM (since Linux 5.14); UFFDIO_CONTINUE(2const)",
        notes: "This is how QEMU and Firecracker-style snapshot restore serve shared guest memory \
                without copying.",
        probe: shmem_minor,
        ..Behaviour::DEFAULT
    },
    Behaviour {
        id: "populate.hugetlb_missing",
        summary: "MADV_POPULATE_READ on a missing huge page of a MISSING-registered hugetlb mapping raises a uffd read fault",
        observes: "As populate.read_missing, on an anonymous MAP_HUGETLB mapping of one default-size huge \
                   page, served with a huge-page-sized UFFDIO_COPY. Unsupported without a free huge page.",
        expect: &[
            rows::BEFORE_5_14,
            (">=5.14", "fault read"),
        ],
        citation: "UFFDIO_API(2const): UFFD_FEATURE_MISSING_HUGETLBFS (since Linux 4.11); mm/hugetlb.c \
                   hugetlb_no_page (v6.1): userfaultfd_missing() -> handle_userfault",
        notes: "Guests get huge pages reserved on their kernel command line; on the host the probe uses \
                what is free and never changes vm.nr_hugepages.",
        huge_pages: 1,
        probe: missing,
        variant: Variant::HUGETLB,
        ..Behaviour::DEFAULT
    },
];

/// MADV_POPULATE_READ (MADV_POPULATE_WRITE for a `Write` access) of a missing page of the
/// variant's backing, served with UFFDIO_COPY: [`populate_one`]'s observation.
pub(super) fn missing(ctx: &Ctx, v: Variant) -> ProbeResult {
    let advice = if v.access == Access::Write { MADV_POPULATE_WRITE } else { MADV_POPULATE_READ };
    require::populate(advice)?;
    let (uffd, region) = v.registered(FEATURE_THREAD_ID, v.region(1)?)?;
    let mut obs = populate_one(ctx, &uffd, &region, advice, &mut |uffd, region, _| {
        uffd.serve(region.base(), region.page_size(), 0xA5)
    })?;
    if v.is_hugetlb() {
        obs.detail("huge_page_kb", (region.page_size() / 1024) as u64);
    }
    if v.huge != HugeSize::Default {
        // Beside a size other than the default: every size this kernel offers.
        let sizes: Vec<String> =
            memory::huge_page_sizes().iter().map(|(s, _)| (s / 1024).to_string()).collect();
        obs.detail("huge_page_sizes_kb", sizes.join(" "));
    }
    Ok(obs)
}

/// How a probe resolves the one fault of [`populate_one`].
type Resolve<'a> = dyn FnMut(&Uffd, &Region, &Event) -> Result<(), Fail> + 'a;

/// Populates the first page of a registered `region` from a worker while this thread serves:
/// `fault <kind>` when a fault message arrives and madvise returns 0 after `resolve`.
pub(super) fn populate_one(
    ctx: &Ctx,
    uffd: &Uffd,
    region: &Region,
    advice: i32,
    resolve: &mut Resolve<'_>,
) -> ProbeResult {
    let (addr, len) = (region.base(), region.page_size());
    let worker = start_populate(addr, len, advice);
    let mut obs = match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Event(event @ Event::Pagefault { .. }) => {
            let Event::Pagefault { kind, rw, addr: at, thread_id } = &event else { unreachable!() };
            let fault = describe_fault(*kind, *rw);
            let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
            let mut obs = Observation::new("")
                .with("state", threads::describe_state(state))
                .with("message_tid_is_worker", thread_id.as_raw() == worker.tid())
                .with("message_page", region.page_index(*at as u64));
            resolve(uffd, region, &event)?;
            obs.observed = match worker.wait(ctx.timeout) {
                Some((Ok(()), took)) => {
                    obs.detail("madvise_us", took.as_micros() as u64);
                    format!("fault {fault}")
                }
                Some((Err(e), _)) => format!("fault {fault}, then {}", errno_name(e)),
                None => format!("fault {fault}, still blocked after the fault was resolved"),
            };
            obs
        }
        Next::Event(other) => uffd::unexpected(&other, region),
        Next::Done((Ok(()), _)) => Observation::new("returned 0 without a message"),
        Next::Done((Err(e), _)) => Observation::new(errno_name(e)).with("message", false),
        Next::Timeout => Observation::new("blocked without a message")
            .with("state", threads::describe_state(threads::thread_state(worker.tid()))),
    };
    if let Ok(resident) = memory::resident(region.base(), region.page_size()) {
        obs.detail("resident_after", resident);
    }
    Ok(obs)
}

/// A worker that runs madvise(advice) over `[addr, addr+len)` and returns its result and duration.
fn start_populate(addr: usize, len: usize, advice: i32) -> Worker<(Result<(), Errno>, Duration)> {
    worker::spawn("populate", move || {
        let start = Instant::now();
        (madvise(addr, len, advice), start.elapsed())
    })
}

fn no_refault(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let first = populate_one(ctx, &uffd, &region, MADV_POPULATE_READ, &mut |u, r, _| {
        u.serve(r.base(), r.page_size(), 0x5A)
    })?;
    if first.observed != "fault read" {
        return Ok(Observation::new(format!("populate did not fault as expected: {}", first.observed)));
    }
    let resident = memory::resident(region.base(), region.page_size()).ctx("mincore")?;
    let addr = region.base();
    let toucher = worker::spawn("touch", move || {
        let v = memory::load(addr);
        memory::store(addr, v.wrapping_add(1));
        v
    });
    let mut obs = match uffd.next_or_done(&toucher, ctx.timeout)? {
        Next::Done(v) => {
            let resident = if resident { "resident" } else { "not resident" };
            uffd.watch_quiet(ctx, Some(&region), format!("{resident}, no message"), "late message:")?
                .with("loaded", format!("{v:#x}"))
        }
        Next::Event(e) => {
            let obs = Observation::new(format!("message on touch: {}", describe_event(&e, &region)));
            let _ = uffd.serve(region.base(), region.page_size(), 0x5A);
            obs
        }
        Next::Timeout => Observation::new("touch blocked without a message"),
    };
    obs.detail("window_ms", ctx.window.as_millis() as u64);
    Ok(obs)
}

fn multi_page(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    let (uffd, region) = registered(0, Region::anonymous(4).ctx("mmap")?, RegisterMode::MISSING)?;
    let worker = start_populate(region.base(), region.len(), MADV_POPULATE_READ);
    let served = uffd.serve_until_done(&worker, &region, 0x33, ctx.timeout)?;
    let mut observed =
        format!("{} faults: pages {}", served.events.len(), uffd::fault_pages(&served.events, &region));
    match served.result {
        Some((Ok(()), took)) => {
            return Ok(Observation::new(observed).with("madvise_us", took.as_micros() as u64))
        }
        Some((Err(e), _)) => observed += &format!(", madvise {}", errno_name(e)),
        None => observed += ", madvise still blocked",
    }
    Ok(Observation::new(observed))
}

fn thread_state(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let worker = start_populate(region.base(), region.len(), MADV_POPULATE_READ);
    uffd.await_fault(&worker, &region, ctx.timeout)?;
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    let wchan = threads::task_wchan(std::process::id() as i32, worker.tid()).unwrap_or_default();
    uffd.serve(region.base(), region.page_size(), 0x11)?;
    let done = worker.wait(ctx.timeout).is_some();
    Ok(Observation::new(threads::describe_state(state))
        .with("wchan", wchan)
        .with("finished_after_serve", done))
}

fn signal(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    let flag = SignalFlag::install(Signal::SIGUSR1).ctx("sigaction")?;
    let (uffd, region) = registered(0, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let worker = start_populate(region.base(), region.len(), MADV_POPULATE_READ);
    uffd.await_fault(&worker, &region, ctx.timeout)?;
    let state = threads::wait_until_blocked(worker.tid(), ctx.timeout);
    let i = interrupt_blocked(ctx, &flag, &worker, || uffd.serve(region.base(), region.page_size(), 0x22))?;
    let (handler, result) = (i.handler, i.result);
    let madvise = match result {
        Some((Ok(()), _)) => "madvise 0".to_string(),
        Some((Err(e), _)) => format!("madvise {}", errno_name(e)),
        None => "madvise still blocked".to_string(),
    };
    Ok(Observation::new(format!("{handler}, {madvise}"))
        .with("state", threads::describe_state(state))
        .with("window_ms", ctx.window.as_millis() as u64))
}

fn sigkill(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    // The helper must register its own memory: fork drops registrations without EVENT_FORK.
    let helper = helpers::fork_with(|sock| {
        let region = Region::anonymous(1).map_err(|e| format!("mmap: {e}"))?;
        let (uffd, region) = registered(0, region, RegisterMode::MISSING).map_err(|f| f.to_string())?;
        helpers::send_fd(sock, uffd.raw_fd()).map_err(|e| format!("sending its uffd: {e}"))?;
        let _w = start_populate(region.base(), region.len(), MADV_POPULATE_READ);
        loop {
            std::thread::park();
        }
    })?;
    let fd = helper.fd("its uffd", ctx.timeout).inspect_err(|_| helper.kill())?;
    let uffd = Uffd::from_fd(fd);
    let Some(Event::Pagefault { .. }) = uffd.next(ctx.timeout)? else {
        helper.kill();
        return Ok(Observation::new("no fault message from the helper"));
    };
    let start = Instant::now();
    helper.kill();
    let status = helper.wait(ctx.timeout).ctx("waitpid")?;
    drop(uffd);
    Ok(match status {
        Some(s) => Observation::new("died promptly")
            .with("exit_ms", start.elapsed().as_millis() as u64)
            .with("status", format!("{s:?}")),
        None => Observation::new("still alive").with("waited_ms", ctx.timeout.as_millis() as u64),
    })
}

fn sigbus_feature(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    // A SIGBUS for a syscall's fault would be delivered on its return: counting it is safe (no
    // faulting instruction re-runs after the handler).
    let sigbus = SignalFlag::install(Signal::SIGBUS).ctx("sigaction(SIGBUS)")?;
    let (uffd, region) =
        registered(FEATURE_SIGBUS, Region::anonymous(1).ctx("mmap")?, RegisterMode::MISSING)?;
    let mut obs = no_message_result(ctx, &uffd, &region)?;
    let raised = sigbus.wait(std::time::Duration::ZERO).ctx("reading the SIGBUS flag")?;
    obs.observed += if raised > 0 { ", SIGBUS raised" } else { ", no SIGBUS" };
    Ok(obs)
}

fn user_mode_only(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::user_mode_only()?;
    require::populate(MADV_POPULATE_READ)?;
    let uffd = Uffd::open_with(UFFD_USER_MODE_ONLY, 0)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    no_message_result(ctx, &uffd, &region)
}

/// Populates a missing page for read expecting madvise to return without a message: `ERRNO, no
/// message` (or `0, no message`), else what arrived.
fn no_message_result(ctx: &Ctx, uffd: &Uffd, region: &Region) -> ProbeResult {
    no_message_result_with(ctx, uffd, region, MADV_POPULATE_READ)
}

/// [`no_message_result`] with `advice` (MADV_POPULATE_READ or _WRITE) over the first page.
pub(super) fn no_message_result_with(ctx: &Ctx, uffd: &Uffd, region: &Region, advice: i32) -> ProbeResult {
    let worker = start_populate(region.base(), region.page_size(), advice);
    Ok(match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Done((result, _)) => {
            let result = result.map_or_else(errno_name, |()| "0".to_string());
            uffd.watch_quiet(ctx, Some(region), format!("{result}, no message"), &format!("{result}, then"))?
        }
        Next::Event(e) => {
            let obs = Observation::new(format!("message: {}", describe_event(&e, region)));
            uffd.serve(region.base(), region.page_size(), 0)?;
            obs
        }
        Next::Timeout => Observation::new("blocked without a message"),
    })
}

/// MADV_POPULATE_WRITE on a write-protected page of the variant's backing, sync and async
/// (hugetlb also needs UFFD_FEATURE_WP_HUGETLBFS_SHMEM and a huge page for each).
pub(super) fn wp(ctx: &Ctx, v: Variant) -> ProbeResult {
    let features = if v.is_hugetlb() {
        require::features(FEATURE_WP_HUGETLBFS_SHMEM)?;
        v.huge_pages(2)?;
        FEATURE_WP_HUGETLBFS_SHMEM | FEATURE_MISSING_HUGETLBFS
    } else {
        0
    };
    populate_write_protected(ctx, &|| v.region(1), features)
}

/// `sync: X; async: Y` for MADV_POPULATE_WRITE on a present, write-protected page of a region
/// that `region` maps (registered MISSING|WP, with `features` too): X the message (served by
/// unprotecting), Y with UFFD_FEATURE_WP_ASYNC (`no message` when madvise returns without one,
/// `not offered` when the kernel lacks it).
fn populate_write_protected(
    ctx: &Ctx,
    region: &dyn Fn() -> Result<Region, Fail>,
    features: u64,
) -> ProbeResult {
    require::populate(MADV_POPULATE_WRITE)?;
    require::features(FEATURE_PAGEFAULT_FLAG_WP | features)?;
    let protected = |more: u64, byte: u8| -> Result<(Uffd, Region), Fail> {
        let (uffd, region) = registered(
            FEATURE_PAGEFAULT_FLAG_WP | features | more,
            region()?,
            RegisterMode::MISSING | RegisterMode::WRITE_PROTECT,
        )?;
        uffd.serve(region.base(), region.page_size(), byte)?;
        uffd.write_protect(region.base(), region.page_size(), true)?;
        Ok((uffd, region))
    };
    // Sync: the WP fault is resolved by unprotecting.
    let (uffd, sync_region) = protected(0, 0x44)?;
    let sync = populate_one(ctx, &uffd, &sync_region, MADV_POPULATE_WRITE, &mut |u, r, _| {
        u.write_protect(r.base(), r.page_size(), false)
    })?;
    // Async: the kernel resolves the WP fault itself.
    let async_ = require::if_offered(FEATURE_WP_ASYNC, || {
        let (uffd, region) = protected(FEATURE_WP_ASYNC, 0x45)?;
        let obs = no_message_result_with(ctx, &uffd, &region, MADV_POPULATE_WRITE)?;
        Ok(obs.observed.trim_start_matches("0, ").to_string())
    })?;
    Ok(Observation::new(format!("sync: {}; async: {async_}", sync.observed))
        .with("sync_state", sync.details.get("state").map_or("-".to_string(), |d| d.to_string())))
}

fn shmem_minor(ctx: &Ctx, _: Variant) -> ProbeResult {
    require::populate(MADV_POPULATE_READ)?;
    let region = Region::memfd(1).ctx("memfd")?;
    region.fill_file_page(0, 0x77).ctx("pwrite to the memfd")?;
    let (uffd, region) = registered(FEATURE_MINOR_SHMEM, region, RegisterMode::MINOR)?;
    let mut obs = populate_one(ctx, &uffd, &region, MADV_POPULATE_READ, &mut |u, r, _| {
        u.continue_(r.base(), r.page_size())
    })?;
    if obs.observed == "fault minor read"
        && memory::resident(region.base(), region.page_size()).unwrap_or(false)
    {
        let byte = memory::load(region.base());
        if byte != 0x77 {
            obs.observed += ", content wrong";
        }
        obs.detail("content", format!("{byte:#x}"));
    }
    Ok(obs)
}

/// What became of a non-fatal signal sent to a thread blocked on a fault.
pub struct Interrupted<T> {
    /// `handler ran while blocked`, `handler waited for the page` or `handler never ran`.
    pub handler: &'static str,
    /// The worker's result, once the fault was resolved (`None`: still blocked).
    pub result: Option<T>,
}

/// Sends SIGUSR1 (handled by `flag`) to a worker blocked on a fault, watches the quiet window for
/// its handler, then resolves the fault with `resolve` and waits for the worker and the handler.
pub fn interrupt_blocked<T>(
    ctx: &Ctx,
    flag: &SignalFlag,
    worker: &Worker<T>,
    resolve: impl FnOnce() -> Result<(), Fail>,
) -> Result<Interrupted<T>, Fail> {
    threads::tgkill(worker.tid(), Signal::SIGUSR1).ctx("tgkill")?;
    let early = flag.wait(ctx.window).ctx("waiting for the handler")?;
    let returned = worker.try_done();
    resolve()?;
    let result = returned.or_else(|| worker.wait(ctx.timeout));
    let late = if early > 0 { 0 } else { flag.wait(ctx.timeout).ctx("waiting for the handler")? };
    let handler = match (early, late) {
        (n, _) if n > 0 => "handler ran while blocked",
        (_, n) if n > 0 => "handler waited for the page",
        _ => "handler never ran",
    };
    Ok(Interrupted { handler, result })
}

//! `remote`: accesses to registered memory that do not come from a user-mode load or store.

use crate::catalogue::Behaviour;
use crate::probe::{Context, Ctx, Observation, ProbeResult};
use crate::sys::{self, errno_name, Region};
use crate::uffd::{
    describe_event, describe_fault, Event, Next, RegisterMode, Uffd, FEATURE_THREAD_ID,
};
use std::os::unix::fs::FileExt;

pub const BEHAVIOURS: &[Behaviour] = &[Behaviour {
    id: "remote.proc_mem_read",
    summary: "Reading a missing page through /proc/self/mem fails with EIO and never reaches the uffd",
    observes: "The result of pread(2) of 8 bytes of a missing, MISSING-registered page through \
               /proc/self/mem (an errno name, or `read N`), then whether a uffd message arrived \
               (`no message` after the quiet window, or the message). `fault read, then ...` \
               when the read blocks on a message and is served.",
    expect: &[("*", "EIO, no message")],
    citation: "fs/proc/base.c mem_rw (returns -EIO when access_remote_vm copies nothing); \
               mm/memory.c __access_remote_vm (GUP without FAULT_FLAG_ALLOW_RETRY); \
               fs/userfaultfd.c handle_userfault (v6.1): a fault that may not retry gets VM_FAULT_SIGBUS",
    notes: "Debuggers, CRIU and anything reading another process's memory through /proc/<pid>/mem \
            see EIO on pages a uffd has not served yet; nothing tells the page server.",
    probe: proc_mem_read,
}];

fn proc_mem_read(ctx: &Ctx) -> ProbeResult {
    let uffd = Uffd::open(FEATURE_THREAD_ID)?;
    let region = Region::anonymous(1).ctx("mmap")?;
    uffd.register(region.base(), region.len(), RegisterMode::MISSING)?;
    let mem = std::fs::File::open("/proc/self/mem").ctx("open /proc/self/mem")?;
    let addr = region.base() as u64;
    let worker = crate::worker::spawn("proc-mem-read", move || {
        let mut buf = [0u8; 8];
        mem.read_at(&mut buf, addr)
    });
    let describe = |r: std::io::Result<usize>| match r {
        Ok(n) => format!("read {n}"),
        Err(e) => e.raw_os_error().map_or(e.to_string(), |n| {
            errno_name(nix::errno::Errno::from_raw(n))
        }),
    };
    Ok(match uffd.next_or_done(&worker, ctx.timeout)? {
        Next::Done(result) => {
            // The read is over; watch the quiet window for a message it might still have raised.
            let result = describe(result);
            match uffd.next(ctx.window)? {
                None => Observation::new(format!("{result}, no message")),
                Some(e) => {
                    Observation::new(format!("{result}, then {}", describe_event(&e, &region)))
                }
            }
            .with("window_ms", ctx.window.as_millis() as u64)
        }
        Next::Event(Event::Pagefault { kind, rw, .. }) => {
            let state = sys::wait_until_blocked(worker.tid(), ctx.timeout);
            uffd.serve(region.base(), region.page_size(), 0xA5)?;
            let after = worker
                .wait(ctx.timeout)
                .map_or("still blocked".to_string(), describe);
            Observation::new(format!("fault {}, then {after}", describe_fault(kind, rw)))
                .with("state", sys::describe_state(state))
        }
        Next::Event(e) => {
            Observation::new(format!("unexpected event: {}", describe_event(&e, &region)))
        }
        Next::Timeout => Observation::new("blocked without a message"),
    })
}

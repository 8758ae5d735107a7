//! The probes, one module per family. Each declares its behaviours (`BEHAVIOURS`) next to the
//! functions that observe them.

pub mod api;
pub mod goruntime;
pub mod gostress;
pub mod hugetlb;
pub mod ordering;
pub mod populate;
pub mod remote;
pub mod remove;
pub mod serve;
pub mod sources;
pub mod stw;
pub mod wp;

use crate::kit::outcome::{Context, Ctx, Fail};
use crate::kit::signals::SignalFlag;
use crate::kit::threads;
use crate::kit::worker::Worker;
use nix::sys::signal::Signal;

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

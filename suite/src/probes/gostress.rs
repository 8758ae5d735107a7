//! The gated-server stress of the `stw.go_stress_*` behaviours (declared in `goruntime`): a real Go
//! runtime's workers fault, remove and check pages while the probe serves them from another
//! process with the stress kit (`kit::stress`), holding some faults until the program has stopped
//! the world and racing others against a pending REMOVE.

use super::goruntime::STUCK_RETRIES;
use crate::kit::goworkload::{errno_word, Go};
use crate::kit::memory::page_size;
use crate::kit::outcome::{Context, Ctx, Fail, Observation, ProbeResult, Sabotage};
use crate::kit::stress::{found, shortfall, Counts, Pages, Serve};
use crate::kit::uffd::{Event, Pump};
use crate::kit::variant::Variant;
use crate::kit::{poll, threads};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The fixed work of the `stw.go_stress_*` behaviours, derived from a seed: the same on every
/// run, kernel and access path, so that their counts are too.
pub mod plan {
    use crate::kit::stress::Shape;

    /// The workload's plan: after each round, each worker removes 1 or 2 ranges of 1 to 3 of its
    /// pages, then runs 0 or 1 stop-the-world (runtime.ReadMemStats).
    pub type Plan = crate::kit::stress::Plan;

    pub const WORKERS: usize = 2;
    pub const PAGES: usize = 4;
    pub const ROUNDS: usize = 4;
    pub const SEED: u64 = 0x2542_0002_5EED_0002;
    /// Every this-many-th new fault is held until the program has run a stop-the-world.
    pub const GATE_EVERY: u64 = 6;
    /// The new faults whose copy is raced against a pending REMOVE of the spare page: the
    /// `RACE_AT`th of every `GATE_EVERY`, midway between holds (a race waits while a hold's
    /// stop-the-world is pending, and is made at a later fault then).
    pub const RACE_AT: u64 = 3;

    /// Whether the `k`th new fault of `total` is raced (not near the end: a race that waits for a
    /// hold is made at a later fault).
    pub fn is_race(k: u64, total: u64) -> bool {
        k % GATE_EVERY == RACE_AT && k + GATE_EVERY <= total
    }

    pub fn plan(seed: u64) -> Plan {
        let shape = Shape {
            rounds: ROUNDS,
            workers: WORKERS,
            pages: PAGES,
            removals: (1, 2),
            span: (1, 3),
            cycles: (0, 1),
        };
        Plan::draw(seed, &shape)
    }

    /// The workload's `plan` lines.
    pub fn lines(plan: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        for (round, (r, c)) in plan.removals.iter().zip(&plan.cycles).enumerate() {
            for (worker, (ranges, cycles)) in r.iter().zip(c).enumerate() {
                let ranges: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                out.push(format!("plan {round} {worker} {cycles} {}", ranges.join(" ")).trim().to_string());
            }
        }
        out
    }

    pub fn holds(plan: &Plan) -> u64 {
        plan.faults() / GATE_EVERY
    }
    pub fn races(plan: &Plan) -> u64 {
        // A fault that is held is not raced as well.
        (1..=plan.faults()).filter(|k| is_race(*k, plan.faults())).count() as u64
    }
    pub fn checks() -> u64 {
        (WORKERS * PAGES * ROUNDS) as u64
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_work_is_fixed_by_the_seed_and_does_enough() {
            let (a, b) = (plan(SEED), plan(SEED));
            assert_eq!((a.removals.clone(), a.cycles.clone()), (b.removals, b.cycles));
            assert!(
                a.faults() >= 20 && a.refaults() >= 10,
                "{} faults, {} refaults",
                a.faults(),
                a.refaults()
            );
            assert!(holds(&a) >= 3 && races(&a) >= 3 && a.cycles() >= 3 && a.remove_calls() >= 5);
            // What the committed matrix's cells count (holds, forced races, cycles, REMOVE events).
            assert_eq!((holds(&a), races(&a), a.cycles(), a.remove_calls()), (3, 3, 3, 9));
            assert_eq!(lines(&a).len(), ROUNDS * WORKERS);
        }
    }
}

/// A fault the stress's server holds until the program has run a GC.
struct Held {
    page: usize,
    /// A GC stop-the-world stopped every P since it was held.
    stopped: bool,
    /// The faulting thread, and how often it retried the fault since it was held.
    tid: i32,
    retries: u64,
    /// When the retries reached [`STUCK_RETRIES`], the end of the quiet window after that.
    stuck_window: Option<Instant>,
}

/// How the gated-server stress's serving ended.
enum Ended {
    /// The workload's `result` line.
    Result(String),
    /// A held reader could not be stopped, so the program could not go on.
    Deadlock,
    /// Neither a message nor a line for the timeout.
    Stalled,
}

/// The gated-server stress's server: serves the workload's faults with their pages' current
/// versions ([`Pages`]), holds every `GATE_EVERY`th until the program ran a stop-the-world, and
/// races the planned ones against a REMOVE the workload's racer makes pending.
fn serve_go_stress(ctx: &Ctx, go: &Go, pages: &Pages, racer: i32, planned: u64) -> Result<Ended, Fail> {
    use plan::{is_race, GATE_EVERY};
    // Held faults, oldest first.
    let mut held: std::collections::VecDeque<Held> = Default::default();
    // A forced race's fault, copied once the racer waits on its REMOVE (the server does not
    // wait for the program: only the holds make it depend on the program).
    let mut racing: Option<usize> = None;
    // Races due but not yet made (one waits while a hold's stop-the-world is pending).
    let mut race_debt = 0u64;
    // `released` lines not yet acted on (a race in progress goes first: the hold's copy would
    // read the racer's REMOVE).
    let mut releases = 0u64;
    let mut pump = Pump::new(&go.uffd);
    let mut last_progress = Instant::now();
    let (plain, gated) =
        (Serve { raced: false, may_sabotage: false }, Serve { raced: false, may_sabotage: true });
    loop {
        // A hold whose GC has not stopped the world while its reader is retried unpreempted
        // (`STUCK_RETRIES`, then the quiet window with no stop): it cannot, and the program
        // cannot go on.
        if held.iter().any(|h| !h.stopped && h.stuck_window.is_some_and(|end| Instant::now() >= end)) {
            return Ok(Ended::Deadlock);
        }
        if last_progress.elapsed() > ctx.timeout {
            return Ok(Ended::Stalled);
        }
        if let Some(p) = racing {
            // A released hold waits for the race; the racer can run (the world does).
            let limit = if releases > 0 { ctx.timeout } else { Duration::ZERO };
            if threads::wait_until_task_in_uffd_wait(go.pid(), racer, limit) {
                racing = None;
                pages.counts().forced_races += 1;
                pages.serve(&mut pump, p, ctx.timeout, Serve { raced: true, may_sabotage: false })?;
                last_progress = Instant::now();
            }
        }
        while releases > 0 && racing.is_none() {
            let Some(Held { page: p, .. }) = held.pop_front() else {
                return Err(Fail::error("the workload released a hold the probe did not make"));
            };
            releases -= 1;
            pages.counts().released += 1;
            pages.serve(&mut pump, p, ctx.timeout, plain)?;
        }
        // While a race waits for the racer, the uffd is left unread: reading the racer's REMOVE
        // would let its MADV_DONTNEED return before the copy it is there to refuse.
        let fds = [go.proc.sock.as_fd(), go.uffd.as_fd()];
        let ready = poll::wait_any(&fds[..if racing.is_some() { 1 } else { 2 }], Duration::from_millis(10))
            .ctx("poll")?;
        if ready[0] {
            last_progress = Instant::now();
            let line = go.proc.line("a line", ctx.timeout)?;
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                // A stop-the-world stopped every P: the runtime can, with every held reader parked.
                ["stopped", _] => held.iter_mut().for_each(|h| h.stopped = true),
                ["released", _] => releases += 1,
                ["raced", _] => {}
                ["result", ..] => return Ok(Ended::Result(line)),
                _ => return Err(Fail::error(format!("the Go workload said {line:?}"))),
            }
        }
        if racing.is_some() {
            continue;
        }
        let Some(event) = pump.next(Duration::ZERO)? else { continue };
        last_progress = Instant::now();
        let Event::Pagefault { addr, thread_id, .. } = event else {
            pages.on_event(event);
            continue;
        };
        let tid = thread_id.as_raw();
        let Some(p) = pages.index(addr as usize) else { continue };
        if let Some(h) = held.iter_mut().find(|h| h.page == p) {
            // A retry of a held page (its thread left the fault for a signal handler).
            pages.counts().duplicates += 1;
            h.retries += u64::from(h.tid == tid);
            if h.retries == STUCK_RETRIES && h.stuck_window.is_none() {
                h.stuck_window = Some(Instant::now() + ctx.window);
            }
            continue;
        }
        if racing == Some(p) || pages.present(p) {
            // A retry of a page being raced, or already copied (whose copy woke it).
            pages.counts().duplicates += 1;
            continue;
        }
        let k = pages.fault(p);
        if k % GATE_EVERY == 0 {
            pages.counts().holds += 1;
            held.push_back(Held { page: p, stopped: false, tid, retries: 0, stuck_window: None });
            go.proc.send("hold");
            continue;
        }
        race_debt += u64::from(is_race(k, planned) && ctx.sabotage != Some(Sabotage::NoRace));
        // The racer needs the world running: not while a hold's stop-the-world is pending.
        if race_debt > 0 && held.iter().all(|h| h.stopped) {
            race_debt -= 1;
            go.proc.send("race");
            racing = Some(p);
            continue;
        }
        pages.serve(&mut pump, p, ctx.timeout, gated)?;
    }
}

/// The gated-server stress through `path`.
pub(super) fn stress(ctx: &Ctx, v: Variant) -> ProbeResult {
    v.access.require()?;
    let path = v.access.name();
    use plan::{PAGES, ROUNDS, SEED, WORKERS};
    let plan = plan::plan(SEED);
    let total = WORKERS * PAGES;
    let args = ["stress", path, &WORKERS.to_string(), &PAGES.to_string(), &ROUNDS.to_string()];
    let args: Vec<&str> = args.iter().map(|s| &**s).collect();
    let go = Go::start(&args, ctx.timeout)?;
    let word = |what: &str| -> Result<String, Fail> {
        let line = go.proc.line(what, ctx.timeout)?;
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [w, value] if w == what => Ok(value.to_string()),
            _ => Err(Fail::error(format!("the Go workload said {line:?} where `{what} <value>` was due"))),
        }
    };
    let base = usize::from_str_radix(word("region")?.trim_start_matches("0x"), 16)
        .map_err(|_| Fail::error("a bad region address"))?;
    let racer: i32 = word("racer")?.parse().map_err(|_| Fail::error("a bad racer tid"))?;
    for line in plan::lines(&plan) {
        go.proc.send(&line);
    }
    go.proc.send("go");
    let page = page_size();
    let pages = Pages::new(base, total, page, base + total * page, ctx.sabotage);
    let started = Instant::now();
    let ended = serve_go_stress(ctx, &go, &pages, racer, plan.faults())?;
    let elapsed = started.elapsed();
    let counts = pages.into_counts();
    let details = |o: Observation, c: &Counts| {
        o.with("go", go.version.as_str())
            .with("seed", format!("{SEED:#x}"))
            .with("faults_served", c.faults)
            .with("refaults", c.refaults)
            .with("duplicates", c.duplicates)
            .with("remove_events", c.removes)
            .with("eagain", c.eagains)
            .with("forced_races", c.forced_races)
            .with("forced_races_met_eagain", c.forced_eagains)
            .with("holds", c.holds)
            .with("elapsed_ms", elapsed.as_millis() as u64)
            .with("start_ms", go.started.as_millis() as u64)
    };
    let result = match ended {
        Ended::Stalled => {
            return Ok(Observation::new("stalled: neither a message nor a line for the timeout"))
        }
        Ended::Deadlock => {
            let cpu = go.end(ctx.timeout);
            return Ok(details(Observation::new("deadlocks"), &counts).with("workload_cpu_ms", cpu));
        }
        Ended::Result(line) => line,
    };
    let field = |name: &str| -> String {
        result
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(String::from))
            .unwrap_or_default()
    };
    let number = |name: &str| field(name).parse::<u64>().unwrap_or(0);
    let cpu = go.end(ctx.timeout);
    if field("populate") != "0" {
        let o = Observation::new(format!("MADV_POPULATE_READ failed: {}", errno_word(&field("populate"))));
        return Ok(details(o, &counts));
    }
    shortfall(&[
        ("pages checked", number("checked"), plan::checks()),
        ("faults served", counts.faults, plan.faults()),
        ("refaults after removal", counts.refaults, plan.refaults()),
        ("REMOVE events", counts.removes, plan.remove_calls()),
        ("stop-the-world cycles", number("cycles"), plan.cycles()),
        ("holds released", counts.released, plan::holds(&plan)),
        ("forced races", counts.forced_races, plan::races(&plan)),
    ])?;
    let observed = if !counts.odd.is_empty() {
        format!("unexpected message: {}", counts.odd[0])
    } else {
        found(number("lost"), number("stale"), number("wrong"), "completes, no lost or stale page")
    };
    Ok(details(Observation::new(observed), &counts)
        .with("stw_cycles", number("cycles"))
        .with("workload_cpu_ms", cpu))
}

//! What the columns of a run share while each goes its own way (`pipeline.rs`): the machine's
//! cores, split between the guests and the one build at a time ([`Cores`]), the builds' turns
//! ([`Turns`]: selftests first) and the download slots ([`Slots`]).
//!
//! The rule for the cores: a guest counts as one core (single-threaded TCG, the default, runs all
//! of a guest's vCPUs on one host thread), a build as the `make -j` it was given.
//! - A guest boots when fewer than `--jobs` guests run and the build compiling (if any) leaves it
//!   a core. Without a build, `--jobs` alone limits the guests, as it always did.
//! - A build's compile starts when no guest that is ready could take a free core and at least
//!   two thirds of the machine's cores are free (one, for a selftests build, which runs one
//!   compiler at a time); it gets every core no guest is using at its start, and keeps them until
//!   it ends (`make -j` is fixed when make starts).
//!
//! So guests go first: a guest takes tens of seconds and brings cells; a build takes minutes and
//! brings none, and the cores it finds free are all it may use, so the two never oversubscribe
//! the machine. A kernel build waits for the running guests rather than start on a third of the
//! machine: on two cores, a compile started beside one guest ran `make -j1` for all of its
//! minutes, and the guest was gone after twenty seconds. At most one build compiles at a time (the builds' file lock); downloads take no
//! core and never wait behind a compile.

use std::sync::{Condvar, Mutex, MutexGuard};

/// The machine's cores, shared by the guests and the build compiling.
pub struct Cores {
    cores: usize,
    jobs: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    /// Guests running.
    guests: usize,
    /// Guests ready and waiting to boot.
    ready: usize,
    /// Cores the build compiling holds.
    build: usize,
}

/// Cores held until dropped.
pub struct Lease<'a> {
    of: &'a Cores,
    guest: bool,
    /// How many (a guest's is 1).
    pub cores: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut s = self.of.lock();
        if self.guest {
            s.guests -= 1;
        } else {
            s.build -= self.cores;
        }
        self.of.changed.notify_all();
    }
}

impl Cores {
    /// `cores` on the machine, `jobs` guests at most at once.
    pub fn new(cores: usize, jobs: usize) -> Cores {
        Cores { cores: cores.max(1), jobs: jobs.max(1), state: Mutex::default(), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a guest may boot now, or what it waits for.
    fn guest_may_boot(&self, s: &State) -> Result<(), String> {
        if s.guests >= self.jobs {
            Err(format!("a free guest slot ({} guests at once: --jobs)", self.jobs))
        } else if s.build > 0 && s.build + s.guests >= self.cores {
            Err(format!("a free core (a build compiles with {})", s.build))
        } else {
            Ok(())
        }
    }

    /// How many cores a build wanting `want` gets now, or what it waits for.
    fn build_may_start(&self, s: &State, want: usize) -> Result<usize, String> {
        let free = self.cores.saturating_sub(s.guests + s.build);
        // What is worth starting with: `make -j` is fixed for the whole compile.
        let enough = want.min((self.cores * 2).div_ceil(3)).max(1);
        if s.build > 0 {
            Err("another build's cores".to_string())
        } else if s.ready > 0 && self.guest_may_boot(s).is_ok() {
            Err(format!("{} guests ready to boot first", s.ready))
        } else if free < enough {
            Err(format!("{enough} free cores ({} guests running)", s.guests))
        } else {
            Ok(want.min(free))
        }
    }

    /// A guest's core: waits (telling `waiting` what for, once) until it may boot.
    pub fn guest(&self, waiting: impl FnOnce(&str)) -> Lease<'_> {
        let mut waiting = Some(waiting);
        let mut s = self.lock();
        s.ready += 1;
        while let Err(why) = self.guest_may_boot(&s) {
            if let Some(tell) = waiting.take() {
                tell(&why);
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.ready -= 1;
        s.guests += 1;
        Lease { of: self, guest: true, cores: 1 }
    }

    /// A build's cores, at most `want`: waits (telling `waiting` what for, once) until it may
    /// start.
    pub fn build(&self, want: usize, waiting: impl FnOnce(&str)) -> Lease<'_> {
        let mut waiting = Some(waiting);
        let mut s = self.lock();
        loop {
            match self.build_may_start(&s, want) {
                Ok(n) => {
                    s.build += n;
                    return Lease { of: self, guest: false, cores: n };
                }
                Err(why) => {
                    if let Some(tell) = waiting.take() {
                        tell(&why);
                    }
                    s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }
}

/// The one build at a time (kernels and selftests; the builds' file lock makes it one per machine),
/// the short ones first: a column's own selftests (about a minute, and then the column boots)
/// go before a kernel build (minutes), and a kernel build also waits until every column counted
/// as `pending` (the Debian columns, on disk in seconds) has had its selftests: so the Debian
/// columns boot while the kernels compile.
#[derive(Default)]
pub struct Turns {
    state: Mutex<Turn>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Turn {
    busy: bool,
    /// Selftests builds waiting for their turn.
    short: usize,
    /// Columns whose selftests come before any kernel build.
    pending: usize,
}

/// A turn held, or a pending column not yet through its selftests, until dropped.
pub struct TurnGuard<'a> {
    of: &'a Turns,
    held: bool,
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut t = self.of.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.held {
            t.busy = false;
        } else {
            t.pending -= 1;
        }
        self.of.changed.notify_all();
    }
}

impl Turns {
    /// A column whose selftests come before any kernel build, until the guard is dropped.
    pub fn pending(&self) -> TurnGuard<'_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pending += 1;
        TurnGuard { of: self, held: false }
    }

    /// The turn of a selftests build (`short`) or a kernel build: waits (telling `waiting` what
    /// for, once) until it is its.
    pub fn take(&self, short: bool, waiting: impl FnOnce(&str)) -> TurnGuard<'_> {
        let mut waiting = Some(waiting);
        let mut t = self.state.lock().unwrap_or_else(|e| e.into_inner());
        t.short += usize::from(short);
        loop {
            let why = if t.busy {
                "another build (one at a time)"
            } else if !short && t.short + t.pending > 0 {
                "the Debian columns' selftests, built first"
            } else {
                break;
            };
            if let Some(tell) = waiting.take() {
                tell(why);
            }
            t = self.changed.wait(t).unwrap_or_else(|e| e.into_inner());
        }
        t.short -= usize::from(short);
        t.busy = true;
        TurnGuard { of: self, held: true }
    }
}

/// At most `n` at once (the downloads).
pub struct Slots {
    free: Mutex<usize>,
    changed: Condvar,
}

/// A slot held until dropped.
pub struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.changed.notify_one();
    }
}

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots { free: Mutex::new(n.max(1)), changed: Condvar::new() }
    }

    /// A slot: waits (telling `waiting` first, once) until one is free.
    pub fn take(&self, waiting: impl FnOnce()) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            waiting();
        }
        while *free == 0 {
            free = self.changed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule, step by step on two cores and two guest slots.
    #[test]
    fn guests_go_first_and_a_build_gets_the_cores_no_guest_uses() {
        let cores = Cores::new(2, 2);
        // Nothing runs: a build gets both cores, and a guest then waits for it.
        let build = cores.build(8, |why| panic!("waited for {why}"));
        assert_eq!(build.cores, 2);
        let s = State { build: 2, ..State::default() };
        assert!(cores.guest_may_boot(&s).unwrap_err().contains("a build compiles with 2"));
        drop(build);
        assert_eq!(*cores.lock(), State::default(), "the lease gave its cores back");
        // One guest runs: a kernel build waits for it (one core is half the machine), a selftests
        // build (one compiler at a time) takes the other core.
        let guest = cores.guest(|why| panic!("waited for {why}"));
        let waits = cores.build_may_start(&cores.lock(), 8).unwrap_err();
        assert!(waits.contains("2 free cores (1 guests running)"), "{waits}");
        assert_eq!(cores.build(1, |why| panic!("waited for {why}")).cores, 1);
        assert_eq!(Cores::new(3, 2).build_may_start(&State { guests: 1, ..State::default() }, 8), Ok(2));
        // Two guests run: no core is free; with one guest and another ready, the ready one goes
        // first; with the slots full, a ready guest does not hold a build back.
        let second = cores.guest(|why| panic!("waited for {why}"));
        assert!(cores.build_may_start(&cores.lock(), 8).is_err());
        drop(second);
        let ready = State { guests: 1, ready: 1, build: 0 };
        assert!(cores.build_may_start(&ready, 8).unwrap_err().contains("1 guests ready to boot first"));
        let full = Cores::new(4, 1);
        assert_eq!(full.build_may_start(&State { guests: 1, ready: 3, build: 0 }, 8), Ok(3));
        // A second build never starts while one compiles.
        assert!(full.build_may_start(&State { guests: 0, ready: 0, build: 1 }, 8).is_err());
        // More guest slots than cores: without a build, --jobs alone limits the guests.
        let many = Cores::new(2, 4);
        assert!(many.guest_may_boot(&State { guests: 3, ..State::default() }).is_ok());
        assert!(many
            .guest_may_boot(&State { guests: 4, ..State::default() })
            .unwrap_err()
            .contains("--jobs"));
        drop(guest);
    }

    /// Selftests go before a kernel build, and a kernel build waits for the pending columns.
    #[test]
    fn selftests_builds_go_first() {
        let turns = Turns::default();
        let pending = turns.pending();
        let order = Mutex::new(Vec::new());
        let (told, heard) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let kernel = s.spawn(|| {
                let _turn = turns.take(false, |why| told.send(why.to_string()).unwrap());
                order.lock().unwrap().push("kernel");
            });
            assert_eq!(heard.recv().unwrap(), "the Debian columns' selftests, built first");
            let turn = turns.take(true, |why| panic!("waited for {why}"));
            order.lock().unwrap().push("selftests");
            drop(turn);
            drop(pending);
            kernel.join().unwrap();
        });
        assert_eq!(order.into_inner().unwrap(), ["selftests", "kernel"]);
    }

    /// A guest waiting on a build boots when the build gives its cores back.
    #[test]
    fn a_waiting_guest_boots_when_the_build_ends() {
        let cores = Cores::new(1, 2);
        let build = cores.build(4, |why| panic!("waited for {why}"));
        let (told, heard) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let guest = s.spawn(|| {
                let _lease = cores.guest(|why| told.send(why.to_string()).unwrap());
            });
            let why = heard.recv().unwrap();
            assert!(why.contains("a free core"), "{why}");
            drop(build);
            guest.join().unwrap();
        });
        let slots = &Slots::new(1);
        let one = slots.take(|| panic!("the first slot is free"));
        std::thread::scope(|s| {
            let (told, heard) = std::sync::mpsc::channel();
            let second = s.spawn(move || drop(slots.take(|| told.send(()).unwrap())));
            heard.recv().unwrap();
            drop(one);
            second.join().unwrap();
        });
    }
}

//! The stress kit, one for every seeded stress (`stw.parallel_stress` in this process,
//! `stw.go_stress_*` against the Go workload): the work drawn from a seed ([`Plan`]), the server
//! that hands out versioned pages under the EAGAIN protocol and bumps a page's version when a
//! REMOVE takes it away ([`Pages`]), what it counted ([`Counts`]), the self-tests' deliberate
//! mistake ([`Sabotage`]), the check that the stress did what it planned ([`shortfall`]) and the
//! wording of what its checkers found ([`PageCheck`], [`found`]).

use crate::kit::memory;
use crate::kit::outcome::{Fail, Sabotage};
use crate::kit::uffd::{describe_kind, Copied, Event, Pump};
use std::cell::RefCell;
use std::time::Duration;

/// splitmix64: a small, well-mixed generator whose sequence is fixed by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The shape of a seeded stress's work: `rounds` rounds of `workers` workers, each owning
/// `pages` pages; after each round but the last, each worker removes `removals` (lo..=hi)
/// disjoint ranges of `span` (lo..=hi) pages, then runs `cycles` (lo..=hi) stop-the-world
/// cycles.
pub struct Shape {
    pub rounds: usize,
    pub workers: usize,
    pub pages: usize,
    pub removals: (u64, u64),
    pub span: (u64, u64),
    pub cycles: (u64, u64),
}

/// A stress's work, drawn from its seed and [`Shape`]: the same on every run and every kernel, so
/// that its counts are too (only timings vary).
pub struct Plan {
    /// `removals[round][worker]`: page ranges `[a, b)` within the worker's block, removed with
    /// MADV_DONTNEED after that worker checked that round (disjoint within a round).
    pub removals: Vec<Vec<Vec<(usize, usize)>>>,
    /// `cycles[round][worker]`: stop-the-world cycles run after those removals.
    pub cycles: Vec<Vec<u64>>,
    /// The workers' pages, all blocks together.
    pub pages: usize,
}

impl Plan {
    pub fn draw(seed: u64, shape: &Shape) -> Plan {
        let mut rng = Rng::new(seed);
        let (mut removals, mut cycles) = (Vec::new(), Vec::new());
        for round in 0..shape.rounds {
            let (mut r, mut c) = (Vec::new(), Vec::new());
            for _ in 0..shape.workers {
                let mut taken = vec![false; shape.pages];
                let mut ranges = Vec::new();
                // None after the last round: nothing would refault them.
                let wanted = if round + 1 < shape.rounds {
                    rng.between(shape.removals.0, shape.removals.1)
                } else {
                    0
                };
                for _ in 0..wanted {
                    let a = rng.between(0, shape.pages as u64 - 1) as usize;
                    let b = (a + rng.between(shape.span.0, shape.span.1) as usize).min(shape.pages);
                    if taken[a..b].iter().all(|t| !t) {
                        taken[a..b].iter_mut().for_each(|t| *t = true);
                        ranges.push((a, b));
                    }
                }
                r.push(ranges);
                c.push(rng.between(shape.cycles.0, shape.cycles.1));
            }
            removals.push(r);
            cycles.push(c);
        }
        Plan { removals, cycles, pages: shape.workers * shape.pages }
    }

    /// MADV_DONTNEED calls, each raising one REMOVE event.
    pub fn remove_calls(&self) -> u64 {
        self.removals.iter().flatten().map(|r| r.len() as u64).sum()
    }

    /// Pages removed; each is faulted in again by the next round.
    pub fn refaults(&self) -> u64 {
        self.removals.iter().flatten().flatten().map(|(a, b)| (b - a) as u64).sum()
    }

    /// Faults the server must see: every page once, then every removed page again.
    pub fn faults(&self) -> u64 {
        self.pages as u64 + self.refaults()
    }

    pub fn cycles(&self) -> u64 {
        self.cycles.iter().flatten().sum()
    }
}

/// What a stress's server counted.
#[derive(Default, Debug)]
pub struct Counts {
    /// Faults served: every page's first, and every refault after a removal.
    pub faults: u64,
    pub refaults: u64,
    /// Faults on a page already served or being served (a retry).
    pub duplicates: u64,
    /// REMOVE events for the workers' pages.
    pub removes: u64,
    pub eagains: u64,
    pub eexist: u64,
    /// Copies raced against a pending REMOVE on purpose, and those of them that met EAGAIN.
    pub forced_races: u64,
    pub forced_eagains: u64,
    /// Faults held until the program ran a stop-the-world, and those released.
    pub holds: u64,
    pub released: u64,
    /// Messages the plan does not explain (a REMOVE of an odd range, another event, a fault
    /// outside the workers' pages).
    pub odd: Vec<String>,
}

/// How a copy of [`Pages::serve`] stands to the stress's plan.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Serve {
    /// A forced race: the copy is made while a REMOVE is pending on purpose.
    pub raced: bool,
    /// The self-tests' deliberate mistake may be made on this copy (once, on a refault).
    pub may_sabotage: bool,
}

struct State {
    /// Per page, the version it must hold: a REMOVE read bumps its pages'.
    versions: Vec<u64>,
    /// Per page, whether the server copied it since its last removal.
    present: Vec<bool>,
    counts: Counts,
    sabotaged: bool,
}

/// The versioned page server of a stress: the workers' `pages` pages from `base`, and a spare
/// page whose REMOVE (made by the stress's racer) only makes copies meet EAGAIN.
pub struct Pages {
    base: usize,
    page: usize,
    spare: usize,
    sabotage: Option<Sabotage>,
    state: RefCell<State>,
}

impl Pages {
    pub fn new(base: usize, pages: usize, page: usize, spare: usize, sabotage: Option<Sabotage>) -> Pages {
        let state = State {
            versions: vec![1; pages],
            present: vec![false; pages],
            counts: Counts::default(),
            sabotaged: false,
        };
        Pages { base, page, spare, sabotage, state: RefCell::new(state) }
    }

    /// The page `addr` falls in, or `None` (counted as odd) outside the workers' pages.
    pub fn index(&self, addr: usize) -> Option<usize> {
        let pages = self.state.borrow().versions.len();
        match addr.checked_sub(self.base).map(|o| o / self.page) {
            Some(p) if p < pages => Some(p),
            _ => {
                self.odd(format!("a fault outside the workers' pages ({addr:#x})"));
                None
            }
        }
    }

    /// A message that is not a fault: a REMOVE of workers' pages makes them missing and bumps
    /// their version (the spare page's only makes copies meet EAGAIN); anything else is odd.
    pub fn on_event(&self, e: Event) {
        let state = &mut *self.state.borrow_mut();
        match e {
            Event::Remove { start, .. } if start as usize == self.spare => {}
            Event::Remove { start, end } => {
                let page = |a: u64| (a as usize).wrapping_sub(self.base) / self.page;
                let (a, b) = (page(start as u64), page(end as u64));
                if a >= b || b > state.versions.len() {
                    state.counts.odd.push(format!("REMOVE of pages [{a},{b})"));
                } else {
                    state.counts.removes += 1;
                    state.versions[a..b].iter_mut().for_each(|v| *v += 1);
                    state.present[a..b].iter_mut().for_each(|p| *p = false);
                }
            }
            other => state.counts.odd.push(describe_kind(&other)),
        }
    }

    /// Counts a new fault on page `p` (a refault when it was removed since its first); returns
    /// its number, from 1.
    pub fn fault(&self, p: usize) -> u64 {
        let state = &mut *self.state.borrow_mut();
        state.counts.faults += 1;
        state.counts.refaults += u64::from(state.versions[p] > 1);
        state.counts.faults
    }

    /// Whether page `p` was copied since its last removal (a fault on it is a retry).
    pub fn present(&self, p: usize) -> bool {
        self.state.borrow().present[p]
    }

    pub fn odd(&self, what: String) {
        self.state.borrow_mut().counts.odd.push(what);
    }

    /// The counts so far, to add to.
    pub fn counts(&self) -> std::cell::RefMut<'_, Counts> {
        std::cell::RefMut::map(self.state.borrow_mut(), |s| &mut s.counts)
    }

    /// Copies page `p`'s current version under the EAGAIN protocol (a REMOVE read while the copy
    /// is refused bumps it, and the retry copies the new one), reading every other message
    /// through [`Pages::on_event`]; counts what the copy met.
    pub fn serve(&self, pump: &mut Pump<'_>, p: usize, limit: Duration, how: Serve) -> Result<Copied, Fail> {
        let mistake = {
            let state = &mut *self.state.borrow_mut();
            let mistake = self.sabotage.filter(|s| {
                how.may_sabotage && *s != Sabotage::NoRace && state.versions[p] > 1 && !state.sabotaged
            });
            state.sabotaged |= mistake.is_some();
            mistake
        };
        let page = self.page;
        let data = || match (mistake, self.state.borrow().versions[p]) {
            (Some(Sabotage::ZeroPage), _) => vec![0u8; page],
            (Some(Sabotage::StalePage), v) => memory::versioned_page(v - 1, page),
            (_, v) => memory::versioned_page(v, page),
        };
        let copied = pump.copy(self.base + p * page, limit, data, |e| self.on_event(e))?;
        let state = &mut *self.state.borrow_mut();
        state.counts.eagains += copied.eagains;
        state.counts.eexist += u64::from(copied.eexist);
        state.counts.forced_eagains += u64::from(how.raced && copied.eagains > 0);
        state.present[p] = true;
        Ok(copied)
    }

    pub fn into_counts(self) -> Counts {
        self.state.into_inner().counts
    }
}

/// `Err` naming every count below what the plan made due: the scenario must have happened as
/// planned before its outcome means anything.
pub fn shortfall(counts: &[(&str, u64, u64)]) -> Result<(), Fail> {
    let short: Vec<String> = counts
        .iter()
        .filter(|(_, got, want)| got < want)
        .map(|(what, got, want)| format!("{what} {got} of {want}"))
        .collect();
    if short.is_empty() {
        Ok(())
    } else {
        Err(Fail::error(format!("the stress fell short of its schedule: {}", short.join(", "))))
    }
}

/// What a checker found when it read a page against the version the plan says it must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PageCheck {
    Good,
    /// All zero: the content was lost.
    Lost,
    /// An older version than the last completed removal made current.
    Stale,
    /// Anything else (a newer version, or a torn page).
    Wrong,
}

/// Reads the present page at `addr` (of `page` bytes) against `expected`.
pub fn check_page(addr: usize, page: usize, expected: u64) -> PageCheck {
    let words = page / 8;
    // SAFETY: callers pass a present page of their region (the populate returned).
    let word = |i: usize| unsafe { std::ptr::read_volatile((addr as *const u64).add(i)) };
    let (first, mid, last) = (word(0), word(words / 2), word(words - 1));
    if first == 0 && mid == 0 && last == 0 {
        PageCheck::Lost
    } else if first != mid || first != last {
        PageCheck::Wrong
    } else if first < expected {
        PageCheck::Stale
    } else if first > expected {
        PageCheck::Wrong
    } else {
        PageCheck::Good
    }
}

/// The observation for what the checkers found: `clean` when no page was lost, stale or wrong,
/// else `2 lost pages, 1 stale page`.
pub fn found(lost: u64, stale: u64, wrong: u64, clean: &str) -> String {
    if lost + stale + wrong == 0 {
        return clean.to_string();
    }
    let plural = |n: u64, what: &str| format!("{n} {what} page{}", if n == 1 { "" } else { "s" });
    [(lost, "lost"), (stale, "stale"), (wrong, "wrong")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| plural(*n, what))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_fixed_by_its_seed_with_disjoint_removals() {
        let shape =
            Shape { rounds: 8, workers: 3, pages: 16, removals: (1, 3), span: (1, 5), cycles: (0, 2) };
        let (a, b) = (Plan::draw(7, &shape), Plan::draw(7, &shape));
        assert_eq!((&a.removals, &a.cycles), (&b.removals, &b.cycles));
        assert_ne!(Plan::draw(8, &shape).removals, a.removals);
        assert!(a.removals.last().unwrap().iter().all(|r| r.is_empty()), "none after the last round");
        assert_eq!(a.faults(), 48 + a.refaults());
        for ranges in a.removals.iter().flatten() {
            for (i, (x, y)) in ranges.iter().enumerate() {
                assert!(x < y && *y <= 16);
                assert!(ranges[i + 1..].iter().all(|(p, q)| q <= x || p >= y), "disjoint: {ranges:?}");
            }
        }
    }

    #[test]
    fn a_remove_bumps_its_pages_and_odd_messages_are_kept() {
        let pages = Pages::new(0x10000, 4, 0x1000, 0x20000, None);
        assert_eq!(pages.index(0x11000), Some(1));
        assert_eq!(pages.fault(1), 1);
        pages.on_event(Event::Remove { start: 0x11000 as _, end: 0x13000 as _ });
        pages.on_event(Event::Remove { start: 0x20000 as _, end: 0x21000 as _ });
        assert_eq!(pages.index(0x14000), None);
        assert_eq!(pages.fault(2), 2);
        pages.on_event(Event::Remove { start: 0x13000 as _, end: 0x13000 as _ });
        let state = pages.state.borrow();
        assert_eq!(state.versions, [1, 2, 2, 1]);
        assert_eq!((state.counts.removes, state.counts.refaults), (1, 1));
        assert_eq!(
            state.counts.odd,
            ["a fault outside the workers' pages (0x14000)", "REMOVE of pages [3,3)"]
        );
    }

    #[test]
    fn findings_are_worded_by_kind() {
        assert_eq!(found(0, 0, 0, "fine"), "fine");
        assert_eq!(found(2, 1, 0, "fine"), "2 lost pages, 1 stale page");
        assert!(shortfall(&[("faults", 3, 3)]).is_ok());
        let e = shortfall(&[("faults", 2, 3), ("cycles", 4, 3)]).unwrap_err().to_string();
        assert_eq!(e, "the stress fell short of its schedule: faults 2 of 3");
    }
}

//! The live progress display of `cargo xtask matrix`: one line per kernel (waiting and on what,
//! fetching, building and what, booting, running n/m, done) with its elapsed time, redrawn in place on a terminal and printed
//! as plain lines, one per change of stage, elsewhere (CI logs). It is driven by the pipeline's
//! run events.

use crate::boot::pipeline::RunEvent;
use crate::boot::runner::Event;
use model::stream::Record;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Planned (empty), or waiting for what it names (a download slot, a free guest slot...).
    Waiting(String),
    Fetching,
    /// Building from source (`builds.rs`): what it is doing now.
    Building(String),
    /// QEMU (or the host's suite) started as `pid`, on this attempt to boot.
    Booting {
        attempt: u32,
        pid: Option<u32>,
    },
    Running {
        done: usize,
        planned: usize,
    },
    Done(String),
    Failed(String),
}

impl Stage {
    fn word(&self) -> &'static str {
        match self {
            Stage::Waiting(_) => "waiting",
            Stage::Fetching => "fetching",
            Stage::Building(_) => "building",
            Stage::Booting { .. } => "booting",
            Stage::Running { .. } => "running",
            Stage::Done(_) => "done",
            Stage::Failed(_) => "failed",
        }
    }
}

struct Line {
    id: String,
    stage: Stage,
    since: Instant,
    printed: Option<String>,
}

pub struct Progress {
    lines: Mutex<Vec<Line>>,
    tty: bool,
    drawn: Mutex<usize>,
    stop: AtomicBool,
}

impl Progress {
    /// A display drawn by a thread of its own until [`Progress::finish`].
    pub fn start() -> Arc<Progress> {
        let progress = Arc::new(Progress {
            lines: Mutex::new(Vec::new()),
            tty: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
            drawn: Mutex::new(0),
            stop: AtomicBool::new(false),
        });
        let p = progress.clone();
        std::thread::spawn(move || {
            while !p.stop.load(Ordering::SeqCst) {
                p.draw();
                // A display refresh, not synchronisation: nothing waits on it.
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        progress
    }

    /// Takes one of the pipeline's events.
    pub fn observe(&self, event: &RunEvent<'_>) {
        match event {
            RunEvent::Planned(ids) => {
                for id in ids.iter() {
                    self.set(id, Stage::Waiting(String::new()));
                }
            }
            RunEvent::Fetching(id) => self.set(id, Stage::Fetching),
            RunEvent::Building(id, what) => self.set(id, Stage::Building(what.to_string())),
            RunEvent::Waiting(id, what) => self.set(id, Stage::Waiting(what.to_string())),
            RunEvent::Booting(id) => self.set(id, Stage::Booting { attempt: 1, pid: None }),
            RunEvent::Run(id, Event::Spawned { attempt, pid }) => {
                self.set(id, Stage::Booting { attempt: *attempt, pid: Some(*pid) })
            }
            RunEvent::Run(id, Event::Retrying { reason, .. }) => {
                eprintln!("{id:<20} boot failed before the suite started, booting again: {reason}");
            }
            RunEvent::Run(id, Event::Record(Record::Start { planned, .. })) => {
                self.set(id, Stage::Running { done: 0, planned: planned.len() })
            }
            RunEvent::Run(id, Event::Record(Record::Cell { .. })) => self.update(id, |stage| {
                if let Stage::Running { done, .. } = stage {
                    *done += 1;
                }
            }),
            RunEvent::Run(..) => {}
            RunEvent::Done(id, results, logs) => {
                self.set(id, Stage::Done(crate::boot::runner::brief(results, logs)))
            }
            RunEvent::Failed(id, error) => self.set(id, Stage::Failed(error.to_string())),
        }
    }

    fn set(&self, id: &str, stage: Stage) {
        self.update(id, |s| *s = stage)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Stage)) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let line = match lines.iter().position(|l| l.id == id) {
            Some(i) => &mut lines[i],
            None => {
                lines.push(Line {
                    id: id.to_string(),
                    stage: Stage::Waiting(String::new()),
                    since: Instant::now(),
                    printed: None,
                });
                lines.last_mut().expect("just pushed")
            }
        };
        let before = line.stage.word();
        change(&mut line.stage);
        if line.stage.word() != before && !matches!(line.stage, Stage::Done(_) | Stage::Failed(_)) {
            line.since = Instant::now();
        }
    }

    pub fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.draw();
    }

    fn draw(&self) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let text = |l: &Line| {
            let secs = l.since.elapsed().as_secs_f64();
            match &l.stage {
                Stage::Running { done, planned } => {
                    format!("{:<20} running {done}/{planned}  {secs:5.1}s", l.id)
                }
                Stage::Booting { attempt, pid: Some(pid) } => {
                    let nth = if *attempt > 1 { format!(", attempt {attempt}") } else { String::new() };
                    format!("{:<20} booting  {secs:5.1}s (pid {pid}{nth})", l.id)
                }
                Stage::Done(s) | Stage::Failed(s) => format!("{:<20} {:<8} {s}", l.id, l.stage.word()),
                Stage::Building(what) => format!("{:<20} building {secs:5.1}s {what}", l.id),
                Stage::Waiting(what) if !what.is_empty() => {
                    format!("{:<20} waiting  {secs:5.1}s for {what}", l.id)
                }
                other => format!("{:<20} {:<8} {secs:5.1}s", l.id, other.word()),
            }
        };
        let mut err = std::io::stderr().lock();
        if self.tty {
            let mut drawn = self.drawn.lock().unwrap_or_else(|e| e.into_inner());
            if *drawn > 0 {
                let _ = write!(err, "\x1b[{}A", *drawn);
            }
            for l in lines.iter() {
                let _ = writeln!(err, "\x1b[2K{}", text(l));
            }
            *drawn = lines.len();
        } else {
            for l in lines.iter_mut() {
                // One line per change of stage (attempts count as changes).
                let key = match &l.stage {
                    Stage::Booting { attempt, .. } => format!("booting {attempt}"),
                    Stage::Building(what) => format!("building {what}"),
                    Stage::Waiting(what) => format!("waiting {what}"),
                    other => other.word().to_string(),
                };
                if l.printed.as_deref() != Some(key.as_str()) && l.stage != Stage::Waiting(String::new()) {
                    let _ = writeln!(err, "{}", text(l));
                    l.printed = Some(key);
                }
            }
        }
    }
}

//! The live progress display of `cargo xtask matrix`: one line per kernel (waiting, fetching,
//! booting, running n/m, done) with its elapsed time, redrawn in place on a terminal and printed
//! as plain lines, one per change of stage, elsewhere (CI logs).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    Waiting,
    Fetching,
    Booting,
    Running { done: usize, planned: usize },
    Done(String),
    Failed(String),
}

impl Stage {
    fn word(&self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Fetching => "fetching",
            Stage::Booting => "booting",
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
    /// The results stream of a guest being watched for `running n/m`.
    stream: Option<PathBuf>,
    printed: Option<&'static str>,
}

pub struct Progress {
    lines: Mutex<Vec<Line>>,
    tty: bool,
    drawn: Mutex<usize>,
    stop: AtomicBool,
}

impl Progress {
    /// A display for these kernel ids, drawn by a thread of its own until [`Progress::finish`].
    pub fn start(ids: &[String]) -> Arc<Progress> {
        let now = Instant::now();
        let progress = Arc::new(Progress {
            lines: Mutex::new(
                ids.iter()
                    .map(|id| Line {
                        id: id.clone(),
                        stage: Stage::Waiting,
                        since: now,
                        stream: None,
                        printed: None,
                    })
                    .collect(),
            ),
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

    pub fn set(&self, id: &str, stage: Stage) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = lines.iter_mut().find(|l| l.id == id) {
            if line.stage.word() != stage.word() && !matches!(stage, Stage::Done(_) | Stage::Failed(_)) {
                line.since = Instant::now();
            }
            line.stage = stage;
        } else {
            lines.push(Line {
                id: id.to_string(),
                stage,
                since: Instant::now(),
                stream: None,
                printed: None,
            });
        }
    }

    /// Watches a guest's results stream to show how far its suite is.
    pub fn watch(&self, id: &str, stream: PathBuf) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = lines.iter_mut().find(|l| l.id == id) {
            line.stream = Some(stream);
        }
    }

    pub fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.draw();
    }

    fn draw(&self) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        for line in lines.iter_mut() {
            if let (Some(stream), Stage::Booting | Stage::Running { .. }) = (&line.stream, &line.stage) {
                let decoded = matrix::stream::decode(&String::from_utf8_lossy(
                    &std::fs::read(stream).unwrap_or_default(),
                ));
                if decoded.start.is_some() {
                    line.stage =
                        Stage::Running { done: decoded.cells.len(), planned: decoded.planned().len() };
                }
            }
        }
        let text = |l: &Line| {
            let secs = l.since.elapsed().as_secs_f64();
            match &l.stage {
                Stage::Running { done, planned } => {
                    format!("{:<20} running {done}/{planned}  {secs:5.1}s", l.id)
                }
                Stage::Done(s) | Stage::Failed(s) => format!("{:<20} {:<8} {s}", l.id, l.stage.word()),
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
                let word = l.stage.word();
                if l.printed != Some(word) && l.stage != Stage::Waiting {
                    let _ = writeln!(err, "{}", text(l));
                    l.printed = Some(word);
                }
            }
        }
    }
}

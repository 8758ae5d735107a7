//! System-wide settings (`/proc/sys`) that probes read or change, under one lock, with a journal
//! that puts back whatever a killed process left changed.
//!
//! The journal is the lock file itself: one line per changed setting, `<pid>\t<path>\t<old value>`,
//! written before the change. Whoever takes the lock puts back the settings of journal lines whose
//! process is gone (a probe the watchdog killed, a suite that was killed), so a host is left as it
//! was found whatever happens to the process that changed it.

use std::io::{Read, Seek, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// A setting held by a probe under the settings lock, which every probe that reads or changes a
/// global setting takes for the whole time it does (trials run in parallel). Dropping the hold
/// puts the setting back.
pub struct Setting {
    path: String,
    value: String,
    changed: std::cell::Cell<bool>,
    lock: Lock,
}

impl Setting {
    /// Takes the settings lock and reads `/proc/sys/<name>`; `None` when the setting does not
    /// exist on this kernel.
    pub fn hold(name: &str) -> std::io::Result<Option<Setting>> {
        let lock = Lock::take()?;
        let path = format!("/proc/sys/{name}");
        let Ok(value) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        Ok(Some(Setting { path, value: value.trim().to_string(), changed: false.into(), lock }))
    }

    /// The value when the hold was taken.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Changes the setting (journalled first, so that it is put back whatever happens to us).
    pub fn set(&self, value: &str) -> std::io::Result<()> {
        if !self.changed.get() {
            self.lock.journal(&self.path, &self.value)?;
            self.changed.set(true);
        }
        std::fs::write(&self.path, value)?;
        if HANG_AFTER_SETTING.load(Ordering::SeqCst) && value != self.value {
            // Self-test: the watchdog kills us now, with the setting changed.
            loop {
                std::thread::park();
            }
        }
        Ok(())
    }
}

impl Drop for Setting {
    fn drop(&mut self) {
        if self.changed.get() && std::fs::write(&self.path, &self.value).is_ok() {
            let _ = self.lock.forget(&self.path);
        }
    }
}

/// Self-test (`--inject-fault setting-hang=ID`): a probe blocks forever right after changing a
/// system setting, so the tests can prove the suite puts it back after the watchdog's kill.
pub static HANG_AFTER_SETTING: AtomicBool = AtomicBool::new(false);

/// A setting the suite changes for a whole run (`--reserve-hugepages`): journalled like a probe's,
/// without holding the settings lock; put back when dropped, or by whoever takes the lock after
/// the suite died. Runs that reserve the same setting take turns (a lock of their own, held for the
/// run), so that one never puts back a value another set.
pub struct Reserved {
    path: String,
    value: String,
    _turn: nix::fcntl::Flock<std::fs::File>,
}

impl Reserved {
    /// Sets `/proc/sys/<name>` to what `value` makes of its current value, for the run.
    pub fn set(name: &str, value: impl FnOnce(&str) -> String) -> std::io::Result<Reserved> {
        let turn =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(
                std::env::temp_dir().join(format!("uffd-conformance-{}.lock", name.replace('/', "."))),
            )?;
        let turn = nix::fcntl::Flock::lock(turn, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?;
        let lock = Lock::take()?;
        let path = format!("/proc/sys/{name}");
        let old = std::fs::read_to_string(&path)?.trim().to_string();
        lock.journal(&path, &old)?;
        std::fs::write(&path, value(&old))?;
        Ok(Reserved { path, value: old, _turn: turn })
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if let Ok(lock) = Lock::take() {
            if std::fs::write(&self.path, &self.value).is_ok() {
                let _ = lock.forget(&self.path);
            }
        }
    }
}

/// The settings lock (flock(2) on the journal file), taken after putting back the settings of
/// journal lines whose process is gone.
struct Lock(nix::fcntl::Flock<std::fs::File>);

impl Lock {
    fn take() -> std::io::Result<Lock> {
        let dir = std::env::temp_dir();
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join("uffd-conformance-settings.lock"))?;
        let lock =
            Lock(nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?);
        let lines = lock.lines()?;
        let (dead, alive): (Vec<_>, Vec<_>) = lines.into_iter().partition(|(pid, _, _)| !alive(*pid));
        for (_, path, value) in &dead {
            std::fs::write(path, value)?;
            eprintln!("suite: put {path} back to {value} (the process that changed it is gone)");
        }
        if !dead.is_empty() {
            lock.rewrite(&alive)?;
        }
        Ok(lock)
    }

    fn lines(&self) -> std::io::Result<Vec<(i32, String, String)>> {
        let mut text = String::new();
        let mut file: &std::fs::File = &self.0;
        file.seek(std::io::SeekFrom::Start(0))?;
        file.read_to_string(&mut text)?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, '\t');
                let pid = parts.next()?.parse().ok()?;
                Some((pid, parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect())
    }

    fn rewrite(&self, lines: &[(i32, String, String)]) -> std::io::Result<()> {
        let mut file: &std::fs::File = &self.0;
        file.set_len(0)?;
        file.seek(std::io::SeekFrom::Start(0))?;
        let text: String =
            lines.iter().map(|(pid, path, value)| format!("{pid}\t{path}\t{value}\n")).collect();
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }

    /// Records that this process is about to change `path`, whose value now is `old`.
    fn journal(&self, path: &str, old: &str) -> std::io::Result<()> {
        let mut lines = self.lines()?;
        lines.push((std::process::id() as i32, path.to_string(), old.to_string()));
        self.rewrite(&lines)
    }

    /// Drops this process's line for `path` (it put the setting back itself).
    fn forget(&self, path: &str) -> std::io::Result<()> {
        let me = std::process::id() as i32;
        let lines: Vec<_> =
            self.lines()?.into_iter().filter(|(pid, p, _)| !(*pid == me && p == path)).collect();
        self.rewrite(&lines)
    }
}

/// Whether process `pid` still exists.
fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Puts back any setting a process that is gone left changed (see the module's doc).
pub fn restore_settings() -> std::io::Result<()> {
    Lock::take().map(drop)
}

//! System-wide settings (`/proc/sys`) that probes read or change, under one lock, with a journal
//! that puts back whatever a killed probe left changed.

use std::sync::atomic::Ordering;

/// A system-wide setting (`/proc/sys/<name>`) held by a probe under the settings lock, which every
/// probe that reads or changes a global setting takes for the whole time it does (trials run in
/// parallel). Before a change, the old value is written to a journal (the lock file itself), so
/// whoever takes the lock next (another probe, or the suite after the watchdog killed this one)
/// puts it back; dropping the hold restores it and clears the journal.
pub struct Setting {
    path: String,
    value: String,
    changed: std::cell::Cell<bool>,
    lock: nix::fcntl::Flock<std::fs::File>,
}

impl Setting {
    /// Takes the settings lock (first restoring whatever a killed holder left changed) and reads
    /// `/proc/sys/<name>`; `None` when the setting does not exist on this kernel.
    pub fn hold(name: &str) -> std::io::Result<Option<Setting>> {
        let lock = settings_lock()?;
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
        use std::io::{Seek, Write};
        if !self.changed.get() {
            let mut journal: &std::fs::File = &self.lock;
            journal.set_len(0)?;
            journal.seek(std::io::SeekFrom::Start(0))?;
            journal.write_all(format!("{}\t{}\n", self.path, self.value).as_bytes())?;
            journal.sync_data()?;
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

/// Self-test (`--inject-fault setting-hang=ID`): a probe blocks forever right after changing a
/// system setting, so the tests can prove the suite puts it back after the watchdog's kill.
pub static HANG_AFTER_SETTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for Setting {
    fn drop(&mut self) {
        if self.changed.get() && std::fs::write(&self.path, &self.value).is_ok() {
            let _ = self.lock.set_len(0);
        }
    }
}

/// Takes the lock every probe that reads or changes a system-wide setting holds while it does,
/// after putting back any setting its journal says a previous holder changed and could not
/// restore (it was killed).
pub fn settings_lock() -> std::io::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::Read;
    let dir = std::env::temp_dir();
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("uffd-conformance-settings.lock"))?;
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    let mut journal = String::new();
    (&*lock).read_to_string(&mut journal)?;
    for line in journal.lines() {
        if let Some((path, value)) = line.split_once('\t') {
            std::fs::write(path, value)?;
            eprintln!("suite: put {path} back to {value} (the probe that changed it did not)");
        }
    }
    if !journal.is_empty() {
        lock.set_len(0)?;
    }
    Ok(lock)
}

/// Puts back any setting a killed probe left changed (see [`Setting`]).
pub fn restore_settings() -> std::io::Result<()> {
    settings_lock().map(drop)
}

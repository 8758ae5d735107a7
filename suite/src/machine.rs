//! The machine the suite runs on: its kernel's name and uptime, and (as a guest's PID 1) power-off.

pub struct Uname {
    pub release: String,
    pub version: String,
    pub machine: String,
}

pub fn uname() -> Uname {
    match nix::sys::utsname::uname() {
        Ok(u) => Uname {
            release: u.release().to_string_lossy().into_owned(),
            version: u.version().to_string_lossy().into_owned(),
            machine: u.machine().to_string_lossy().into_owned(),
        },
        Err(_) => Uname { release: "unknown".into(), version: String::new(), machine: String::new() },
    }
}

/// The kernel's uptime (CLOCK_BOOTTIME) in milliseconds.
pub fn uptime_ms() -> Option<u64> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
}

/// Powers the guest off (PID 1 only); never returns.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // reboot(2) does not return on success; if it failed there is nothing left to do but wait.
    loop {
        std::thread::park();
    }
}

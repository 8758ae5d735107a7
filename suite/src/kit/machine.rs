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

/// The CPUs online now (`sysconf(_SC_NPROCESSORS_ONLN)`).
pub fn online_cpus() -> Option<u32> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|n| *n > 0)
}

/// The kernel's uptime (CLOCK_BOOTTIME) in milliseconds.
pub fn uptime_ms() -> Option<u64> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .ok()
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
}

/// Powers the guest off (PID 1 only); never returns. A kernel that cannot power the machine off
/// (no ACPI, as in the project's own minimal builds) would only halt, so it restarts instead: QEMU
/// runs guests with `-no-reboot`, which makes a restart end it.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let mode = if std::path::Path::new("/sys/firmware/acpi").exists() {
        nix::sys::reboot::RebootMode::RB_POWER_OFF
    } else {
        nix::sys::reboot::RebootMode::RB_AUTOBOOT
    };
    let _ = nix::sys::reboot::reboot(mode);
    // reboot(2) does not return on success; if it failed there is nothing left to do but wait.
    loop {
        std::thread::park();
    }
}

/// Where a guest's initramfs carries its kernel's configuration (xtask puts it there).
pub const GUEST_CONFIG: &str = "/kernel.config";

/// This kernel's configuration, from the first of: the guest's `/kernel.config`, the kernel's own
/// `/proc/config.gz` (CONFIG_IKCONFIG_PROC), `/boot/config-<release>`; `None` when none is there.
pub fn kernel_config() -> Option<model::config::Config> {
    use std::io::Read;
    if let Ok(text) = std::fs::read_to_string(GUEST_CONFIG) {
        let source =
            text.lines().next().and_then(|l| l.strip_prefix("# uffdc source: ")).unwrap_or(GUEST_CONFIG);
        return Some(model::config::Config::parse(source, &text));
    }
    if let Ok(gz) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(gz).read_to_string(&mut text).is_ok() {
            return Some(model::config::Config::parse("/proc/config.gz", &text));
        }
    }
    let boot = format!("/boot/config-{}", uname().release);
    std::fs::read_to_string(&boot).ok().map(|text| model::config::Config::parse(&boot, &text))
}

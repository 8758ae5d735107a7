//! Waiting for descriptors to become readable (a uffd message, a worker finishing, a handler
//! running, a helper's line): poll(2) with a deadline, retried on EINTR.

use nix::errno::Errno;
use std::time::{Duration, Instant};

/// poll(2) on several descriptors for readability, retrying on EINTR, up to `limit`. Returns
/// which are readable (all false on timeout).
pub fn wait_any(fds: &[std::os::fd::BorrowedFd<'_>], limit: Duration) -> Result<Vec<bool>, Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
        match poll(&mut pfds, PollTimeout::from(ms)) {
            Ok(0) if Instant::now() >= deadline => return Ok(vec![false; fds.len()]),
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => return Ok(pfds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()),
            Err(e) => return Err(e),
        }
    }
}

/// poll(2) for readability of one descriptor; see [`wait_any`].
pub fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, limit: Duration) -> Result<bool, Errno> {
    Ok(wait_any(&[fd], limit)?[0])
}

//! The faulting side of a probe: a thread of its own, separate from the thread that serves the
//! uffd, as in a real page server. Its completion is an event (an eventfd) that the serving side
//! can wait on together with the uffd.

use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

pub struct Worker<T> {
    tid: i32,
    done: Receiver<T>,
    done_fd: Arc<OwnedFd>,
}

/// Starts `f` on a new thread and returns once the thread is known (its tid).
pub fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Worker<T> {
    // SAFETY: eventfd returns a new descriptor that we own.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    let done_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(Errno::result(raw).expect("eventfd")) });
    let (tid_tx, tid_rx) = channel();
    let (done_tx, done) = channel();
    let signal = done_fd.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tid_tx.send(crate::kit::threads::gettid());
            let _ = done_tx.send(f());
            let one: u64 = 1;
            // SAFETY: writing 8 bytes to an eventfd.
            unsafe { libc::write(signal.as_raw_fd(), (&one as *const u64).cast(), 8) };
        })
        .expect("spawning a probe thread");
    let tid = tid_rx.recv().expect("a probe thread reports its tid");
    Worker { tid, done, done_fd }
}

impl<T> Worker<T> {
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Readable once the thread has finished.
    pub fn done_fd(&self) -> BorrowedFd<'_> {
        self.done_fd.as_fd()
    }

    /// The thread's result, if it finishes within `limit`. A thread that does not finish is left
    /// behind (blocked); the probe process ends with it.
    pub fn wait(&self, limit: Duration) -> Option<T> {
        self.done.recv_timeout(limit).ok()
    }

    /// The result if the thread has already finished.
    pub fn try_done(&self) -> Option<T> {
        self.done.try_recv().ok()
    }
}

//! Documented claims the behaviours test, quoted with where they are made: man pages, and the pull
//! request that started this project. A behaviour's `documented` rows name one of these; where a
//! kernel contradicts the claim, the matrix's findings quote it.

/// The seed's claim about the state of a thread that loads from a missing page.
pub const SEED_TASK_KILLABLE: &str = "e2b-dev/infra pull request #2542 (\"refactor(uffd-tests): pre-fault uffd-registered pages via madvise to eliminate STW-deadlock class\"), commit message: \"a plain Go load against a uffd-MISSING page parks the OS thread in TASK_KILLABLE while the runtime still considers the goroutine _Grunning\"";

/// The seed's claim about signals to such a thread.
pub const SEED_NO_SIGNAL: &str = "e2b-dev/infra pull request #2542, description: \"When the page is missing, the kernel parks the OS thread in TASK_KILLABLE and Linux refuses to deliver SIGURG.\"";

/// madvise(2) on MADV_POPULATE_READ.
pub const POPULATE_AS_IF_READING: &str = "madvise(2), man-pages 6.20, MADV_POPULATE_READ: \"Populate (prefault) page tables readable, faulting in all pages in the range just as if manually reading from each page\" (a plain load on a missing page sleeps interruptibly and lets a signal handler run: stw.user_fault_state, stw.user_fault_signal)";

/// UFFDIO_API(2const) on UFFD_FEATURE_SIGBUS.
pub const SIGBUS_FEATURE: &str = "UFFDIO_API(2const), man-pages 6.20: \"UFFD_FEATURE_SIGBUS (since Linux 4.14) If this feature bit is set, no page-fault events (UFFD_EVENT_PAGEFAULT) will be delivered. Instead, a SIGBUS signal will be sent to the faulting process.\" (madvise(2) says of MADV_POPULATE_*: \"If populating fails, a SIGBUS signal is not generated; instead, an error is returned.\")";

/// UFFDIO_COPY(2const)'s errors.
pub const COPY_ERRORS: &str = "UFFDIO_COPY(2const), man-pages 6.20, ERRORS lists EAGAIN (\"The number of bytes copied (i.e., the value returned in the copy field) does not equal the value that was specified in the len field.\"), EINVAL, ENOENT, ENOSPC and ESRCH";

/// The seed's claim that a stop-the-world waits forever for a goroutine whose plain load faulted.
pub const SEED_STW_FOREVER: &str = "e2b-dev/infra pull request #2542, commit message: \"a plain Go load against a uffd-MISSING page parks the OS thread in TASK_KILLABLE while the runtime still considers the goroutine _Grunning, so any concurrent STW (GC, ReadMemStats, etc.) waits for the thread to reach a safe point — forever.\"";

/// The seed's claim about a plain load in its race tests.
pub const SEED_PLAIN_LOAD: &str = "e2b-dev/infra pull request #2542, commit message: \"The race tests now also pre-fault their direct page reads via MADV_POPULATE_READ for the same reason: an ad-hoc page[0] load could otherwise re-introduce the deadlock on a removed page.\"";

/// The seed's fix: the fault taken inside a system call does not hold up a stop-the-world.
pub const SEED_SYSCALL_FIX: &str = "e2b-dev/infra pull request #2542, description: \"The Go runtime's entersyscall transitions the goroutine to _Gsyscall before the syscall, detaching it from a P; STW does not wait on _Gsyscall goroutines, so GC completes immediately even if the kernel parks the thread inside the pagefault for arbitrarily long.\"";

/// The seed's claim about MADV_DONTNEED's REMOVE events.
pub const SEED_DONTNEED: &str = "e2b-dev/infra pull request #2542, description: \"unix.Madvise(MADV_DONTNEED) already runs in syscall mode, so REMOVE-trigger paths needed no changes.\"";

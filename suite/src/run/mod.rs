//! Running the behaviours: the command line, the harness and its child isolation, the guest's
//! PID 1, the kernel's own selftests after the suite, and the catalogue of every declaration.

pub mod catalogue;
pub mod cli;
pub mod guest;
pub mod harness;
pub mod isolate;
pub mod selftests;

//! The toolkit the probes stand on: one piece of code per concept (the uffd, memory, threads,
//! signals, settings, prerequisites, helper processes, the Go workload) and the declaration and
//! outcome types every probe shares.

pub mod behaviour;
pub mod goworkload;
pub mod helpers;
pub mod machine;
pub mod memory;
pub mod outcome;
pub mod poll;
pub mod privileges;
pub mod require;
pub mod rows;
pub mod settings;
pub mod signals;
pub mod stress;
pub mod threads;
pub mod uapi;
pub mod uffd;
pub mod variant;
pub mod worker;

//! The probes, one module per family. Each declares its behaviours (`BEHAVIOURS`) next to the
//! functions that observe them.

pub mod api;
pub mod populate;
pub mod remote;
pub mod remove;
pub mod stw;

//! The probes, one module per family. Each declares its behaviours (`BEHAVIOURS`) next to the
//! functions that observe them; what they stand on is in `kit`.

pub mod api;
pub mod clients_crate;
pub mod clients_criu;
pub mod goruntime;
pub mod gostress;
pub mod hugetlb;
pub mod ordering;
pub mod populate;
pub mod remote;
pub mod remove;
pub mod serve;
pub mod sources;
pub mod stw;
pub mod wp;

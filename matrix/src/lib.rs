//! The data of uffd-conformance: what a probe observed, how it was graded, and how per-kernel
//! results compile into the compatibility matrix.
//!
//! Formats (all TOML, all carrying `schema = `[`model::SCHEMA`]):
//! - [`model::Results`]: one kernel's run, `matrix/results/<kernel-id>.toml`, also what
//!   `suite --results PATH` writes on the host.
//! - [`model::Catalogue`]: the behaviours a suite build declares (`suite --catalogue`).
//! - [`model::Compat`]: the compiled matrix, `matrix/compat.toml`; its doc comment shows the layout.
//!
//! A guest streams its results to the host with [`stream`]; [`run`] turns a run's stream into its
//! results; expectations and grading live in [`expect`]; kernel versions and ranges in [`version`].

pub mod compile;
pub mod config;
pub mod expect;
pub mod findings;
pub mod model;
pub mod run;
pub mod stream;
pub mod verdict;
pub mod version;

pub use model::{Behaviour, Catalogue, Cell, Compat, Detail, Details, Results, RunInfo, RunStatus, Verdict};

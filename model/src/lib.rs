//! The data of uffd-conformance: what a probe observed, how it was graded, and how per-kernel
//! results compile into the compatibility matrix.
//!
//! Formats (all TOML, all carrying `schema = `[`data::SCHEMA`]):
//! - [`data::Results`]: one kernel's run, `matrix/results/<kernel-id>.toml`, also what
//!   `suite --results PATH` writes on the host.
//! - [`data::Catalogue`]: the behaviours a suite build declares (`suite --catalogue`).
//! - [`data::Compat`]: the compiled matrix, `matrix/compat.toml`; its doc comment shows the layout.
//!
//! A guest streams its results to the host with [`stream`]; [`run`] turns a run's stream into its
//! results; expectations and grading live in [`expect`]; kernel versions and ranges in [`version`].

pub mod arch;
pub mod check;
pub mod columns;
pub mod compile;
pub mod config;
pub mod data;
pub mod documented;
pub mod expect;
pub mod findings;
pub mod history;
pub mod profile;
pub mod run;
pub mod stream;
pub mod suggest;
pub mod verdict;
pub mod version;

pub use data::{Behaviour, Catalogue, Cell, Compat, Detail, Details, Results, RunInfo, RunStatus, Verdict};

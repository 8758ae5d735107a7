//! The tasks: one module per `cargo xtask` command, each thin, standing on the libraries
//! (`inputs`, `boot`, `publish`) and never on another task.

pub mod bench;
pub mod check;
pub mod ci;
pub mod diff;
pub mod explain;
pub mod export;
pub mod images;
pub mod matrix;
pub mod report;
pub mod test;

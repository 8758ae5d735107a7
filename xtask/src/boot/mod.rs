//! Running the suite on kernels: the pipeline (prepare, gather, compile), one kernel's supervised
//! run, QEMU and its accelerator, the initramfs, the suite binary and the live display.

pub mod accel;
pub mod initramfs;
pub mod pipeline;
pub mod progress;
pub mod qemu;
pub mod runner;
pub mod schedule;
pub mod suite_bin;

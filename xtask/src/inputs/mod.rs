//! What a run is made of, pinned and verified: the kernels and their builds, the toolchains, the
//! kernels' own selftests, Debian's tooling and the system packages the tasks need.

pub mod apt;
pub mod bincache;
pub mod buildroot;
pub mod builds;
pub mod criu;
pub mod debs;
pub mod fleet;
pub mod golang;
pub mod kconfig;
pub mod packages;
pub mod pin;
pub mod profiles;
pub mod refresh;
pub mod selftests;

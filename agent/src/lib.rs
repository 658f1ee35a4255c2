//! glasswatch-agent as a library: the stages the binary wires together.
//!
//! The binary (`main.rs`) owns the process (CLI, signals, systemd); these
//! modules own the media path. They are public so that benchmarks and tests
//! can drive a stage alone; they are not a stable API.

pub mod config;
pub mod mqtt;
pub mod overlay;
pub mod pipeline;
pub mod probe;
pub mod report;
pub mod select;
pub mod stamp;
pub mod supervisor;
pub mod sysinfo;
pub mod watchdog;

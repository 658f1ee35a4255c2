//! glasswatch-agent as a library: the stages the binary wires together.
//!
//! The binary (`main.rs`) owns the process (CLI, signals, systemd); these
//! modules own the media path. They are public so that benchmarks and tests
//! can drive a stage alone; they are not a stable API.
//!
//! Each module uses only modules in the layers beneath its own
//! (ARCHITECTURE.md's code map):
//!
//! ```text
//!  supervisor                          report              watchdog
//!  pipeline, probe                     mqtt
//!  stamp, overlay, select              sysinfo
//!  record (frame records, hand-off), state (wall clock, stream state, backoff)
//!  config
//! ```

pub mod config;
pub mod mqtt;
pub mod overlay;
pub mod pipeline;
pub mod probe;
pub mod record;
pub mod report;
pub mod select;
pub mod stamp;
pub mod state;
pub mod supervisor;
pub mod sysinfo;
pub mod watchdog;

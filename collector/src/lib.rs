//! glasswatch-collector as a library: reads every stream back over
//! (LL-)HLS, matches frames to the agents' records and measures latency per
//! frame, clock-corrected, without decoding.
//!
//! - `hls`: pure readers of what an origin serves (playlists, fMP4, MPEG-TS).
//! - `matcher`, `clock`, `aggregate`: per-frame figures, the device clock
//!   offset, per-window summaries (pure state).
//! - `hub`: the registry and the rules tying them together (pure state).
//! - `receiver`: one HLS reading task per stream.
//! - `run`: the runtime (MQTT client, embedded `broker`, receivers, `api`).
//! - `auth`: login for people, tokens for machines.
//! - `store`: history in SQLite or PostgreSQL, roll-ups and retention.
//! - `dashboard`, `hls_proxy`: the fleet dashboard's pages, live updates,
//!   viewer reports and the HLS proxy its player reads through.
//! - `memory`: the allocator's settings for a process that runs for months.

pub mod aggregate;
pub mod allow;
pub mod api;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod hls;
pub mod hls_proxy;
pub mod hub;
pub mod login;
pub mod matcher;
pub mod memory;
pub mod metrics;
pub mod receiver;
pub mod run;
pub mod store;
pub mod web;

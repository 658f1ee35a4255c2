//! # glasswatch-testkit
//!
//! The one home for real peers that tests start on 127.0.0.1 and stop by
//! PID (STYLE.md item 11): the RTSP/HLS test origin, a `gst-launch-1.0`
//! publisher, `ffmpeg`/`ffprobe` as independent readers, and the generic
//! process guard the other peers (mosquitto, PostgreSQL, the LL-HLS
//! origin, later Chromium) build on.
//!
//! - [`peer`]: [`Peer`], a spawned process with its output in a log file,
//!   a readiness wait ([`Ready`]) and SIGKILL on drop.
//! - [`ports`]: [`free_port`] and TCP waits, all on 127.0.0.1.
//! - [`bins`]: [`bin_path`], finding workspace binaries next to the test.
//! - [`require`](mod@require): the policy for missing tools: skip in a bare `cargo test`, fail
//!   under `CI=true` or `GLASSWATCH_STRICT=1` (`scripts/test.sh`).
//! - [`origin`]: [`RtspOrigin`], running `glasswatch-test-origin` (MPEG-TS,
//!   fMP4 or LL-HLS output, optionally without SEI; [`OriginOptions`]).
//! - [`publisher`]: [`TestPattern`], a real `rtspclientsink` publisher.
//! - [`mosquitto`]: [`mosquitto::Mosquitto`] (plain, password, TLS) and `mosquitto_sub` subscribers.
//! - [`postgres`]: [`Postgres`], a throwaway PostgreSQL 15 server (as an
//!   unprivileged user when run as root) that can be stopped and started again.
//! - [`stamps`]: every access unit of a read-back stream with its stamp and fingerprint.
//! - [`ffmpeg`]: [`ffmpeg_read_hls_h264`] and [`ffprobe_packet_count`].
//! - [`agent`]: [`agent::AgentProcess`], the real agent binary with its frame records.
//! - [`mediamtx`]: a real MediaMTX when `MEDIAMTX_BIN` points at one.
//! - [`chain`]: [`chain::Chain`], origin + collector + agent + latency subscriber for one device.
//! - [`collector`]: [`collector::CollectorProcess`], the real collector binary and its HTTP API.
//! - [`process`]: running a one-shot tool with a timeout.
//! - [`llhls`]: the LL-HLS muxer and HTTP side the origin's `--format llhls`
//!   uses, imitating MediaMTX v1.16.2 (and 1.18 sessions).
//! - [`proxy`]: [`DelayProxy`], a reverse proxy holding media responses back.
//! - [`http`](mod@http): a minimal blocking HTTP GET for tests.
//! - [`tls`]: a test CA and server certificate made with `openssl`.
//! - [`stats`]: the median and percentiles of measured figures.
//!
//! Every wait here has a timeout, and every error names the peer, its log and
//! the log's tail. Nothing here binds anything but 127.0.0.1. This crate is
//! for tests only (`publish = false`); product crates take it as a
//! dev-dependency.

pub mod agent;
pub mod bins;
pub mod chain;
pub mod chromium;
pub mod collector;
pub mod ffmpeg;
pub mod http;
pub mod llhls;
pub mod mediamtx;
pub mod mosquitto;
pub mod origin;
pub mod peer;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod publisher;
pub mod require;
pub mod stamps;
pub mod stats;
pub mod tls;

pub use bins::{bin_path, try_bin_path};
pub use ffmpeg::{ffmpeg_read_hls_h264, ffprobe_packet_count};
pub use origin::{HlsFormat, HlsPlaylist, HlsSegment, OriginOptions, RtspOrigin};
pub use peer::{Peer, Ready};
pub use ports::{free_port, wait_for_tcp};
pub use postgres::{require_postgres, Postgres};
pub use proxy::DelayProxy;
pub use publisher::TestPattern;
pub use require::{
    is_ci, is_strict, require, require_gst_elements, require_origin_stack, require_program,
};

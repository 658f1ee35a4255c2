//! glasswatch-collector as a library: the stages the binary will wire together.
//!
//! Today: the pure readers of what an origin serves over (LL-)HLS, so the
//! collector can find each frame's stamp and fingerprint without decoding.
//! The MQTT ingest, HLS receiver tasks, matching and aggregation come next.

pub mod hls;

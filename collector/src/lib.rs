//! glasswatch-collector as a library: the stages the binary will wire together.
//!
//! Today, the pure parts: the readers of what an origin serves over
//! (LL-)HLS, so the collector finds each frame's stamp and fingerprint
//! without decoding (`hls`); matching frames to their records with the
//! per-frame figures (`matcher`); the device clock offset (`clock`); and
//! per-window summaries (`aggregate`). The MQTT ingest, the HLS receiver
//! tasks and the publishing of summaries come next.

pub mod aggregate;
pub mod clock;
pub mod hls;
pub mod matcher;

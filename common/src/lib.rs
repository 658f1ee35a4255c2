//! Glasswatch wire contract, usable alone by any Rust subscriber.
//!
//! This crate holds what several parts must agree on (see DESIGN.md): the
//! in-band SEI frame stamp, the access-unit fingerprint, and the H.264
//! byte-stream helpers both ends need to find them. It deliberately depends
//! on neither GStreamer, tokio, axum nor any database.

pub mod fingerprint;
pub mod h264;
pub mod messages;
pub mod sei;

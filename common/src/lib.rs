//! Glasswatch wire contract, usable alone by any Rust subscriber.
//!
//! This crate holds what several parts must agree on (see DESIGN.md): the
//! in-band SEI frame stamp, the access-unit fingerprint, the H.264
//! byte-stream helpers both ends need to find them, the MQTT topic tree
//! ([`topics`]) and the MQTT payloads with their JSON Schemas ([`messages`]).
//! It deliberately depends on neither GStreamer, tokio, axum nor any database,
//! and does no network work: an MQTT client is the user's choice.

pub mod api;
#[cfg(feature = "config")]
pub mod config;
pub mod fingerprint;
pub mod h264;
pub mod messages;
#[cfg(feature = "mqtt-client")]
pub mod mqtt_client;
pub mod sei;
pub mod topics;

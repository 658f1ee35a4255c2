//! The whole chain for one device, as a user runs it: the testkit LL-HLS
//! origin, the real collector with its embedded broker (plus whatever
//! config a test adds), the real agent on the test pattern, and a
//! `mosquitto_sub` on the latency topic to see what went out on MQTT.

use std::time::Duration;

use glasswatch_common::messages::{self, Latency};

use crate::agent::{test_pattern_config, AgentProcess};
use crate::collector::{http_get, CollectorProcess};
use crate::mosquitto::Subscriber;
use crate::{OriginOptions, RtspOrigin};

/// A running chain for `device`/cam0; everything is stopped by PID on drop.
#[derive(Debug)]
pub struct Chain {
    pub collector: CollectorProcess,
    pub sub: Subscriber,
    pub device: String,
    pub agent: AgentProcess,
    pub origin: RtspOrigin,
}

impl Chain {
    /// Starts it; `collector_toml` is appended to the collector's config
    /// (for example a `[storage]` table).
    pub fn start(device: &str, collector_toml: &str) -> anyhow::Result<Chain> {
        let path = format!("{device}-cam0");
        let origin = RtspOrigin::start_with(&[&path], OriginOptions::llhls_like_fixture())?;
        let (config, port) = CollectorProcess::embedded_broker_config();
        let collector = CollectorProcess::start(&format!("{config}\n{collector_toml}\n"))?;
        let sub = Subscriber::start_at(port, "glasswatch/v1/devices/+/streams/+/latency")?;
        let agent = AgentProcess::start(&test_pattern_config(
            device,
            &origin.rtsp_url(&path),
            &origin.hls_url(&path),
            &format!("url = \"{}\"", collector.mqtt_url()),
        ))?;
        Ok(Chain {
            collector,
            sub,
            device: device.to_owned(),
            agent,
            origin,
        })
    }

    /// The summaries of the device's cam0 received on MQTT so far.
    pub fn mqtt(&self) -> Vec<Latency> {
        self.sub
            .messages(&format!(
                "glasswatch/v1/devices/{}/streams/cam0/latency",
                self.device
            ))
            .iter()
            .filter_map(|(_, p)| messages::decode::<Latency>(p.as_bytes()).ok())
            .collect()
    }

    /// Waits until `n` summaries with frames went out on MQTT.
    pub fn wait_for_frames(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.sub
            .wait_for(
                &format!("glasswatch/v1/devices/{}/", self.device),
                timeout,
                |_| self.mqtt().iter().filter(|s| s.frames > 0).count() >= n,
            )
            .map(|_| ())
            .map_err(|e| e.context(format!("collector log:\n{}", self.collector.log_tail())))
    }

    /// `GET` a path of the collector's HTTP side (anonymous: the chain's
    /// collector runs with `auth = "none"` on loopback).
    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        http_get(&format!("{}{path}", self.collector.api_url()))
    }
}

//! The embedded MQTT broker (rumqttd), run when `mqtt.url` is absent so that
//! one collector binary is enough on a single machine.
//!
//! rumqttd runs its router and its listener on threads of its own and has no
//! stop: it lives as long as the process. Its listener logs a failed bind
//! instead of returning it, so the address is tried first here and a taken
//! port is a clear start-up error.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context as _;

/// Most bytes of one MQTT payload the embedded broker accepts (a frames batch
/// of 200 ms at 240 fps is about 12 KiB; status with many streams a few KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Most MQTT connections the embedded broker accepts.
pub const MAX_CONNECTIONS: usize = 2_048;

/// The rumqttd configuration for a plain MQTT 3.1.1 listener on `listen`.
pub fn config(listen: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 256,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "glasswatch-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            // The router reserves state for every possible connection up
            // front: enough for a site's devices and subscribers; fleets
            // beyond that use an external broker (`mqtt.url`).
            max_connections: MAX_CONNECTIONS,
            max_outgoing_packet_count: 1_000,
            // Each subscribed filter keeps what was published on it in a
            // commit log of up to 4 segments of 1 MiB (the oldest segment is
            // dropped when a fifth is needed): this bounds the broker's
            // memory however long it runs (a few MiB in all, whatever the
            // number of streams). At 1,000 streams of 30 fps the frames
            // filter still holds over a second, more than a live subscriber
            // lags; larger fleets use an external broker.
            max_segment_size: 1 << 20,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    }
}

/// Starts the broker on `listen` in the background; fails if the address
/// cannot be bound.
pub fn start(listen: SocketAddr) -> anyhow::Result<()> {
    // Fail early and clearly on a taken port: rumqttd would only log it.
    drop(std::net::TcpListener::bind(listen).with_context(|| {
        format!("the embedded MQTT broker cannot listen on {listen} (set mqtt.listen, or mqtt.url to use another broker)")
    })?);
    let mut broker = rumqttd::Broker::new(config(listen));
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .context("spawning the embedded MQTT broker")?;
    // Return once it accepts connections, so that "ready" means clients
    // (agents, subscribers) can connect.
    let probe = if listen.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_millis(200))
        .is_err()
    {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the embedded MQTT broker did not start listening on {listen} within 10 s"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::info!(%listen, "embedded MQTT broker started");
    Ok(())
}

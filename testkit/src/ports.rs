//! Loopback ports for peers: pick a free one, wait for one to accept.
//!
//! Everything here is bound to 127.0.0.1. A port from [`free_port`] is free
//! when returned but not reserved; prefer letting a peer bind port 0 and
//! report its port (as [`crate::RtspOrigin::start`] does) where it can.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::bail;

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read the
/// port, close the socket).
///
/// # Panics
///
/// If the loopback interface cannot be bound at all, which no test can work
/// around.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

/// The address `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Waits up to `timeout` until a TCP connection to `addr` succeeds.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("nothing accepted TCP connections on {addr} within {timeout:?}");
        }
        if TcpStream::connect_timeout(&addr, left.min(Duration::from_millis(200))).is_ok() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Whether something accepts TCP connections on `addr` right now.
pub fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        let listener = TcpListener::bind(loopback(port)).unwrap();
        wait_for_tcp(listener.local_addr().unwrap(), Duration::from_secs(1)).unwrap();
        drop(listener);
        assert!(!is_listening(loopback(port)));
    }

    #[test]
    fn wait_for_tcp_times_out() {
        let port = free_port();
        let err = wait_for_tcp(loopback(port), Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("within"));
    }
}

//! Which URLs the collector fetches: only `hls_url`s (and what their
//! playlists and redirects lead to) that match `[hls] allow`, so that a
//! status message from a stranger cannot make the collector fetch an
//! internal service, the cloud metadata endpoint, or the collector itself.
//!
//! A pattern is `scheme://host[:port]` where host is an address, a network
//! (`10.8.0.0/16`), a name (`cam.example.net`) or every name under a domain
//! (`*.example.net`); without a port any port matches. The default (no
//! `allow` key) is loopback and the private networks (RFC 1918, RFC 4193,
//! `localhost`) over http and https. Whatever the patterns say, link-local
//! addresses (169.254.0.0/16, fe80::/10: the metadata service), unspecified,
//! multicast and broadcast addresses are never fetched, nor the collector's
//! own listeners; names are checked again after DNS resolution
//! ([`GuardedResolver`]), so a name cannot resolve its way around the rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why a URL is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("`{0}` is not an http(s) URL")]
    NotHttp(String),
    #[error("`{0}` carries a user name or password")]
    Credentials(String),
    #[error("{0} is never fetched (link-local, unspecified, multicast or broadcast)")]
    Forbidden(String),
    #[error("{0} is the collector's own listener")]
    Own(String),
    #[error("`{0}` matches no [hls] allow pattern")]
    NotAllowed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Net(IpAddr, u8),
    Name(String),
    /// `*.example.net`: names ending in `.example.net`.
    Under(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    https: bool,
    host: Host,
    port: Option<u16>,
}

/// The allowed origins and the collector's own listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
    own: Vec<SocketAddr>,
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_net(IpAddr::V4(v4), net, prefix)),
        _ => false,
    }
}

/// Addresses never fetched, whatever the patterns say.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden(IpAddr::V4(v4)),
            None => {
                v6.is_unspecified()
                    || v6.is_multicast()
                    || in_net(
                        IpAddr::V6(v6),
                        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
                        10,
                    )
            }
        },
    }
}

fn parse_rule(pattern: &str) -> Result<Rule, String> {
    let bad = |why: &str| {
        format!(
            "`{pattern}`: {why} (expected scheme://host[:port], the host an address, \
             a network such as 10.8.0.0/16, a name or *.domain; IPv6 in brackets)"
        )
    };
    let (https, rest) = if let Some(r) = pattern.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = pattern.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("the scheme must be http or https"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['@', '?', '#']) {
        return Err(bad("no host"));
    }
    // host (or [v6]) [/prefix] [:port]
    let (host, after) = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']').ok_or_else(|| bad("unclosed ["))?,
        None => match rest.find([':', '/']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        },
    };
    let (prefix, port) = match after.split_once(':') {
        Some((p, port)) => (p, Some(port)),
        None => (after, None),
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
        None => None,
    };
    let host = if let Some(prefix) = prefix.strip_prefix('/') {
        let ip: IpAddr = host.parse().map_err(|_| bad("not a network address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| bad("bad prefix length"))?;
        Host::Net(ip, prefix)
    } else if !prefix.is_empty() {
        return Err(bad("unexpected text after the host"));
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        Host::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
    } else if let Some(domain) = host.strip_prefix("*.") {
        if !valid_name(domain) {
            return Err(bad("not a domain"));
        }
        Host::Under(domain.to_ascii_lowercase())
    } else if valid_name(host) {
        Host::Name(host.to_ascii_lowercase())
    } else {
        return Err(bad("not a host"));
    };
    Ok(Rule { https, host, port })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl AllowList {
    /// The patterns of `[hls] allow`, or the default when `None`.
    pub fn new(patterns: Option<&[String]>, own: Vec<SocketAddr>) -> Result<AllowList, String> {
        let rules = match patterns {
            Some(p) => p
                .iter()
                .map(|s| parse_rule(s))
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let nets: [(IpAddr, u8); 6] = [
                    (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
                    (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
                    (IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12),
                    (IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16),
                    (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
                    (IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), 7),
                ];
                let mut rules = Vec::new();
                for https in [false, true] {
                    for (ip, prefix) in nets {
                        rules.push(Rule {
                            https,
                            host: Host::Net(ip, prefix),
                            port: None,
                        });
                    }
                    rules.push(Rule {
                        https,
                        host: Host::Name("localhost".into()),
                        port: None,
                    });
                }
                rules
            }
        };
        Ok(AllowList { rules, own })
    }

    /// Whether the collector may fetch `url`.
    pub fn check(&self, url: &str) -> Result<(), Refused> {
        let parsed = reqwest::Url::parse(url).map_err(|_| Refused::NotHttp(short(url)))?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(Refused::NotHttp(short(url))),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Refused::Credentials(short(url)));
        }
        let port = parsed.port_or_known_default().unwrap_or(0);
        let Some(host) = parsed.host_str() else {
            return Err(Refused::NotHttp(short(url)));
        };
        // An address (IPv6 comes bracketed), else a name.
        let host = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => Err(ip),
            Err(_) => Ok(host.to_ascii_lowercase()),
        };
        if let Err(ip) = host {
            if forbidden(ip) {
                return Err(Refused::Forbidden(ip.to_string()));
            }
            if self.is_own(ip, port) {
                return Err(Refused::Own(format!("{ip}:{port}")));
            }
        }
        if let Ok(name) = &host {
            if name == "localhost" && self.own.iter().any(|o| o.port() == port) {
                return Err(Refused::Own(format!("localhost:{port}")));
            }
        }
        let hit = self.rules.iter().any(|r| {
            r.https == https
                && r.port.is_none_or(|p| p == port)
                && match (&r.host, &host) {
                    (Host::Net(net, prefix), Err(ip)) => in_net(*ip, *net, *prefix),
                    (Host::Name(n), Ok(name)) => n == name,
                    (Host::Under(d), Ok(name)) => {
                        name.len() > d.len() + 1
                            && name.ends_with(d.as_str())
                            && name.as_bytes()[name.len() - d.len() - 1] == b'.'
                    }
                    _ => false,
                }
        });
        if hit {
            Ok(())
        } else {
            Err(Refused::NotAllowed(short(url)))
        }
    }

    /// Whether `ip:port` is one of the collector's own listeners.
    /// A listener on all addresses is reached through loopback too; other
    /// addresses of this machine are not known here (a limitation).
    pub fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|o| {
            o.port() == port
                && (o.ip() == ip
                    || (ip.is_loopback() && (o.ip().is_unspecified() || o.ip().is_loopback())))
        })
    }
}

fn short(url: &str) -> String {
    url.chars().take(200).collect()
}

/// A DNS resolver for the HTTP client that drops every address the
/// collector never fetches, so a permitted name that resolves to the
/// metadata service or to the collector itself leads nowhere.
#[derive(Debug, Clone)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = addrs.filter(|a| !forbidden(a.ip())).collect();
            if kept.is_empty() {
                return Err(format!(
                    "{host} resolves only to addresses the collector never fetches"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// A redirect policy that follows at most 5 redirects, each to an allowed URL.
pub fn redirect_policy(allow: Arc<AllowList>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("more than 5 redirects")
        } else if let Err(e) = allow.check(attempt.url().as_str()) {
            attempt.error(format!("redirect refused: {e}"))
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:8080".parse().unwrap(),
            "0.0.0.0:1883".parse().unwrap(),
        ]
    }

    #[test]
    fn the_default_allows_loopback_and_private_networks_only() {
        let a = AllowList::new(None, own()).unwrap();
        for ok in [
            "http://127.0.0.1:8888/cam/index.m3u8",
            "http://10.8.0.5:8888/x/index.m3u8",
            "https://192.168.1.20/x.m3u8",
            "http://172.31.255.1:8888/x",
            "http://localhost:8888/x",
            "http://[::1]:8888/x",
            "http://[fd00::5]:8888/x",
        ] {
            assert_eq!(a.check(ok), Ok(()), "{ok}");
        }
        for (bad, what) in [
            ("http://169.254.169.254/latest/meta-data/", "Forbidden"),
            ("http://[fe80::1]:8888/x", "Forbidden"),
            ("http://0.0.0.0:8888/x", "Forbidden"),
            ("http://224.0.0.1/x", "Forbidden"),
            ("http://[::ffff:169.254.169.254]/x", "Forbidden"),
            ("http://127.0.0.1:8080/api/v1/streams", "Own"),
            ("http://127.0.0.1:1883/", "Own"),
            ("http://localhost:8080/", "Own"),
            ("http://8.8.8.8/x", "NotAllowed"),
            ("http://172.32.0.1/x", "NotAllowed"),
            ("http://cams.example.net/x", "NotAllowed"),
            ("file:///etc/passwd", "NotHttp"),
            ("rtsp://10.0.0.1/x", "NotHttp"),
            ("http://user:pw@10.0.0.1/x", "Credentials"),
            ("not a url", "NotHttp"),
        ] {
            let e = a.check(bad).unwrap_err();
            assert!(format!("{e:?}").starts_with(what), "{bad}: {e:?}");
        }
    }

    #[test]
    fn patterns_from_the_config() {
        let a = AllowList::new(
            Some(&[
                "http://10.8.0.0/16:8888".to_owned(),
                "https://*.example.net".to_owned(),
            ]),
            own(),
        )
        .unwrap();
        assert_eq!(a.check("http://10.8.3.4:8888/x"), Ok(()));
        assert!(a.check("http://10.8.3.4:9999/x").is_err(), "other port");
        assert!(a.check("https://10.8.3.4:8888/x").is_err(), "other scheme");
        assert!(a.check("http://10.9.0.1:8888/x").is_err(), "other network");
        assert_eq!(a.check("https://cam1.example.net/x"), Ok(()));
        assert_eq!(a.check("https://a.b.example.net:8443/x"), Ok(()));
        assert!(
            a.check("https://example.net/x").is_err(),
            "the domain itself is not under it"
        );
        assert!(a.check("https://evilexample.net/x").is_err());
        assert!(a.check("http://cam1.example.net/x").is_err());
        assert!(
            a.check("http://127.0.0.1:8888/x").is_err(),
            "loopback not listed"
        );
        // Never link-local, even when a pattern covers it.
        let wide = AllowList::new(Some(&["http://0.0.0.0/0".to_owned()]), vec![]).unwrap();
        assert!(wide.check("http://169.254.169.254/").is_err());
        assert_eq!(wide.check("http://8.8.8.8/"), Ok(()));
        for bad in [
            "10.0.0.0/8",
            "ftp://x",
            "http://",
            "http://10.0.0.0/33",
            "http://bad_name",
            "http://h:99999",
        ] {
            assert!(
                AllowList::new(Some(&[bad.to_owned()]), vec![]).is_err(),
                "{bad}"
            );
        }
    }
}

//! Where a worker finds its head: the `--join` and `--cluster` targets.
//!
//! Three forms, parsed here without touching the network:
//! `HOST:PORT` (an IP literal, or a DNS name resolved again on every
//! attempt), `dns:NAME:PORT` (every A/AAAA record of a name, such as a
//! Kubernetes headless Service, each address tried in turn) and
//! `dns+srv:NAME` (the targets and ports of SRV records, e.g.
//! `_quic._udp.leman-head.ml.svc.cluster.local`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// Where the head is, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinTarget {
    /// An IP address and port: no DNS.
    Addr(SocketAddr),
    /// A host name and port; the name is resolved on every attempt.
    Host { host: String, port: u16 },
    /// Every A/AAAA record of `name`, each with `port`.
    Dns { name: String, port: u16 },
    /// The SRV records of `name`: each target at its own port.
    Srv { name: String },
}

/// A target that is none of the three forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} in {given:?}; expected HOST:PORT, dns:NAME:PORT or dns+srv:NAME")]
pub struct BadTarget {
    given: String,
    reason: &'static str,
}

impl FromStr for JoinTarget {
    type Err = BadTarget;

    fn from_str(given: &str) -> Result<Self, BadTarget> {
        let bad = |reason| BadTarget { given: given.to_string(), reason };
        if let Some(name) = given.strip_prefix("dns+srv:") {
            check_name(name).map_err(bad)?;
            return Ok(Self::Srv { name: name.to_string() });
        }
        if let Some(rest) = given.strip_prefix("dns:") {
            let (name, port) = split_port(rest).map_err(bad)?;
            check_name(name).map_err(bad)?;
            return Ok(Self::Dns { name: name.to_string(), port });
        }
        if let Ok(addr) = given.parse::<SocketAddr>() {
            return Ok(Self::Addr(addr));
        }
        let (host, port) = split_port(given).map_err(bad)?;
        check_name(host).map_err(bad)?;
        Ok(Self::Host { host: host.to_string(), port })
    }
}

impl fmt::Display for JoinTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(addr) => write!(f, "{addr}"),
            Self::Host { host, port } => write!(f, "{host}:{port}"),
            Self::Dns { name, port } => write!(f, "dns:{name}:{port}"),
            Self::Srv { name } => write!(f, "dns+srv:{name}"),
        }
    }
}

impl From<SocketAddr> for JoinTarget {
    fn from(addr: SocketAddr) -> Self {
        Self::Addr(addr)
    }
}

fn split_port(given: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = given.rsplit_once(':').ok_or("no port")?;
    let port = port.parse::<u16>().map_err(|_| "the port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port is not a number from 1 to 65535");
    }
    Ok((host, port))
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_` (SRV
/// names start with `_service._proto`), at most 253 characters.
fn check_name(name: &str) -> Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("no name");
    }
    if name.len() > 253 {
        return Err("the name is longer than 253 characters");
    }
    let label_ok =
        |label: &str| !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name.split('.').all(label_ok) {
        return Err("the name is not a DNS name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<JoinTarget, BadTarget> {
        s.parse()
    }

    #[test]
    fn three_forms_and_addresses() {
        assert_eq!(parse("127.0.0.2:7070"), Ok(JoinTarget::Addr("127.0.0.2:7070".parse().unwrap_or_else(|e| panic!("{e}")))));
        assert!(matches!(parse("[::1]:7070"), Ok(JoinTarget::Addr(a)) if a.is_ipv6()));
        assert_eq!(parse("head.example:7070"), Ok(JoinTarget::Host { host: "head.example".into(), port: 7070 }));
        assert_eq!(
            parse("dns:leman-head.ml.svc.cluster.local:7070"),
            Ok(JoinTarget::Dns { name: "leman-head.ml.svc.cluster.local".into(), port: 7070 })
        );
        assert_eq!(parse("dns+srv:_quic._udp.leman-head.ml"), Ok(JoinTarget::Srv { name: "_quic._udp.leman-head.ml".into() }));
        for text in ["127.0.0.2:7070", "head.example:7070", "dns:head:1", "dns+srv:_quic._udp.head"] {
            assert_eq!(parse(text).map(|t| t.to_string()), Ok(text.to_string()));
        }
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        let reason = |s: &str| parse(s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(reason("head").starts_with("no port in \"head\""), "{}", reason("head"));
        assert!(reason("dns:head").contains("no port"));
        assert!(reason("dns:head:99999").contains("not a number"));
        assert!(reason("head:0").contains("not a number"));
        assert!(reason("dns::7070").contains("no name"));
        assert!(reason("dns+srv:").contains("no name"));
        assert!(reason("he ad:7070").contains("not a DNS name"));
        assert!(reason("a..b:7070").contains("not a DNS name"));
        assert!(reason("head").ends_with("expected HOST:PORT, dns:NAME:PORT or dns+srv:NAME"));
    }
}

//! Finding the head by name: a [`JoinTarget`] resolved to the addresses to
//! try, with `hickory-resolver`.
//!
//! The resolver reads the system configuration (`/etc/resolv.conf`), so a
//! pod's search path and `ndots` apply to short names; `--dns-server`
//! replaces the name servers with one of the caller's. Nothing is cached
//! between attempts: a head restarted at a new address behind the same
//! name is found on the next attempt, whatever TTL the records carry.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::proto::rr::rdata::SRV;
use leman_cluster::JoinTarget;

use crate::error::{NodeError, Result};

/// Resolves one target to the addresses of its head.
#[derive(Clone)]
pub struct Discovery {
    target: JoinTarget,
    resolver: Option<TokioResolver>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").field("target", &self.target).finish_non_exhaustive()
    }
}

impl Discovery {
    /// Discovery of `target`, through `dns_server` if given, else the
    /// system's name servers. An IP address needs no resolver.
    pub fn new(target: JoinTarget, dns_server: Option<SocketAddr>) -> Result<Self> {
        let resolver = match (&target, dns_server) {
            (JoinTarget::Addr(_), _) => None,
            (_, Some(server)) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(server.ip(), true, vec![udp, tcp])]);
                Some(TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()).build().map_err(|e| {
                    NodeError::Discovery { target: target.to_string(), reason: format!("cannot use DNS server {server}: {e}") }
                })?)
            }
            (_, None) => Some(TokioResolver::builder_tokio().and_then(|b| b.build()).map_err(|e| NodeError::Discovery {
                target: target.to_string(),
                reason: format!("cannot read the system's DNS configuration ({e}); pass --dns-server IP:PORT"),
            })?),
        };
        Ok(Self { target, resolver })
    }

    /// What it resolves.
    pub fn target(&self) -> &JoinTarget {
        &self.target
    }

    /// The head's addresses as DNS gives them now, in answer order. An
    /// empty answer is an error whose message says what to check.
    pub async fn addresses(&self) -> Result<Vec<SocketAddr>> {
        let resolver = match (&self.target, &self.resolver) {
            (JoinTarget::Addr(addr), _) => return Ok(vec![*addr]),
            (_, Some(resolver)) => resolver,
            (_, None) => return Err(self.failed("no resolver".to_string())),
        };
        resolver.clear_cache();
        let addresses = match &self.target {
            JoinTarget::Addr(addr) => vec![*addr],
            JoinTarget::Host { host, port } => self.ips(resolver, host, *port).await?,
            JoinTarget::Dns { name, port } => self.ips(resolver, name, *port).await?,
            JoinTarget::Srv { name } => {
                let records = resolver.srv_lookup(name.as_str()).await.map_err(|e| self.lookup_failed(e))?;
                let mut targets: Vec<&SRV> = records
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) => Some(srv),
                        _ => None,
                    })
                    .collect();
                // Lowest priority first; of equal priority, the heaviest.
                targets.sort_by_key(|srv| (srv.priority, std::cmp::Reverse(srv.weight)));
                let mut addresses = Vec::new();
                let mut failed = None;
                for srv in targets {
                    // A target that does not resolve is skipped; if none
                    // does, its error says why.
                    match self.ips(resolver, &srv.target.to_utf8(), srv.port).await {
                        Ok(found) => addresses.extend(found),
                        Err(error) => failed = Some(error),
                    }
                }
                if let (true, Some(error)) = (addresses.is_empty(), failed) {
                    return Err(error);
                }
                addresses
            }
        };
        if addresses.is_empty() {
            return Err(self.empty());
        }
        Ok(addresses)
    }

    async fn ips(&self, resolver: &TokioResolver, name: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let ips = resolver.lookup_ip(name).await.map_err(|e| self.lookup_failed(e))?;
        Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }

    fn lookup_failed(&self, error: hickory_resolver::net::NetError) -> NodeError {
        if error.is_no_records_found() { self.empty() } else { self.failed(error.to_string()) }
    }

    fn empty(&self) -> NodeError {
        let hint = match &self.target {
            JoinTarget::Dns { .. } | JoinTarget::Srv { .. } => {
                "; is the head running, is its Service headless (clusterIP: None), and does it publish not-ready addresses (publishNotReadyAddresses: true)?"
            }
            _ => "; is the name right, and is the head running?",
        };
        self.failed(format!("DNS has no address for it yet{hint}"))
    }

    fn failed(&self, reason: String) -> NodeError {
        NodeError::Discovery { target: self.target.to_string(), reason }
    }
}

//! `leman head`, `leman worker`, `leman cluster members` and `leman cluster
//! manifests`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use leman_engine::{Error, Result};
use leman_node::{DEFAULT_CLUSTER_NAME, Discovery, Head, HeadConfig, JoinTarget, Resources, Worker, WorkerConfig};
use leman_runtime::ClusterCerts;
use leman_runtime::tls::Role;

use super::machine;
use crate::builtins;

#[derive(Debug, Args)]
pub(crate) struct HeadArgs {
    /// Address to listen on (UDP).
    #[arg(long, default_value = "0.0.0.0:7070")]
    listen: SocketAddr,
    /// The address to give workers and clients (for their --join and
    /// --cluster), when not the one it listens on (behind NAT, or listening
    /// on 0.0.0.0); printed at start.
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// Directory of the cluster's certificates (`leman cluster init`, or
    /// `leman cluster issue --role head`): `ca.pem`, `head.pem`, `head.key`.
    #[arg(long)]
    certs: PathBuf,
    /// File of certificate fingerprints to refuse (one per line; read
    /// again when it changes: a listed node is disconnected within seconds).
    #[arg(long)]
    revoked: Option<PathBuf>,
    /// The cluster's name; workers of another name are refused.
    #[arg(long, default_value = DEFAULT_CLUSTER_NAME)]
    cluster_name: String,
    /// Serve /livez, /readyz and /metrics over HTTP on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The head: HOST:PORT (a name is resolved on every attempt),
    /// dns:NAME:PORT (every A/AAAA record of NAME) or dns+srv:NAME.
    #[arg(long)]
    join: JoinTarget,
    /// DNS server to ask instead of the system's, IP:PORT.
    #[arg(long, env = "LEMAN_DNS_SERVER")]
    dns_server: Option<SocketAddr>,
    /// Directory of the cluster's certificates: `ca.pem`, `worker.pem`,
    /// `worker.key`.
    #[arg(long)]
    certs: PathBuf,
    /// File of certificate fingerprints to refuse (one per line; read
    /// again when it changes).
    #[arg(long)]
    revoked: Option<PathBuf>,
    /// Address to listen on (UDP).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// The address the head and drivers reach this worker at (port 0: the
    /// one it listens on); without it the head uses the address the join
    /// came from.
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// The cluster's name; a head of another name refuses this worker.
    #[arg(long, default_value = DEFAULT_CLUSTER_NAME)]
    cluster_name: String,
    /// CPU cores offered (default: all of this machine's).
    #[arg(long)]
    cpus: Option<f64>,
    /// GPUs offered: a whole number, or `auto` to count this machine's
    /// NVIDIA GPUs (those in CUDA_VISIBLE_DEVICES, if set).
    #[arg(long, default_value = "0")]
    gpus: GpuCount,
    /// Bytes of memory offered (default: this machine's).
    #[arg(long)]
    memory: Option<u64>,
    /// Seconds to keep trying to join at start (default: keep trying).
    #[arg(long)]
    join_timeout_secs: Option<u64>,
    /// Serve /livez, /readyz and /metrics over HTTP on this address.
    #[arg(long)]
    http: Option<SocketAddr>,
}

/// `--gpus`: a count, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GpuCount {
    Auto,
    Exactly(u32),
}

impl FromStr for GpuCount {
    type Err = String;

    fn from_str(given: &str) -> std::result::Result<Self, String> {
        if given == "auto" {
            return Ok(Self::Auto);
        }
        match given.parse::<u32>() {
            Ok(count) => Ok(Self::Exactly(count)),
            Err(_) => Err(format!("expected a whole number of GPUs (each is a device) or `auto`, got {given:?}")),
        }
    }
}

impl GpuCount {
    fn resolve(self) -> f64 {
        match self {
            Self::Auto => f64::from(machine::nvidia_gpus()),
            Self::Exactly(count) => f64::from(count),
        }
    }
}

pub(crate) async fn head(args: HeadArgs) -> Result<ExitCode> {
    if let Some(addr) = args.advertise
        && addr.ip().is_unspecified()
    {
        return Err(Error::InvalidOptions { reason: format!("--advertise {addr}: give an address others can reach, not an unspecified one") });
    }
    let config = HeadConfig {
        listen: args.listen,
        cluster_name: args.cluster_name,
        certs: args.certs,
        revoked: args.revoked,
        http: args.http,
        registry: builtins::registry(),
    };
    let head = Head::start(&config)?;
    println!("head listening on {}", head.local_addr()?);
    if let Some(addr) = args.advertise {
        println!("workers and clients reach it at {addr}");
    }
    if let Some(addr) = head.http_addr() {
        println!("serving /livez, /readyz and /metrics on http://{addr}");
    }
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let resources = Resources {
        cpus: args.cpus.unwrap_or_else(machine::cpus),
        gpus: args.gpus.resolve(),
        memory: args.memory.unwrap_or_else(machine::memory),
    };
    let config = WorkerConfig {
        head: args.join,
        dns_server: args.dns_server,
        listen: args.listen,
        advertise: args.advertise,
        cluster_name: args.cluster_name,
        certs: args.certs,
        revoked: args.revoked,
        resources,
        join_timeout: args.join_timeout_secs.map(Duration::from_secs),
        http: args.http,
        registry: builtins::registry(),
    };
    let worker = Worker::start(&config).await?;
    println!(
        "worker {} joined the head at {} offering {} cpus, {} gpus, {} bytes",
        worker.id(),
        worker.head(),
        resources.cpus,
        resources.gpus,
        resources.memory
    );
    if let Some(addr) = worker.http_addr() {
        println!("serving /livez, /readyz and /metrics on http://{addr}");
    }
    std::io::stdout().flush()?;
    tokio::select! {
        outcome = worker.run() => outcome.map(|()| ExitCode::SUCCESS).map_err(Error::from),
        signal = tokio::signal::ctrl_c() => signal.map(|()| ExitCode::SUCCESS).map_err(Error::from),
    }
}

pub(crate) async fn members(target: &JoinTarget, dns_server: Option<SocketAddr>, certs: &Path, json: bool) -> Result<ExitCode> {
    let certs = ClusterCerts::load(certs, Role::Client).map_err(Error::cluster)?;
    let head = find_head(target, dns_server, &certs).await?;
    let members = leman_node::members(head, &certs).await?;
    if json {
        println!("{}", serde_json::to_string(&members).map_err(|e| Error::Io(e.into()))?);
    } else {
        // Each figure as reserved/offered.
        println!("{:<10}  {:<22}  {:>11}  {:>11}  {:>29}", "NODE", "ADDRESS", "CPUS", "GPUS", "MEMORY");
        for m in members {
            let (used, offered) = (m.reserved, m.resources);
            println!(
                "{:<10}  {:<22}  {:>11}  {:>11}  {:>29}",
                m.node.to_string(),
                m.addr,
                format!("{}/{}", used.cpus, offered.cpus),
                format!("{}/{}", used.gpus, offered.gpus),
                format!("{}/{}", used.memory, offered.memory)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn manifests(spec: &Path, embed_certs: Option<&Path>, output: Option<&Path>) -> Result<ExitCode> {
    let cluster = leman_deploy::ClusterSpec::load(spec).map_err(Error::cluster)?;
    let certs = embed_certs.map(leman_deploy::EmbeddedCerts::read).transpose().map_err(Error::cluster)?;
    let yaml = leman_deploy::render(&cluster, certs.as_ref()).map_err(Error::cluster)?;
    // Nothing is printed until the whole spec rendered.
    match output {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create(true).truncate(true);
            if certs.is_some() {
                // The node's private key is in it: its owner's eyes only.
                std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            }
            file.open(path)?.write_all(yaml.as_bytes())?;
        }
        None => std::io::stdout().write_all(yaml.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The head behind `target`: the first of its addresses that answers.
pub(crate) async fn find_head(target: &JoinTarget, dns_server: Option<SocketAddr>, certs: &ClusterCerts) -> Result<SocketAddr> {
    let discovery = Discovery::new(target.clone(), dns_server)?;
    Ok(leman_node::find_head(&discovery, certs).await?)
}

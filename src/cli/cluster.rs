//! `leman head`, `leman worker` and `leman cluster members`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use leman_engine::{Error, Result};
use leman_node::{Head, HeadConfig, Resources, Worker, WorkerConfig};
use leman_runtime::ClusterCerts;

use crate::builtins;

pub(crate) async fn head(listen: SocketAddr, certs: PathBuf) -> Result<ExitCode> {
    let registry = builtins::registry();
    let head = Head::start(&HeadConfig { listen, certs, registry })?;
    println!("head listening on {}", head.local_addr()?);
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn worker(head: SocketAddr, certs: PathBuf, listen: SocketAddr, resources: Resources, join_timeout_secs: u64) -> Result<ExitCode> {
    let registry = builtins::registry();
    let config = WorkerConfig { head, listen, certs, resources, join_timeout: Duration::from_secs(join_timeout_secs), registry };
    let worker = Worker::start(&config).await?;
    println!("worker {} joined the head at {head} offering {} cpus, {} gpus, {} bytes", worker.id(), resources.cpus, resources.gpus, resources.memory);
    std::io::stdout().flush()?;
    tokio::select! {
        outcome = worker.run() => outcome.map(|()| ExitCode::SUCCESS).map_err(Error::from),
        signal = tokio::signal::ctrl_c() => signal.map(|()| ExitCode::SUCCESS).map_err(Error::from),
    }
}

pub(crate) async fn members(head: SocketAddr, certs: &Path, json: bool) -> Result<ExitCode> {
    let members = leman_node::members(head, &ClusterCerts::load(certs).map_err(Error::cluster)?).await?;
    if json {
        println!("{}", serde_json::to_string(&members).map_err(|e| Error::Io(e.into()))?);
    } else {
        println!("{:<10}  {:<22}  {:>6}  {:>6}  {:>14}", "NODE", "ADDRESS", "CPUS", "GPUS", "MEMORY");
        for m in members {
            println!("{:<10}  {:<22}  {:>6}  {:>6}  {:>14}", m.node.to_string(), m.addr, m.resources.cpus, m.resources.gpus, m.resources.memory);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Cores of this machine.
pub(crate) fn machine_cpus() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

/// Bytes of memory of this machine (from /proc/meminfo), or 0 if unknown.
pub(crate) fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

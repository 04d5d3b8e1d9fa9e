//! A throwaway cluster of `leman` processes on 127.0.0.1 (a head and N
//! workers, certificates in a temp dir), stopped when dropped: what
//! `leman backfill --local-workers N` and the benchmarks run jobs on.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::{NodeError, Result};

/// A head and its workers, started by this process.
#[derive(Debug)]
pub struct LocalCluster {
    exe: std::path::PathBuf,
    certs: tempfile::TempDir,
    head: SocketAddr,
    children: Vec<Child>,
}

impl LocalCluster {
    /// Starts a head and `workers` workers of the `leman` binary `exe`, and
    /// waits until all joined.
    pub fn start(exe: &Path, workers: usize) -> Result<Self> {
        let certs = tempfile::tempdir()?;
        leman_runtime::tls::init_cluster(certs.path())?;
        let certs_arg = certs.path().to_string_lossy().into_owned();
        let mut cluster =
            Self { exe: exe.to_path_buf(), certs, head: SocketAddr::from(([127, 0, 0, 1], 0)), children: Vec::new() };
        let line = cluster.spawn(&["head", "--listen", "127.0.0.1:0", "--certs", &certs_arg])?;
        cluster.head = line
            .strip_prefix("head listening on ")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| NodeError::LocalCluster { reason: format!("the head said {line:?}, not where it listens") })?;
        let head = cluster.head.to_string();
        let spawned: Vec<Result<String>> = (0..workers)
            .map(|_| {
                let args = ["worker", "--join", &head, "--listen", "127.0.0.1:0", "--certs", &certs_arg, "--join-timeout-secs", "10"];
                cluster.spawn(&args)
            })
            .collect();
        for line in spawned {
            let line = line?;
            if !line.contains("joined the head") {
                cluster.stop();
                return Err(NodeError::LocalCluster { reason: format!("a worker did not join: it said {line:?}") });
            }
        }
        Ok(cluster)
    }

    /// The head's address.
    pub fn head(&self) -> SocketAddr {
        self.head
    }

    /// The certificates' directory.
    pub fn certs(&self) -> &Path {
        self.certs.path()
    }

    /// Stops every process it started.
    pub fn stop(mut self) {
        self.kill_all();
    }

    /// Starts `leman args` and returns the first line it prints.
    fn spawn(&mut self, args: &[&str]) -> Result<String> {
        let mut child = Command::new(&self.exe).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let stdout = child.stdout.take();
        self.children.push(child);
        let mut line = String::new();
        if let Some(stdout) = stdout {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        Ok(line.trim().to_string())
    }

    fn kill_all(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

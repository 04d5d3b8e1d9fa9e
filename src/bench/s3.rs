//! A real S3 server on loopback for the benchmark's object store figure and
//! for the tests: moto's server, run by a Python that has `moto[server]`
//! (`scripts/test` installs it, pinned, into its virtual environment and
//! names that Python in `LEMAN_PYTHON`).
//!
//! The server binds a free port, creates a bucket and an access key, turns
//! request authentication on (a wrong key is refused, as S3 does), and
//! lives until its standard input closes: it never outlives the process
//! that started it, and dropping [`LocalS3`] ends it by its pid.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use leman_engine::{Error, Result, StorageOptions};

/// The server's script, run with `python -c`.
const SCRIPT: &str = include_str!("s3_server.py");

/// How long the server may take to start (importing moto takes seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running S3 server on 127.0.0.1.
#[derive(Debug)]
pub struct LocalS3 {
    child: Child,
    /// Held open: the server exits when it closes.
    _lifeline: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The region it signs for.
    pub region: String,
    /// A bucket that exists.
    pub bucket: String,
    /// An access key it accepts.
    pub access_key_id: String,
    /// That key's secret.
    pub secret_access_key: String,
}

#[derive(serde::Deserialize)]
struct Started {
    endpoint: String,
    region: String,
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
}

impl LocalS3 {
    /// The Python named by `LEMAN_PYTHON`, if set.
    pub fn python() -> Option<PathBuf> {
        std::env::var_os("LEMAN_PYTHON").map(PathBuf::from)
    }

    /// Starts a server with `python`; fails with its stderr if it does not
    /// come up within a minute.
    pub fn start(python: &Path) -> Result<Self> {
        let mut child = Command::new(python)
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", python.display())))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(stdout) = stdout {
                let _ = BufReader::new(stdout).read_line(&mut line);
            }
            let _ = line_tx.send(line);
        });
        let (errors_tx, errors_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_string(&mut text);
            }
            let _ = errors_tx.send(text);
        });
        let line = line_rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        match serde_json::from_str::<Started>(line.trim()) {
            Ok(started) => Ok(Self {
                _lifeline: child.stdin.take(),
                child,
                endpoint: started.endpoint,
                region: started.region,
                bucket: started.bucket,
                access_key_id: started.access_key_id,
                secret_access_key: started.secret_access_key,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = errors_rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
                Err(failed(format!(
                    "the S3 server did not start with {} ({last}); it needs moto[server] installed there",
                    python.display()
                )))
            }
        }
    }

    /// `s3://BUCKET/path`.
    pub fn uri(&self, path: &str) -> String {
        format!("s3://{}/{}", self.bucket, path.trim_start_matches('/'))
    }

    /// Storage options that reach the server with its key.
    pub fn storage_options(&self) -> StorageOptions {
        StorageOptions::new()
            .with("aws_endpoint", &self.endpoint)
            .with("aws_region", &self.region)
            .with("allow_http", "true")
            .with("aws_access_key_id", &self.access_key_id)
            .with("aws_secret_access_key", &self.secret_access_key)
    }

    /// The same, as the environment variables a process reads.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
        ]
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn failed(reason: String) -> Error {
    Error::Io(std::io::Error::other(reason))
}

//! Timed runs of the `leman` binary as a child process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use leman_engine::{Error, Result};

/// One finished run.
#[derive(Debug, Clone)]
pub struct Run {
    /// From spawn to exit.
    pub wall: Duration,
    /// What it printed on stdout.
    pub stdout: String,
}

impl Run {
    /// Its stdout as one JSON value (`--json` commands).
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(self.stdout.trim()).map_err(|e| Error::Io(std::io::Error::other(format!("{e}: {}", self.stdout))))
    }
}

/// Runs `exe args` to its end; an exit other than 0 is an error that
/// carries the child's stderr.
pub fn run(exe: &Path, args: &[&str]) -> Result<Run> {
    let started = Instant::now();
    let output = Command::new(exe).args(args).stdin(Stdio::null()).output()?;
    let wall = started.elapsed();
    if !output.status.success() {
        return Err(Error::Io(std::io::Error::other(format!(
            "`leman {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    Ok(Run { wall, stdout: String::from_utf8_lossy(&output.stdout).into_owned() })
}

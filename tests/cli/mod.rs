//! Tests of the `leman` binary: real processes on real Lance datasets,
//! including one written by pylance.

mod alter;
mod bench;
mod certs;
mod cancel;
mod cleanup;
mod cluster;
mod discovery;
mod dry_run;
mod errors;
mod hostile;
mod fencing;
mod interop;
mod manifests;
mod many;
mod network;
mod on_error;
mod paused;
mod queue;
mod resume;
mod s3;
mod soak;
mod stage;
mod unpack;
mod view;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Table `t` in `dir`, of the demo's rows: `fragments` fragments of `rows`
/// rows each.
pub async fn sample_table(dir: &std::path::Path, fragments: usize, rows: usize) -> leman::Table {
    let db = leman::connect(dir.to_str().unwrap()).await.unwrap();
    let batches: Vec<_> = (0..fragments).map(|i| leman::demo::sample_batch(i * rows, rows).unwrap()).collect();
    db.create_table("t", batches, leman::CreateTableOptions { max_rows_per_file: rows, ..Default::default() }).await.unwrap()
}

/// Runs `leman` with `args`.
pub fn leman(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leman"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run leman")
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`, one the test started.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Asserts success and returns stdout.
pub fn ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "leman failed: {}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    stdout
}

/// Asserts failure with one `error:` line on stderr, and returns it.
pub fn fails(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert!(!output.status.success(), "leman succeeded; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{stderr}");
    lines[0].to_string()
}

/// Starts `leman backfill ARGS` (stdout piped, stderr read for progress
/// lines) and returns once it reports at least `rows` rows done. The process
/// is killed if that does not happen within a minute.
pub fn backfill_until(args: &[&str], rows: u64) -> Child {
    Backfill::until(args, rows).child
}

/// A `leman backfill` process and the stderr lines it has yet to be read.
pub struct Backfill {
    pub child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Backfill {
    /// As [`backfill_until`], keeping the rest of its stderr.
    pub fn until(args: &[&str], rows: u64) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leman"));
        command.args(args);
        Self::start(command, rows)
    }

    /// As [`Backfill::until`], for a `leman backfill` command line perhaps
    /// behind a wrapper such as `nsenter`.
    pub fn start(mut command: Command, rows: u64) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leman backfill");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, progress) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let Ok(line) = progress.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("leman backfill did not report {rows} rows done within a minute");
            };
            let done = line.split("rows ").nth(1).and_then(|r| r.split('/').next()).and_then(|n| n.parse::<u64>().ok());
            if done.is_some_and(|n| n >= rows) {
                return Self { child, stderr: progress };
            }
        }
    }

    /// Waits (at most `limit`, else kills it and panics) for the process to
    /// exit; returns its status and the `error:` lines of its stderr.
    pub fn exit(mut self, limit: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("leman backfill did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends with the process's stderr (bounded too:
        // a child of the process may hold it open).
        let mut errors = Vec::new();
        let drained = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self.stderr.recv_timeout(drained.saturating_duration_since(Instant::now())) {
            if line.starts_with("error:") {
                errors.push(line);
            }
        }
        (status, errors)
    }
}

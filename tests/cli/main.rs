//! Tests of the `leman` binary: real processes on real Lance datasets,
//! including one written by pylance.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cluster;
mod errors;
mod interop;
mod resume;

use std::process::{Command, Output};

/// Runs `leman` with `args`.
pub fn leman(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leman"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run leman")
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

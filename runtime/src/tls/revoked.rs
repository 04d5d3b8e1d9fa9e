//! `--revoked FILE`: the fingerprints of certificates this node refuses.
//!
//! One SHA-256 fingerprint per line, in hex (colons and case ignored);
//! blank lines and `#` comments are skipped. The file is read again
//! whenever its modification time or length changes, so an operator
//! revokes a node by adding a line, with no restart. A missing or
//! unreadable file keeps the last list read and says so in the log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::RuntimeError;

/// A revocation list, kept up to date with its file.
#[derive(Debug)]
pub struct Revocations {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Modification time and length of the file as last read.
    seen: Option<(SystemTime, u64)>,
    fingerprints: HashSet<String>,
    /// Reads of the file that changed the list.
    generation: u64,
}

impl Revocations {
    /// Reads `path`, which must exist.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let revocations = Self { path: path.to_path_buf(), state: Mutex::default() };
        let (stamp, fingerprints) = read(path).map_err(|e| RuntimeError::Certs {
            path: path.to_path_buf(),
            reason: format!("cannot read the revocation list: {e}"),
        })?;
        *revocations.lock() = State { seen: Some(stamp), fingerprints, generation: 1 };
        Ok(revocations)
    }

    /// Reads the file again if it changed; whether it did.
    pub fn refresh(&self) -> bool {
        let stamp = match stamp(&self.path) {
            Ok(stamp) => stamp,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the revocation list; keeping the last one read");
                return false;
            }
        };
        if self.lock().seen == Some(stamp) {
            return false;
        }
        match read(&self.path) {
            Ok((stamp, fingerprints)) => {
                tracing::info!(path = %self.path.display(), revoked = fingerprints.len(), "revocation list read");
                let mut state = self.lock();
                let generation = state.generation + 1;
                *state = State { seen: Some(stamp), fingerprints, generation };
                true
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the revocation list; keeping the last one read");
                false
            }
        }
    }

    /// How many times the list was read and changed: a watcher that saw
    /// another number has news to act on.
    pub fn generation(&self) -> u64 {
        self.refresh();
        self.lock().generation
    }

    /// Whether `fingerprint` is revoked (the file is read again first if
    /// it changed).
    pub fn is_revoked(&self, fingerprint: &str) -> bool {
        self.refresh();
        self.lock().fingerprints.contains(fingerprint)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified()?, metadata.len()))
}

fn read(path: &Path) -> std::io::Result<((SystemTime, u64), HashSet<String>)> {
    let stamp = stamp(path)?;
    let text = std::fs::read_to_string(path)?;
    let fingerprints = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.replace(':', "").to_ascii_lowercase())
        .collect();
    Ok((stamp, fingerprints))
}

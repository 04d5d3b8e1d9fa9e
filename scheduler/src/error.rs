//! The one error type of this crate.

/// Why a job cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// `batch_size` was zero.
    #[error("batch_size must be at least 1 row; pass a positive batch size")]
    ZeroBatchSize,
    /// `commit_granularity` was zero.
    #[error("commit_granularity must be at least 1 fragment; pass a positive value or none to commit once at the end")]
    ZeroCommitGranularity,
    /// `max_writers` was zero.
    #[error("max_writers must be at least 1")]
    ZeroWriters,
}

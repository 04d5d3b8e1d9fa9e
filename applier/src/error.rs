//! The one error type of this crate.

/// Errors of setting up or running an applier's work.
#[derive(Debug, thiserror::Error)]
pub enum ApplierError {
    /// The `where` does not parse, names an unknown column or is not boolean.
    #[error("invalid filter `{filter}`: {reason}; fix the SQL expression or the column names in it")]
    InvalidFilter { filter: String, reason: String },
    /// A column the UDF or the filter reads is not in the table.
    #[error("unknown column {column}: {reason}; check the UDF's input columns against the table schema")]
    UnknownColumn { column: String, reason: String },
    /// The fragment is not in the dataset version the job reads.
    #[error("fragment {fragment_id} is not in the dataset version being read")]
    MissingFragment { fragment_id: u64 },
    /// Lance failed.
    #[error(transparent)]
    Lance(#[from] lance::Error),
    /// Arrow failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
}

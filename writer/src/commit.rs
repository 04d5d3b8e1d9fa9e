//! Committing written fragments.
//!
//! A group of fragments is committed as one `DataReplacement` transaction
//! whose read version is the job's. Lance rebases it over commits made since
//! (appends, replacements of other fragments), so rows appended during a job
//! stay, with the new column null until the next run. A retryable conflict
//! is tried again a few times before the error is returned.

use std::sync::Arc;

use lance::Dataset;
use lance::dataset::CommitBuilder;
use lance::dataset::transaction::{DataReplacementGroup, Operation, Transaction};

use crate::error::WriterError;

/// Tries of a commit that meets a retryable conflict.
const COMMIT_ATTEMPTS: u32 = 5;

/// Commits `groups` against `dataset`'s version; returns the new version.
pub async fn commit_replacements(dataset: Arc<Dataset>, groups: Vec<DataReplacementGroup>) -> Result<Dataset, WriterError> {
    let read_version = dataset.version().version;
    let mut attempt = 1;
    loop {
        let operation = Operation::DataReplacement { replacements: groups.clone() };
        let transaction = Transaction::new(read_version, operation, None);
        match CommitBuilder::new(dataset.clone()).execute(transaction).await {
            Ok(committed) => return Ok(committed),
            Err(error @ lance::Error::RetryableCommitConflict { .. }) if attempt < COMMIT_ATTEMPTS => {
                tracing::info!(%error, attempt, "commit conflict; retrying");
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

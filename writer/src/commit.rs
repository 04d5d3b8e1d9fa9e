//! Committing written fragments, over whatever else writes the table.
//!
//! A group of fragments is committed as one `DataReplacement` transaction.
//! Lance rebases it over compatible commits made since the job's read
//! version: appends (their rows stay, the column null until the next run),
//! deletes of some rows, other columns added, dropped or backfilled.
//!
//! A commit that conflicts (a compaction or an update that moved rows of
//! one of the fragments, a delete of a whole fragment, a merge of new
//! columns) is not tried again as it was, which could never succeed: the
//! table is read again at its newest version and each fragment judged
//! there ([`still_fits`]). One whose rows and input files are unchanged
//! keeps its written file, and the group is committed again on top of the
//! newest version; one that is gone or rewritten is left out and reported
//! in [`Committed::left_out`], for the job to plan again on the newest
//! version, where the checkpoints that still hold are reused. If the
//! column itself was dropped, the commit fails saying so.
//!
//! A job commits each group on top of the table its previous commit left
//! ([`Committed::dataset`]), judging the group's fragments there first, so
//! that a conflict met by one group is not met again by every later one.
//!
//! A manifest write that reports an error may still have landed (an
//! ambiguous commit: the store wrote it, the answer was lost). Before such
//! an error is returned the versions since are searched for the
//! transaction's own id; found, the commit is what it is.

use std::collections::HashSet;
use std::sync::Arc;

use lance::Dataset;
use lance::dataset::CommitBuilder;
use lance::dataset::transaction::{DataReplacementGroup, Operation, Transaction, UpdateMode};
use lance_table::format::Fragment;

use crate::error::WriterError;

/// Re-plans of one commit after conflicts, before it gives up.
const MAX_REPLANS: u32 = 8;

/// What a commit did.
#[derive(Debug)]
pub struct Committed {
    /// The table after the commit (the newest version read, when nothing
    /// was left to commit).
    pub dataset: Dataset,
    /// The fragments committed.
    pub fragments: Vec<u64>,
    /// The fragments left out: gone from the table or rewritten since the
    /// job read it. Their rows (where any are left) must be planned again.
    pub left_out: Vec<u64>,
    /// Whether a conflicting commit made this one re-plan.
    pub replanned: bool,
    /// Whether a concurrent update moved rows of the table into new
    /// fragments (whose column values it did not compute).
    pub rows_moved: bool,
}

impl Committed {
    /// The new version, when anything was committed.
    pub fn version(&self) -> Option<u64> {
        (!self.fragments.is_empty()).then(|| self.dataset.version().version)
    }
}

/// Commits `groups` of `column`'s data files, written from `read` (the
/// job's read version), on top of `base` (`read`, or a newer version of
/// the same table: the one the job's previous commit left), or of the
/// newest version if others committed since.
pub async fn commit_replacements(
    read: Arc<Dataset>,
    base: Arc<Dataset>,
    column: &str,
    groups: Vec<DataReplacementGroup>,
) -> Result<Committed, WriterError> {
    let field_id = read.schema().field(column).map(|f| f.id).ok_or_else(|| WriterError::ColumnDropped {
        column: column.to_string(),
        version: read.version().version,
    })?;
    let mut target = base;
    let mut groups = groups;
    let mut left_out = Vec::new();
    let mut replans = 0;
    let mut rows_moved = false;
    loop {
        let replanned = replans > 0;
        if target.version().version != read.version().version {
            let (fit, unfit): (Vec<_>, Vec<_>) = groups
                .into_iter()
                .partition(|group| still_fits(read.fragments(), target.fragments(), group.0, field_id));
            left_out.extend(unfit.iter().map(|g| g.0));
            groups = fit;
        }
        if groups.is_empty() {
            let dataset = Arc::unwrap_or_clone(target);
            return Ok(Committed { dataset, fragments: Vec::new(), left_out, replanned, rows_moved });
        }
        let fragments: Vec<u64> = groups.iter().map(|g| g.0).collect();
        let operation = Operation::DataReplacement { replacements: groups.clone() };
        let transaction = Transaction::new(target.version().version, operation, None);
        let uuid = transaction.uuid.clone();
        let error = match CommitBuilder::new(target.clone()).execute(transaction).await {
            Ok(dataset) => return Ok(Committed { dataset, fragments, left_out, replanned, rows_moved }),
            Err(error) => error,
        };
        let conflict = matches!(
            error,
            lance::Error::RetryableCommitConflict { .. }
                | lance::Error::IncompatibleTransaction { .. }
                | lance::Error::CommitConflict { .. }
        );
        let mut latest = target.as_ref().clone();
        latest.checkout_latest().await?;
        let since = Since::read(&latest, target.version().version, &uuid).await?;
        // The manifest may have been written all the same (and a conflict
        // may be with this very transaction, tried again by lance).
        if let Some(version) = since.own_version {
            tracing::warn!(version, "the commit reported an error but its manifest was written; it stands");
            let dataset = latest.checkout_version(version).await?;
            return Ok(Committed { dataset, fragments, left_out, replanned, rows_moved });
        }
        rows_moved |= since.rows_moved;
        if !conflict || replans == MAX_REPLANS {
            return Err(error.into());
        }
        replans += 1;
        if latest.schema().field_by_id(field_id).is_none() {
            return Err(WriterError::ColumnDropped { column: column.to_string(), version: latest.version().version });
        }
        tracing::info!(%error, replans, newest = latest.version().version, "commit conflict; re-planning on the newest version");
        target = Arc::new(latest);
    }
}

/// Whether a file written for fragment `id` as it was in `read` still
/// fits it as it is in `latest`: the fragment is there with the same
/// physical rows, every input file it had (files may have been added, for
/// other columns), and the column's values in the same file as before (so
/// nobody wrote the column meanwhile). Deleted rows do not matter: the
/// file covers every physical row and the newest deletions are kept.
pub fn still_fits(read: &[Fragment], latest: &[Fragment], id: u64, field_id: i32) -> bool {
    let (Some(before), Some(now)) = (read.iter().find(|f| f.id == id), latest.iter().find(|f| f.id == id)) else {
        return false;
    };
    let column_file = |fragment: &Fragment| {
        fragment.files.iter().find(|f| f.fields.contains(&field_id)).map(|f| f.path.clone())
    };
    let paths_now: HashSet<&str> = now.files.iter().map(|f| f.path.as_str()).collect();
    before.physical_rows.is_some()
        && before.physical_rows == now.physical_rows
        && column_file(before) == column_file(now)
        && before.files.iter().all(|f| paths_now.contains(f.path.as_str()))
}

/// What the commits after a version did, as far as a commit cares.
struct Since {
    /// The version transaction `uuid` made, if it made one.
    own_version: Option<u64>,
    /// Whether an update moved rows into new fragments.
    rows_moved: bool,
}

impl Since {
    async fn read(latest: &Dataset, read_version: u64, uuid: &str) -> Result<Self, WriterError> {
        let mut since = Since { own_version: None, rows_moved: false };
        for version in read_version + 1..=latest.version().version {
            let Some(transaction) = latest.read_transaction_by_version(version).await? else { continue };
            if transaction.uuid == uuid {
                since.own_version = Some(version);
            }
            if let Operation::Update { new_fragments, update_mode, .. } = &transaction.operation {
                since.rows_moved |= !new_fragments.is_empty() && !matches!(update_mode, Some(UpdateMode::RewriteColumns));
            }
        }
        Ok(since)
    }
}

//! Removing checkpoints that no job can reuse: [`cleanup`].
//!
//! A job deletes its batch checkpoints as it commits their fragments, so
//! checkpoints pile up only where jobs did not finish, or where the table
//! changed under them. A batch checkpoint can serve a later job only while
//! everything its key hashed still holds, and its record says what that was
//! ([`Origin`]): the fragment must still exist with the same data
//! files (an append leaves them, a commit of the column, a compaction or an
//! update does not), and the column must still record the same UDF and
//! version. What fails either test is removed whatever its age. What passes
//! both belongs to a job that failed or was cancelled and can still resume;
//! it is removed only when older than `older_than` (abandoned). Fragment
//! records are kept while their fragment exists and still reads the data
//! file they name (they let a re-run skip it), or still awaits its commit.
//! Columns with a running job are left alone. A fill (which UDF wrote a
//! data file, `_leman/fills/`) goes once no fragment reads its file and it
//! is older than `older_than` (a written file awaiting its commit is read by
//! no fragment yet). A request to cancel a job that is not running (its
//! process died before removing it) goes too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use leman_applier::JobNames;
use leman_checkpoint::{CheckpointStore, ObjectKind, Origin, StoredObject};
use leman_scheduler::JobStatus;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::TableLocation;
use crate::plan::base_output_key;
use crate::stores::TableStores;
use crate::udf_record::UdfRecord;

/// Records read at once.
const READ_PARALLELISM: usize = 16;

/// How to clean up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Checkpoints that a re-run could still use are removed once older
    /// than this. Default: 7 days.
    pub older_than: Duration,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        Self { dry_run: false, older_than: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// Why an object is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Its fragment is no longer in the table.
    FragmentGone,
    /// Its fragment's data files changed since (committed, compacted,
    /// updated): no plan makes its key again.
    FragmentChanged,
    /// Its column is no longer in the table.
    ColumnGone,
    /// Its UDF or UDF version is not the one its column records.
    UdfNotRecorded,
    /// A job could still resume from it, but it is older than `older_than`.
    Abandoned,
    /// Written by an older leman that kept no origin, and older than
    /// `older_than`.
    NoOrigin,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreachable::FragmentGone => "fragment gone",
            Unreachable::FragmentChanged => "fragment changed",
            Unreachable::ColumnGone => "column gone",
            Unreachable::UdfNotRecorded => "UDF version not recorded",
            Unreachable::Abandoned => "abandoned",
            Unreachable::NoOrigin => "no origin recorded",
        })
    }
}

/// Objects and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Objects.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, object: &StoredObject) {
        self.add_bytes(object.size);
    }

    fn add_bytes(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// What a clean-up found and removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Nothing was removed.
    pub dry_run: bool,
    /// Checkpoint objects examined.
    pub examined: Tally,
    /// Removed (or to remove).
    pub removed: Tally,
    /// Kept.
    pub kept: Tally,
    /// Removed, by why.
    pub by_reason: BTreeMap<Unreachable, Tally>,
    /// Fills (which UDF wrote each data file) examined, apart from the
    /// checkpoints above.
    #[serde(default)]
    pub fills_examined: Tally,
    /// Fills removed (or to remove): their data files are read no more.
    #[serde(default)]
    pub fills_removed: Tally,
    /// Requests to cancel jobs that are not running (their process died
    /// before it could remove them), removed (or to remove).
    #[serde(default)]
    pub stale_cancel_requests: u64,
}

/// The table as a checkpoint must find it to be reusable.
struct Table {
    /// Data file paths of each fragment, in fragment order.
    fragments: HashMap<u64, Vec<String>>,
    /// Field ids of each data file.
    file_fields: HashMap<String, Vec<i32>>,
    /// The field id of each column.
    field_ids: HashMap<String, i32>,
    /// The UDF each UDF column records: name and fingerprint.
    udfs: HashMap<String, (String, String)>,
    /// Columns a running job holds.
    busy: HashSet<String>,
}

/// Removes the checkpoints of `table` that no job can reuse; see the
/// module docs for which.
pub async fn cleanup(table: &TableLocation, options: &CleanupOptions) -> Result<CleanupReport> {
    let dataset = table.open_dataset().await?;
    let stores = TableStores::open(table).await?;
    let records = stores.job_records().await?;
    let running: HashSet<&str> =
        records.iter().filter(|record| record.status == JobStatus::Running).map(|record| record.id.as_str()).collect();
    let stale_cancels: Vec<String> =
        stores.cancels.job_ids().await?.into_iter().filter(|id| !running.contains(id.as_str())).collect();
    // A job of several columns names them `a,b`.
    let busy = records
        .iter()
        .filter(|record| record.status == JobStatus::Running)
        .flat_map(|record| record.column.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let now = Table {
        fragments: dataset
            .get_fragments()
            .iter()
            .map(|f| (f.id() as u64, f.metadata().files.iter().map(|file| file.path.clone()).collect()))
            .collect(),
        file_fields: dataset
            .get_fragments()
            .iter()
            .flat_map(|f| f.metadata().files.iter().map(|file| (file.path.clone(), file.fields.to_vec())).collect::<Vec<_>>())
            .collect(),
        field_ids: dataset.schema().fields.iter().map(|field| (field.name.clone(), field.id)).collect(),
        udfs: dataset
            .schema()
            .fields
            .iter()
            .filter_map(|field| UdfRecord::from_metadata(&field.metadata).map(|r| (field.name.clone(), (r.name.clone(), r.fingerprint()))))
            .collect(),
        busy,
    };
    let store = &stores.checkpoints;
    let objects = store.list().await?;
    let verdicts: Vec<(StoredObject, Option<Unreachable>)> = futures::stream::iter(objects)
        .map(|object| async {
            let verdict = judge(store, &now, &object, options.older_than).await?;
            Ok::<_, Error>((object, verdict))
        })
        .buffer_unordered(READ_PARALLELISM)
        .try_collect()
        .await?;
    let mut report = CleanupReport { dry_run: options.dry_run, ..CleanupReport::default() };
    let mut doomed = Vec::new();
    for (object, verdict) in verdicts {
        report.examined.add(&object);
        match verdict {
            Some(reason) => {
                report.removed.add(&object);
                report.by_reason.entry(reason).or_default().add(&object);
                doomed.push(object.path);
            }
            None => report.kept.add(&object),
        }
    }
    let read_files: HashSet<&str> = now.file_fields.keys().filter_map(|path| path.rsplit('/').next()).collect();
    // A running job's written files are read by no fragment until it commits them.
    let busy_fields: HashSet<i32> =
        dataset.schema().fields.iter().filter(|field| now.busy.contains(&field.name)).map(|field| field.id).collect();
    let mut doomed_fills = Vec::new();
    for fill in store.fills().list().await? {
        report.fills_examined.add_bytes(fill.size);
        let read = read_files.contains(fill.data_file.as_str()) || busy_fields.contains(&fill.field_id);
        let old = SystemTime::now().duration_since(fill.last_modified).is_ok_and(|age| age > options.older_than);
        if !read && old {
            report.fills_removed.add_bytes(fill.size);
            doomed_fills.push(fill.path);
        }
    }
    report.stale_cancel_requests = stale_cancels.len() as u64;
    if !options.dry_run {
        store.delete(doomed).await?;
        store.fills().delete(doomed_fills).await?;
        for id in &stale_cancels {
            stores.cancels.remove(id).await;
        }
    }
    Ok(report)
}

/// The (column, UDF name, fingerprint) of each column a checkpoint of
/// `origin` computed: one, or those of a job of several in one pass.
fn origin_parts(origin: &Origin) -> Vec<(String, String, String)> {
    JobNames { column: origin.column.clone(), udf_name: origin.udf_name.clone(), udf_version: origin.udf_version.clone() }.parts()
}

/// Whether a running job holds a column a checkpoint of `origin` computed.
fn is_busy(now: &Table, origin: &Origin) -> bool {
    origin_parts(origin).iter().any(|(column, _, _)| now.busy.contains(column))
}

/// Why nothing can reach a checkpoint of `origin` any more: one of its
/// columns, their UDFs (by fingerprint: version, inputs and parameters) or
/// its fragment is gone.
fn unreachable(now: &Table, origin: &Origin) -> Option<Unreachable> {
    for (column, udf_name, udf_version) in origin_parts(origin) {
        match now.udfs.get(&column) {
            None => return Some(Unreachable::ColumnGone),
            Some((name, version)) if *name != udf_name || *version != udf_version => return Some(Unreachable::UdfNotRecorded),
            Some(_) => {}
        }
    }
    (!now.fragments.contains_key(&origin.fragment_id)).then_some(Unreachable::FragmentGone)
}

/// Why `object` is to go, or `None` to keep it.
async fn judge(store: &CheckpointStore, now: &Table, object: &StoredObject, older_than: Duration) -> Result<Option<Unreachable>> {
    let old = SystemTime::now().duration_since(object.last_modified).is_ok_and(|age| age > older_than);
    match object.kind {
        ObjectKind::Batch => {
            let origin = store.batch_record(&object.key).await?.and_then(|r| r.origin);
            let Some(origin) = origin else { return Ok(old.then_some(Unreachable::NoOrigin)) };
            if is_busy(now, &origin) {
                return Ok(None);
            }
            let reason = match unreachable(now, &origin) {
                Some(reason) => Some(reason),
                None if now.fragments.get(&origin.fragment_id) != Some(&origin.data_files) => Some(Unreachable::FragmentChanged),
                None => old.then_some(Unreachable::Abandoned),
            };
            Ok(reason)
        }
        ObjectKind::Fragment => {
            let record = store.find_fragment(&object.key).await?;
            let Some((record, origin)) = record.and_then(|r| r.origin.clone().map(|origin| (r, origin))) else {
                return Ok(old.then_some(Unreachable::NoOrigin));
            };
            if is_busy(now, &origin) {
                return Ok(None);
            }
            if let Some(reason) = unreachable(now, &origin) {
                return Ok(Some(reason));
            }
            // Its key hashed the fragment's input files: all but the file the
            // column is read from.
            let files = now.fragments.get(&origin.fragment_id).map(Vec::as_slice).unwrap_or_default();
            let fields = &record.data_file.fields;
            let is_output = |path: &&String| now.file_fields.get(*path).is_some_and(|f| f.iter().any(|id| fields.contains(id)));
            let output = files.iter().find(is_output);
            let inputs: Vec<String> = files.iter().filter(|path| !is_output(path)).cloned().collect();
            if inputs != origin.data_files {
                return Ok(Some(Unreachable::FragmentChanged));
            }
            if output == Some(&record.data_file.path) {
                return Ok(None); // committed: lets a re-run skip the fragment
            }
            // Written, not committed: good while each column is still read
            // from the file its values were merged with.
            let read_from: Vec<Option<String>> = origin_parts(&origin)
                .iter()
                .map(|(column, _, _)| {
                    let field_id = now.field_ids.get(column)?;
                    files.iter().find(|path| now.file_fields.get(*path).is_some_and(|f| f.contains(field_id))).cloned()
                })
                .collect();
            if base_output_key(&read_from) != record.base_output_file {
                return Ok(Some(Unreachable::FragmentChanged));
            }
            Ok(old.then_some(Unreachable::Abandoned))
        }
    }
}

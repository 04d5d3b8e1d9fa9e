//! (13) The two ways from a fragment's computed batches to its data file,
//! on the same batches, in the same run.
//!
//! - **IPC**, what a backfill does: each batch is checkpointed as one
//!   object (its record, the Arrow IPC stream of its column and a SHA-256),
//!   and the writer reads each back, decodes it and streams it into lance's
//!   `write_columns`, which encodes it into the fragment's data file
//!   (`leman_writer::write_fragment`, the writer's own code); the batch
//!   checkpoints are deleted once the file is in.
//! - **Parts**, lance 14's: each batch is encoded once, as a part of the
//!   fragment's future data file (`Dataset::write_data_file_part`), beside a
//!   small record naming it (what a resume would look up); the parts are
//!   joined by copying their encoded pages (`concat_data_file_parts`), and
//!   the parts and their records deleted.
//!
//! The batches are computed beforehand and the fragments done one after
//! another, so what is timed is each path alone: rows a second, CPU time,
//! bytes written (the process's `wchar`) and how far its peak resident
//! memory rises. Both files are then committed, each as its own column, and
//! read back equal to each other and to the batches, so neither path is
//! timed writing something wrong.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Schema as ArrowSchema, SchemaRef};
use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::transaction::{DataReplacementGroup, Operation, Transaction};
use lance::dataset::{CommitBuilder, DataFileTarget};
use leman_checkpoint::{BatchCounts, CheckpointKey, CheckpointStore, FragmentRecord, KeyParts};
use leman_engine::{Error, FragmentWrite, Result, TableStores, peak_memory, process_cpu_time};
use leman_writer::{WriterContext, write_fragment};
use object_store::path::Path;

use super::{Figure, Sizes, make_table, mib, mrows, rate, rows_label};
use crate::builtins;
use crate::db::Database;

/// Rows of a batch: a backfill's default.
const BATCH_ROWS: usize = 10_240;

/// One fragment's computed values, batch by batch.
struct FragmentValues {
    id: u64,
    data_files: Vec<String>,
    batches: Vec<(Range<u64>, ArrayRef)>,
}

/// What one path cost.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: Duration,
    cpu: Duration,
    written: u64,
    peak_rise: Option<u64>,
}

pub(super) async fn figures(db: &Database, sizes: Sizes) -> Result<Vec<Figure>> {
    let (rows, fragments) = (sizes.command_rows, sizes.command_fragments);
    let table = make_table(db, "paths", rows, fragments, &["ipc", "parts"], "str_len").await?;
    let dataset = Arc::new(table.dataset().await?);
    let values = compute(&dataset).await?;
    let stores = TableStores::open(table.location()).await?;

    let (ipc, ipc_files) = measure(ipc_path(&dataset, &stores.checkpoints, &values)).await?;
    let (parts, parts_files) = measure(parts_path(&dataset, &stores.checkpoints, &values)).await?;
    let dataset = commit(dataset, ipc_files).await?;
    let dataset = commit(Arc::new(dataset), parts_files).await?;
    check_equal(&dataset, &values).await?;
    super::drop_table(&table)?;

    let what = format!("checkpoint path, str_len {} rows/{fragments} frags", rows_label(rows));
    let memory = |cost: &Cost| cost.peak_rise.map_or_else(|| "peak n/a".to_string(), |bytes| format!("peak +{:.1} MiB", bytes as f64 / (1u64 << 20) as f64));
    let describe = |cost: &Cost| {
        format!("{}, {:.0} ms CPU, {} written, {}", mrows(rate(rows, cost.wall)), cost.cpu.as_secs_f64() * 1e3, mib(cost.written), memory(cost))
    };
    let speed = ipc.wall.as_secs_f64() / parts.wall.as_secs_f64().max(f64::EPSILON);
    Ok(vec![
        Figure {
            number: 13,
            what: format!("{what}: parts (write_data_file_part + concat)"),
            measured: describe(&parts),
            baseline: format!("IPC checkpoints (the default) {}", describe(&ipc)),
            ratio: speed,
            ratio_of: "parts / IPC throughput".into(),
            target: "(reported: the faster is the default)".into(),
            met: true,
        },
        Figure {
            number: 13,
            what: format!("{what}: bytes written"),
            measured: format!("parts {}", mib(parts.written)),
            baseline: format!("IPC {}", mib(ipc.written)),
            ratio: parts.written as f64 / ipc.written.max(1) as f64,
            ratio_of: "parts / IPC".into(),
            target: "(reported)".into(),
            met: true,
        },
    ])
}

/// `str_len(text)` of every fragment of `dataset`, in batches of
/// [`BATCH_ROWS`] physical rows.
async fn compute(dataset: &Dataset) -> Result<Vec<FragmentValues>> {
    let mut computed = Vec::new();
    for fragment in dataset.get_fragments() {
        let data_files = fragment.metadata().files.iter().map(|file| file.path.clone()).collect();
        let mut scan = fragment.scan();
        scan.project(&["text"])?.batch_size(BATCH_ROWS);
        let mut batches = Vec::new();
        let mut start = 0u64;
        let mut stream = scan.try_into_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            let text = batch.column(0).as_string_opt::<i32>().ok_or_else(|| other("the sample table's text is not utf8"))?;
            let end = start + batch.num_rows() as u64;
            batches.push((start..end, Arc::new(builtins::str_lengths(text)) as ArrayRef));
            start = end;
        }
        computed.push(FragmentValues { id: fragment.id() as u64, data_files, batches });
    }
    Ok(computed)
}

/// The batch checkpoint keys of fragment `values` for `column`.
fn key_parts<'a>(dataset: &'a Dataset, column: &'a str, values: &FragmentValues) -> KeyParts<'a> {
    KeyParts {
        udf_name: "str_len",
        udf_version: "bench",
        column,
        filter: "",
        table: dataset.uri(),
        fragment_id: values.id,
        data_files: values.data_files.clone(),
    }
}

/// The Arrow schema of `column` as `dataset` defines it: what its batches
/// carry.
fn column_schema(dataset: &Dataset, column: &str) -> Result<SchemaRef> {
    Ok(Arc::new(ArrowSchema::from(&dataset.schema().project(&[column])?)))
}

/// Today's path, into column `ipc`.
async fn ipc_path(dataset: &Arc<Dataset>, checkpoints: &CheckpointStore, values: &[FragmentValues]) -> Result<Vec<DataReplacementGroup>> {
    let context = WriterContext::new(dataset.clone(), &["ipc"], checkpoints.clone())?;
    let schema = column_schema(dataset, "ipc")?;
    let mut groups = Vec::new();
    for fragment in values {
        let parts = key_parts(dataset, "ipc", fragment);
        let keys = parts.batch_keys();
        let mut written: Vec<(Range<u64>, CheckpointKey)> = Vec::new();
        for (rows, values) in &fragment.batches {
            let key = keys.key(rows.clone());
            let counts = BatchCounts { rows_computed: rows.end - rows.start, rows_skipped: 0 };
            let batch = RecordBatch::try_new(schema.clone(), vec![values.clone()])?;
            checkpoints.put_batch(&key, rows.clone(), &batch, counts, parts.origin()).await?;
            written.push((rows.clone(), key));
        }
        let keys: Vec<CheckpointKey> = written.iter().map(|(_, key)| key.clone()).collect();
        let write = FragmentWrite {
            fragment_id: fragment.id,
            batches: written,
            fragment_key: parts.fragment_key(),
            base_output_file: None,
            origin: parts.origin(),
            fill_tags: Vec::new(),
        };
        let data_file = write_fragment(&context, write).await?;
        checkpoints.delete_batches(&keys).await?;
        groups.push(DataReplacementGroup(fragment.id, data_file));
    }
    Ok(groups)
}

/// Lance 14's parts, into column `parts`.
async fn parts_path(dataset: &Arc<Dataset>, checkpoints: &CheckpointStore, values: &[FragmentValues]) -> Result<Vec<DataReplacementGroup>> {
    let target_schema = Arc::new(dataset.schema().project(&["parts"])?);
    let schema = column_schema(dataset, "parts")?;
    let version = dataset.manifest().data_storage_format.lance_file_format();
    let (store, dir) = lance::io::ObjectStore::from_uri(dataset.uri()).await?;
    let records_dir = dir.join("_leman").join("bench-parts");
    let mut groups = Vec::new();
    for fragment in values {
        let key_parts = key_parts(dataset, "parts", fragment);
        let keys = key_parts.batch_keys();
        let target = DataFileTarget::new(None, target_schema.clone(), version)?;
        let mut parts = Vec::new();
        let mut records: Vec<Path> = Vec::new();
        for (rows, values) in &fragment.batches {
            let batch = RecordBatch::try_new(schema.clone(), vec![values.clone()])?;
            let part = dataset.write_data_file_part(&target, None, futures::stream::iter([Ok(batch)])).await?;
            let record = records_dir.clone().join(format!("{}.json", keys.key(rows.clone()).as_str()).as_str());
            let json = serde_json::to_vec(&(rows, &part)).map_err(other)?;
            store.put(&record, &json).await?;
            records.push(record);
            parts.push(part);
        }
        let data_file = dataset.concat_data_file_parts(&target, &parts).await?;
        let record = FragmentRecord { data_file: data_file.clone(), base_output_file: None, origin: Some(key_parts.origin()) };
        checkpoints.put_fragment(&key_parts.fragment_key(), &record).await?;
        target.finish(dataset).await?;
        for record in &records {
            store.delete(record).await?;
        }
        groups.push(DataReplacementGroup(fragment.id, data_file));
    }
    Ok(groups)
}

/// Runs `path`, measuring it.
async fn measure<T>(path: impl Future<Output = Result<T>>) -> Result<(Cost, T)> {
    let reset = reset_peak_memory();
    let rss = proc_field("/proc/self/status", "VmRSS:").map(|kib| kib * 1024);
    let written = proc_field("/proc/self/io", "wchar:").unwrap_or(0);
    let (started, cpu) = (Instant::now(), process_cpu_time());
    let outcome = path.await?;
    let wall = started.elapsed();
    let cpu = cpu.zip(process_cpu_time()).map_or(Duration::ZERO, |(before, after)| after.saturating_sub(before));
    let written = proc_field("/proc/self/io", "wchar:").unwrap_or(0).saturating_sub(written);
    let peak = peak_memory();
    let peak_rise = match (reset, rss, peak) {
        (true, Some(rss), Some(peak)) => Some(peak.saturating_sub(rss)),
        _ => None,
    };
    Ok((Cost { wall, cpu, written, peak_rise }, outcome))
}

/// Resets this process's peak resident memory to its current one (Linux);
/// false where it cannot.
fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The number after `key` in a `/proc` file of `key value` lines.
fn proc_field(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find_map(|line| line.strip_prefix(key))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Commits `groups` on `dataset`.
async fn commit(dataset: Arc<Dataset>, groups: Vec<DataReplacementGroup>) -> Result<Dataset> {
    let transaction = Transaction::new(dataset.version().version, Operation::DataReplacement { replacements: groups }, None);
    Ok(CommitBuilder::new(dataset).execute(transaction).await?)
}

/// Both columns read back as the values computed.
async fn check_equal(dataset: &Dataset, values: &[FragmentValues]) -> Result<()> {
    let expected = int32s(values.iter().flat_map(|f| &f.batches).map(|(_, values)| values))?;
    let mut scan = dataset.scan();
    scan.project(&["ipc", "parts"])?;
    let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
    for (i, column) in ["ipc", "parts"].into_iter().enumerate() {
        if int32s(batches.iter().map(|batch| batch.column(i)))? != expected {
            return Err(other(format!("the {column} path wrote other values than it was given")));
        }
    }
    Ok(())
}

/// The values of int32 `arrays`, one after another.
fn int32s<'a>(arrays: impl Iterator<Item = &'a ArrayRef>) -> Result<Vec<Option<i32>>> {
    let mut values = Vec::new();
    for array in arrays {
        let ints = array.as_primitive_opt::<Int32Type>().ok_or_else(|| other(format!("str_len's column read back as {}", array.data_type())))?;
        values.extend(ints.iter());
    }
    Ok(values)
}

fn other(error: impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(error.to_string()))
}

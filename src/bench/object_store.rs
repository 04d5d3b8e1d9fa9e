//! (8) A backfill on S3 against the same backfill on local disk, and the
//! object store requests it makes per batch and per fragment.
//!
//! The S3 server is moto's on loopback ([`LocalS3`]), so the ratio prices
//! the object store path (HTTP, signing, one object per checkpoint) and
//! that server, not a network. Requests are counted with a wrapping store
//! ([`RequestCounter`]) and split by what they touch: batch checkpoints and
//! input reads grow with batches, fragment records and data file writes
//! with fragments, the rest (manifests, transactions, the lease, the job
//! record) is per job and per commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use leman_engine::{BackfillOptions, Result};

use super::requests::{Area, Op, RequestCounter};
use super::s3::LocalS3;
use super::{Figure, Sizes, backfill, make_table, mrows, rate, rows_label};
use crate::db::{Database, connect_with};
use crate::table::Table;

/// Batch size of the measured runs; the check runs at half of it.
const BATCH: usize = 10_240;

/// Figures of (8), or none (with the reason on stderr) when no S3 server
/// can be started here.
pub(super) async fn figures(local: &Database, sizes: Sizes) -> Result<Vec<Figure>> {
    let Some(python) = LocalS3::python() else {
        eprintln!("  skipped (8): set LEMAN_PYTHON to a Python with moto[server] (scripts/test installs one)");
        return Ok(Vec::new());
    };
    let s3 = match LocalS3::start(&python) {
        Ok(s3) => s3,
        Err(error) => {
            eprintln!("  skipped (8): {error}");
            return Ok(Vec::new());
        }
    };
    let (rows, fragments) = (sizes.s3_rows, 4);
    let columns = ["len", "half"];
    let on_disk = make_table(local, "s3_baseline", rows, fragments, &columns[..1], "str_len").await?;
    let remote = connect_with(&s3.uri(&format!("bench-{}", std::process::id())), s3.storage_options()).await?;
    let on_s3 = make_table(&remote, "t", rows, fragments, &columns, "str_len").await?;
    let counter = RequestCounter::new();
    let counted =
        Table::open_at(on_s3.location().clone().with_store_wrapper(Arc::new(counter.clone())), on_s3.registry().clone())
            .await?;

    let options = |batch: usize| BackfillOptions::default().concurrency(2).batch_size(batch);
    let (disk_wall, _) = backfill(&on_disk, "len", options(BATCH)).await?;
    counter.reset();
    let (s3_wall, _) = backfill(&counted, "len", options(BATCH)).await?;
    let full = Tally::of(&counter.snapshot(), batches(rows, fragments, BATCH), fragments);
    counter.reset();
    backfill(&counted, "half", options(BATCH / 2)).await?;
    let half = Tally::of(&counter.snapshot(), batches(rows, fragments, BATCH / 2), fragments);
    eprintln!("  (8) requests of the S3 backfill, by area and operation: {}", breakdown(&full.counts));

    let (s3_rate, disk_rate) = (rate(rows, s3_wall), rate(rows, disk_wall));
    let constancy = half.per_batch / full.per_batch.max(f64::EPSILON);
    Ok(vec![
        Figure {
            number: 8,
            what: format!("str_len {} rows/{fragments} frags on S3 (moto, loopback), 2 appliers", rows_label(rows)),
            measured: mrows(s3_rate),
            baseline: format!("local disk {}", mrows(disk_rate)),
            ratio: s3_rate / disk_rate.max(f64::EPSILON),
            ratio_of: "S3 / local disk throughput".into(),
            target: "(reported)".into(),
            met: true,
        },
        Figure {
            number: 8,
            what: "object store requests of that backfill".into(),
            measured: format!(
                "{:.2}/batch, {:.2}/fragment, {} per job",
                full.per_batch, full.per_fragment, full.per_job
            ),
            baseline: format!("{:.2}/batch at half the batch size", half.per_batch),
            ratio: constancy,
            ratio_of: "per batch, half / full batch size".into(),
            target: "0.8 to 1.25 (constant)".into(),
            met: (0.8..=1.25).contains(&constancy),
        },
    ])
}

/// Batches of a table of `rows` rows in `fragments` equal fragments.
fn batches(rows: usize, fragments: usize, batch: usize) -> usize {
    let per_fragment = rows.div_ceil(fragments);
    (0..fragments).map(|i| per_fragment.min(rows - (i * per_fragment).min(rows)).div_ceil(batch)).sum()
}

/// Requests of one backfill, split by what they grow with.
struct Tally {
    counts: BTreeMap<(Area, Op), u64>,
    per_batch: f64,
    per_fragment: f64,
    per_job: u64,
}

impl Tally {
    fn of(counts: &BTreeMap<(Area, Op), u64>, batches: usize, fragments: usize) -> Self {
        let (mut batch, mut fragment, mut job) = (0, 0, 0);
        for (&(area, op), &n) in counts {
            match (area, op) {
                (Area::BatchCheckpoint, _) | (Area::Data, Op::Get) => batch += n,
                (Area::FragmentCheckpoint, _) | (Area::Data, _) | (Area::Fill, Op::Put) => fragment += n,
                _ => job += n,
            }
        }
        Tally {
            counts: counts.clone(),
            per_batch: batch as f64 / batches.max(1) as f64,
            per_fragment: fragment as f64 / fragments.max(1) as f64,
            per_job: job,
        }
    }
}

/// `Area Op count, ...`, for the log.
fn breakdown(counts: &BTreeMap<(Area, Op), u64>) -> String {
    counts.iter().map(|((area, op), n)| format!("{area:?} {op:?} {n}")).collect::<Vec<_>>().join(", ")
}

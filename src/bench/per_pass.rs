//! (9) More per pass: two columns backfilled in one pass against one after
//! the other; how soon a slow UDF's first batch is checkpointed with
//! `--batch-size auto` against a fixed 10,240 rows, and what `auto` costs a
//! cheap UDF.

use std::time::{Duration, Instant};

use leman_engine::{BackfillOptions, Error, JobEvent, Result};

use super::{Figure, Sizes, backfill, make_rows, rows_label, secs};
use crate::builtins;
use crate::db::Database;
use crate::table::{AddColumnsOptions, Table};

/// Rounds of the `auto` measurements; the best counts.
const ROUNDS: usize = 2;

/// Rounds of the one-pass measurement, whose gain (about a twentieth) is
/// as small as two rounds' noise; the best counts.
const PAIR_ROUNDS: usize = 5;

/// The slow UDF's cost a row.
const SLOW_MICROS: &str = "20000";

pub(super) async fn figures(db: &Database, sizes: Sizes) -> Result<Vec<Figure>> {
    Ok(vec![one_pass(db, sizes).await?, first_checkpoint_figure(db, sizes).await?, auto_on_a_cheap_udf(db, sizes).await?])
}

/// What automatic sizes cost a cheap UDF: `str_len` with `auto` against
/// 10240, best of two each (each applier's first batches are small).
async fn auto_on_a_cheap_udf(db: &Database, sizes: Sizes) -> Result<Figure> {
    let rows = sizes.pair_rows;
    let table = make_rows(db, "cheap_auto", rows, sizes.pair_fragments).await?;
    let mut udfs = Vec::new();
    for column in (0..ROUNDS).flat_map(|round| [format!("fixed_{round}"), format!("auto_{round}")]) {
        let udf = builtins::get("str_len", &["text"], &[]).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
        udfs.push((column, udf));
    }
    table.add_columns(udfs, AddColumnsOptions::default()).await?;
    let options = BackfillOptions::default().concurrency(2);
    let (mut fixed, mut auto) = (Duration::MAX, Duration::MAX);
    for round in 0..ROUNDS {
        let (_, took) = backfill(&table, &format!("fixed_{round}"), options.clone()).await?;
        fixed = fixed.min(took);
        let (_, took) = backfill(&table, &format!("auto_{round}"), options.clone().auto_batch_size()).await?;
        auto = auto.min(took);
    }
    let ratio = auto.as_secs_f64() / fixed.as_secs_f64().max(f64::EPSILON);
    Ok(Figure {
        number: 9,
        what: format!("str_len {} rows/{} frags, batch size auto", rows_label(rows), sizes.pair_fragments),
        measured: secs(auto),
        baseline: format!("batch size 10240: {}", secs(fixed)),
        ratio,
        ratio_of: format!("job time, auto / fixed, best of {ROUNDS}"),
        target: "<= 1.25".into(),
        met: ratio <= 1.25,
    })
}

/// `str_len` and `sha256` of the text: in one pass, and one after the
/// other; best of `PAIR_ROUNDS` rounds each, alternating.
async fn one_pass(db: &Database, sizes: Sizes) -> Result<Figure> {
    let rows = sizes.pair_rows;
    let table = make_rows(db, "pair", rows, sizes.pair_fragments).await?;
    let mut udfs = Vec::new();
    for round in 0..PAIR_ROUNDS {
        for (kind, udf) in [("len", "str_len"), ("sha", "sha256")] {
            for way in ["one", "two"] {
                let udf = builtins::get(udf, &["text"], &[]).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
                udfs.push((format!("{kind}_{way}_{round}"), udf));
            }
        }
    }
    table.add_columns(udfs, AddColumnsOptions::default()).await?;
    let options = BackfillOptions::default().concurrency(2).refresh_status_secs(60.0);
    let (mut together, mut apart) = (Duration::MAX, Duration::MAX);
    for round in 0..PAIR_ROUNDS {
        let started = Instant::now();
        let columns = [format!("len_one_{round}"), format!("sha_one_{round}")];
        table.backfill_many(columns, options.clone()).await?.wait().await?;
        together = together.min(started.elapsed());
        let (len, _) = backfill(&table, &format!("len_two_{round}"), options.clone()).await?;
        let (sha, _) = backfill(&table, &format!("sha_two_{round}"), options.clone()).await?;
        apart = apart.min(len + sha);
    }
    let ratio = apart.as_secs_f64() / together.as_secs_f64().max(f64::EPSILON);
    Ok(Figure {
        number: 9,
        what: format!("str_len + sha256, {} rows/{} frags, in one pass", rows_label(rows), sizes.pair_fragments),
        measured: secs(together),
        baseline: format!("one after the other: {}", secs(apart)),
        ratio,
        ratio_of: format!("speed-up, best of {PAIR_ROUNDS}"),
        target: "> 1.0".into(),
        met: ratio > 1.0,
    })
}

async fn first_checkpoint_figure(db: &Database, sizes: Sizes) -> Result<Figure> {
    let rows = sizes.slow_rows;
    let table = make_rows(db, "slow", rows, 1).await?;
    let args = [("micros".to_string(), SLOW_MICROS.to_string())];
    let mut udfs = Vec::new();
    for column in ["fixed", "auto"] {
        let udf = builtins::get("busy", &["id"], &args).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
        udfs.push((column.to_string(), udf));
    }
    table.add_columns(udfs, AddColumnsOptions::default()).await?;
    let options = BackfillOptions::default().concurrency(1);
    let fixed = first_checkpoint(&table, "fixed", options.clone().batch_size(10_240)).await?;
    let auto = first_checkpoint(&table, "auto", options.auto_batch_size()).await?;
    let ratio = fixed.as_secs_f64() / auto.as_secs_f64().max(f64::EPSILON);
    Ok(Figure {
        number: 9,
        what: format!("busy 20 ms/row, {rows} rows: first checkpoint, batch size auto"),
        measured: secs(auto),
        baseline: format!("batch size 10240: {}", secs(fixed)),
        ratio,
        ratio_of: "how many times sooner".into(),
        target: ">= 10".into(),
        met: ratio >= 10.0,
    })
}

/// The time from the backfill's start to its first checkpointed batch (or
/// to its end, if that comes first); the job is then cancelled.
async fn first_checkpoint(table: &Table, column: &str, options: BackfillOptions) -> Result<Duration> {
    let started = Instant::now();
    let job = table.backfill(column, options.refresh_status_secs(0.01)).await?;
    let took = loop {
        match job.next_event().await {
            Some(JobEvent::Progress(progress)) if progress.tasks_done > 0 => break started.elapsed(),
            Some(JobEvent::Finished(_)) => return Ok(started.elapsed()),
            Some(JobEvent::Failed(_)) | None => {
                // The job's own error says what went wrong.
                job.wait().await?;
                return Ok(started.elapsed());
            }
            Some(_) => {}
        }
    };
    job.cancel();
    // Cancelled after the batches in flight: its error says so.
    let _ = job.wait().await;
    Ok(took)
}

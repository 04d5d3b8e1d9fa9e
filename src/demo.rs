//! `leman demo`: a sample table, three UDF columns, one embedded backfill each.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};

use crate::{AddColumnsOptions, BackfillOptions, CreateTableOptions, JobEvent, Result, Summary, builtins};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Database directory.
    pub dir: String,
    /// Rows of the sample table.
    pub rows: usize,
    /// Fragments it is split into.
    pub fragments: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self { dir: "./leman-demo".to_string(), rows: 1_000_000, fragments: 8 }
    }
}

const WORDS: [&str; 16] = [
    "lake", "lance", "column", "river", "stone", "vector", "arrow", "mountain", "data", "swift", "quiet",
    "engine", "leman", "geneva", "shore", "wave",
];

/// A deterministic batch of `rows` rows starting at id `first`: `id`,
/// `text` (a few words) and `score`.
pub fn sample_batch(first: usize, rows: usize) -> Result<RecordBatch> {
    let ids: Vec<i64> = (first..first + rows).map(|i| i as i64).collect();
    let text: Vec<String> = ids
        .iter()
        .map(|&id| {
            let mut x = (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d;
            let words = 3 + (x % 6) as usize;
            (0..words)
                .map(|_| {
                    x = x.rotate_left(13).wrapping_mul(0x2545_f491_4f6c_dd1d);
                    WORDS[(x >> 60) as usize]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let score: Vec<f64> = ids.iter().map(|&id| (id % 1000) as f64 / 10.0).collect();
    let columns: [(&str, ArrayRef); 3] = [
        ("id", Arc::new(Int64Array::from(ids))),
        ("text", Arc::new(StringArray::from(text))),
        ("score", Arc::new(Float64Array::from(score))),
    ];
    Ok(RecordBatch::try_from_iter(columns)?)
}

/// Runs the demo, reporting progress lines through `report`.
pub async fn run(options: &DemoOptions, mut report: impl FnMut(&str)) -> Result<Vec<(String, Summary)>> {
    let db = crate::connect(&options.dir).await?;
    let name = format!("demo_{}", std::process::id());
    report(&format!("creating {} rows in {}/{name}.lance", options.rows, db.uri()));
    let chunk = 65_536;
    let batches = (0..options.rows).step_by(chunk).map(|first| sample_batch(first, chunk.min(options.rows - first))).collect::<Result<Vec<_>>>()?;
    let per_fragment = options.rows.div_ceil(options.fragments.max(1)).max(1);
    let table = db.create_table(&name, batches, CreateTableOptions { max_rows_per_file: per_fragment }).await?;
    let columns = [("text_len", "str_len"), ("text_sha256", "sha256"), ("text_embedding", "hash_embed")];
    let udfs = columns
        .iter()
        .map(|(column, udf)| Ok((column.to_string(), builtins::get(udf, &["text"], &[]).map_err(|e| crate::Error::InvalidOptions { reason: e.to_string() })?)))
        .collect::<Result<Vec<_>>>()?;
    table.add_columns(udfs, AddColumnsOptions::default()).await?;
    let mut summaries = Vec::new();
    for (column, udf) in columns {
        let started = Instant::now();
        let job = table.backfill(column, BackfillOptions::default().concurrency(2).refresh_status_secs(0.5)).await?;
        report(&format!("backfilling {column} with {udf} (job {})", job.id()));
        while let Some(event) = job.next_event().await {
            if let JobEvent::Progress(p) = event {
                report(&format!("  {column}: {}/{} rows, {}/{} fragments committed", p.rows_done, p.rows_total, p.fragments_committed, p.fragments_total));
            }
        }
        let summary = job.wait().await?;
        let seconds = started.elapsed().as_secs_f64().max(f64::EPSILON);
        report(&format!(
            "  {column}: {} rows in {:.2} s ({:.0} rows/s), {} commits",
            summary.rows_computed,
            seconds,
            summary.rows_computed as f64 / seconds,
            summary.commits
        ));
        summaries.push((column.to_string(), summary));
    }
    let dataset = table.dataset().await?;
    let mut scan = dataset.scan();
    scan.project(&["id", "text", "text_len", "text_sha256"])?;
    scan.limit(Some(3), None)?;
    let sample = scan.try_into_batch().await?;
    for row in 0..sample.num_rows() {
        let cell = |column: usize| {
            arrow::util::display::ArrayFormatter::try_new(sample.column(column).as_ref(), &Default::default())
                .map(|f| f.value(row).to_string())
                .unwrap_or_default()
        };
        report(&format!("  id={} text={:?} text_len={} text_sha256={}", cell(0), cell(1), cell(2), cell(3)));
    }
    Ok(summaries)
}

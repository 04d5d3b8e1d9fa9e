//! The demo's data: a sample table of text and numbers with three UDF
//! columns, for `leman demo` and the benchmarks.

use std::sync::Arc;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};

use leman_engine::{Error, Result};

use crate::builtins;
use crate::db::{CreateTableOptions, connect};
use crate::table::{AddColumnsOptions, Table};

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

/// The demo's columns: (column, built-in UDF), each reading `text`.
pub const COLUMNS: [(&str, &str); 3] = [("text_len", "str_len"), ("text_sha256", "sha256"), ("text_embedding", "hash_embed")];

/// Creates the sample table in `options.dir` and declares [`COLUMNS`].
pub async fn prepare(options: &DemoOptions) -> Result<Table> {
    let db = connect(&options.dir).await?;
    let name = "demo";
    let previous = std::path::Path::new(db.uri()).join("demo.lance");
    if previous.is_dir() {
        // The demo's own table from an earlier run.
        std::fs::remove_dir_all(&previous)?;
    }
    let chunk = 65_536;
    let batches = (0..options.rows)
        .step_by(chunk)
        .map(|first| sample_batch(first, chunk.min(options.rows - first)))
        .collect::<Result<Vec<_>>>()?;
    let per_fragment = options.rows.div_ceil(options.fragments.max(1)).max(1);
    let table = db.create_table(name, batches, CreateTableOptions { max_rows_per_file: per_fragment, ..Default::default() }).await?;
    let mut udfs = Vec::new();
    for (column, udf) in COLUMNS {
        let udf = builtins::get(udf, &["text"], &[]).map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
        udfs.push((column, udf));
    }
    table.add_columns(udfs, AddColumnsOptions::default()).await?;
    Ok(table)
}

/// The first `n` rows of the demo table, one line each.
pub async fn sample_rows(table: &Table, n: i64) -> Result<Vec<String>> {
    let dataset = table.dataset().await?;
    let mut scan = dataset.scan();
    scan.project(&["id", "text", "text_len", "text_sha256"])?;
    scan.limit(Some(n), None)?;
    let sample = scan.try_into_batch().await?;
    let cell = |column: usize, row: usize| {
        ArrayFormatter::try_new(sample.column(column).as_ref(), &FormatOptions::default())
            .map(|f| f.value(row).to_string())
            .unwrap_or_default()
    };
    Ok((0..sample.num_rows())
        .map(|row| format!("id={} text={:?} text_len={} text_sha256={}", cell(0, row), cell(1, row), cell(2, row), cell(3, row)))
        .collect())
}

//! Helpers for the tests of this crate and of the crates above it (the
//! `testing` feature): a real Lance table in a temporary directory, with a
//! column declared for a UDF that a registry can build again; and
//! [`faults`], an object store wrapper that fails or holds chosen requests.

pub mod faults;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchIterator, StringArray};
use arrow_schema::{DataType, Field, Schema};
use lance::Dataset;
use lance::dataset::{NewColumnTransform, WriteParams};
use leman_applier::Udf;
use tempfile::TempDir;

use crate::error::Result;
use crate::location::TableLocation;
use crate::registry::UdfRegistry;
use crate::storage::StorageOptions;
use crate::udf_record::UdfRecord;

/// A table with `id` (int64, 0..rows), `text` (`"row <id>"`) and a column
/// `n` declared (all null) for a UDF (`text_len` unless another is given),
/// removed with its directory when dropped.
#[derive(Debug)]
pub struct UdfTable {
    /// The directory holding it.
    pub dir: TempDir,
    /// The table's URI.
    pub uri: String,
    /// Its version once `n` is declared.
    pub version: u64,
    /// The UDF of `n`.
    pub udf: Udf,
    /// A registry holding that UDF.
    pub registry: UdfRegistry,
}

impl UdfTable {
    /// Where the table is, as the engine takes it.
    pub fn location(&self) -> TableLocation {
        TableLocation { uri: self.uri.clone(), storage_options: StorageOptions::new(), store_wrapper: None }
    }
}

/// `rows` rows in fragments of `rows_per_fragment`.
pub async fn udf_table(rows: usize, rows_per_fragment: usize) -> Result<UdfTable> {
    udf_table_with(rows, rows_per_fragment, text_len()).await
}

/// The same table with column `n` declared for `udf`, which reads `text`
/// and computes int32 values.
pub async fn udf_table_with(rows: usize, rows_per_fragment: usize, udf: Udf) -> Result<UdfTable> {
    let dir = tempfile::tempdir()?;
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("row {i}"))));
    let batch = RecordBatch::try_from_iter([("id", ids), ("text", text)])?;
    let uri = dir.path().join("t.lance").to_string_lossy().into_owned();
    let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
    let params = WriteParams { max_rows_per_file: rows_per_fragment, ..WriteParams::default() };
    let mut dataset = Dataset::write(reader, uri.as_str(), Some(params)).await?;
    let field = Field::new("n", DataType::Int32, true).with_metadata(UdfRecord::of(&udf).to_metadata());
    dataset.add_columns(NewColumnTransform::AllNulls(Arc::new(Schema::new(vec![field]))), None, None).await?;
    let registry = UdfRegistry::new();
    registry.register(udf.clone());
    Ok(UdfTable { dir, uri, version: dataset.version().version, udf, registry })
}

/// The UTF-8 length of its one input, as int32.
pub fn text_len() -> Udf {
    Udf::array("text_len", Field::new("n", DataType::Int32, true), &["text"], |cols| {
        let lengths: Int32Array = cols[0].as_string::<i32>().iter().map(|s| s.map(|s| s.len() as i32)).collect();
        Ok(Arc::new(lengths) as ArrayRef)
    })
    .with_version("1")
}

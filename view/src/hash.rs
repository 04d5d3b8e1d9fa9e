//! Hashes of a row's values, by which a refresh tells a changed source row
//! from an unchanged one without keeping the old values: each value set is
//! encoded in Arrow's row format (one byte string per row, the same for
//! equal values of one type) and hashed with SHA-256, of which 16 bytes
//! are kept.

use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{ArrowError, DataType};
use sha2::{Digest, Sha256};

/// Bytes of a hash.
pub const HASH_BYTES: i32 = 16;

/// The type of a hash column.
pub fn hash_type() -> DataType {
    DataType::FixedSizeBinary(HASH_BYTES)
}

/// Hashes of `columns` of each row of `batch` (a hash of nothing where
/// `columns` is empty).
pub fn row_hashes(batch: &RecordBatch, columns: &[String]) -> Result<Vec<[u8; 16]>, ArrowError> {
    if columns.is_empty() {
        return Ok(vec![digest(&[]); batch.num_rows()]);
    }
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|name| {
            batch.column_by_name(name).cloned().ok_or_else(|| ArrowError::SchemaError(format!("no column {name} to hash")))
        })
        .collect::<Result<_, _>>()?;
    let converter = RowConverter::new(arrays.iter().map(|array| SortField::new(array.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&arrays)?;
    Ok(rows.iter().map(|row| digest(row.as_ref())).collect())
}

/// The column of `hashes`.
pub fn hash_column(hashes: &[[u8; 16]]) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(FixedSizeBinaryArray::try_from_iter(hashes.iter())?))
}

fn digest(bytes: &[u8]) -> [u8; 16] {
    let full = Sha256::digest(bytes);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&full[..16]);
    hash
}

//! The baseline a backfill is measured against: the same work written by
//! hand against lance, with nothing of Leman's between.
//!
//! Fragment by fragment, it scans the input column, computes the output
//! with the same kernel as the built-in `str_len`, and streams the values
//! into `write_columns`; then one `DataReplacement` commits every fragment.
//! No actors, no checkpoints, no scheduler: what is left of a backfill is
//! lance's reading, writing and committing.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema as ArrowSchema;
use futures::StreamExt;
use lance::Dataset;
use lance::dataset::CommitBuilder;
use lance::dataset::transaction::{DataReplacementGroup, Operation, Transaction};
use leman_engine::Result;

use crate::builtins;

/// Fills `output` with `str_len(input)` for every row of the table at
/// `uri`; returns the rows written.
pub async fn str_len(uri: &str, input: &str, output: &str) -> Result<u64> {
    let dataset = Arc::new(Dataset::open(uri).await?);
    let column_schema = dataset.schema().project(&[output])?;
    let output_schema = Arc::new(ArrowSchema::from(&column_schema));
    let mut groups = Vec::new();
    let mut rows = 0;
    for fragment in dataset.get_fragments() {
        rows += fragment.physical_rows().await? as u64;
        let mut scan = dataset.scan();
        scan.with_fragments(vec![fragment.metadata().clone()]).project(&[input])?;
        let schema = output_schema.clone();
        let values = scan.try_into_stream().await?.map(move |batch| {
            let batch = batch?;
            let text = batch
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| lance::Error::invalid_input(format!("str_len reads utf8, not {}", batch.column(0).data_type())))?;
            let lengths = builtins::str_lengths(text);
            Ok(RecordBatch::try_new(schema.clone(), vec![Arc::new(lengths) as ArrayRef])?)
        });
        let DataReplacementGroup(_, data_file) = fragment.write_columns(values, &column_schema).await?;
        groups.push(DataReplacementGroup(fragment.id() as u64, data_file));
    }
    let transaction = Transaction::new(dataset.version().version, Operation::DataReplacement { replacements: groups }, None);
    CommitBuilder::new(dataset).execute(transaction).await?;
    Ok(rows)
}

//! The baseline a backfill is measured against: the same work written by
//! hand against lance, with nothing of Leman's between.
//!
//! Fragment by fragment, it scans the input column, computes the output
//! with the same kernel as the built-in `str_len`, and streams the values
//! into `write_columns`; then one `DataReplacement` commits every fragment.
//! No actors, no checkpoints, no scheduler: what is left of a backfill is
//! lance's reading, writing and committing. With a parallelism above one,
//! that many fragments are filled at once, each on a task of its own, so
//! that the baseline can use every core as the appliers do.
//!
//! `leman bench-raw` runs it as a process of its own, declaring the column
//! first, for the figure that times the commands a user types.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use futures::{StreamExt, TryStreamExt};
use lance::Dataset;
use lance::dataset::fragment::FileFragment;
use lance::dataset::transaction::{DataReplacementGroup, Operation, Transaction};
use lance::dataset::{CommitBuilder, NewColumnTransform};
use lance::datatypes::Schema as LanceSchema;
use leman_engine::{Error, Result};

use crate::builtins;

/// Fills `output` with `str_len(input)` for every row of the table at
/// `uri`, `parallelism` fragments at a time; returns the rows written.
pub async fn str_len(uri: &str, input: &str, output: &str, parallelism: usize) -> Result<u64> {
    let dataset = Arc::new(Dataset::open(uri).await?);
    let column_schema = Arc::new(dataset.schema().project(&[output])?);
    let input: Arc<str> = Arc::from(input);
    let fills = dataset.get_fragments().into_iter().map(|fragment| {
        let (input, column_schema) = (input.clone(), column_schema.clone());
        let fill = async move { fill_fragment(fragment, &input, &column_schema).await };
        async move {
            if parallelism > 1 {
                tokio::spawn(fill).await.map_err(|e| Error::Io(std::io::Error::other(format!("a raw fill panicked: {e}"))))?
            } else {
                fill.await
            }
        }
    });
    let filled: Vec<(DataReplacementGroup, u64)> = futures::stream::iter(fills).buffer_unordered(parallelism.max(1)).try_collect().await?;
    let rows = filled.iter().map(|(_, rows)| rows).sum();
    let groups = filled.into_iter().map(|(group, _)| group).collect();
    let transaction = Transaction::new(dataset.version().version, Operation::DataReplacement { replacements: groups }, None);
    CommitBuilder::new(dataset).execute(transaction).await?;
    Ok(rows)
}

/// One fragment's new data file of `str_len(input)`, and its rows.
async fn fill_fragment(fragment: FileFragment, input: &str, column_schema: &LanceSchema) -> Result<(DataReplacementGroup, u64)> {
    let rows = fragment.physical_rows().await? as u64;
    let output_schema = Arc::new(ArrowSchema::from(column_schema));
    let mut scan = fragment.scan();
    scan.project(&[input])?;
    let values = scan.try_into_stream().await?.map(move |batch| {
        let batch = batch?;
        let text = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| lance::Error::invalid_input(format!("str_len reads utf8, not {}", batch.column(0).data_type())))?;
        let lengths = builtins::str_lengths(text);
        Ok(RecordBatch::try_new(output_schema.clone(), vec![Arc::new(lengths) as ArrayRef])?)
    });
    let DataReplacementGroup(_, data_file) = fragment.write_columns(values, column_schema).await?;
    Ok((DataReplacementGroup(fragment.id() as u64, data_file), rows))
}

/// Declares `output`, an all-null `int32` column of the table at `uri`, as
/// `leman add-column` does, without a UDF record.
pub async fn declare(uri: &str, output: &str) -> Result<()> {
    let mut dataset = Dataset::open(uri).await?;
    let field = Field::new(output, DataType::Int32, true);
    dataset.add_columns(NewColumnTransform::AllNulls(Arc::new(ArrowSchema::new(vec![field]))), None, None).await?;
    Ok(())
}

//! Writing one fragment's data file from its batch checkpoints.
//!
//! Checkpoints are read one at a time as `write_columns` pulls them, so a
//! writer holds one batch in memory, not the fragment (batches an applier
//! of this process handed off in memory are taken from there, and
//! released once the fragment's record is stored).

use std::sync::Arc;

use futures::StreamExt;
use lance::Dataset;
use lance_core::datatypes::Schema as LanceSchema;
use lance_table::format::DataFile;
use leman_checkpoint::{CheckpointStore, FragmentRecord};

use crate::actor::FragmentWrite;
use crate::error::WriterError;

/// What every writer of one job shares.
#[derive(Debug, Clone)]
pub struct WriterContext {
    /// The dataset at the job's read version.
    pub dataset: Arc<Dataset>,
    /// The output columns' schema, as the dataset defines it (field ids
    /// included), in the dataset's order.
    pub column_schema: LanceSchema,
    /// Where checkpoints are.
    pub checkpoints: CheckpointStore,
}

impl WriterContext {
    /// The context of a job writing `columns` of `dataset` into one data
    /// file per fragment.
    pub fn new(dataset: Arc<Dataset>, columns: &[&str], checkpoints: CheckpointStore) -> Result<Self, WriterError> {
        if let Some(dropped) = columns.iter().find(|column| dataset.schema().field(column).is_none()) {
            return Err(WriterError::ColumnDropped { column: dropped.to_string(), version: dataset.version().version });
        }
        let column_schema = dataset.schema().project(columns)?;
        Ok(Self { dataset, column_schema, checkpoints })
    }
}

/// Writes fragment `write.fragment_id`'s new data file from its batch
/// checkpoints (in physical row order, covering every row), then stores its
/// fragment checkpoint under `write.fragment_key`.
pub async fn write_fragment(context: &WriterContext, write: FragmentWrite) -> Result<DataFile, WriterError> {
    let FragmentWrite { fragment_id, batches, fragment_key, base_output_file, origin, fill_tags } = write;
    let fragment = context
        .dataset
        .get_fragment(fragment_id as usize)
        .ok_or(WriterError::MissingFragment { fragment_id })?;
    let keys: Vec<_> = batches.iter().map(|(_, key)| key.clone()).collect();
    let store = context.checkpoints.clone();
    let stream = futures::stream::iter(batches).then(move |(rows, key)| {
        let store = store.clone();
        async move {
            match store.load_batch(&key).await {
                Ok(Some((_, batch))) => Ok(batch),
                Ok(None) => Err(lance::Error::io(
                    WriterError::MissingCheckpoint { fragment_id, rows }.to_string(),
                )),
                Err(source) => Err(lance::Error::io(WriterError::Checkpoint { fragment_id, source }.to_string())),
            }
        }
    });
    let group = fragment.write_columns(stream, &context.column_schema).await?;
    let record = FragmentRecord { data_file: group.1.clone(), base_output_file, origin: Some(origin) };
    let checkpoint_error = |source| WriterError::Checkpoint { fragment_id, source };
    // The fills first: a data file that a fragment record names says which
    // UDF computed each column, where one did.
    for (field_id, tag) in &fill_tags {
        context.checkpoints.fills().record(*field_id, &group.1.path, tag).await.map_err(checkpoint_error)?;
    }
    context.checkpoints.put_fragment(&fragment_key, &record).await.map_err(checkpoint_error)?;
    // The record now stands for the batches: held ones need not be kept.
    context.checkpoints.release_batches(&keys).await;
    Ok(group.1)
}

//! Writing one fragment's data file from its batch checkpoints.
//!
//! Checkpoints are read one at a time as `write_columns` pulls them, so a
//! writer holds one batch in memory, not the fragment.

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
    /// The field id of the column that stands for them (its fills are
    /// recorded).
    pub lead_field_id: i32,
    /// Where checkpoints are.
    pub checkpoints: CheckpointStore,
}

impl WriterContext {
    /// The context of a job writing `columns` of `dataset` into one data
    /// file per fragment; the first stands for them all.
    pub fn new(dataset: Arc<Dataset>, columns: &[&str], checkpoints: CheckpointStore) -> Result<Self, WriterError> {
        let column_schema = dataset.schema().project(columns)?;
        let lead = columns.first().and_then(|lead| dataset.schema().field(lead));
        let lead_field_id = lead.map(|field| field.id).ok_or_else(|| WriterError::ColumnDropped {
            column: columns.first().copied().unwrap_or_default().to_string(),
            version: dataset.version().version,
        })?;
        Ok(Self { dataset, column_schema, lead_field_id, checkpoints })
    }
}

/// Writes fragment `write.fragment_id`'s new data file from its batch
/// checkpoints (in physical row order, covering every row), then stores its
/// fragment checkpoint under `write.fragment_key`.
pub async fn write_fragment(context: &WriterContext, write: FragmentWrite) -> Result<DataFile, WriterError> {
    let FragmentWrite { fragment_id, batches, fragment_key, base_output_file, origin, fill_tag } = write;
    let fragment = context
        .dataset
        .get_fragment(fragment_id as usize)
        .ok_or(WriterError::MissingFragment { fragment_id })?;
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
    // The fill first: a data file that a fragment record names says which
    // UDF computed it, where one did.
    if let Some(tag) = &fill_tag {
        context.checkpoints.fills().record(context.lead_field_id, &group.1.path, tag).await.map_err(checkpoint_error)?;
    }
    context.checkpoints.put_fragment(&fragment_key, &record).await.map_err(checkpoint_error)?;
    Ok(group.1)
}

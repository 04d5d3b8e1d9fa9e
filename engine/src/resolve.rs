//! Everything a user can get wrong, checked before any work starts.

use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use lance::Dataset;
use leman_applier::{RowFilter, Udf, default_filter};

use crate::error::{Error, Result};
use crate::location::TableLocation;
use crate::options::BackfillOptions;
use crate::registry::UdfRegistry;
use crate::udf_record::UdfRecord;

/// A backfill with every name resolved and checked.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The table, whose URI checkpoints key.
    pub table: TableLocation,
    /// The dataset at the job's read version.
    pub dataset: Arc<Dataset>,
    /// The output column.
    pub column: String,
    /// Its field id in the dataset.
    pub field_id: i32,
    /// The UDF, input overrides applied.
    pub udf: Udf,
    /// The filter in force.
    pub filter: RowFilter,
}

/// Resolves a backfill of `column` of `table`, finding UDFs in `registry`.
pub(crate) async fn resolve(
    table: &TableLocation,
    registry: &UdfRegistry,
    column: &str,
    options: &BackfillOptions,
) -> Result<Resolved> {
    options.validate()?;
    let latest = table.open_dataset().await?;
    let dataset = match options.read_version {
        Some(version) => latest.checkout_version(version).await.map_err(|source| Error::VersionNotFound {
            table: table.uri.clone(),
            version,
            source,
        })?,
        None => latest,
    };
    let field = dataset.schema().field(column).ok_or_else(|| Error::ColumnNotFound {
        table: table.uri.clone(),
        column: column.to_string(),
    })?;
    let field_id = field.id;
    let record = UdfRecord::from_metadata(&field.metadata);
    let udf = match (&options.udf, &record) {
        (Some(udf), _) => udf.clone(),
        (None, Some(record)) => record.build(registry, column)?,
        (None, None) => return Err(Error::NoUdf { column: column.to_string() }),
    };
    let udf = match &options.input_columns {
        Some(_) if udf.takes_record_batch() => {
            return Err(Error::InvalidOptions {
                reason: format!("UDF {} takes a record batch; its input columns cannot be overridden", udf.name()),
            });
        }
        Some(inputs) => udf.with_inputs(inputs),
        None => udf,
    };
    let schema = ArrowSchema::from(dataset.schema());
    for input in udf.inputs() {
        if schema.field_with_name(input).is_err() {
            return Err(Error::InputNotFound {
                udf: udf.name().to_string(),
                input: input.clone(),
                table: table.uri.clone(),
            });
        }
    }
    let expected = field.data_type();
    if &expected != udf.data_type() {
        return Err(Error::TypeMismatch {
            udf: udf.name().to_string(),
            column: column.to_string(),
            expected: expected.to_string(),
            actual: udf.data_type().to_string(),
        });
    }
    let sql = options.filter.clone().unwrap_or_else(|| default_filter(column));
    let filter = RowFilter::compile(&sql, &schema).map_err(Error::InvalidFilter)?;
    Ok(Resolved {
        table: table.clone(),
        dataset: Arc::new(dataset),
        column: column.to_string(),
        field_id,
        udf,
        filter,
    })
}

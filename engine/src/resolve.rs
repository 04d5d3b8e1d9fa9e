//! Everything a user can get wrong, checked before any work starts.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use lance::Dataset;
use leman_applier::{OutputColumns, RowFilter, Udf};
use leman_checkpoint::{FillIndex, fill_tag};

use crate::error::{Error, Result};
use crate::location::TableLocation;
use crate::options::BackfillOptions;
use crate::registry::UdfRegistry;
use crate::row_errors::retry_filter;
use crate::stores::TableStores;
use crate::udf_record::{UdfRecord, Unpacked};

/// A backfill with every name resolved and checked.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The table, whose URI checkpoints key.
    pub table: TableLocation,
    /// The dataset at the job's read version.
    pub dataset: Arc<Dataset>,
    /// The column that stands for the output columns (the only one, or
    /// the lead of unpacked siblings): leases, records and keys name it.
    pub column: String,
    /// Its field id in the dataset.
    pub field_id: i32,
    /// The columns written.
    pub outputs: OutputColumns,
    /// The UDF, input overrides applied.
    pub udf: Udf,
    /// The filter in force.
    pub filter: RowFilter,
    /// Which UDF filled each of the column's data files.
    pub fills: Fills,
}

/// The column's fills, the tag of its UDF now, and whether stale fragments
/// are recomputed whole (under the default filter only: a filter of the
/// user's says which rows to compute).
#[derive(Debug)]
pub(crate) struct Fills {
    pub tags: HashMap<String, String>,
    pub current: String,
    pub recompute_stale: bool,
}

impl Fills {
    /// The tag of the file the column's values are read from now, if any.
    fn tag_of(&self, data_file: Option<&String>) -> Option<&str> {
        data_file.and_then(|file| FillIndex::tag_of(&self.tags, file))
    }

    /// Whether every live row of a fragment whose column is read from
    /// `data_file` is to be computed: another UDF or version computed its
    /// values (unknown origins are taken as they are).
    pub fn is_stale(&self, data_file: Option<&String>) -> bool {
        self.recompute_stale && self.tag_of(data_file).is_some_and(|tag| tag != self.current)
    }

    /// The fill of the file a job writes over `data_file`: the UDF now if it
    /// computes every value the file holds (all rows, or the file is new,
    /// or every kept value came from the same UDF), else the old file's.
    pub fn tag_after(&self, data_file: Option<&String>, all_rows: bool) -> Option<String> {
        if all_rows || data_file.is_none() {
            return Some(self.current.clone());
        }
        self.tag_of(data_file).map(str::to_string)
    }
}

/// Resolves a backfill of `column` of `table`, finding UDFs in `registry`
/// and, in the table's `stores`, the failed rows of `retry_errors` and the
/// column's fills.
pub(crate) async fn resolve(
    table: &TableLocation,
    registry: &UdfRegistry,
    column: &str,
    options: &BackfillOptions,
    stores: &TableStores,
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
    let outputs = output_columns(&dataset, column).ok_or_else(|| Error::ColumnNotFound {
        table: table.uri.clone(),
        column: column.to_string(),
    })?;
    let column = outputs.lead();
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
    let udf = match options.on_error {
        Some(policy) => udf.with_error_policy(policy),
        None => udf,
    };
    let udf = match options.retry_backoff {
        Some(backoff) => udf.with_retry_backoff(backoff),
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
    check_fills(&dataset, &outputs, &udf)?;
    let sql = match &options.retry_errors {
        None => options.filter.clone().unwrap_or_else(|| outputs.default_filter()),
        Some(job_id) => {
            let records = stores.row_errors.list(Some(job_id)).await?;
            if let Some(other) = records.iter().find(|r| r.column != column) {
                return Err(Error::InvalidOptions {
                    reason: format!("job {job_id} computed column {}, not {column}; retry its errors with --column {}", other.column, other.column),
                });
            }
            let rows = retry_filter(&records)
                .ok_or_else(|| Error::NoFailedRows { table: table.uri.clone(), job_id: job_id.clone() })?;
            match &options.filter {
                Some(within) => format!("({rows}) AND ({within})"),
                None => rows,
            }
        }
    };
    let filter = RowFilter::compile(&sql, &schema).map_err(Error::InvalidFilter)?;
    let fills = Fills {
        tags: stores.checkpoints.fills().tags(field_id).await?,
        current: fill_tag(udf.name(), &udf.fingerprint()),
        recompute_stale: options.filter.is_none() && options.retry_errors.is_none(),
    };
    Ok(Resolved {
        table: table.clone(),
        dataset: Arc::new(dataset),
        column: column.to_string(),
        field_id,
        outputs: outputs.clone(),
        udf,
        filter,
        fills,
    })
}

/// The columns a backfill of `column` writes: `column` alone, or, where it
/// is one of unpacked siblings (or names their group), all of them in
/// schema order. `None` when the table has no such column or group.
pub fn output_columns(dataset: &Dataset, column: &str) -> Option<OutputColumns> {
    let fields = &dataset.schema().fields;
    let group = match fields.iter().find(|f| f.name == column) {
        Some(field) => match Unpacked::from_metadata(&field.metadata) {
            Some(unpacked) => unpacked.group,
            None => return Some(OutputColumns::Single(column.to_string())),
        },
        None => column.to_string(),
    };
    let siblings: Vec<(String, String)> = fields
        .iter()
        .filter_map(|f| Unpacked::from_metadata(&f.metadata).filter(|u| u.group == group).map(|u| (f.name.clone(), u.field)))
        .collect();
    (!siblings.is_empty()).then_some(OutputColumns::Unpacked(siblings))
}

/// Checks that `udf`'s values fill `outputs` of `dataset`: each column's
/// type is the one the UDF gives it.
pub fn check_fills(dataset: &Dataset, outputs: &OutputColumns, udf: &Udf) -> Result<()> {
    let fields = outputs.fields_of(udf.data_type()).map_err(|reason| Error::InvalidOptions {
        reason: format!("UDF {} cannot fill columns {}: {reason}", udf.name(), outputs.columns().join(", ")),
    })?;
    for field in fields {
        let expected = dataset.schema().field(field.name()).map(|f| f.data_type());
        if expected.as_ref() != Some(field.data_type()) {
            return Err(Error::TypeMismatch {
                udf: udf.name().to_string(),
                column: field.name().to_string(),
                expected: expected.map(|t| t.to_string()).unwrap_or_default(),
                actual: field.data_type().to_string(),
            });
        }
    }
    Ok(())
}

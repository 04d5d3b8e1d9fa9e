//! Everything a user can get wrong, checked before any work starts.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use lance::Dataset;
use leman_applier::{JobNames, JobPart, OutputColumns, RowFilter, Udf};
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
    /// The first (or only) column's part.
    pub lead: ResolvedPart,
    /// The other columns' parts, in the order asked, for a backfill of
    /// several columns in one pass.
    pub rest: Vec<ResolvedPart>,
}

impl Resolved {
    /// Every part, the lead first.
    pub fn parts(&self) -> impl Iterator<Item = &ResolvedPart> {
        std::iter::once(&self.lead).chain(&self.rest)
    }

    /// How checkpoint keys and batch records name the job.
    pub fn names(&self) -> JobNames {
        JobNames::of(self.parts().map(|p| (p.column.clone(), p.udf.name().to_string(), p.udf.fingerprint())).collect())
    }

    /// The columns, as job records name them: `a`, or `a,b` for several.
    pub fn columns_label(&self) -> String {
        self.parts().map(|p| p.column.as_str()).collect::<Vec<_>>().join(",")
    }

    /// The rows of a fragment that some part computes, as SQL, where
    /// `all_rows` says which parts compute every live row (then `None`:
    /// every live row).
    pub fn selection_sql(&self, all_rows: &[bool]) -> Option<String> {
        if all_rows.iter().any(|all| *all) {
            return None;
        }
        Some(match self.rest.is_empty() {
            true => self.lead.filter.sql().to_string(),
            false => self.parts().map(|part| format!("({})", part.filter.sql())).collect::<Vec<_>>().join(" OR "),
        })
    }

    /// The filters, as job records show them: one each, `; ` between.
    pub fn filters_label(&self) -> String {
        self.parts().map(|p| p.filter.sql()).collect::<Vec<_>>().join("; ")
    }
}

/// One column of a backfill (or group of unpacked siblings): its UDF,
/// filter and fills.
#[derive(Debug)]
pub(crate) struct ResolvedPart {
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

/// Resolves a backfill of `columns` of `table` (one, or several in one
/// pass), finding UDFs in `registry` and, in the table's `stores`, the
/// failed rows of `retry_errors` and the columns' fills.
pub(crate) async fn resolve(
    table: &TableLocation,
    registry: &UdfRegistry,
    columns: &[String],
    options: &BackfillOptions,
    stores: &TableStores,
) -> Result<Resolved> {
    options.validate()?;
    let Some((first, others)) = columns.split_first() else {
        return Err(Error::InvalidOptions { reason: "name at least one column to backfill".to_string() });
    };
    if !others.is_empty() {
        refuse_for_several(options)?;
    }
    let dataset = open_at(table, options).await?;
    let lead = resolve_part(table, &dataset, registry, first, options, stores).await?;
    let mut rest: Vec<ResolvedPart> = Vec::new();
    for column in others {
        let part = resolve_part(table, &dataset, registry, column, options, stores).await?;
        if let Some(twice) = std::iter::once(&lead).chain(&rest).find(|p| p.column == part.column) {
            return Err(Error::InvalidOptions {
                reason: format!("column {column} is named twice (it is filled with {}); name each column once", twice.column),
            });
        }
        rest.push(part);
    }
    if !rest.is_empty() {
        // Parts in schema order: the order of the columns in the data file
        // the writer makes, and one set of keys whatever order was asked.
        let position = |part: &ResolvedPart| dataset.schema().fields.iter().position(|f| f.id == part.field_id);
        let mut parts: Vec<ResolvedPart> = std::iter::once(lead).chain(rest).collect();
        parts.sort_by_key(|part| position(part));
        refuse_mixed_fragments(&dataset, &parts)?;
        let mut parts = parts.into_iter();
        if let Some(lead) = parts.next() {
            return Ok(Resolved { table: table.clone(), dataset: Arc::new(dataset), lead, rest: parts.collect() });
        }
        return Err(Error::InvalidOptions { reason: "name at least one column to backfill".to_string() });
    }
    Ok(Resolved { table: table.clone(), dataset: Arc::new(dataset), lead, rest })
}

/// Lance replaces columns of a fragment with one data file only where the
/// fragment holds all of them or none: refuses, naming them, fragments
/// that hold some of `parts`' columns and not others.
fn refuse_mixed_fragments(dataset: &Dataset, parts: &[ResolvedPart]) -> Result<()> {
    let mut mixed: Vec<(u64, Vec<&str>, Vec<&str>)> = Vec::new();
    for fragment in dataset.get_fragments() {
        let files = &fragment.metadata().files;
        let (held, missing): (Vec<&ResolvedPart>, Vec<&ResolvedPart>) =
            parts.iter().partition(|part| files.iter().any(|f| f.fields.contains(&part.field_id)));
        if !held.is_empty() && !missing.is_empty() {
            let held = held.into_iter().map(|p| p.column.as_str()).collect();
            let missing = missing.into_iter().map(|p| p.column.as_str()).collect();
            mixed.push((fragment.id() as u64, held, missing));
        }
    }
    let Some((_, held, missing)) = mixed.first() else { return Ok(()) };
    let ids: Vec<String> = mixed.iter().take(10).map(|(id, _, _)| id.to_string()).collect();
    let more = if mixed.len() > 10 { format!(" and {} more", mixed.len() - 10) } else { String::new() };
    Err(Error::InvalidOptions {
        reason: format!(
            "fragments {}{more} hold values of {} but not of {}, and Lance writes several columns into one file only where a fragment holds all of them or none; backfill these columns one at a time (--column {})",
            ids.join(", "),
            held.join(", "),
            missing.join(", "),
            missing.join(" then --column "),
        ),
    })
}

/// What a backfill of several columns in one pass cannot take: options
/// that name one column's UDF, failed rows or staging.
fn refuse_for_several(options: &BackfillOptions) -> Result<()> {
    let refused = [
        (options.udf.is_some(), "a UDF override"),
        (options.input_columns.is_some(), "input column overrides"),
        (options.retry_errors.is_some(), "retry_errors"),
        (options.stage, "stage"),
        (options.queue, "queue"),
    ];
    match refused.into_iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(Error::InvalidOptions {
            reason: format!("a backfill of several columns in one pass takes no {what}; backfill the columns one at a time for it"),
        }),
        None => Ok(()),
    }
}

/// The table at the version the backfill reads.
async fn open_at(table: &TableLocation, options: &BackfillOptions) -> Result<Dataset> {
    let latest = table.open_dataset().await?;
    let dataset = match options.read_version {
        Some(version) => latest.checkout_version(version).await.map_err(|source| Error::VersionNotFound {
            table: table.uri.clone(),
            version,
            source,
        })?,
        None => latest,
    };
    Ok(dataset)
}

/// One column's part of a backfill of `dataset`.
async fn resolve_part(
    table: &TableLocation,
    dataset: &Dataset,
    registry: &UdfRegistry,
    column: &str,
    options: &BackfillOptions,
    stores: &TableStores,
) -> Result<ResolvedPart> {
    let outputs = output_columns(dataset, column).ok_or_else(|| Error::ColumnNotFound {
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
    check_fills(dataset, &outputs, &udf)?;
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
    Ok(ResolvedPart { column: column.to_string(), field_id, outputs: outputs.clone(), udf, filter, fills })
}

impl ResolvedPart {
    /// What the job's appliers compute for this part.
    pub fn job_part(&self) -> JobPart {
        JobPart { udf: self.udf.clone(), outputs: self.outputs.clone(), filter: self.filter.clone() }
    }

    /// Whether its filter is the default one: rows whose column is null.
    pub fn has_default_filter(&self) -> bool {
        self.filter.sql() == self.outputs.default_filter()
    }
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

//! What a view materializes: the query as a user builds it
//! ([`ViewQuery`]) and as the view's table records it ([`ViewRecord`], in
//! the schema's metadata), with the source version it reflects.

use std::collections::HashMap;

use leman_engine::{Error, Result, Udf};
use serde::{Deserialize, Serialize};

/// Schema metadata key of the view's record (JSON).
pub const VIEW_KEY: &str = "leman.view";
/// Schema metadata key of the source version the view's rows reflect.
pub const SOURCE_VERSION_KEY: &str = "leman.view.source_version";
/// Schema metadata key of the view version whose rows reflect the source
/// version recorded, written with it: a commit after it that changes rows
/// (a refresh cut off before recording the version its rows reflect, or a
/// writer other than leman) makes the next refresh read its source whole.
pub const ROWS_VERSION_KEY: &str = "leman.view.rows_version";

/// Each view row's source row: the source's stable row id where it has
/// them, else its row address at the version reflected.
pub const SOURCE_ROW_ID: &str = "__source_row_id";
/// Hash of the row's copied values (every copied column, UDF inputs
/// included): a row whose hash is unchanged needs no rewrite.
pub const VALUES_HASH: &str = "__values_hash";
/// Hash of the row's UDF inputs: a row rewritten with unchanged inputs
/// keeps its UDF values instead of computing them again.
pub const INPUTS_HASH: &str = "__inputs_hash";

/// The view's own columns, before the copied ones.
pub const META_COLUMNS: [&str; 3] = [SOURCE_ROW_ID, VALUES_HASH, INPUTS_HASH];

/// A query over a source table, to materialize as a view: the columns to
/// copy, an optional SQL filter, UDF columns and an optional shuffle.
///
/// ```no_run
/// # fn demo(len: leman_engine::Udf) {
/// let query = leman_view::ViewQuery::new("/data/docs.lance")
///     .select(["id", "text"])
///     .filter("lang = 'en'")
///     .column("len", len)
///     .shuffle(42);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ViewQuery {
    /// The source table's URI (reached with the view's storage options).
    pub source: String,
    /// Columns copied from the source, in order; empty copies every column
    /// the source has when the view is created.
    pub select: Vec<String>,
    /// SQL filter of the source rows the view holds.
    pub filter: Option<String>,
    /// UDF columns, computed on the view's rows: name and UDF (its inputs
    /// are source columns, copied into the view where not selected; its
    /// error policy is the column's).
    pub columns: Vec<(String, Udf)>,
    /// Writes each refresh's new rows in an order shuffled by this seed.
    pub shuffle_seed: Option<u64>,
    /// Rows per data file the view writes (Lance's `max_rows_per_file`).
    pub max_rows_per_file: usize,
}

impl ViewQuery {
    /// Every column of `source`, every row, no UDF column.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            select: Vec::new(),
            filter: None,
            columns: Vec::new(),
            shuffle_seed: None,
            max_rows_per_file: 1024 * 1024,
        }
    }

    /// Copies these columns.
    pub fn select<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.select = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps the source rows matching this SQL filter.
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Adds UDF column `name`, computed by `udf`.
    pub fn column(mut self, name: impl Into<String>, udf: Udf) -> Self {
        self.columns.push((name.into(), udf));
        self
    }

    /// Shuffles the rows each refresh writes, by `seed`.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle_seed = Some(seed);
        self
    }
}

/// The query as the view records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRecord {
    /// The source table's URI.
    pub source: String,
    /// The columns asked for.
    pub select: Vec<String>,
    /// The columns copied: those selected, then UDF inputs not selected.
    pub copies: Vec<String>,
    /// The filter, if any.
    pub filter: Option<String>,
    /// The UDF columns (their UDFs are recorded on their fields).
    pub udf_columns: Vec<String>,
    /// The UDF input columns, each once.
    pub inputs: Vec<String>,
    /// The shuffle seed, if any.
    pub shuffle_seed: Option<u64>,
    /// Rows per data file.
    pub max_rows_per_file: usize,
}

impl ViewRecord {
    /// The record and the reflected source version in `metadata` (a
    /// schema's), or why it is not a view's.
    pub fn from_metadata(uri: &str, metadata: &HashMap<String, String>) -> Result<(Self, Option<u64>)> {
        let not_a_view = |reason: String| Error::NotAView { uri: uri.to_string(), reason };
        let json = metadata.get(VIEW_KEY).ok_or_else(|| not_a_view(format!("its schema has no {VIEW_KEY} record")))?;
        let record: Self = serde_json::from_str(json).map_err(|error| not_a_view(format!("its {VIEW_KEY} record does not parse: {error}")))?;
        let version = match metadata.get(SOURCE_VERSION_KEY) {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| not_a_view(format!("its {SOURCE_VERSION_KEY} is {text:?}, not a version")))?),
        };
        Ok((record, version))
    }

    /// The view version whose rows the recorded source version describes,
    /// from `metadata` (a view schema's); `None` where it is not recorded
    /// or does not parse.
    pub fn rows_version(metadata: &HashMap<String, String>) -> Option<u64> {
        metadata.get(ROWS_VERSION_KEY)?.parse().ok()
    }

    /// The record as schema metadata.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([(VIEW_KEY.to_string(), serde_json::to_string(self).unwrap_or_default())])
    }
}

//! A database: a directory of Lance tables, `<name>.lance` each, on local
//! disk or in an object store (`s3://bucket/path`).

use std::path::Path as StdPath;

use arrow_array::{RecordBatch, RecordBatchIterator};
use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use leman_engine::{Error, Result, StorageOptions, TableLocation, Udf, UdfRegistry};
use leman_view::{View, ViewQuery};

use crate::table::Table;

/// How `create_table` lays the data out.
#[derive(Debug, Clone)]
pub struct CreateTableOptions {
    /// Rows per fragment (Lance's `max_rows_per_file`).
    pub max_rows_per_file: usize,
    /// Give rows stable ids, which Lance keeps through updates and
    /// compaction, and track the version each row was last updated at: a
    /// materialized view of the table then refreshes by reading only the
    /// rows changed. Lance sets this at creation only.
    pub stable_row_ids: bool,
}

impl Default for CreateTableOptions {
    fn default() -> Self {
        Self { max_rows_per_file: 1024 * 1024, stable_row_ids: false }
    }
}

/// Opens the database at `uri`: a local directory, a `file://` URI, an
/// `s3://bucket/path` URI, or a `gs://` or `az://` one when its cargo
/// feature (`gcp`, `azure`) is enabled. An object store is reached with what
/// the environment sets (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...); pass
/// options with [`connect_with`].
pub async fn connect(uri: &str) -> Result<Database> {
    connect_with(uri, StorageOptions::new()).await
}

/// Opens the database at `uri`, reaching its object store with
/// `storage_options` (lance's keys: `aws_endpoint`, `aws_region`,
/// `aws_access_key_id`, `aws_secret_access_key`, `allow_http`, ...), which
/// take precedence over the environment. Every table of the database, and
/// every job on it, uses them.
///
/// ```no_run
/// # async fn demo() -> leman::Result<()> {
/// let options = leman::StorageOptions::new().with("aws_endpoint", "http://127.0.0.1:9000").with("allow_http", "true");
/// let db = leman::connect_with("s3://bucket/db", options).await?;
/// # Ok(()) }
/// ```
pub async fn connect_with(uri: &str, storage_options: StorageOptions) -> Result<Database> {
    let root = TableLocation::new(uri, storage_options)?;
    if root.is_local() {
        std::fs::create_dir_all(local_path(&root.uri))?;
    }
    Ok(Database { root, registry: UdfRegistry::new() })
}

/// A directory of tables sharing one UDF registry.
#[derive(Debug, Clone)]
pub struct Database {
    root: TableLocation,
    registry: UdfRegistry,
}

impl Database {
    /// Where the tables are.
    pub fn uri(&self) -> &str {
        &self.root.uri
    }

    /// Registers a UDF by name, for columns that record it.
    pub fn register_udf(&self, udf: Udf) {
        self.registry.register(udf);
    }

    /// The UDF registry.
    pub fn registry(&self) -> &UdfRegistry {
        &self.registry
    }

    /// Creates table `name` from `batches` (at least one, all of one schema).
    pub async fn create_table(&self, name: &str, batches: Vec<RecordBatch>, options: CreateTableOptions) -> Result<Table> {
        let table = self.root.join(&format!("{name}.lance"));
        match table.open_dataset().await {
            Ok(_) => return Err(Error::TableExists { uri: table.uri }),
            Err(error @ Error::Storage { .. }) => return Err(error),
            Err(_) => {}
        }
        let Some(first) = batches.first() else {
            return Err(Error::InvalidOptions { reason: "create_table needs at least one batch".to_string() });
        };
        let reader = RecordBatchIterator::new(batches.clone().into_iter().map(Ok), first.schema());
        let params = WriteParams {
            mode: WriteMode::Create,
            max_rows_per_file: options.max_rows_per_file,
            enable_stable_row_ids: options.stable_row_ids,
            store_params: Some(table.store_params()),
            ..WriteParams::default()
        };
        Dataset::write(reader, table.uri.as_str(), Some(params)).await?;
        Ok(Table::new_unchecked(table, self.registry.clone()))
    }

    /// Opens table `name` (`<name>.lance`, or `<name>` if that is a dataset).
    pub async fn open_table(&self, name: &str) -> Result<Table> {
        match Table::open_at(self.root.join(&format!("{name}.lance")), self.registry.clone()).await {
            Ok(table) => Ok(table),
            Err(error @ Error::Storage { .. }) => Err(error),
            Err(error) => match Table::open_at(self.root.join(name), self.registry.clone()).await {
                Ok(table) => Ok(table),
                Err(_) => Err(error),
            },
        }
    }

    /// Names of the `<name>.lance` tables of a local database.
    pub fn table_names(&self) -> Result<Vec<String>> {
        if !self.root.is_local() {
            return Err(Error::InvalidUri {
                uri: self.root.uri.clone(),
                reason: "listing tables is supported for local directories".to_string(),
            });
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(local_path(&self.root.uri))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(table) = name.strip_suffix(".lance") {
                names.push(table.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Creates materialized view `name` (a table, `<name>.lance`) of
    /// `query`, whose source is a table of this database by name or any
    /// table by URI. The view is empty until [`View::refresh`] builds it;
    /// each later refresh writes only what changed in the source. Its UDFs
    /// are registered in the database's registry.
    ///
    /// ```no_run
    /// # async fn demo(db: leman::Database, len: leman::Udf) -> leman::Result<()> {
    /// let query = leman::ViewQuery::new("docs").select(["id"]).filter("lang = 'en'").column("len", len);
    /// let view = db.create_materialized_view("docs_en", query).await?;
    /// let refresh = view.refresh(leman::RefreshOptions::default()).await?;
    /// if let Some(job) = refresh.job {
    ///     job.wait().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn create_materialized_view(&self, name: &str, mut query: ViewQuery) -> Result<View> {
        query.source = self.table_uri(&query.source);
        View::create(self.root.join(&format!("{name}.lance")), query, self.registry.clone()).await
    }

    /// Opens materialized view `name`, resolving its UDFs in the database's
    /// registry.
    pub async fn open_materialized_view(&self, name: &str) -> Result<View> {
        View::open(self.root.join(&format!("{name}.lance")), self.registry.clone()).await
    }

    /// The URI of table `name` of this database, or `name` itself where it
    /// is a path or URI already.
    fn table_uri(&self, name: &str) -> String {
        if name.contains('/') || name.contains("://") || name.ends_with(".lance") {
            name.to_string()
        } else {
            self.root.join(&format!("{name}.lance")).uri
        }
    }
}

fn local_path(uri: &str) -> &StdPath {
    StdPath::new(uri.strip_prefix("file://").unwrap_or(uri))
}

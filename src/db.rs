//! A database: a directory of Lance tables, `<name>.lance` each.

use std::path::Path as StdPath;

use arrow_array::{RecordBatch, RecordBatchIterator};
use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use leman_engine::{Error, Result, Udf, UdfRegistry, normalize_uri};

use crate::table::Table;

/// How `create_table` lays the data out.
#[derive(Debug, Clone)]
pub struct CreateTableOptions {
    /// Rows per fragment (Lance's `max_rows_per_file`).
    pub max_rows_per_file: usize,
}

impl Default for CreateTableOptions {
    fn default() -> Self {
        Self { max_rows_per_file: 1024 * 1024 }
    }
}

/// Opens the database at `uri`: a local directory, a `file://` URI, or an
/// object store URI when its cargo feature (`aws`, `gcp`) is enabled.
pub async fn connect(uri: &str) -> Result<Database> {
    let root = normalize_uri(uri)?;
    if is_local(&root) {
        std::fs::create_dir_all(local_path(&root))?;
    }
    Ok(Database { root, registry: UdfRegistry::new() })
}

/// A directory of tables sharing one UDF registry.
#[derive(Debug, Clone)]
pub struct Database {
    root: String,
    registry: UdfRegistry,
}

impl Database {
    /// Where the tables are.
    pub fn uri(&self) -> &str {
        &self.root
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
        let uri = self.table_uri(name);
        if Dataset::open(&uri).await.is_ok() {
            return Err(Error::TableExists { uri });
        }
        let Some(first) = batches.first() else {
            return Err(Error::InvalidOptions { reason: "create_table needs at least one batch".to_string() });
        };
        let reader = RecordBatchIterator::new(batches.clone().into_iter().map(Ok), first.schema());
        let params = WriteParams {
            mode: WriteMode::Create,
            max_rows_per_file: options.max_rows_per_file,
            ..WriteParams::default()
        };
        Dataset::write(reader, uri.as_str(), Some(params)).await?;
        Ok(Table::new_unchecked(uri, self.registry.clone()))
    }

    /// Opens table `name` (`<name>.lance`, or `<name>` if that is a dataset).
    pub async fn open_table(&self, name: &str) -> Result<Table> {
        match Table::open(&self.table_uri(name), self.registry.clone()).await {
            Ok(table) => Ok(table),
            Err(error) => match Table::open(&join(&self.root, name), self.registry.clone()).await {
                Ok(table) => Ok(table),
                Err(_) => Err(error),
            },
        }
    }

    /// Names of the `<name>.lance` tables of a local database.
    pub fn table_names(&self) -> Result<Vec<String>> {
        if !is_local(&self.root) {
            return Err(Error::InvalidUri {
                uri: self.root.clone(),
                reason: "listing tables is supported for local directories".to_string(),
            });
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(local_path(&self.root))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(table) = name.strip_suffix(".lance") {
                names.push(table.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn table_uri(&self, name: &str) -> String {
        join(&self.root, &format!("{name}.lance"))
    }
}

fn join(root: &str, name: &str) -> String {
    format!("{}/{name}", root.trim_end_matches('/'))
}

fn is_local(uri: &str) -> bool {
    !uri.contains("://") || uri.starts_with("file://")
}

fn local_path(uri: &str) -> &StdPath {
    StdPath::new(uri.strip_prefix("file://").unwrap_or(uri))
}

//! Which UDF filled each data file of a column: one empty object per data
//! file a writer wrote, `_leman/fills/<field id>/<data file name>.<tag>`,
//! where the tag is a hash of the UDF's name and version. A plan lists a
//! column's fills once (a LIST per thousand fragments) and so knows, for
//! every fragment, whether the values the table reads were computed by the
//! column's UDF as recorded now or by another (before `alter-column`, or
//! an older version); the second are recomputed whole, not only their
//! nulls. Data files that no fill names (written by another tool, or by an
//! older leman) are taken as they are.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use crate::error::CheckpointError;

/// The fills of a table's columns.
#[derive(Debug, Clone)]
pub struct FillIndex {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

/// One fill, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// Its path in the table's store.
    pub path: Path,
    /// The field it is of.
    pub field_id: i32,
    /// The data file's name.
    pub data_file: String,
    /// Bytes (none: the name says it all).
    pub size: u64,
    /// When it was written.
    pub last_modified: std::time::SystemTime,
}

/// The tag of UDF `name` at `version`.
pub fn fill_tag(udf_name: &str, udf_version: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [udf_name, udf_version] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// The file name of a data file's path (Lance keeps them relative to `data/`).
fn file_name(data_file: &str) -> &str {
    data_file.rsplit('/').next().unwrap_or(data_file)
}

impl FillIndex {
    /// The fills of the table whose directory is `table_dir` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, table_dir: &Path) -> Self {
        Self { store, root: table_dir.clone().join("_leman").join("fills") }
    }

    /// Records that `data_file` holds field `field_id` as computed by the
    /// UDF of tag `tag` ([`fill_tag`]).
    pub async fn record(&self, field_id: i32, data_file: &str, tag: &str) -> Result<(), CheckpointError> {
        let path = self.root.clone().join(field_id.to_string()).join(format!("{}.{tag}", file_name(data_file)));
        self.store
            .put(&path, PutPayload::default())
            .await
            .map(|_| ())
            .map_err(|source| CheckpointError::Store { path, source })
    }

    /// Data file name -> tag of every fill of field `field_id`.
    pub async fn tags(&self, field_id: i32) -> Result<HashMap<String, String>, CheckpointError> {
        let dir = self.root.clone().join(field_id.to_string());
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&dir)).try_collect().await.map_err(|source| CheckpointError::Store { path: dir.clone(), source })?;
        Ok(metas
            .iter()
            .filter_map(|meta| meta.location.filename()?.rsplit_once('.').map(|(file, tag)| (file.to_string(), tag.to_string())))
            .collect())
    }

    /// Every fill of every field.
    pub async fn list(&self) -> Result<Vec<Fill>, CheckpointError> {
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.root))
            .try_collect()
            .await
            .map_err(|source| CheckpointError::Store { path: self.root.clone(), source })?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let mut parts = meta.location.parts().collect::<Vec<_>>().into_iter().rev();
                let name = parts.next()?;
                let field_id = parts.next()?.as_ref().parse().ok()?;
                let (data_file, _) = name.as_ref().rsplit_once('.')?;
                Some(Fill {
                    field_id,
                    data_file: data_file.to_string(),
                    size: meta.size,
                    last_modified: meta.last_modified.into(),
                    path: meta.location,
                })
            })
            .collect())
    }

    /// Deletes the fills at `paths`; returns how many were there.
    pub async fn delete(&self, paths: Vec<Path>) -> Result<u64, CheckpointError> {
        let first = paths.first().cloned().unwrap_or_else(|| self.root.clone());
        let deleted: Vec<Path> = self
            .store
            .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed())
            .try_collect()
            .await
            .map_err(|source| CheckpointError::Store { path: first, source })?;
        Ok(deleted.len() as u64)
    }

    /// The tag of `data_file` in `tags`, if a fill names it.
    pub fn tag_of<'a>(tags: &'a HashMap<String, String>, data_file: &str) -> Option<&'a str> {
        tags.get(file_name(data_file)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn fills_are_listed_by_field_and_file() -> Result<(), CheckpointError> {
        let index = FillIndex::new(Arc::new(InMemory::new()), &Path::from("t.lance"));
        let v1 = fill_tag("str_len", "1");
        let v2 = fill_tag("str_len", "2");
        assert_ne!(v1, v2);
        assert_ne!(fill_tag("ab", "c"), fill_tag("a", "bc"), "parts are length-prefixed");
        index.record(3, "a-1.lance", &v1).await?;
        index.record(3, "data/b-2.lance", &v2).await?;
        index.record(4, "c-3.lance", &v1).await?;
        let tags = index.tags(3).await?;
        assert_eq!(tags.len(), 2);
        assert_eq!(FillIndex::tag_of(&tags, "a-1.lance"), Some(v1.as_str()));
        assert_eq!(FillIndex::tag_of(&tags, "b-2.lance"), Some(v2.as_str()));
        assert_eq!(FillIndex::tag_of(&tags, "c-3.lance"), None, "another field's");
        assert!(index.tags(9).await?.is_empty());
        let mut listed: Vec<(i32, String)> = index.list().await?.into_iter().map(|f| (f.field_id, f.data_file)).collect();
        listed.sort();
        assert_eq!(listed, [(3, "a-1.lance".to_string()), (3, "b-2.lance".to_string()), (4, "c-3.lance".to_string())]);
        let paths = index.list().await?.into_iter().filter(|f| f.field_id == 4).map(|f| f.path).collect();
        assert_eq!(index.delete(paths).await?, 1);
        assert_eq!(index.list().await?.len(), 2);
        Ok(())
    }
}

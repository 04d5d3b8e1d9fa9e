//! Checkpoint keys: SHA-256 over length-prefixed parts, so that no two
//! different sets of parts can be spelled alike.

use std::ops::Range;

use sha2::{Digest, Sha256};

use crate::store::Origin;

/// A checkpoint's identity, shown as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CheckpointKey(String);

impl CheckpointKey {
    /// The key as 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key spelled by `hex` (64 lowercase hex digits, as an object's
    /// name has it), or `None` if it is not one.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let is_key = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        is_key.then(|| Self(hex.to_string()))
    }
}

impl std::fmt::Display for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that determines the result of a fragment's checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts<'a> {
    /// UDF name.
    pub udf_name: &'a str,
    /// UDF version, as its fingerprint (version, inputs and parameters): a
    /// new one ignores old checkpoints.
    pub udf_version: &'a str,
    /// Output column.
    pub column: &'a str,
    /// The filter in force.
    pub filter: &'a str,
    /// The table's URI.
    pub table: &'a str,
    /// Lance fragment id.
    pub fragment_id: u64,
    /// Paths of the data files the key depends on, in fragment order.
    pub data_files: Vec<String>,
}

impl KeyParts<'_> {
    /// Key of the batch of physical `rows`.
    pub fn batch_key(&self, rows: Range<u64>) -> CheckpointKey {
        self.batch_keys().key(rows)
    }

    /// The keys of this fragment's batches, for ranges known later (tasks
    /// cut to size as the job runs).
    pub fn batch_keys(&self) -> BatchKeys {
        BatchKeys(self.hasher("batch"))
    }

    /// Key of the whole fragment.
    pub fn fragment_key(&self) -> CheckpointKey {
        CheckpointKey(hex::encode(self.hasher("fragment").finalize()))
    }

    /// What a batch of these parts was computed from, as its record keeps it.
    pub fn origin(&self) -> Origin {
        Origin {
            column: self.column.to_string(),
            udf_name: self.udf_name.to_string(),
            udf_version: self.udf_version.to_string(),
            fragment_id: self.fragment_id,
            data_files: self.data_files.clone(),
        }
    }

    fn hasher(&self, kind: &str) -> Sha256 {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"leman-checkpoint-v1");
        field(kind.as_bytes());
        field(self.udf_name.as_bytes());
        field(self.udf_version.as_bytes());
        field(self.column.as_bytes());
        field(self.filter.as_bytes());
        field(self.table.as_bytes());
        field(&self.fragment_id.to_le_bytes());
        field(&(self.data_files.len() as u64).to_le_bytes());
        for file in &self.data_files {
            field(file.as_bytes());
        }
        hasher
    }
}

/// The batch keys of one fragment's parts: the parts are hashed once, each
/// range's key costs one more block.
#[derive(Clone)]
pub struct BatchKeys(Sha256);

impl BatchKeys {
    /// Key of the batch of physical `rows`.
    pub fn key(&self, rows: Range<u64>) -> CheckpointKey {
        let mut hasher = self.0.clone();
        hasher.update(rows.start.to_le_bytes());
        hasher.update(rows.end.to_le_bytes());
        CheckpointKey(hex::encode(hasher.finalize()))
    }
}

impl std::fmt::Debug for BatchKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchKeys")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> KeyParts<'static> {
        KeyParts {
            udf_name: "f",
            udf_version: "1",
            column: "c",
            filter: "c IS NULL",
            table: "t",
            fragment_id: 3,
            data_files: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = parts().batch_key(0..10);
        assert_eq!(base, parts().batch_key(0..10));
        assert_eq!(base.as_str().len(), 64);
        let variants = [
            KeyParts { udf_version: "2", ..parts() },
            KeyParts { udf_name: "g", ..parts() },
            KeyParts { column: "d", ..parts() },
            KeyParts { filter: "1=1", ..parts() },
            KeyParts { table: "u", ..parts() },
            KeyParts { fragment_id: 4, ..parts() },
            KeyParts { data_files: vec!["ab".into()], ..parts() },
        ];
        for variant in variants {
            assert_ne!(variant.batch_key(0..10), base, "{variant:?}");
        }
        assert_ne!(parts().batch_key(0..11), base);
        assert_eq!(parts().batch_keys().key(0..10), base);
        assert_ne!(parts().fragment_key(), base);
        assert_eq!(CheckpointKey::from_hex(base.as_str()), Some(base.clone()));
        assert_eq!(CheckpointKey::from_hex(&base.as_str().to_uppercase()), None);
        assert_eq!(CheckpointKey::from_hex("abc"), None);
    }
}

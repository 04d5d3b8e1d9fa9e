//! The UDF record of a column, kept in the field's metadata in the table's
//! schema, so that any process (or pylance) can see which UDF computes it,
//! and build it again from its own [`UdfRegistry`].

use std::collections::HashMap;

use leman_applier::Udf;

use crate::registry::UdfRegistry;
use crate::error::{Error, Result};

const NAME: &str = "leman.udf.name";
const VERSION: &str = "leman.udf.version";
const INPUTS: &str = "leman.udf.inputs";
const PARAMS: &str = "leman.udf.params";

/// Which UDF computes a column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UdfRecord {
    /// Registered name.
    pub name: String,
    /// Version at the time the column was declared.
    pub version: String,
    /// Input columns.
    pub inputs: Vec<String>,
    /// Parameters it was built with (`key=value`).
    pub params: Vec<(String, String)>,
}

impl UdfRecord {
    /// The record of `udf`.
    pub fn of(udf: &Udf) -> Self {
        Self {
            name: udf.name().to_string(),
            version: udf.version().to_string(),
            inputs: udf.inputs().to_vec(),
            params: udf.params().to_vec(),
        }
    }

    /// As field metadata.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (NAME.to_string(), self.name.clone()),
            (VERSION.to_string(), self.version.clone()),
            (INPUTS.to_string(), serde_json::Value::from(self.inputs.clone()).to_string()),
            (PARAMS.to_string(), serde_json::to_string(&self.params).unwrap_or_default()),
        ])
    }

    /// The UDF this record names, built from `registry` with the recorded
    /// parameters and inputs, for column `column`.
    pub fn build(&self, registry: &UdfRegistry, column: &str) -> Result<Udf> {
        let udf = registry
            .build(&self.name, &self.params)
            .ok_or_else(|| Error::UdfNotRegistered { column: column.to_string(), name: self.name.clone() })?
            .map_err(|e| Error::InvalidOptions {
                reason: format!("UDF {} cannot be built from the column's record: {e}", self.name),
            })?;
        Ok(if self.inputs.is_empty() || udf.takes_record_batch() { udf } else { udf.with_inputs(&self.inputs) })
    }

    /// Read back from field metadata; `None` if the field is not a UDF column.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Option<Self> {
        let name = metadata.get(NAME)?.clone();
        let version = metadata.get(VERSION).cloned().unwrap_or_default();
        let inputs = metadata
            .get(INPUTS)
            .and_then(|json| serde_json::from_str::<Vec<String>>(json).ok())
            .unwrap_or_default();
        let params = metadata
            .get(PARAMS)
            .and_then(|json| serde_json::from_str::<Vec<(String, String)>>(json).ok())
            .unwrap_or_default();
        Some(Self { name, version, inputs, params })
    }
}

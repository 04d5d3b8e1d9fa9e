//! The UDF record of a column, kept in the field's metadata in the table's
//! schema, so that any process (or pylance) can see which UDF computes it,
//! and build it again from its own [`UdfRegistry`]. The error policy it
//! was declared with (`--on-error`) is part of the record, so that every
//! backfill of the column, on any node, handles errors the same way.
//!
//! A UDF whose struct fills several sibling columns (unpacked) is recorded
//! once, on the first of them (the *lead*); each sibling's metadata names
//! its group and the struct field it takes ([`Unpacked`]).

use std::collections::HashMap;

use leman_applier::{ErrorPolicy, RetryBackoff, Udf, fingerprint};

use crate::registry::UdfRegistry;
use crate::error::{Error, Result};

const NAME: &str = "leman.udf.name";
const VERSION: &str = "leman.udf.version";
const INPUTS: &str = "leman.udf.inputs";
const PARAMS: &str = "leman.udf.params";
const ON_ERROR: &str = "leman.udf.on_error";
const RETRY_BACKOFF_MS: &str = "leman.udf.retry_backoff_ms";
const GROUP: &str = "leman.udf.group";
const UNPACK_FIELD: &str = "leman.udf.unpack_field";

/// A column filled by one field of a UDF's struct, with its siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The name the siblings were declared under together.
    pub group: String,
    /// The struct field this column takes.
    pub field: String,
}

impl Unpacked {
    /// As field metadata.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([(GROUP.to_string(), self.group.clone()), (UNPACK_FIELD.to_string(), self.field.clone())])
    }

    /// Read back from field metadata; `None` for a column of its own.
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Option<Self> {
        Some(Self { group: metadata.get(GROUP)?.clone(), field: metadata.get(UNPACK_FIELD)?.clone() })
    }
}

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
    /// Its error policy; `None` in records older than policies, whose UDF
    /// keeps the policy it is registered with.
    pub on_error: Option<ErrorPolicy>,
    /// The wait between retries of the `retry` policy.
    pub retry_backoff: Option<RetryBackoff>,
}

impl UdfRecord {
    /// The record of `udf`.
    pub fn of(udf: &Udf) -> Self {
        Self {
            name: udf.name().to_string(),
            version: udf.version().to_string(),
            inputs: udf.inputs().to_vec(),
            params: udf.params().to_vec(),
            on_error: Some(udf.error_policy()),
            retry_backoff: Some(udf.retry_backoff()),
        }
    }

    /// The recorded UDF's [`Udf::fingerprint`]: which computation fills
    /// the column.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.version, &self.inputs, &self.params)
    }

    /// As field metadata.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut metadata = HashMap::from([
            (NAME.to_string(), self.name.clone()),
            (VERSION.to_string(), self.version.clone()),
            (INPUTS.to_string(), serde_json::Value::from(self.inputs.clone()).to_string()),
            (PARAMS.to_string(), serde_json::to_string(&self.params).unwrap_or_default()),
        ]);
        if let Some(policy) = self.on_error {
            metadata.insert(ON_ERROR.to_string(), policy.to_string());
        }
        if let Some(backoff) = self.retry_backoff {
            metadata.insert(RETRY_BACKOFF_MS.to_string(), backoff.to_string());
        }
        metadata
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
        let udf = if self.inputs.is_empty() || udf.takes_record_batch() { udf } else { udf.with_inputs(&self.inputs) };
        let udf = match self.on_error {
            Some(policy) => udf.with_error_policy(policy),
            None => udf,
        };
        Ok(match self.retry_backoff {
            Some(backoff) => udf.with_retry_backoff(backoff),
            None => udf,
        })
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
        // A policy this build cannot read is left to the UDF's own.
        let on_error = metadata.get(ON_ERROR).and_then(|text| text.parse().ok());
        let retry_backoff = metadata.get(RETRY_BACKOFF_MS).and_then(|text| text.parse().ok());
        Some(Self { name, version, inputs, params, on_error, retry_backoff })
    }
}

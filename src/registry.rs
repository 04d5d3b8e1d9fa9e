//! UDFs by name, shared by the driver and (later) workers of one binary.
//!
//! A column records its UDF's name in the table's schema; a process that
//! backfills the column looks the name up here. Built-in UDFs of the CLI are
//! registered by [`crate::builtins`]; a Rust service registers its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use leman_applier::Udf;

/// A map of UDFs by name; cheap to clone, shared.
#[derive(Debug, Clone, Default)]
pub struct UdfRegistry {
    udfs: Arc<RwLock<HashMap<String, Udf>>>,
}

impl UdfRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `udf` under its name, replacing one of the same name.
    pub fn register(&self, udf: Udf) {
        let mut udfs = self.udfs.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        udfs.insert(udf.name().to_string(), udf);
    }

    /// The UDF registered as `name`.
    pub fn get(&self, name: &str) -> Option<Udf> {
        let udfs = self.udfs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        udfs.get(name).cloned()
    }

    /// Names of the registered UDFs, sorted.
    pub fn names(&self) -> Vec<String> {
        let udfs = self.udfs.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut names: Vec<String> = udfs.keys().cloned().collect();
        names.sort();
        names
    }
}

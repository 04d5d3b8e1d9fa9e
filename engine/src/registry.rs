//! UDFs by name, shared by the driver and the workers of one binary.
//!
//! A column records its UDF's name and parameters in the table's schema; a
//! process that backfills the column builds the UDF again from here. Plain
//! UDFs are registered as they are; parameterised ones (the CLI's `busy
//! micros=N`) as a factory of their parameters. The `leman` crate registers
//! its built-ins (`leman::builtins::register_all`); a Rust service
//! registers its own.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use leman_applier::{Udf, UdfError};

type Factory = dyn Fn(&[(String, String)]) -> Result<Udf, UdfError> + Send + Sync;

#[derive(Clone)]
enum Entry {
    Udf(Udf),
    Factory(Arc<Factory>),
}

/// A map of UDFs by name; cheap to clone, shared.
#[derive(Clone, Default)]
pub struct UdfRegistry {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for UdfRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdfRegistry").field("names", &self.names()).finish()
    }
}

impl UdfRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `udf` under its name, replacing one of the same name.
    pub fn register(&self, udf: Udf) {
        self.insert(udf.name().to_string(), Entry::Udf(udf));
    }

    /// Registers a UDF built from its recorded parameters.
    pub fn register_factory(
        &self,
        name: &str,
        factory: impl Fn(&[(String, String)]) -> Result<Udf, UdfError> + Send + Sync + 'static,
    ) {
        self.insert(name.to_string(), Entry::Factory(Arc::new(factory)));
    }

    /// The UDF `name` with no parameters.
    pub fn get(&self, name: &str) -> Option<Udf> {
        self.build(name, &[]).and_then(Result::ok)
    }

    /// The UDF `name` built with `params`; `None` if nothing is registered
    /// under that name.
    pub fn build(&self, name: &str, params: &[(String, String)]) -> Option<Result<Udf, UdfError>> {
        let entry = {
            let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.get(name).cloned()
        };
        match entry? {
            Entry::Udf(udf) => Some(Ok(udf)),
            Entry::Factory(factory) => Some(factory(params)),
        }
    }

    /// Names of the registered UDFs, sorted.
    pub fn names(&self) -> Vec<String> {
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut names: Vec<String> = entries.keys().cloned().collect();
        names.sort();
        names
    }

    fn insert(&self, name: String, entry: Entry) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.insert(name, entry);
    }
}

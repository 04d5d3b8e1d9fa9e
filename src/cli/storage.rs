//! `--storage-option KEY=VALUE`: how every command that takes `--table`
//! reaches the table's object store, beyond what the environment sets.

use clap::Args;

use leman_engine::StorageOptions;

/// Storage options of the table's object store.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct StorageArgs {
    /// An option of the table's object store, KEY=VALUE (repeatable): lance's keys, such as
    /// aws_endpoint=http://host:9000, allow_http=true, aws_region=eu-west-1. They take precedence over
    /// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...), which is the
    /// better place for secrets: a command line is visible to other users of the machine.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = super::parse_key_value, global = true)]
    storage_options: Vec<(String, String)>,
}

impl StorageArgs {
    /// The options given, the last of a repeated key winning.
    pub(crate) fn options(&self) -> StorageOptions {
        self.storage_options.iter().cloned().collect()
    }
}

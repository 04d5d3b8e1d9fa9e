//! `leman inspect`: versions, fragments, and which columns are UDF columns.

use std::process::ExitCode;

use arrow_schema::Schema as ArrowSchema;

use leman_engine::{Result, StorageOptions, UdfRecord, Unpacked, quote_identifier};

use crate::builtins;
use crate::table::Table;

pub(crate) async fn run(path: &str, storage_options: StorageOptions) -> Result<ExitCode> {
    let table = Table::open_with(path, storage_options, builtins::registry()).await?;
    let dataset = table.dataset().await?;
    println!("table {}", table.uri());
    println!("\nversions");
    for version in dataset.versions().await? {
        println!("  {:>5}  {}", version.version, version.timestamp.to_rfc3339());
    }
    println!("\nfragments");
    println!("  {:>6}  {:>12}  {:>12}  {:>5}", "ID", "PHYSICAL", "LIVE", "FILES");
    for fragment in dataset.get_fragments() {
        println!(
            "  {:>6}  {:>12}  {:>12}  {:>5}",
            fragment.id(),
            fragment.physical_rows().await?,
            fragment.count_rows(None).await?,
            fragment.metadata().files.len()
        );
    }
    let total = dataset.count_rows(None).await?;
    println!("\ncolumns ({total} rows)");
    let schema = ArrowSchema::from(dataset.schema());
    for field in schema.fields() {
        let metadata = dataset.schema().field(field.name()).map(|f| f.metadata.clone()).unwrap_or_default();
        let unpacked = Unpacked::from_metadata(&metadata)
            .map(|u| format!(" [field {} of group {}]", u.field, u.group))
            .unwrap_or_default();
        let filled = || dataset.count_rows(Some(format!("{} IS NOT NULL", quote_identifier(field.name()))));
        match UdfRecord::from_metadata(&metadata) {
            Some(udf) => {
                let params: Vec<String> = udf.params.iter().map(|(k, v)| format!(" {k}={v}")).collect();
                println!(
                    "  {:<24} {:<28} udf {}({}){} version {}{unpacked}, {}/{total} filled",
                    field.name(),
                    field.data_type().to_string(),
                    udf.name,
                    udf.inputs.join(", "),
                    params.concat(),
                    udf.version,
                    filled().await?,
                );
            }
            None if !unpacked.is_empty() => {
                println!("  {:<24} {:<28}{unpacked}, {}/{total} filled", field.name(), field.data_type().to_string(), filled().await?);
            }
            None => println!("  {:<24} {}", field.name(), field.data_type()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! The README's library example, compiled as it is written there: the
//! public API stays source-compatible as long as this compiles and the
//! README says the same.

#[allow(dead_code, unused_variables)]
async fn readme_example() -> leman::Result<()> {
    // README: begin
    use std::sync::Arc;
    use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray, cast::AsArray};
    use arrow_schema::{DataType, Field};
    use leman::{AddColumnsOptions, BackfillOptions, CreateTableOptions, ErrorPolicy, Udf};

    let db = leman::connect("/data/lake").await?;
    let text: ArrayRef = Arc::new(StringArray::from(vec!["a", "bb", "ccc"]));
    let table = db
        .create_table("docs", vec![RecordBatch::try_from_iter([("text", text)])?], CreateTableOptions::default())
        .await?;

    // An array UDF: Arrow arrays in, one array out. Scalar, record-batch and
    // stateful (one instance per applier thread) UDFs are built the same way.
    let len = Udf::array("text_len", Field::new("len", DataType::Int32, true), &["text"], |cols| {
        let lengths: Int32Array = cols[0].as_string::<i32>().iter().map(|s| s.map(|s| s.len() as i32)).collect();
        Ok(Arc::new(lengths) as ArrayRef)
    })
    .with_version("1")
    .with_error_policy(ErrorPolicy::Skip);

    table.add_columns([("len", len)], AddColumnsOptions::default()).await?; // metadata only
    let job = table
        .backfill("len", BackfillOptions::default().filter("text IS NOT NULL").concurrency(4).commit_granularity(16))
        .await?; // a bad filter or unknown column fails here, before any work
    while let Some(event) = job.next_event().await {
        println!("{event:?}");
    }
    let summary = job.wait().await?;
    // README: end
    Ok(())
}

#[test]
fn the_readme_example_is_the_one_compiled_here() {
    let readme = include_str!("../../README.md");
    let shown = readme.split("```rust\n").nth(1).and_then(|rest| rest.split("```").next()).expect("a rust block in the README");
    let source = include_str!("readme.rs");
    let compiled = source
        .split("    // README: begin\n")
        .nth(1)
        .and_then(|rest| rest.split("    // README: end").next())
        .expect("the example's markers");
    let compiled: Vec<&str> = compiled.lines().map(|line| line.strip_prefix("    ").unwrap_or(line)).collect();
    assert_eq!(compiled.join("\n").trim(), shown.trim());
}

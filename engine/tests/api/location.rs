//! Opening a table at a version, as workers open a job's table.

use leman_engine::testing::udf_table;
use leman_engine::{Error, TableLocation};

#[tokio::test]
async fn a_version_opens_as_itself_and_a_missing_one_or_table_is_named() {
    let table = udf_table(100, 50).await.unwrap();
    let location = table.location();
    let first = location.open_version(1).await.unwrap();
    assert_eq!(first.version().version, 1);
    assert!(first.schema().field("n").is_none(), "version 1 is from before `n` was declared");
    let declared = location.open_version(table.version).await.unwrap();
    assert!(declared.schema().field("n").is_some());

    let missing = table.version + 5;
    match location.open_version(missing).await.map(|dataset| dataset.version().version) {
        Err(Error::VersionNotFound { version, .. }) => assert_eq!(version, missing),
        other => panic!("version {missing} of a table with {} versions opened as {other:?}", table.version),
    }
    let gone = TableLocation { uri: table.dir.path().join("gone.lance").to_string_lossy().into_owned(), ..location };
    match gone.open_version(1).await.map(|dataset| dataset.version().version) {
        Err(Error::TableNotFound { .. }) => {}
        other => panic!("a table that does not exist opened as {other:?}"),
    }
}

//! A column's UDF record in its field metadata.

use std::collections::HashMap;

use arrow_schema::{DataType, Field};
use leman_engine::{ErrorPolicy, RetryBackoff, Udf, UdfRecord};

#[test]
fn round_trips_through_metadata() {
    let udf = Udf::batch("f", Field::new("y", DataType::Int32, true), &["a", "b,c"], |b| Ok(b.column(0).clone()))
        .with_version("7")
        .with_params(vec![("k".into(), "v=1".into())])
        .with_error_policy(ErrorPolicy::Retry { attempts: 3 })
        .with_retry_backoff(RetryBackoff { first: std::time::Duration::from_millis(5), max: std::time::Duration::from_secs(1) });
    let record = UdfRecord::of(&udf);
    let metadata = record.to_metadata();
    assert_eq!(metadata.get("leman.udf.on_error").map(String::as_str), Some("retry:3"));
    assert_eq!(metadata.get("leman.udf.retry_backoff_ms").map(String::as_str), Some("5,1000"));
    assert_eq!(UdfRecord::from_metadata(&metadata), Some(record));
    assert_eq!(UdfRecord::from_metadata(&HashMap::new()), None);

    // A record from before error policies keeps the UDF's own.
    let old: HashMap<String, String> = metadata.into_iter().filter(|(k, _)| !k.contains("on_error") && !k.contains("backoff")).collect();
    let record = UdfRecord::from_metadata(&old).unwrap_or_else(|| panic!("no record"));
    assert_eq!((record.on_error, record.retry_backoff), (None, None));
}

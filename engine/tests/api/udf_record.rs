//! A column's UDF record in its field metadata.

use std::collections::HashMap;

use arrow_schema::{DataType, Field};
use leman_engine::{Udf, UdfRecord};

#[test]
fn round_trips_through_metadata() {
    let udf = Udf::batch("f", Field::new("y", DataType::Int32, true), &["a", "b,c"], |b| Ok(b.column(0).clone()))
        .with_version("7")
        .with_params(vec![("k".into(), "v=1".into())]);
    let record = UdfRecord::of(&udf);
    assert_eq!(UdfRecord::from_metadata(&record.to_metadata()), Some(record));
    assert_eq!(UdfRecord::from_metadata(&HashMap::new()), None);
}

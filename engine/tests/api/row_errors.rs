//! The filter that recomputes the rows a job failed on.

use std::ops::Range;

use leman_engine::{RowErrorRecord, RowOutcome, retry_filter, row_address};

fn record(fragment_id: u64, row: Option<u64>, task_rows: Range<u64>) -> RowErrorRecord {
    RowErrorRecord {
        job_id: "j".into(),
        column: "c".into(),
        fragment_id,
        row_address: row.map(|offset| row_address(fragment_id, offset)),
        task_rows,
        udf_name: "u".into(),
        udf_version: "1".into(),
        outcome: RowOutcome::Skipped,
        attempts: 2,
        message: "bad".into(),
        at_ms: 0,
    }
}

#[test]
fn the_retry_filter_names_each_row_once_and_whole_failed_batches() {
    assert_eq!(retry_filter(&[]), None);
    let records = [record(1, Some(7), 0..10), record(0, Some(3), 0..10), record(1, Some(7), 0..10)];
    assert_eq!(retry_filter(&records).as_deref(), Some("_rowaddr IN (3, 4294967303)"));
    let with_batch = [record(0, Some(3), 0..10), record(2, None, 20..30)];
    let start = 2u64 << 32 | 20;
    assert_eq!(
        retry_filter(&with_batch),
        Some(format!("_rowaddr IN (3) OR (_rowaddr >= {start} AND _rowaddr <= {})", start + 9))
    );
}

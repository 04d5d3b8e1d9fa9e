//! Multi-output UDFs: a UDF returning a struct fills one sibling column per
//! field. The siblings are declared, backfilled (one call per row, one data
//! file per fragment, one commit) and dropped together.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::Field;
use leman::builtins::{self, text_stats_of};
use leman::{AddColumnsOptions, BackfillOptions, CreateTableOptions, Error, Table, Udf, UdfError, Unpack};

use crate::engine::support::{Gate, assert_sound, within};

/// Texts that try `text_stats`'s edges: empty, blank, several lines, a
/// trailing newline, Unicode whitespace and letters, and nulls.
const TEXTS: [Option<&str>; 8] = [
    Some(""),
    Some("   "),
    Some("one"),
    Some("two words\nand a line"),
    Some("ends with a newline\n"),
    Some("no\u{2003}break\u{00a0}space — überall"),
    None,
    Some("a\n\nb c"),
];

fn texts(first: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + n).collect();
    let text: Vec<Option<String>> = ids.iter().map(|id| TEXTS[(id % 8) as usize].map(|t| format!("{t}{}", "x".repeat((id % 3) as usize)))).collect();
    let columns: [(&str, ArrayRef); 2] = [("id", Arc::new(Int64Array::from(ids))), ("text", Arc::new(StringArray::from(text)))];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// The text of row `id`, as [`texts`] wrote it.
fn text_of(id: i64) -> Option<String> {
    TEXTS[(id % 8) as usize].map(|t| format!("{t}{}", "x".repeat((id % 3) as usize)))
}

/// `(id, [p_n_chars, p_n_words, p_n_lines])` of every live row, by id.
async fn stats(table: &Table) -> Vec<(i64, [Option<i32>; 3])> {
    let mut scan = table.dataset().await.unwrap().scan();
    scan.project(&["id", "p_n_chars", "p_n_words", "p_n_lines"]).unwrap();
    let batch = scan.try_into_batch().await.unwrap();
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let column = |i: usize| batch.column(i).as_primitive::<Int32Type>().iter().collect::<Vec<_>>();
    let (chars, words, lines) = (column(1), column(2), column(3));
    let mut rows: Vec<_> = (0..batch.num_rows()).map(|i| (ids.value(i), [chars[i], words[i], lines[i]])).collect();
    rows.sort();
    rows
}

fn expected(id: i64) -> [Option<i32>; 3] {
    match text_of(id) {
        Some(text) => text_stats_of(&text).map(Some),
        None => [None; 3],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_stats_unpacks_into_three_columns_filled_in_one_pass_and_dropped_together() {
    assert_eq!(text_stats_of(""), [0, 0, 1], "an empty string has 0 words and 1 line");
    assert_eq!(text_stats_of("a\u{2003}b\nc\n"), [6, 3, 3]);
    let dir = tempfile::tempdir().unwrap();
    let db = leman::connect(dir.path().to_str().unwrap()).await.unwrap();
    let table = db.create_table("t", vec![texts(0, 300)], CreateTableOptions { max_rows_per_file: 100, ..Default::default() }).await.unwrap();
    let udf = builtins::get("text_stats", &["text"], &[]).unwrap();
    let unpack = AddColumnsOptions { unpack: Some(Unpack { prefix: "p_".into() }), ..AddColumnsOptions::default() };
    table.add_columns([("stats", udf.clone())], unpack.clone()).await.unwrap();
    let schema = table.schema().await.unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "text", "p_n_chars", "p_n_words", "p_n_lines"]);
    assert_eq!(table.udf_record("p_n_lines").await.unwrap().unwrap().name, "text_stats", "the group's UDF, recorded once");

    // A second group of that name, or a plain UDF unpacked, is refused.
    let again = table.add_columns([("stats", udf.clone())], unpack.clone()).await.unwrap_err();
    assert!(again.to_string().contains("group stats"), "{again}");
    let plain = builtins::get("str_len", &["text"], &[]).unwrap();
    let not_struct = table.add_columns([("lens", plain)], unpack).await.unwrap_err();
    assert!(not_struct.to_string().contains("not a struct"), "{not_struct}");

    // A backfill of any sibling fills all three: one call per row, one new
    // data file per fragment holding the three fields, one commit.
    let before = table.version().await.unwrap();
    let job = table.backfill("p_n_words", BackfillOptions::default().batch_size(64)).await.unwrap();
    let summary = within(std::time::Duration::from_secs(120), job.wait()).await.unwrap();
    assert_eq!(summary.rows_computed, 300);
    assert_eq!(table.version().await.unwrap(), before + 1, "one commit");
    let dataset = table.dataset().await.unwrap();
    let ids: Vec<i32> = ["p_n_chars", "p_n_words", "p_n_lines"].iter().map(|c| dataset.schema().field(c).unwrap().id).collect();
    for fragment in dataset.get_fragments() {
        let files = &fragment.metadata().files;
        let holding: Vec<_> = files.iter().filter(|f| ids.iter().any(|id| f.fields.contains(id))).collect();
        assert_eq!(holding.len(), 1, "one data file per fragment holds the siblings: {files:?}");
        assert_eq!(holding[0].fields.iter().copied().collect::<Vec<_>>(), ids);
    }
    let rows = stats(&table).await;
    assert_eq!(rows.len(), 300);
    for (id, values) in &rows {
        assert_eq!(*values, expected(*id), "row {id}: {:?}", text_of(*id));
    }
    assert_sound(&table).await;

    // An append is filled by the next run, asked for by the group's name.
    table.append(vec![texts(300, 50)]).await.unwrap();
    let plan = table.plan_backfill("stats", &BackfillOptions::default()).await.unwrap();
    assert_eq!(plan.column, "p_n_chars,p_n_words,p_n_lines");
    let summary = table.backfill("stats", BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!(summary.rows_computed, 50, "the appended rows: the fragments filled are done");
    let rows = stats(&table).await;
    assert_eq!(rows.len(), 350);
    assert!(rows.iter().all(|(id, values)| *values == expected(*id)));
    assert_sound(&table).await;

    // Two backfills of one group are one column's: a sibling's lease is
    // the group's. The first job's UDF waits on a gate until the second
    // was refused.
    let gate = Arc::new(Gate::default());
    let held = gate.clone();
    let gated = Udf::array("text_stats", Field::new("text_stats", builtins::text_stats_type(), true), &["text"], move |cols| {
        held.wait(std::time::Duration::from_secs(60)).map_err(UdfError::new)?;
        builtins::text_stats(cols)
    })
    .with_version("1");
    let first = table.backfill("p_n_chars", BackfillOptions::default().filter("1=1").udf(gated)).await.unwrap();
    let second = table.backfill("p_n_lines", BackfillOptions::default().filter("1=1")).await.map(|_| ()).unwrap_err();
    gate.open();
    first.wait().await.unwrap();
    assert!(matches!(&second, Error::ColumnBusy { column, .. } if column == "p_n_chars"), "{second}");

    // Dropping one sibling drops the group.
    let dropped = table.drop_columns(&["p_n_lines"]).await.unwrap();
    assert_eq!(dropped, ["p_n_chars", "p_n_words", "p_n_lines"]);
    let schema = table.schema().await.unwrap();
    assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["id", "text"]);
    assert_sound(&table).await;
}

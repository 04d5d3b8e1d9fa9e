//! The `where` of a backfill, compiled once and evaluated per batch.
//!
//! The SQL is parsed and type-checked with lance's planner against the
//! table's schema before any work starts, so a bad filter or an unknown
//! column is an error up front. The physical expression is then compiled
//! against a schema of just the columns it names, in a fixed order, and each
//! batch is projected to those columns before evaluation: physical column
//! references are positional, so this keeps them right whatever else the
//! applier reads.
//!
//! A filter may name `_rowaddr`, Lance's row address (fragment id in the
//! high 32 bits, physical offset in the low), as Lance's own scans take it:
//! `_rowaddr IN (...)` recomputes exactly the rows listed (the rows an
//! earlier job recorded as failed, say). It is no column of the table; the
//! filter makes it from the position of each row.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt64Array, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
use lance_datafusion::planner::Planner;

use crate::error::ApplierError;

/// The row address as a filter names it (Lance's `ROW_ADDR`).
pub const ROW_ADDRESS: &str = "_rowaddr";

/// A compiled row filter.
#[derive(Debug, Clone)]
pub struct RowFilter {
    sql: String,
    /// Table columns it reads.
    columns: Vec<String>,
    /// Whether it names `_rowaddr`.
    row_address: bool,
    /// `columns`, then `_rowaddr` if named: what the expression reads.
    schema: SchemaRef,
    expr: Arc<dyn PhysicalExpr>,
}

impl RowFilter {
    /// Compiles `sql` against the table schema `table`.
    pub fn compile(sql: &str, table: &Schema) -> Result<Self, ApplierError> {
        let invalid = |reason: String| ApplierError::InvalidFilter { filter: sql.to_string(), reason };
        let address_field = Field::new(ROW_ADDRESS, DataType::UInt64, false);
        let with_address = Schema::new(table.fields().iter().cloned().chain([Arc::new(address_field.clone())]).collect::<Vec<_>>());
        let planner = Planner::new(Arc::new(with_address));
        let logical = planner.parse_filter(sql).map_err(|e| invalid(e.to_string()))?;
        let mut columns: Vec<String> = Planner::column_names_in_expr(&logical)
            .into_iter()
            .map(|name| top_level(table, &name))
            .collect();
        columns.sort();
        columns.dedup();
        let row_address = table.field_with_name(ROW_ADDRESS).is_err() && columns.iter().any(|c| c == ROW_ADDRESS);
        if row_address {
            columns.retain(|c| c != ROW_ADDRESS);
        }
        let mut fields = columns
            .iter()
            .map(|name| table.field_with_name(name).cloned().map_err(|e| invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if row_address {
            fields.push(address_field);
        }
        let schema = Arc::new(Schema::new(fields));
        let planner = Planner::new(schema.clone());
        let logical = planner.parse_filter(sql).map_err(|e| invalid(e.to_string()))?;
        let logical = planner.optimize_expr(logical).map_err(|e| invalid(e.to_string()))?;
        let expr = planner.create_physical_expr(&logical).map_err(|e| invalid(e.to_string()))?;
        let data_type = expr.data_type(&schema).map_err(|e| invalid(e.to_string()))?;
        if data_type != DataType::Boolean {
            return Err(invalid(format!("it is a {data_type} expression, not a boolean one")));
        }
        Ok(Self { sql: sql.to_string(), columns, row_address, schema, expr })
    }

    /// The SQL as given.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Top-level columns the filter reads.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Evaluates the filter on `batch`, which must hold its columns and
    /// whose rows are consecutive, the first at row address
    /// `first_row_address`. Null is false.
    pub fn evaluate(&self, batch: &RecordBatch, first_row_address: u64) -> Result<BooleanArray, ApplierError> {
        let failed = |reason: String| ApplierError::InvalidFilter { filter: self.sql.clone(), reason };
        let mut columns = self
            .columns
            .iter()
            .map(|name| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| failed(format!("column {name} was not read")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.row_address {
            let addresses = UInt64Array::from_iter_values((first_row_address..).take(batch.num_rows()));
            columns.push(Arc::new(addresses) as ArrayRef);
        }
        let projected = if columns.is_empty() {
            RecordBatch::try_new_with_options(
                self.schema.clone(),
                columns,
                &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
        } else {
            RecordBatch::try_new(self.schema.clone(), columns)
        }
        .map_err(|e| failed(e.to_string()))?;
        let value = self.expr.evaluate(&projected).map_err(|e| failed(e.to_string()))?;
        let array = value.into_array(batch.num_rows()).map_err(|e| failed(e.to_string()))?;
        let mask = array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| failed("the filter did not produce booleans".to_string()))?;
        Ok(match mask.nulls() {
            Some(_) => arrow_select::filter::prep_null_mask_filter(mask),
            None => mask.clone(),
        })
    }

    /// What the filter says of a row whose columns are all null, where
    /// that alone decides it: the filter names no `_rowaddr` and calls
    /// nothing volatile (`random()`). On a fragment that holds none of its
    /// columns it selects every row or none, and they need not be read.
    pub fn on_null_row(&self) -> Option<bool> {
        if self.row_address || is_volatile(&self.expr) {
            return None;
        }
        let nulls = self.schema.fields().iter().map(|field| new_null_array(field.data_type(), 1)).collect();
        let row = RecordBatch::try_new_with_options(self.schema.clone(), nulls, &RecordBatchOptions::new().with_row_count(Some(1))).ok()?;
        self.evaluate(&row, 0).ok().map(|mask| mask.value(0))
    }
}

/// Whether `expr` or any part of it may give another value on the same
/// input.
fn is_volatile(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.is_volatile_node() || expr.children().into_iter().any(is_volatile)
}

fn top_level(table: &Schema, name: &str) -> String {
    if table.field_with_name(name).is_ok() {
        return name.to_string();
    }
    name.split('.').next().unwrap_or(name).trim_matches('`').to_string()
}

/// The default filter of a column: rows not computed yet.
pub fn default_filter(column: &str) -> String {
    format!("{} IS NULL", quote_identifier(column))
}

/// Quotes a column name for SQL when it is not a plain identifier.
pub fn quote_identifier(column: &str) -> String {
    let plain = column.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && column.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { column.to_string() } else { format!("`{}`", column.replace('`', "``")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("out", DataType::Int64, true),
        ])
    }

    fn batch() -> RecordBatch {
        let out: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, None]));
        let name: ArrayRef = Arc::new(StringArray::from(vec![Some("apple"), Some("banana"), None]));
        let id: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        // Deliberately not in table order.
        RecordBatch::try_from_iter([("out", out), ("name", name), ("id", id)]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn eval_at(sql: &str, first_row_address: u64) -> Vec<bool> {
        let filter = RowFilter::compile(sql, &schema()).unwrap_or_else(|e| panic!("{e}"));
        let mask = filter.evaluate(&batch(), first_row_address).unwrap_or_else(|e| panic!("{e}"));
        mask.iter().map(|v| v.unwrap_or(false)).collect()
    }

    fn eval(sql: &str) -> Vec<bool> {
        eval_at(sql, 0)
    }

    #[test]
    fn evaluates_on_batches_in_any_column_order() {
        assert_eq!(eval("out IS NULL"), vec![false, true, true]);
        assert_eq!(eval("id >= 2 AND out IS NULL"), vec![false, true, true]);
        assert_eq!(eval("starts_with(name, 'b')"), vec![false, true, false], "null is false");
        assert_eq!(eval("1=1"), vec![true, true, true]);
    }

    #[test]
    fn row_addresses_count_from_the_batch_s_first_row() {
        let fragment_2 = 2u64 << 32;
        let sql = format!("_rowaddr IN ({}, {})", fragment_2 + 11, fragment_2 + 12);
        assert_eq!(eval_at(&sql, fragment_2 + 10), vec![false, true, true]);
        assert_eq!(eval_at(&sql, 10), vec![false, false, false], "same offsets of another fragment");
        assert_eq!(eval_at("_rowaddr >= 1 AND out IS NULL", 0), vec![false, true, true]);
        let filter = RowFilter::compile("_rowaddr = 3 OR id = 1", &schema()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(filter.columns(), ["id"], "the address is not read from the table");
    }

    #[test]
    fn bad_sql_and_unknown_columns_are_refused() {
        for sql in ["id >>> 2", "nope = 1", "id + 1"] {
            let error = RowFilter::compile(sql, &schema()).err().unwrap_or_else(|| panic!("{sql} compiled"));
            assert!(matches!(error, ApplierError::InvalidFilter { .. }), "{error}");
        }
    }

    #[test]
    fn a_row_of_nulls_decides_only_filters_of_its_columns() {
        let on_null_row = |sql: &str| RowFilter::compile(sql, &schema()).unwrap_or_else(|e| panic!("{e}")).on_null_row();
        assert_eq!(on_null_row("out IS NULL"), Some(true));
        assert_eq!(on_null_row("out IS NULL OR name IS NULL"), Some(true));
        assert_eq!(on_null_row("out > 3"), Some(false), "null is false");
        assert_eq!(on_null_row("coalesce(out, 0) = 0"), Some(true));
        assert_eq!(on_null_row("out IS NULL AND random() < 0.5"), None, "volatile");
        assert_eq!(on_null_row("out IS NULL AND _rowaddr > 3"), None, "the address is no column");
    }

    #[test]
    fn default_filter_quotes_odd_names() {
        assert_eq!(default_filter("out"), "out IS NULL");
        assert_eq!(default_filter("my col"), "`my col` IS NULL");
    }
}

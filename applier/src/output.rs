//! The columns a job writes, and which part of its UDF's values fills each.
//!
//! A UDF fills one column with its values, or, *unpacked*, several sibling
//! columns from one struct: each sibling takes one field of the struct (a
//! null struct is a null in every sibling). The siblings are written into
//! one data file per fragment and committed together, so one call of the
//! UDF fills all of them.

use arrow_array::{Array, ArrayRef, StructArray, make_array};
use arrow::buffer::NullBuffer;
use arrow_schema::{DataType, Field};

use crate::filter::quote_identifier;

/// The columns a job writes, in the table's schema order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OutputColumns {
    /// The UDF's values fill this column.
    Single(String),
    /// The UDF returns a struct: each `(column, field)` pair's column takes
    /// the struct's field of that name.
    Unpacked(Vec<(String, String)>),
}

impl OutputColumns {
    /// The columns written, in order.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Self::Single(column) => vec![column.as_str()],
            Self::Unpacked(pairs) => pairs.iter().map(|(column, _)| column.as_str()).collect(),
        }
    }

    /// The column that stands for all of them: the job's lease, records and
    /// checkpoint keys name it, and its field's metadata records the UDF.
    pub fn lead(&self) -> &str {
        match self {
            Self::Single(column) => column,
            Self::Unpacked(pairs) => pairs.first().map(|(column, _)| column.as_str()).unwrap_or_default(),
        }
    }

    /// The filter a backfill applies unless told otherwise: rows where any
    /// of the columns is null.
    pub fn default_filter(&self) -> String {
        self.columns()
            .iter()
            .map(|column| format!("{} IS NULL", quote_identifier(column)))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// The fields the columns take from a UDF returning `udf_type`, in
    /// order, or why that type cannot fill them.
    pub fn fields_of(&self, udf_type: &DataType) -> Result<Vec<Field>, String> {
        match self {
            Self::Single(column) => Ok(vec![Field::new(column, udf_type.clone(), true)]),
            Self::Unpacked(pairs) => {
                let DataType::Struct(fields) = udf_type else {
                    return Err(format!("it returns {udf_type}, not a struct to unpack"));
                };
                pairs
                    .iter()
                    .map(|(column, name)| {
                        let (_, field) = fields
                            .find(name)
                            .ok_or_else(|| format!("its struct has no field {name} for column {column}"))?;
                        Ok(Field::new(column, field.data_type().clone(), true))
                    })
                    .collect()
            }
        }
    }

    /// Splits a UDF's values into the columns' values, in order.
    pub fn split(&self, values: ArrayRef) -> Result<Vec<ArrayRef>, String> {
        let Self::Unpacked(pairs) = self else { return Ok(vec![values]) };
        let Some(structs) = values.as_any().downcast_ref::<StructArray>() else {
            return Err(format!("expected a struct to unpack, got {}", values.data_type()));
        };
        pairs
            .iter()
            .map(|(column, name)| {
                let child = structs
                    .column_by_name(name)
                    .ok_or_else(|| format!("the UDF's struct has no field {name} for column {column}"))?;
                Ok(null_where_parent_is(child, structs.nulls()))
            })
            .collect()
    }
}

/// `child` with a null wherever its struct is null (a struct's children may
/// hold anything under a null).
fn null_where_parent_is(child: &ArrayRef, parent: Option<&NullBuffer>) -> ArrayRef {
    let Some(parent) = parent else { return child.clone() };
    let nulls = NullBuffer::union(Some(parent), child.nulls());
    let data = child.to_data().into_builder().nulls(nulls);
    // The buffers are the child's own and only nulls were added.
    match data.build() {
        Ok(data) => make_array(data),
        Err(_) => child.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow_schema::Fields;
    use arrow_array::{Int32Array, cast::AsArray, types::Int32Type};

    fn unpacked() -> OutputColumns {
        OutputColumns::Unpacked(vec![("p_b".into(), "b".into()), ("p_a".into(), "a".into())])
    }

    #[test]
    fn a_struct_splits_by_field_name_and_its_nulls_reach_every_column() {
        let fields = Fields::from(vec![Field::new("a", DataType::Int32, true), Field::new("b", DataType::Int32, true)]);
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        let b: ArrayRef = Arc::new(Int32Array::from(vec![Some(10), None, Some(30)]));
        let structs = StructArray::new(fields.clone(), vec![a, b], Some(NullBuffer::from(vec![true, true, false])));
        let columns = unpacked().split(Arc::new(structs)).expect("splits");
        let values: Vec<Vec<Option<i32>>> =
            columns.iter().map(|c| c.as_primitive::<Int32Type>().iter().collect()).collect();
        assert_eq!(values, vec![vec![Some(10), None, None], vec![Some(1), Some(2), None]]);
        assert_eq!(
            unpacked().fields_of(&DataType::Struct(fields)).expect("fits"),
            vec![Field::new("p_b", DataType::Int32, true), Field::new("p_a", DataType::Int32, true)]
        );
    }

    #[test]
    fn a_type_that_cannot_fill_the_columns_is_named() {
        assert!(unpacked().fields_of(&DataType::Int32).unwrap_err().contains("not a struct"));
        let other = DataType::Struct(Fields::from(vec![Field::new("a", DataType::Int32, true)]));
        assert!(unpacked().fields_of(&other).unwrap_err().contains("no field b for column p_b"));
        assert_eq!(unpacked().default_filter(), "p_b IS NULL OR p_a IS NULL");
        assert_eq!(unpacked().lead(), "p_b");
    }
}

//! Calling a UDF on a batch of selected rows under its error policy.
//!
//! Every call runs inside `catch_unwind`, so a panicking UDF is an error like
//! any other. Under [`ErrorPolicy::Retry`] a failed call is made again after
//! a jittered, doubling wait ([`RetryBackoff`]), on the applier thread that
//! made it. Under [`ErrorPolicy::Skip`] a failed batch call is made again row
//! by row, so that one bad row costs one null and not the whole batch.
//! Every failure says how many calls its row was part of.

use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow_array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow_schema::DataType;
use datafusion::common::ScalarValue;

use crate::udf::{Body, ErrorPolicy, InstanceContext, RetryBackoff, StatefulUdf, Udf, UdfError};

/// The values of one call, and the rows the `skip` policy left null.
#[derive(Debug)]
pub(crate) struct Computed {
    pub values: ArrayRef,
    pub skipped: Vec<Skipped>,
}

/// A row the `skip` policy left null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skipped {
    /// Index within the call's input.
    pub row: usize,
    pub message: String,
    /// Calls the row was part of (its batch's, then its own).
    pub attempts: u32,
}

/// A failure that the policy turned into a job failure.
#[derive(Debug)]
pub(crate) struct CallFailure {
    /// The first failing row within the call's input, when known.
    pub row: Option<usize>,
    pub message: String,
    /// Calls made before giving up.
    pub attempts: u32,
}

impl CallFailure {
    /// A failure that no call of the UDF made (setup, merging).
    pub fn other(message: impl Into<String>) -> Self {
        Self { row: None, message: message.into(), attempts: 0 }
    }
}

enum Callable {
    Shared(Body),
    Stateful(Box<dyn StatefulUdf>),
}

/// One applier thread's instance of a UDF.
pub(crate) struct Instance {
    callable: Callable,
    policy: ErrorPolicy,
    backoff: RetryBackoff,
    output_type: DataType,
}

impl Instance {
    /// Builds the instance, running a stateful UDF's factory with `context`.
    pub fn new(udf: &Udf, context: &InstanceContext) -> Result<Self, UdfError> {
        let callable = match &udf.body {
            Body::Stateful(factory) => Callable::Stateful(guarded(|| factory(context))?),
            shared => Callable::Shared(shared.clone()),
        };
        Ok(Self { callable, policy: udf.error_policy(), backoff: udf.retry_backoff(), output_type: udf.data_type().clone() })
    }

    /// Computes one value per row of `inputs`.
    pub fn compute(&mut self, inputs: &RecordBatch) -> Result<Computed, CallFailure> {
        if let Callable::Shared(Body::Scalar(f)) = &self.callable {
            let f = f.clone();
            return self.compute_scalar(inputs, |row| guarded(|| f(row)));
        }
        let (first, attempts) = self.call_with_retries(inputs);
        match (first, self.policy) {
            (Ok(values), _) => Ok(Computed { values, skipped: Vec::new() }),
            (Err(error), ErrorPolicy::Skip) => {
                tracing::debug!(%error, "batch call failed; isolating failing rows");
                self.compute_row_by_row(inputs)
            }
            (Err(error), _) => Err(CallFailure { row: None, message: error.message().to_string(), attempts }),
        }
    }

    /// Retries the policy allows after a first failed call.
    fn retries(&self) -> u32 {
        match self.policy {
            ErrorPolicy::Retry { attempts } => attempts,
            _ => 0,
        }
    }

    /// Waits before retry `retry` (0 for the first).
    fn back_off(&self, retry: u32) {
        std::thread::sleep(self.backoff.delay(retry));
    }

    fn call_once(&mut self, inputs: &RecordBatch) -> Result<ArrayRef, UdfError> {
        let values = match &mut self.callable {
            Callable::Shared(Body::Array(f)) => guarded(|| f(inputs.columns()))?,
            Callable::Shared(Body::Batch(f)) => guarded(|| f(inputs))?,
            Callable::Stateful(instance) => guarded(|| instance.call(inputs))?,
            Callable::Shared(Body::Scalar(_) | Body::Stateful(_)) => {
                return Err(UdfError::new("internal: scalar and stateful bodies are not called as arrays"));
            }
        };
        check_output(&values, inputs.num_rows(), &self.output_type)?;
        Ok(values)
    }

    /// The result of the last call made, and how many were made.
    fn call_with_retries(&mut self, inputs: &RecordBatch) -> (Result<ArrayRef, UdfError>, u32) {
        let mut result = self.call_once(inputs);
        let mut attempts = 1;
        for retry in 0..self.retries() {
            if result.is_ok() {
                break;
            }
            self.back_off(retry);
            result = self.call_once(inputs);
            attempts += 1;
        }
        (result, attempts)
    }

    fn compute_row_by_row(&mut self, inputs: &RecordBatch) -> Result<Computed, CallFailure> {
        let mut pieces: Vec<ArrayRef> = Vec::with_capacity(inputs.num_rows());
        let mut skipped = Vec::new();
        for row in 0..inputs.num_rows() {
            match self.call_once(&inputs.slice(row, 1)) {
                Ok(value) => pieces.push(value),
                Err(error) => {
                    skipped.push(Skipped { row, message: error.message().to_string(), attempts: 2 });
                    pieces.push(new_null_array(&self.output_type, 1));
                }
            }
        }
        let values = concat(&pieces, &self.output_type)?;
        Ok(Computed { values, skipped })
    }

    fn compute_scalar(
        &self,
        inputs: &RecordBatch,
        call: impl Fn(&[ScalarValue]) -> Result<ScalarValue, UdfError>,
    ) -> Result<Computed, CallFailure> {
        let retries = self.retries();
        let mut values = Vec::with_capacity(inputs.num_rows());
        let mut skipped = Vec::new();
        let mut args = Vec::with_capacity(inputs.num_columns());
        for row in 0..inputs.num_rows() {
            args.clear();
            for column in inputs.columns() {
                let value = ScalarValue::try_from_array(column, row)
                    .map_err(|e| CallFailure { row: Some(row), message: e.to_string(), attempts: 0 })?;
                args.push(value);
            }
            let mut result = call(&args);
            let mut attempts = 1;
            for retry in 0..retries {
                if result.is_ok() {
                    break;
                }
                self.back_off(retry);
                result = call(&args);
                attempts += 1;
            }
            let result = result.and_then(|value| {
                if value.data_type() == self.output_type || value.is_null() {
                    Ok(value)
                } else {
                    Err(UdfError::new(format!(
                        "UDF returned a {} value for a {} column",
                        value.data_type(),
                        self.output_type
                    )))
                }
            });
            match (result, self.policy) {
                (Ok(value), _) => values.push(value),
                (Err(error), ErrorPolicy::Skip) => {
                    skipped.push(Skipped { row, message: error.message().to_string(), attempts });
                    values.push(null_scalar(&self.output_type)?);
                }
                (Err(error), _) => {
                    return Err(CallFailure { row: Some(row), message: error.message().to_string(), attempts });
                }
            }
        }
        let values = if values.is_empty() {
            new_null_array(&self.output_type, 0)
        } else {
            ScalarValue::iter_to_array(values).map_err(|e| CallFailure::other(e.to_string()))?
        };
        // Nulls typed by the UDF as another type were coerced above; check the array too.
        check_output(&values, inputs.num_rows(), &self.output_type)
            .map_err(|e| CallFailure::other(e.message()))?;
        Ok(Computed { values, skipped })
    }
}

fn null_scalar(data_type: &DataType) -> Result<ScalarValue, CallFailure> {
    ScalarValue::try_from(data_type).map_err(|e| CallFailure::other(e.to_string()))
}

fn concat(pieces: &[ArrayRef], data_type: &DataType) -> Result<ArrayRef, CallFailure> {
    if pieces.is_empty() {
        return Ok(new_null_array(data_type, 0));
    }
    let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
    arrow_select::concat::concat(&refs).map_err(|e| CallFailure::other(e.to_string()))
}

fn check_output(values: &ArrayRef, rows: usize, data_type: &DataType) -> Result<(), UdfError> {
    if values.len() != rows {
        return Err(UdfError::new(format!("UDF returned {} values for {rows} rows", values.len())));
    }
    if values.data_type() != data_type {
        return Err(UdfError::new(format!(
            "UDF returned {} values for a {data_type} column",
            values.data_type()
        )));
    }
    Ok(())
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, UdfError>) -> Result<T, UdfError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            Err(UdfError::new(format!("UDF panicked: {message}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, cast::AsArray, types::Int64Type};
    use arrow_schema::Field;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    fn inputs(values: &[i64]) -> RecordBatch {
        let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        RecordBatch::try_from_iter([("x", column)]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn field() -> Field {
        Field::new("y", DataType::Int64, true)
    }

    /// Fails on negative inputs, panics on zero.
    fn picky_array() -> Udf {
        Udf::array("picky", field(), &["x"], |cols| {
            let x = cols[0].as_primitive::<Int64Type>();
            if x.values().contains(&0) {
                panic!("zero!");
            }
            if x.values().iter().any(|v| *v < 0) {
                return Err("negative".into());
            }
            Ok(Arc::new(x.clone()) as ArrayRef)
        })
    }

    fn values(computed: &Computed) -> Vec<Option<i64>> {
        computed.values.as_primitive::<Int64Type>().iter().collect()
    }

    #[test]
    fn panics_are_errors_and_fail_by_default() {
        let mut instance = Instance::new(&picky_array(), &InstanceContext::default()).unwrap_or_else(|e| panic!("{e}"));
        let failure = instance.compute(&inputs(&[1, 0])).err().unwrap_or_else(|| panic!("no failure"));
        assert!(failure.message.contains("UDF panicked: zero!"), "{}", failure.message);
    }

    #[test]
    fn skip_nulls_only_the_failing_rows() {
        let udf = picky_array().with_error_policy(ErrorPolicy::Skip);
        let mut instance = Instance::new(&udf, &InstanceContext::default()).unwrap_or_else(|e| panic!("{e}"));
        let computed = instance.compute(&inputs(&[1, -2, 3, 0])).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(values(&computed), vec![Some(1), None, Some(3), None]);
        let rows: Vec<(usize, u32)> = computed.skipped.iter().map(|s| (s.row, s.attempts)).collect();
        assert_eq!(rows, vec![(1, 2), (3, 2)], "each failing row was in its batch's call and its own");
    }

    #[test]
    fn retry_calls_again_until_it_works() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let flaky = Udf::array("flaky", field(), &["x"], move |cols| {
            if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err("transient".into());
            }
            Ok(cols[0].clone())
        });
        let backoff = RetryBackoff { first: Duration::from_millis(40), max: Duration::from_millis(60) };
        let flaky = flaky.with_retry_backoff(backoff);
        let mut instance = Instance::new(&flaky.clone().with_error_policy(ErrorPolicy::Retry { attempts: 2 }), &InstanceContext::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        assert!(instance.compute(&inputs(&[5])).is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_millis(20 + 30), "it waited half of 40 ms, then of 60 ms, at least");
        calls.store(0, Ordering::SeqCst);
        let mut instance = Instance::new(&flaky.with_error_policy(ErrorPolicy::Retry { attempts: 1 }), &InstanceContext::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let failure = instance.compute(&inputs(&[5])).err().unwrap_or_else(|| panic!("no failure"));
        assert_eq!(failure.attempts, 2);
    }

    #[test]
    fn scalar_errors_name_their_row() {
        let udf = Udf::scalar("s", field(), &["x"], |v| match &v[0] {
            ScalarValue::Int64(Some(x)) if *x < 0 => Err("negative".into()),
            ScalarValue::Int64(x) => Ok(ScalarValue::Int64(x.map(|x| x + 1))),
            other => Err(format!("unexpected {other:?}").into()),
        });
        let mut instance = Instance::new(&udf, &InstanceContext::default()).unwrap_or_else(|e| panic!("{e}"));
        let failure = instance.compute(&inputs(&[1, 2, -3])).err().unwrap_or_else(|| panic!("no failure"));
        assert_eq!(failure.row, Some(2));
        let mut skipping = Instance::new(&udf.with_error_policy(ErrorPolicy::Skip), &InstanceContext::default()).unwrap_or_else(|e| panic!("{e}"));
        let computed = skipping.compute(&inputs(&[1, -3])).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(values(&computed), vec![Some(2), None]);
    }

    #[test]
    fn wrong_output_type_or_length_is_an_error() {
        let short = Udf::array("short", field(), &["x"], |_| Ok(Arc::new(Int64Array::from(vec![1])) as ArrayRef));
        let mut instance = Instance::new(&short, &InstanceContext::default()).unwrap_or_else(|e| panic!("{e}"));
        let failure = instance.compute(&inputs(&[1, 2])).err().unwrap_or_else(|| panic!("no failure"));
        assert!(failure.message.contains("returned 1 values for 2 rows"), "{}", failure.message);
    }
}

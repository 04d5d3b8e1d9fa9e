//! User-defined functions: what a UDF is and how it is called.
//!
//! A [`Udf`] has a name, a version, the Arrow field it produces, the columns
//! it reads, resource hints and an error policy, plus one of four call
//! shapes: a closure per value ([`Udf::scalar`]), per Arrow arrays
//! ([`Udf::array`]), per `RecordBatch` ([`Udf::batch`]), or a factory that
//! builds one stateful instance per applier thread ([`Udf::stateful`]), so
//! that a model or a client is set up once and reused.
//!
//! The version keys checkpoints: change it when the function's results
//! change. By default it is a hash of the name, inputs, output field and the
//! closure's type name, which is stable across runs of one build.

use std::fmt;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use sha2::{Digest, Sha256};

pub use crate::policy::{ErrorPolicy, RetryBackoff};

/// An error raised by a UDF for some rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UdfError {
    message: String,
}

impl UdfError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// What the UDF said.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<arrow_schema::ArrowError> for UdfError {
    fn from(error: arrow_schema::ArrowError) -> Self {
        Self::new(error.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for UdfError {
    fn from(error: datafusion::error::DataFusionError) -> Self {
        Self::new(error.to_string())
    }
}

impl From<String> for UdfError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for UdfError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// What one instance of the UDF needs, used to place appliers.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// CPU cores per applier thread.
    pub cpus: f64,
    /// GPUs per applier.
    pub gpus: f64,
    /// Bytes of memory per applier.
    pub memory: u64,
}

/// Where one instance of a stateful UDF runs, as its factory is told
/// ([`Udf::stateful_with_context`]): so a model loads once, on its own
/// device.
///
/// `gpus` are the device ordinals the worker reserved for the applier
/// (distinct from every other applier's that holds whole GPUs), in the
/// numbering of the devices the worker process sees: pass one as the CUDA
/// device ordinal, e.g. `candle_core::Device::new_cuda(ctx.gpus[0] as usize)`,
/// `ort`'s `CUDAExecutionProvider::default().with_device_id(ctx.gpus[0] as i32)`
/// or `cudarc::driver::CudaContext::new(ctx.gpus[0] as usize)`. Embedded
/// jobs and UDFs that reserve no GPU get none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceContext {
    /// The applier's index in its job.
    pub applier: usize,
    /// The thread's index in its applier (below `intra_applier_concurrency`).
    pub thread: usize,
    /// GPU device ordinals reserved for the applier on its worker.
    pub gpus: Vec<u32>,
}

/// A UDF instance owned by one applier thread. Built by the factory of
/// [`Udf::stateful`], so expensive set-up happens once per thread.
pub trait StatefulUdf: Send {
    /// Computes one value per row of `inputs` (the input columns, in order).
    fn call(&mut self, inputs: &RecordBatch) -> Result<ArrayRef, UdfError>;
}

type ScalarFn = dyn Fn(&[ScalarValue]) -> Result<ScalarValue, UdfError> + Send + Sync;
type ArrayFn = dyn Fn(&[ArrayRef]) -> Result<ArrayRef, UdfError> + Send + Sync;
type BatchFn = dyn Fn(&RecordBatch) -> Result<ArrayRef, UdfError> + Send + Sync;
type Factory = dyn Fn(&InstanceContext) -> Result<Box<dyn StatefulUdf>, UdfError> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Body {
    Scalar(Arc<ScalarFn>),
    Array(Arc<ArrayFn>),
    Batch(Arc<BatchFn>),
    Stateful(Arc<Factory>),
}

impl Body {
    fn shape(&self) -> &'static str {
        match self {
            Body::Scalar(_) => "scalar",
            Body::Array(_) => "array",
            Body::Batch(_) => "batch",
            Body::Stateful(_) => "stateful",
        }
    }
}

/// A user-defined function that computes one column; see the [module docs](self).
#[derive(Clone)]
pub struct Udf {
    name: String,
    version: String,
    output: FieldRef,
    inputs: Vec<String>,
    resources: Resources,
    on_error: ErrorPolicy,
    retry_backoff: RetryBackoff,
    params: Vec<(String, String)>,
    pub(crate) body: Body,
}

impl fmt::Debug for Udf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Udf")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("output", &self.output)
            .field("inputs", &self.inputs)
            .field("shape", &self.body.shape())
            .field("resources", &self.resources)
            .field("on_error", &self.on_error)
            .field("retry_backoff", &self.retry_backoff)
            .field("params", &self.params)
            .finish()
    }
}

impl Udf {
    fn new<T: ?Sized>(name: &str, output: Field, inputs: &[&str], body: Body) -> Self {
        let output = Arc::new(output.with_nullable(true));
        let inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        let version = default_version(name, &output, &inputs, body.shape(), std::any::type_name::<T>());
        Self {
            name: name.to_string(),
            version,
            output,
            inputs,
            resources: Resources { cpus: 1.0, ..Resources::default() },
            on_error: ErrorPolicy::default(),
            retry_backoff: RetryBackoff::default(),
            params: Vec::new(),
            body,
        }
    }

    /// A UDF called once per row with the row's input values.
    ///
    /// ```
    /// use arrow_schema::{DataType, Field};
    /// use datafusion::common::ScalarValue;
    /// use leman_applier::Udf;
    ///
    /// let double = Udf::scalar("double", Field::new("doubled", DataType::Int64, true), &["x"], |v| {
    ///     Ok(match &v[0] {
    ///         ScalarValue::Int64(x) => ScalarValue::Int64(x.map(|x| x * 2)),
    ///         other => return Err(format!("expected int64, got {other:?}").into()),
    ///     })
    /// });
    /// assert_eq!(double.name(), "double");
    /// ```
    pub fn scalar<F>(name: &str, output: Field, inputs: &[&str], f: F) -> Self
    where
        F: Fn(&[ScalarValue]) -> Result<ScalarValue, UdfError> + Send + Sync + 'static,
    {
        Self::new::<F>(name, output, inputs, Body::Scalar(Arc::new(f)))
    }

    /// A UDF called with the input columns of a batch of rows, as arrays.
    pub fn array<F>(name: &str, output: Field, inputs: &[&str], f: F) -> Self
    where
        F: Fn(&[ArrayRef]) -> Result<ArrayRef, UdfError> + Send + Sync + 'static,
    {
        Self::new::<F>(name, output, inputs, Body::Array(Arc::new(f)))
    }

    /// A UDF called with a `RecordBatch` of the input columns.
    pub fn batch<F>(name: &str, output: Field, inputs: &[&str], f: F) -> Self
    where
        F: Fn(&RecordBatch) -> Result<ArrayRef, UdfError> + Send + Sync + 'static,
    {
        Self::new::<F>(name, output, inputs, Body::Batch(Arc::new(f)))
    }

    /// A UDF whose instances keep state: `factory` runs once per applier thread.
    pub fn stateful<F>(name: &str, output: Field, inputs: &[&str], factory: F) -> Self
    where
        F: Fn() -> Result<Box<dyn StatefulUdf>, UdfError> + Send + Sync + 'static,
    {
        Self::new::<F>(name, output, inputs, Body::Stateful(Arc::new(move |_: &InstanceContext| factory())))
    }

    /// A stateful UDF whose factory is told where its instance runs: its
    /// applier and thread index and its GPU device ordinals.
    ///
    /// ```
    /// use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
    /// use arrow_schema::{DataType, Field};
    /// use leman_applier::{Resources, StatefulUdf, Udf, UdfError};
    ///
    /// /// Stands for a model loaded on one device.
    /// struct OnDevice(u32);
    ///
    /// impl StatefulUdf for OnDevice {
    ///     fn call(&mut self, inputs: &RecordBatch) -> Result<ArrayRef, UdfError> {
    ///         Ok(std::sync::Arc::new(UInt32Array::from(vec![self.0; inputs.num_rows()])))
    ///     }
    /// }
    ///
    /// let udf = Udf::stateful_with_context("device", Field::new("device", DataType::UInt32, true), &["text"], |ctx| {
    ///     let ordinal = ctx.gpus.first().copied().ok_or_else(|| UdfError::new("no GPU reserved"))?;
    ///     Ok(Box::new(OnDevice(ordinal)) as Box<dyn StatefulUdf>)
    /// })
    /// .with_resources(Resources { cpus: 1.0, gpus: 1.0, memory: 0 });
    /// assert_eq!(udf.resources().gpus, 1.0);
    /// ```
    pub fn stateful_with_context<F>(name: &str, output: Field, inputs: &[&str], factory: F) -> Self
    where
        F: Fn(&InstanceContext) -> Result<Box<dyn StatefulUdf>, UdfError> + Send + Sync + 'static,
    {
        Self::new::<F>(name, output, inputs, Body::Stateful(Arc::new(factory)))
    }

    /// Sets the version that keys checkpoints.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Sets the input columns.
    pub fn with_inputs<S: AsRef<str>>(mut self, inputs: &[S]) -> Self {
        self.inputs = inputs.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Sets the resource hints.
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Sets the error policy.
    pub fn with_error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// Sets the wait between retries of the `retry` policy.
    pub fn with_retry_backoff(mut self, backoff: RetryBackoff) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Records parameters the UDF was built with (`key=value`), kept in the
    /// column's UDF record so that another process can build it again.
    pub fn with_params(mut self, params: Vec<(String, String)>) -> Self {
        self.params = params;
        self
    }

    /// The parameters it was built with.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Renames the output field (the column it is declared as).
    pub fn with_output_name(mut self, name: &str) -> Self {
        self.output = Arc::new(self.output.as_ref().clone().with_name(name));
        self
    }

    /// The UDF's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version, as declared (or by default a hash of its definition).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What keys its checkpoints and says which computation produced a
    /// column's values: its version, inputs and parameters, hashed, so that
    /// the same UDF over other columns or with other parameters is another
    /// computation.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.version, &self.inputs, &self.params)
    }

    /// The field it produces (always nullable).
    pub fn output(&self) -> &FieldRef {
        &self.output
    }

    /// Its output type.
    pub fn data_type(&self) -> &DataType {
        self.output.data_type()
    }

    /// The columns it reads, in call order.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// Its resource hints.
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// Its error policy.
    pub fn error_policy(&self) -> ErrorPolicy {
        self.on_error
    }

    /// The wait between its retries.
    pub fn retry_backoff(&self) -> RetryBackoff {
        self.retry_backoff
    }

    /// Whether the UDF takes a whole `RecordBatch` (its inputs cannot be overridden).
    pub fn takes_record_batch(&self) -> bool {
        matches!(self.body, Body::Batch(_))
    }
}

/// [`Udf::fingerprint`] of a UDF of `version` over `inputs` with `params`.
pub fn fingerprint(version: &str, inputs: &[String], params: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |part: &str| {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    };
    field(version);
    field(&inputs.len().to_string());
    for input in inputs {
        field(input);
    }
    field(&params.len().to_string());
    for (key, value) in params {
        field(key);
        field(value);
    }
    format!("{version}+{}", hex::encode(&hasher.finalize()[..6]))
}

fn default_version(name: &str, output: &Field, inputs: &[String], shape: &str, type_name: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [name, &output.data_type().to_string(), &inputs.join("\u{1f}"), shape, type_name] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

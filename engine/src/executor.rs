//! What the engine asks of wherever a job's work runs.
//!
//! The driver decides (through the scheduler) which task goes to which
//! applier and when a fragment is written; an [`Executor`] carries that out
//! somewhere: in this process ([`LocalExecutor`](crate::LocalExecutor)) or
//! on a cluster's workers (`leman-node`). It is asked, once per job, to
//! [`open`](Executor::open) the job; the [`JobExecutor`] it returns starts
//! appliers, writes fragments, reports what happens to them on its own
//! ([`ExecutorEvent`]), and stops everything when the job ends. A started
//! applier is an [`ApplierHandle`] that runs tasks.
//!
//! A transport failure is never a task's own error: tasks and fragment
//! writes are idempotent (their results are content-addressed
//! checkpoints), so the scheduler simply runs them again elsewhere. The
//! outcomes say which is which ([`Unanswered`], [`WriteFailure`]).
//!
//! A job travels to other processes as a [`JobSpec`]: plain data from which
//! [`JobSpec::open`] rebuilds the same [`JobSetup`] (table version, UDF from
//! that process's registry, column, filter) in the process that runs the
//! work.

use std::fmt;
use std::sync::Arc;

use arrow_schema::Schema as ArrowSchema;
use futures::future::BoxFuture;
use lance::Dataset;
use lance_table::format::DataFile;
use leman_applier::{BackfillContext, JobPart, OutputColumns, Resources, RowFilter, TaskError, TaskOutput, TaskSpec};
use leman_checkpoint::{CheckpointKey, CheckpointStore};
use leman_writer::{FragmentWrite, WriterContext};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::TableLocation;
use crate::registry::UdfRegistry;
use crate::stores::TableStores;
use crate::metering::StoreTally;
use crate::udf_record::UdfRecord;

/// Where jobs' appliers run and their fragments are written.
pub trait Executor: Send + Sync + fmt::Debug {
    /// Prepares to run `job`'s work. An error fails the backfill before it
    /// starts.
    fn open(&self, job: &JobSetup) -> Result<Box<dyn JobExecutor>>;
}

/// One job's work on an [`Executor`]. Its driver calls it from one task.
pub trait JobExecutor: Send + fmt::Debug {
    /// Starts incarnation `incarnation` of applier `index` (each start of
    /// an index is a new incarnation). Room is taken in the call, in the
    /// order of the calls; the start itself is the future, which the driver
    /// awaits together with the starts of the job's other appliers (on a
    /// cluster, each opens the table on its worker). `Ok(None)` when there
    /// is no room for it now: the driver tries again after the next
    /// [`ExecutorEvent`]. An error fails the job.
    fn start_applier(&mut self, index: usize, incarnation: u64) -> BoxFuture<'static, Result<Option<Arc<dyn ApplierHandle>>>>;

    /// Applier `index` is not running any more (it stopped on its own, or
    /// its worker was lost): free what it held.
    fn applier_gone(&mut self, index: usize);

    /// Writes a fragment's data file from its batch checkpoints.
    fn write_fragment(&mut self, write: FragmentWrite) -> BoxFuture<'static, Result<DataFile, WriteFailure>>;

    /// Of `keys`, batches of written fragments, those its appliers may have
    /// stored (the others need no delete): by default all of them.
    fn maybe_stored(&mut self, keys: Vec<CheckpointKey>) -> Vec<CheckpointKey> {
        keys
    }

    /// What happened on its own since the last call; pends until something
    /// does (forever, where nothing can). Cancel-safe: it is raced against
    /// the driver's other inputs.
    fn next_events(&mut self) -> BoxFuture<'_, Vec<ExecutorEvent>>;

    /// The job has ended (its appliers were stopped): release what it holds
    /// anywhere, and say what its work in other processes asked of the
    /// table's object store (work in this process is counted by the
    /// driver's own meter).
    fn stop(&mut self) -> BoxFuture<'_, StoreTally>;
}

/// A running applier of a job.
pub trait ApplierHandle: Send + Sync + fmt::Debug {
    /// Runs a task, returning its own outcome or why there is none.
    fn run(&self, task: TaskSpec) -> BoxFuture<'static, ApplierOutcome>;

    /// Stops the applier (best effort: one that cannot be reached stops
    /// when its host gives the job up).
    fn stop(&self) -> BoxFuture<'static, ()>;
}

/// A task's outcome from its applier: the task's own result, or why the
/// applier gave none.
pub type ApplierOutcome = std::result::Result<std::result::Result<TaskOutput, TaskError>, Unanswered>;

/// What an executor reports on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorEvent {
    /// Incarnation `incarnation` of applier `index` is not running (it
    /// failed, was killed, or its host was lost): its tasks go back to the
    /// queue and it is started again.
    ApplierGone { index: usize, incarnation: u64, reason: String },
    /// There may be room for appliers that wait for it (a worker joined,
    /// another job released resources).
    Room,
}

/// Why a task did not get an outcome from its applier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// The applier is not running: the task did not run there, and nothing
    /// more will.
    Gone(String),
    /// Its host could not be reached; whether it lives is for the executor
    /// to find out.
    Unreachable(String),
}

/// Why a fragment could not be written, and whether another try may work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// What went wrong.
    pub message: String,
    /// Whether another try may work.
    pub retryable: bool,
}

/// A job resolved in this process, as executors get it.
#[derive(Debug)]
pub struct JobSetup {
    /// Its plain description, for executors that run work elsewhere.
    pub spec: JobSpec,
    /// The dataset at the job's read version.
    pub dataset: Arc<Dataset>,
    /// What it computes: one UDF (overrides applied), its columns and
    /// filter; one part a column for a backfill of several in one pass.
    pub parts: Vec<JobPart>,
    /// Where batch and fragment checkpoints go.
    pub checkpoints: CheckpointStore,
}

impl JobSetup {
    /// What an applier of this job runs tasks with, checkpointing into
    /// `checkpoints` (the job's, or the same with a handoff).
    pub fn applier_context(&self, checkpoints: CheckpointStore) -> Result<BackfillContext> {
        BackfillContext::new(self.dataset.clone(), self.parts.clone(), checkpoints)
            .map_err(|e| Error::InvalidOptions { reason: e.to_string() })
    }

    /// What a writer of this job writes fragments with, reading batches
    /// from `checkpoints`.
    pub fn writer_context(&self, checkpoints: CheckpointStore) -> Result<WriterContext> {
        let columns: Vec<&str> = self.parts.iter().flat_map(|part| part.outputs.columns()).collect();
        Ok(WriterContext::new(self.dataset.clone(), &columns, checkpoints)?)
    }

    /// What one applier holds while it runs: its UDFs' hints (each thread
    /// calls them one after another, and holds an instance of each), with
    /// CPUs times the applier's threads.
    pub fn applier_needs(&self) -> Resources {
        let hints = self.parts.iter().map(|part| part.udf.resources()).fold(Resources::default(), |all, hints| Resources {
            cpus: all.cpus.max(hints.cpus),
            gpus: all.gpus.max(hints.gpus),
            memory: all.memory.saturating_add(hints.memory),
        });
        Resources { cpus: hints.cpus * self.spec.threads as f64, ..hints }
    }

    /// The UDFs' names, as records show them: `f`, or `f,g` for several.
    pub fn udf_names(&self) -> String {
        self.parts.iter().map(|part| part.udf.name()).collect::<Vec<_>>().join(",")
    }
}

/// What another process needs to run a job's work: the same table version,
/// UDF (by its record, from that process's own registry), column and
/// filter. Plain data (serde), so that an executor can send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job id.
    pub job_id: String,
    /// The table, reachable from every process that runs the job with its
    /// storage options (secrets included: a spec travels only over the
    /// cluster's TLS, and its `Debug` form redacts them).
    pub table: TableLocation,
    /// Version the job reads.
    pub read_version: u64,
    /// What it computes: one part, or one a column for a backfill of
    /// several in one pass.
    pub parts: Vec<PartSpec>,
    /// Threads per applier.
    pub threads: usize,
}

/// One UDF of a job, the columns it writes and its filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSpec {
    /// The columns it writes.
    pub outputs: OutputColumns,
    /// The UDF, by name, version, inputs and parameters.
    pub udf: UdfRecord,
    /// The filter in force.
    pub filter: String,
}

impl JobSpec {
    /// The column that stands for the first part's output columns: the
    /// job's commits check it, and records of a one-column job name it.
    pub fn column(&self) -> &str {
        self.parts.first().map_or("", |part| part.outputs.lead())
    }

    /// The columns, as records name them: `a`, or `a,b` for several.
    pub fn columns_label(&self) -> String {
        self.parts.iter().map(|part| part.outputs.lead()).collect::<Vec<_>>().join(",")
    }

    /// The filters, as records show them: one a part, `; ` between.
    pub fn filters_label(&self) -> String {
        self.parts.iter().map(|part| part.filter.as_str()).collect::<Vec<_>>().join("; ")
    }

    /// Rebuilds the job in this process: the table at the job's version,
    /// the UDF from `registry` (which must build the job's version of it),
    /// the filter, the checkpoint store.
    pub async fn open(&self, registry: &UdfRegistry) -> Result<JobSetup> {
        let dataset = self.table.open_version(self.read_version).await?;
        let schema = ArrowSchema::from(dataset.schema());
        let parts = self.parts.iter().map(|part| part.open(registry, &schema)).collect::<Result<_>>()?;
        let checkpoints = TableStores::open(&self.table).await?.checkpoints;
        Ok(JobSetup { spec: self.clone(), dataset: Arc::new(dataset), parts, checkpoints })
    }
}

/// Builds, once per process, the SQL engine that every job's filters are
/// compiled with (several milliseconds of CPU when cold), so that a head's
/// or a worker's first job does not wait for it. Blocking: call it where
/// the process can spare a thread.
pub fn warm_up() {
    let _ = RowFilter::compile("true", &ArrowSchema::empty());
}

impl PartSpec {
    /// The part in this process: its UDF from `registry` (which must build
    /// the job's version of it) and its filter compiled on `schema`.
    fn open(&self, registry: &UdfRegistry, schema: &ArrowSchema) -> Result<JobPart> {
        let udf = self.udf.build(registry, self.outputs.lead())?;
        if udf.version() != self.udf.version {
            return Err(Error::UdfVersionMismatch {
                name: self.udf.name.clone(),
                here: udf.version().to_string(),
                job: self.udf.version.clone(),
            });
        }
        let filter = RowFilter::compile(&self.filter, schema).map_err(Error::InvalidFilter)?;
        Ok(JobPart { udf, outputs: self.outputs.clone(), filter })
    }
}

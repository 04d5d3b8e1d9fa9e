//! Messages between clients, the head and workers. Plain serde types; the
//! runtime frames them. A job travels as the engine's [`JobSpec`], from
//! which a worker rebuilds it.

use lance_table::format::DataFile;
use leman_applier::{TaskError, TaskOutput, TaskSpec};
use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_engine::{BackfillOptions, CancelReason, JobStatus, Progress, StoreTally, Summary, TableLocation};
use leman_writer::FragmentWrite;
use serde::{Deserialize, Serialize};

pub use leman_engine::JobSpec;

/// What a worker is asked by a job's driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WorkerRequest {
    /// Start incarnation `incarnation` of applier `index` of a job
    /// (replacing an older one of that index, if any), on the GPU devices
    /// `gpus` that the head's ledger leased for it. If it stops without
    /// being asked to, the head is told ([`HeadRequest::ApplierExited`]).
    SpawnApplier { job: JobSpec, index: usize, incarnation: u64, gpus: Vec<u32> },
    /// Run a task on applier `index` of job `job_id`.
    RunTask { job_id: String, index: usize, task: TaskSpec },
    /// Write a fragment's data file from its checkpoints.
    WriteFragment { job: JobSpec, write: FragmentWrite },
    /// Stop one applier (usually cast).
    StopApplier { job_id: String, index: usize, incarnation: u64 },
    /// Stop everything of a job; the answer says what the job asked of
    /// the object store here.
    StopJob { job_id: String },
    /// Which appliers run here?
    Hosted,
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerResponse {
    /// The applier runs.
    Spawned,
    /// A task's outcome.
    Task(Result<TaskOutput, TaskError>),
    /// A fragment's new data file, or why it could not be written.
    Written(Result<ShippedDataFile, String>),
    /// The job's actors are stopped.
    Stopped,
    /// The job is stopped here; its work here made these requests to the
    /// table's object store.
    JobStopped { store: StoreTally },
    /// The applier a task was sent to is not running (it stopped or was
    /// never started here): the task did not run.
    ApplierGone { reason: String },
    /// The appliers this worker runs.
    Hosted(Vec<HostedApplier>),
    /// The request could not be served (unknown job, UDF not registered, ...).
    Refused { reason: String },
}

/// What the head is asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HeadRequest {
    /// A worker joins.
    Join(Join),
    /// A worker is alive.
    Heartbeat(Heartbeat),
    /// Who is in the cluster?
    Members,
    /// Run a backfill on the cluster.
    Submit(Box<Submission>),
    /// Where does a job stand?
    JobStatus { job_id: String },
    /// Stop a job after its batches in flight (answered `Noted`).
    CancelJob { job_id: String },
    /// A worker's applier stopped without being asked to (cast by the
    /// worker: the head spawned it).
    ApplierExited(ApplierExit),
}

/// An applier that runs on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedApplier {
    /// Its job.
    pub job_id: String,
    /// Its index in the job.
    pub index: usize,
    /// Which start of that index it is.
    pub incarnation: u64,
}

/// A supervision event: an applier stopped on its own (failed, or killed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplierExit {
    /// Which applier.
    pub applier: HostedApplier,
    /// The worker's serving address.
    pub worker: String,
    /// Why, as the actor system told it.
    pub reason: String,
}

/// A backfill submitted to the head.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// The table, reachable from the head and every worker; its storage
    /// options travel on to the workers that run the job.
    pub table: TableLocation,
    /// The UDF columns to compute: one, or several in one pass.
    pub columns: Vec<String>,
    /// The options; a UDF override does not travel (UDFs are code).
    pub options: BackfillOptions,
}

/// A job as the head sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Job id.
    pub job_id: String,
    /// Column it computes.
    pub column: String,
    /// Where it stands.
    pub status: JobStatus,
    /// Latest progress.
    pub progress: Progress,
    /// Final counts, once it succeeded.
    pub summary: Option<Summary>,
    /// Why it failed.
    pub error: Option<String>,
    /// Why it was cancelled.
    pub cancelled: Option<CancelReason>,
}

/// What the head answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HeadResponse {
    /// Welcome; this is your id.
    Joined { node: NodeId },
    /// Heartbeat noted; `known: false` means the worker was lost and must join again.
    Alive { known: bool },
    /// The live members.
    Members(Vec<MemberInfo>),
    /// The job is accepted and running.
    Submitted { job_id: String },
    /// A job's state.
    Job(Box<JobView>),
    /// A cast was taken.
    Noted,
    /// The request could not be served.
    Refused { reason: String },
}

/// A Lance `DataFile` on the wire. Its serde form skips empty fields, which
/// only a self-describing format can read back, so it travels as JSON
/// inside the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedDataFile(pub DataFile);

impl Serialize for ShippedDataFile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&json)
    }
}

impl<'de> Deserialize<'de> for ShippedDataFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = String::deserialize(deserializer)?;
        serde_json::from_str(&json).map(ShippedDataFile).map_err(serde::de::Error::custom)
    }
}

/// A live member as the head reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub node: NodeId,
    /// Where it serves.
    pub addr: String,
    /// What it offers.
    pub resources: Resources,
    /// What the appliers of running jobs hold of it now.
    pub reserved: Resources,
}

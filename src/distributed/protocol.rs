//! Messages between workers and the head. Plain serde types; the runtime
//! frames them.

use lance_table::format::DataFile;
use leman_applier::{TaskError, TaskOutput, TaskSpec};
use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_writer::FragmentWrite;
use serde::{Deserialize, Serialize};

use crate::udf_record::UdfRecord;

/// What a worker needs to rebuild a job's context: the same table version,
/// UDF (from its own registry, same binary), column and filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job id.
    pub job_id: String,
    /// The table's URI, reachable from every worker.
    pub table_uri: String,
    /// Version the job reads.
    pub read_version: u64,
    /// Output column.
    pub column: String,
    /// The UDF, by name, version, inputs and parameters.
    pub udf: UdfRecord,
    /// The filter in force.
    pub filter: String,
    /// Threads per applier.
    pub threads: usize,
}

/// What a worker is asked by a job's driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WorkerRequest {
    /// Start applier `index` of a job.
    SpawnApplier { job: JobSpec, index: usize },
    /// Run a task on applier `index` of job `job_id`.
    RunTask { job_id: String, index: usize, task: TaskSpec },
    /// Write a fragment's data file from its checkpoints.
    WriteFragment { job: JobSpec, write: FragmentWrite },
    /// Stop everything of a job.
    StopJob { job_id: String },
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerResponse {
    /// The applier runs.
    Spawned,
    /// A task's outcome.
    Task(Result<TaskOutput, TaskError>),
    /// A fragment's new data file, or why it could not be written.
    Written(Result<DataFile, String>),
    /// The job's actors are stopped.
    Stopped,
    /// The request could not be served (unknown job, UDF not registered, ...).
    Refused { reason: String },
}

/// What the head is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HeadRequest {
    /// A worker joins.
    Join(Join),
    /// A worker is alive.
    Heartbeat(Heartbeat),
    /// Who is in the cluster?
    Members,
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
    /// The request could not be served.
    Refused { reason: String },
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
}

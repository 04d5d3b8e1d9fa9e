//! The engine's one error type, which is also the public API's: `leman`
//! re-exports it as `leman::Error`. Errors of where a job runs (a cluster's
//! certificates, connections, a head that refused) are not the engine's to
//! know; they arrive boxed in [`Error::Cluster`].

use leman_scheduler::JobFailure;

/// What went wrong, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI is not a directory path, `file://` URI or enabled object store.
    #[error("invalid URI {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// No Lance dataset at this location.
    #[error("no table at {uri}; check the path, or create it with create_table")]
    TableNotFound {
        uri: String,
        #[source]
        source: lance::Error,
    },
    /// The table's object store refused the credentials, has no such
    /// bucket, or could not be reached.
    #[error("{}", .problem.describe(.uri, .detail))]
    Storage { uri: String, problem: crate::storage::StorageProblem, detail: String },
    /// `create_table` found one already.
    #[error("table {uri} already exists; open it with open_table")]
    TableExists { uri: String },
    /// The table has no such column.
    #[error("table {table} has no column {column}; add it first with add_columns (or `leman add-column`)")]
    ColumnNotFound { table: String, column: String },
    /// `add_columns` found a column of that name.
    #[error("table {table} already has a column {column}; pick another name")]
    ColumnExists { table: String, column: String },
    /// The column records no UDF and none was given.
    #[error("column {column} has no UDF recorded; pass one with BackfillOptions::udf")]
    NoUdf { column: String },
    /// The column's UDF is not registered in this process.
    #[error("UDF {name} (recorded for column {column}) is not registered; register it with Database::register_udf or pass it with BackfillOptions::udf")]
    UdfNotRegistered { column: String, name: String },
    /// A UDF reads a column the table lacks.
    #[error("UDF {udf} reads column {input}, which table {table} does not have; fix its input columns")]
    InputNotFound { udf: String, input: String, table: String },
    /// The UDF's output type is not the column's.
    #[error("UDF {udf} produces {actual} but column {column} is {expected}; use a UDF of the column's type")]
    TypeMismatch { udf: String, column: String, expected: String, actual: String },
    /// A UDF cannot take an input column of this type.
    #[error("UDF {udf} cannot read column {input} of type {actual}: it takes {expected}; pick an input column of that type")]
    InputTypeMismatch { udf: String, input: String, expected: String, actual: String },
    /// An option is out of range or contradicts another.
    #[error("invalid backfill options: {reason}")]
    InvalidOptions { reason: String },
    /// The `where` filter does not compile.
    #[error(transparent)]
    InvalidFilter(leman_applier::ApplierError),
    /// `read_version` is not a version of the table.
    #[error("table {table} has no version {version}; list versions with `leman inspect`")]
    VersionNotFound {
        table: String,
        version: u64,
        #[source]
        source: lance::Error,
    },
    /// Another job is backfilling the column.
    #[error("column {column} is being backfilled by job {job_id} (pid {pid} on {host}); wait for it to end or cancel it (a job whose process died is taken over 15 s after its last sign of life)")]
    ColumnBusy { column: String, job_id: String, pid: u32, host: String },
    /// Another refresh of the view is running.
    #[error("view {view} is being refreshed by {holder} (pid {pid} on {host}); wait for it to end or cancel it (a refresh whose process died is taken over 15 s after its last sign of life)")]
    ViewBusy { view: String, holder: String, pid: u32, host: String },
    /// The table is not a materialized view, or its view record is damaged.
    #[error("{uri} is not a materialized view ({reason}); create one with `leman view create`")]
    NotAView { uri: String, reason: String },
    /// Another job took the column's lease over (this one was paused or cut
    /// off from the store for longer than the lease lasts).
    #[error("column {column} was taken over by job {job_id} (pid {pid} on {host}) while this job was paused or cut off; this job commits nothing more")]
    ColumnTakenOver { column: String, job_id: String, pid: u32, host: String },
    /// The job failed; what was committed before stays committed.
    #[error("backfill job {job_id} failed: {failure}; fix the cause and run the same backfill again to resume from its checkpoints")]
    JobFailed { job_id: String, failure: JobFailure },
    /// The job was cancelled; run it again to resume.
    #[error("backfill job {job_id} was {reason}; its checkpoints are kept: run the same backfill again to resume")]
    Cancelled { job_id: String, reason: crate::cancel::CancelReason },
    /// The table records no job of this id.
    #[error("table {table} has no job {job_id}; list its jobs with `leman jobs --table {table}`")]
    JobNotFound { table: String, job_id: String },
    /// `retry_errors` named a job that recorded no failed rows.
    #[error("job {job_id} recorded no failed rows on table {table}; `leman errors --table {table}` lists the jobs that did")]
    NoFailedRows { table: String, job_id: String },
    /// The job cannot be cancelled: it is not running.
    #[error("job {job_id} is not running (status: {status}); nothing to cancel")]
    JobNotRunning { job_id: String, status: leman_scheduler::JobStatus },
    /// Promote and discard take staged jobs only.
    #[error("job {job_id} is not staged (status: {status}); only a job run with --stage can be promoted or discarded")]
    NotStaged { job_id: String, status: leman_scheduler::JobStatus },
    /// A staged fragment changed since it was written.
    #[error("cannot promote: {reason}; promote with --recompute to compute the changed fragments again first, or discard the jobs")]
    StagedStale { reason: String },
    /// An actor could not be started or stopped answering.
    #[error("actor {actor}: {reason}")]
    Actor { actor: String, reason: String },
    /// A process of another build, or with other UDFs registered, was asked
    /// to run the job.
    #[error("UDF {name} is version {here} in this process but {job} in the job; run the same binary, with the same UDFs registered, on every node")]
    UdfVersionMismatch { name: String, here: String, job: String },
    /// The cluster failed: its certificates, its connections, or a head or
    /// worker that refused. The error itself is the cluster's
    /// (`leman::distributed::NodeError`); downcast to inspect it.
    #[error(transparent)]
    Cluster(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Checkpoint storage failed.
    #[error(transparent)]
    Checkpoint(#[from] leman_checkpoint::CheckpointError),
    /// Writing or committing failed.
    #[error(transparent)]
    Writer(#[from] leman_writer::WriterError),
    /// Lance failed.
    #[error("lance: {0}")]
    Lance(#[from] lance::Error),
    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Local I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A failure of the cluster (or of another place where jobs run), boxed
    /// as [`Error::Cluster`].
    pub fn cluster(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Cluster(Box::new(error))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

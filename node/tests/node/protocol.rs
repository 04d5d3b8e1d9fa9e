//! Every message of the protocol through the runtime's frames.

use std::time::Duration;

use lance_table::format::DataFile;
use leman_applier::{TaskError, TaskOutput, TaskSpec};
use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_engine::{BackfillOptions, CancelReason, JobStatus, PartSpec, Progress, StorageOptions, Summary, TableLocation, UdfRecord};
use leman_node::{
    ApplierExit, HeadRequest, HeadResponse, HostedApplier, JobSpec, JobView, ShippedDataFile, Submission, WorkerRequest,
    WorkerResponse,
};
use leman_writer::FragmentWrite;

/// One of every message, with every kind of content.
pub struct Examples {
    pub worker_requests: Vec<WorkerRequest>,
    pub worker_responses: Vec<WorkerResponse>,
    pub head_requests: Vec<HeadRequest>,
    pub head_responses: Vec<HeadResponse>,
}

pub fn examples() -> Examples {
    let data_file: DataFile = serde_json::from_str(
        r#"{"path":"a.lance","fields":[3],"column_indices":[0],"file_major_version":2,"file_minor_version":1}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = JobSpec {
        job_id: "j".into(),
        table: TableLocation::new("s3://bucket/t.lance", StorageOptions::new().with("aws_secret_access_key", "k")).unwrap(),
        read_version: 3,
        parts: vec![
            PartSpec {
                outputs: leman_engine::OutputColumns::Single("c".into()),
                udf: UdfRecord { name: "busy".into(), version: "1".into(), inputs: vec!["id".into()], params: vec![("micros".into(), "5".into())], on_error: Some(leman_engine::ErrorPolicy::Skip), retry_backoff: None },
                filter: "c IS NULL".into(),
            },
            PartSpec {
                outputs: leman_engine::OutputColumns::Unpacked(vec![("s_n".into(), "n".into()), ("s_m".into(), "m".into())]),
                udf: UdfRecord { name: "text_stats".into(), version: "1".into(), inputs: vec!["text".into()], params: Vec::new(), on_error: None, retry_backoff: None },
                filter: "s_n IS NULL OR s_m IS NULL".into(),
            },
        ],
        threads: 2,
    };
    let worker_responses = vec![
        WorkerResponse::Spawned,
        WorkerResponse::Task(Ok(TaskOutput {
            rows_computed: 3,
            rows_skipped: 1,
            errors: vec![leman_applier::SkippedRow { row_address: 7, message: "bad".into(), attempts: 2 }],
            udf_time: Some(Duration::from_micros(1500)),
            udf_cpu: Some(Duration::from_micros(1400)),
            rows_read: 4,
            peak_memory_bytes: Some(1 << 30),
        })),
        WorkerResponse::Task(Err(TaskError::Udf { message: "x".into(), row_address: Some(1 << 32), attempts: 3 })),
        WorkerResponse::Written(Ok(ShippedDataFile(data_file.clone()))),
        WorkerResponse::Written(Err("disk full".into())),
        WorkerResponse::Stopped,
        WorkerResponse::JobStopped { store: leman_engine::StoreTally { requests: 9, bytes_read: 100, bytes_written: 200 } },
        WorkerResponse::Refused { reason: "no".into() },
        WorkerResponse::ApplierGone { reason: "killed".into() },
        WorkerResponse::Hosted(vec![HostedApplier { job_id: "j".into(), index: 1, incarnation: 4 }]),
    ];
    let key = leman_checkpoint::KeyParts {
        udf_name: "busy",
        udf_version: "1",
        column: "c",
        filter: "c IS NULL",
        table: "/t.lance",
        fragment_id: 2,
        data_files: vec!["a.lance".into()],
    };
    let write = FragmentWrite {
        fragment_id: 2,
        batches: vec![(0..10, key.batch_key(0..10)), (10..15, key.batch_key(10..15))],
        fragment_key: key.fragment_key(),
        base_output_file: Some("b.lance".into()),
        origin: key.origin(),
        fill_tags: vec![(3, "0123456789abcdef".into())],
    };
    let worker_requests = vec![
        WorkerRequest::SpawnApplier { job: spec.clone(), index: 1, incarnation: 3, gpus: vec![0, 2] },
        WorkerRequest::RunTask { job_id: "j".into(), index: 1, task: TaskSpec { fragment_id: 2, rows: 0..10, key: key.batch_key(0..10), all_rows: vec![false] } },
        WorkerRequest::WriteFragment { job: spec.clone(), write },
        WorkerRequest::StopJob { job_id: "j".into() },
        WorkerRequest::StopApplier { job_id: "j".into(), index: 1, incarnation: 3 },
        WorkerRequest::Hosted,
    ];
    let head_requests = vec![
        HeadRequest::Members,
        HeadRequest::JobStatus { job_id: "j".into() },
        HeadRequest::CancelJob { job_id: "j".into() },
        HeadRequest::Join(Join { cluster: "leman".into(), advertise: Some("127.0.0.1:1".into()), resources: Resources { cpus: 2.0, gpus: 1.0, memory: 9 } }),
        HeadRequest::Heartbeat(Heartbeat { node: NodeId(4) }),
        HeadRequest::ApplierExited(ApplierExit {
            applier: HostedApplier { job_id: "j".into(), index: 0, incarnation: 1 },
            worker: "127.0.0.1:9".into(),
            reason: "killed".into(),
        }),
        HeadRequest::Submit(Box::new(Submission {
            table: TableLocation::new("/t", StorageOptions::new()).unwrap(),
            columns: vec!["c".into(), "d".into()],
            options: BackfillOptions::default().filter("x > 1").num_frags(3).timeout(Duration::from_secs(90)),
        })),
    ];
    let view = HeadResponse::Job(Box::new(JobView {
        job_id: "j".into(),
        column: "c".into(),
        status: JobStatus::Succeeded,
        progress: Progress::default(),
        summary: Some(Summary::default()),
        error: None,
        cancelled: Some(CancelReason::TimedOut { after: Duration::from_millis(1500) }),
    }));
    let head_responses = vec![
        view,
        HeadResponse::Noted,
        HeadResponse::Joined { node: NodeId(3) },
        HeadResponse::Alive { known: false },
        HeadResponse::Submitted { job_id: "j".into() },
        HeadResponse::Refused { reason: "no".into() },
    ];
    Examples { worker_requests, worker_responses, head_requests, head_responses }
}

/// `message` through a frame's payload and back, compared by `Debug` (not
/// every message is `PartialEq`).
pub fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(message: &T) {
    let bytes = leman_runtime::frame::encode(message).unwrap_or_else(|e| panic!("{e}"));
    let back: T = leman_runtime::frame::decode(&bytes).unwrap_or_else(|e| panic!("{message:?}: {e}"));
    assert_eq!(format!("{back:?}"), format!("{message:?}"));
}

#[test]
fn every_message_round_trips_through_frames() {
    let examples = examples();
    examples.worker_requests.iter().for_each(round_trips);
    examples.worker_responses.iter().for_each(round_trips);
    examples.head_requests.iter().for_each(round_trips);
    examples.head_responses.iter().for_each(round_trips);
}

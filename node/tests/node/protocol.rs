//! Every message of the protocol through the runtime's frames.

use std::time::Duration;

use lance_table::format::DataFile;
use leman_applier::{TaskError, TaskOutput, TaskSpec};
use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_engine::{BackfillOptions, CancelReason, JobStatus, Progress, StorageOptions, Summary, TableLocation, UdfRecord};
use leman_node::{
    ApplierExit, HeadRequest, HeadResponse, HostedApplier, JobSpec, JobView, ShippedDataFile, Submission, WorkerRequest,
    WorkerResponse,
};
use leman_writer::FragmentWrite;

#[test]
fn every_message_round_trips_through_frames() {
    let data_file: DataFile = serde_json::from_str(
        r#"{"path":"a.lance","fields":[3],"column_indices":[0],"file_major_version":2,"file_minor_version":1}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = JobSpec {
        job_id: "j".into(),
        table: TableLocation::new("s3://bucket/t.lance", StorageOptions::new().with("aws_secret_access_key", "k")).unwrap(),
        read_version: 3,
        column: "c".into(),
        udf: UdfRecord { name: "busy".into(), version: "1".into(), inputs: vec!["id".into()], params: vec![("micros".into(), "5".into())], on_error: Some(leman_engine::ErrorPolicy::Skip), retry_backoff: None },
        filter: "c IS NULL".into(),
        threads: 2,
    };
    let responses = [
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
    for response in responses {
        let bytes = leman_runtime::frame::encode(&response).unwrap_or_else(|e| panic!("{e}"));
        let back: WorkerResponse = leman_runtime::frame::decode(&bytes).unwrap_or_else(|e| panic!("{response:?}: {e}"));
        assert_eq!(back, response);
    }
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
        fill_tag: Some("0123456789abcdef".into()),
    };
    let requests = [
        WorkerRequest::SpawnApplier { job: spec.clone(), index: 1, incarnation: 3, gpus: vec![0, 2] },
        WorkerRequest::RunTask { job_id: "j".into(), index: 1, task: TaskSpec { fragment_id: 2, rows: 0..10, key: key.batch_key(0..10), all_rows: false } },
        WorkerRequest::WriteFragment { job: spec.clone(), write },
        WorkerRequest::StopJob { job_id: "j".into() },
        WorkerRequest::StopApplier { job_id: "j".into(), index: 1, incarnation: 3 },
        WorkerRequest::Hosted,
    ];
    for request in requests {
        let bytes = leman_runtime::frame::encode(&request).unwrap_or_else(|e| panic!("{e}"));
        let back: WorkerRequest = leman_runtime::frame::decode(&bytes).unwrap_or_else(|e| panic!("{request:?}: {e}"));
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
    }
    let heads = [
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
            column: "c".into(),
            options: BackfillOptions::default().filter("x > 1").num_frags(3).timeout(Duration::from_secs(90)),
        })),
    ];
    for request in heads {
        let bytes = leman_runtime::frame::encode(&request).unwrap_or_else(|e| panic!("{e}"));
        let back: HeadRequest = leman_runtime::frame::decode(&bytes).unwrap_or_else(|e| panic!("{request:?}: {e}"));
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
    }
    let view = HeadResponse::Job(Box::new(JobView {
        job_id: "j".into(),
        column: "c".into(),
        status: JobStatus::Succeeded,
        progress: Progress::default(),
        summary: Some(Summary::default()),
        error: None,
        cancelled: Some(CancelReason::TimedOut { after: Duration::from_millis(1500) }),
    }));
    for response in [view, HeadResponse::Noted] {
        let bytes = leman_runtime::frame::encode(&response).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leman_runtime::frame::decode::<HeadResponse>(&bytes).ok(), Some(response));
    }
}

//! Property tests (proptest) of every protocol message: arbitrary bytes,
//! and every example message with bytes changed, never panic a decoder and
//! allocate no more than the payload's length allows (measured per thread
//! by `allocation-counter`, this test binary's global allocator); every
//! message with arbitrary contents round-trips.

use std::ops::Range;
use std::time::Duration;

use leman_applier::{SkippedRow, TaskError, TaskOutput, TaskSpec};
use leman_checkpoint::KeyParts;
use leman_cluster::{Heartbeat, Join, NodeId, Resources};
use leman_engine::{PartSpec, StorageOptions, StoreTally, TableLocation, UdfRecord};
use leman_node::{ApplierExit, HeadRequest, HeadResponse, HostedApplier, JobSpec, MemberInfo, WorkerRequest, WorkerResponse};
use leman_runtime::frame::{self, CLAIM_FACTOR, MIN_CLAIM, SEQUENCE_RESERVE};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{examples, round_trips};

/// What `f` allocated at its peak, on this thread.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let mut result = None;
    let counted = allocation_counter::measure(|| result = Some(f()));
    let peak = usize::try_from(counted.bytes_max).unwrap_or(usize::MAX);
    (result.unwrap_or_else(|| unreachable!("measure runs its closure")), peak)
}

/// What decoding `payload` may allocate: its bound, serde's reserve for a
/// sequence, and room for the error message.
fn allowed(payload: &[u8]) -> usize {
    payload.len().saturating_mul(CLAIM_FACTOR).max(MIN_CLAIM) + SEQUENCE_RESERVE + (16 << 10)
}

/// Decodes `payload` as a `T`: no panic, allocation within the bound, and
/// whatever decodes round-trips.
fn decodes_within_bounds<T: Serialize + DeserializeOwned + std::fmt::Debug>(payload: &[u8]) -> Result<(), TestCaseError> {
    let (decoded, peak) = peak_during(|| frame::decode::<T>(payload));
    prop_assert!(peak <= allowed(payload), "{} bytes allocated for a payload of {} bytes", peak, payload.len());
    if let Ok(message) = decoded {
        round_trips(&message);
    }
    Ok(())
}

fn every_kind(payload: &[u8]) -> Result<(), TestCaseError> {
    decodes_within_bounds::<WorkerRequest>(payload)?;
    decodes_within_bounds::<WorkerResponse>(payload)?;
    decodes_within_bounds::<HeadRequest>(payload)?;
    decodes_within_bounds::<HeadResponse>(payload)
}

/// Every example message's payload.
fn example_payloads() -> Vec<Vec<u8>> {
    fn payload<T: Serialize>(message: &T) -> Vec<u8> {
        frame::encode(message).unwrap_or_else(|e| panic!("{e}"))
    }
    let examples = examples();
    let mut payloads: Vec<Vec<u8>> = examples.worker_requests.iter().map(payload).collect();
    payloads.extend(examples.worker_responses.iter().map(payload));
    payloads.extend(examples.head_requests.iter().map(payload));
    payloads.extend(examples.head_responses.iter().map(payload));
    payloads
}

#[test]
fn a_payload_claiming_a_huge_string_allocates_within_its_bound() {
    // `Refused { reason }` whose reason claims 200 MiB (a u32 varint) and
    // brings four bytes.
    let mut payload = frame::encode(&WorkerResponse::Refused { reason: "x".into() }).unwrap_or_else(|e| panic!("{e}"));
    payload.truncate(payload.len() - 2);
    payload.push(252);
    payload.extend_from_slice(&(200u32 << 20).to_le_bytes());
    payload.extend_from_slice(b"abcd");
    let (decoded, peak) = peak_during(|| frame::decode::<WorkerResponse>(&payload));
    assert!(decoded.is_err());
    assert!(peak <= allowed(&payload), "{peak} bytes allocated for a payload of {} bytes", payload.len());
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z_]{1,8}"]
}

fn rows() -> impl Strategy<Value = Range<u64>> {
    (any::<u64>(), any::<u64>()).prop_map(|(a, b)| a.min(b)..a.max(b))
}

fn task(parts: (String, u64, Range<u64>, bool)) -> TaskSpec {
    let (name, fragment_id, rows, all_rows) = parts;
    let key = KeyParts {
        udf_name: &name,
        udf_version: "1",
        column: "c",
        filter: "c IS NULL",
        table: "/t.lance",
        fragment_id,
        data_files: vec![format!("{name}.lance")],
    }
    .batch_key(rows.clone());
    TaskSpec { fragment_id, rows, key, all_rows: vec![all_rows] }
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (text(), "[a-z]{1,8}", any::<u64>(), text(), vec((text(), text()), 0..3), text(), 1..64usize).prop_map(
        |(job_id, name, read_version, column, params, filter, threads)| JobSpec {
            job_id,
            table: TableLocation::new(&format!("/tables/{name}.lance"), StorageOptions::new().with("k", &column))
                .unwrap_or_else(|e| panic!("{e}")),
            read_version,
            parts: vec![PartSpec {
                outputs: leman_engine::OutputColumns::Single(column.clone()),
                udf: UdfRecord { name, version: "2".into(), inputs: vec![column], params, on_error: None, retry_backoff: None },
                filter,
            }],
            threads,
        },
    )
}

fn worker_request() -> impl Strategy<Value = WorkerRequest> {
    prop_oneof![
        (job_spec(), any::<usize>(), any::<u64>(), vec(any::<u32>(), 0..4))
            .prop_map(|(job, index, incarnation, gpus)| WorkerRequest::SpawnApplier { job, index, incarnation, gpus }),
        (text(), any::<usize>(), (text(), any::<u64>(), rows(), any::<bool>()))
            .prop_map(|(job_id, index, parts)| WorkerRequest::RunTask { job_id, index, task: task(parts) }),
        (text(), any::<usize>(), any::<u64>())
            .prop_map(|(job_id, index, incarnation)| WorkerRequest::StopApplier { job_id, index, incarnation }),
        text().prop_map(|job_id| WorkerRequest::StopJob { job_id }),
        Just(WorkerRequest::Hosted),
    ]
}

fn hosted() -> impl Strategy<Value = HostedApplier> {
    (text(), any::<usize>(), any::<u64>()).prop_map(|(job_id, index, incarnation)| HostedApplier { job_id, index, incarnation })
}

fn worker_response() -> impl Strategy<Value = WorkerResponse> {
    let output = (any::<u64>(), any::<u64>(), vec((any::<u64>(), text(), any::<u32>()), 0..3), any::<Option<u64>>(), any::<u64>())
        .prop_map(|(rows_computed, rows_skipped, errors, micros, rows_read)| TaskOutput {
            rows_computed,
            rows_skipped,
            errors: errors.into_iter().map(|(row_address, message, attempts)| SkippedRow { row_address, message, attempts }).collect(),
            udf_time: micros.map(Duration::from_micros),
            udf_cpu: micros.map(Duration::from_nanos),
            rows_read,
            peak_memory_bytes: micros,
        });
    prop_oneof![
        Just(WorkerResponse::Spawned),
        output.prop_map(|output| WorkerResponse::Task(Ok(output))),
        (text(), any::<Option<u64>>(), any::<u32>())
            .prop_map(|(message, row_address, attempts)| WorkerResponse::Task(Err(TaskError::Udf { message, row_address, attempts }))),
        text().prop_map(|message| WorkerResponse::Task(Err(TaskError::Io { message }))),
        text().prop_map(|reason| WorkerResponse::Written(Err(reason))),
        Just(WorkerResponse::Stopped),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(requests, bytes_read, bytes_written)| WorkerResponse::JobStopped {
            store: StoreTally { requests, bytes_read, bytes_written }
        }),
        text().prop_map(|reason| WorkerResponse::ApplierGone { reason }),
        vec(hosted(), 0..4).prop_map(WorkerResponse::Hosted),
        text().prop_map(|reason| WorkerResponse::Refused { reason }),
    ]
}

fn resources() -> impl Strategy<Value = Resources> {
    (0.0..512.0f64, 0.0..16.0f64, any::<u64>()).prop_map(|(cpus, gpus, memory)| Resources { cpus, gpus, memory })
}

fn head_request() -> impl Strategy<Value = HeadRequest> {
    prop_oneof![
        (text(), proptest::option::of(text()), resources())
            .prop_map(|(cluster, advertise, resources)| HeadRequest::Join(Join { cluster, advertise, resources })),
        any::<u64>().prop_map(|node| HeadRequest::Heartbeat(Heartbeat { node: NodeId(node) })),
        Just(HeadRequest::Members),
        text().prop_map(|job_id| HeadRequest::JobStatus { job_id }),
        text().prop_map(|job_id| HeadRequest::CancelJob { job_id }),
        (hosted(), text(), text()).prop_map(|(applier, worker, reason)| HeadRequest::ApplierExited(ApplierExit { applier, worker, reason })),
    ]
}

fn head_response() -> impl Strategy<Value = HeadResponse> {
    prop_oneof![
        any::<u64>().prop_map(|node| HeadResponse::Joined { node: NodeId(node) }),
        any::<bool>().prop_map(|known| HeadResponse::Alive { known }),
        vec((any::<u64>(), text(), resources(), resources()), 0..4).prop_map(|members| HeadResponse::Members(
            members
                .into_iter()
                .map(|(node, addr, resources, reserved)| MemberInfo { node: NodeId(node), addr, resources, reserved })
                .collect()
        )),
        text().prop_map(|job_id| HeadResponse::Submitted { job_id }),
        Just(HeadResponse::Noted),
        text().prop_map(|reason| HeadResponse::Refused { reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder_nor_allocate_past_their_bound(payload in vec(any::<u8>(), 0..2048)) {
        every_kind(&payload)?;
    }

    #[test]
    fn changed_bytes_of_every_message_never_panic_a_decoder_nor_allocate_past_their_bound(
        pick in any::<prop::sample::Index>(),
        changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let payloads = example_payloads();
        let mut payload = pick.get(&payloads).clone();
        for (at, byte) in changes {
            let at = at.index(payload.len());
            payload[at] = byte;
        }
        if truncate {
            payload.truncate(cut.index(payload.len() + 1));
        }
        every_kind(&payload)?;
    }

    #[test]
    fn worker_requests_round_trip(message in worker_request()) {
        round_trips(&message);
    }

    #[test]
    fn worker_responses_round_trip(message in worker_response()) {
        round_trips(&message);
    }

    #[test]
    fn head_requests_round_trip(message in head_request()) {
        round_trips(&message);
    }

    #[test]
    fn head_responses_round_trip(message in head_response()) {
        round_trips(&message);
    }
}

//! A real worker against a head played by the test: its own QUIC node
//! that records what the worker tells it and answers heartbeats as told.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leman_cluster::{NodeId, Resources};
use arrow_array::{ArrayRef, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field};
use leman_engine::testing::{UdfTable, udf_table, udf_table_with};
use leman_engine::{InstanceContext, JobSpec, PartSpec, StatefulUdf, Udf, UdfError, UdfRecord};
use leman_runtime::{ClusterCerts, Node, NodeConfig, Service};

use leman_node::{
    ApplierExit, HeadRequest, HeadResponse, HostedApplier, LOST_AFTER, Worker, WorkerConfig, WorkerRequest, WorkerResponse,
};

#[derive(Default)]
struct TestHead {
    joins: AtomicU64,
    forgets_workers: AtomicBool,
    exits: std::sync::Mutex<Vec<ApplierExit>>,
}

impl Service for TestHead {
    type Request = HeadRequest;
    type Response = HeadResponse;
    async fn call(&self, _peer: SocketAddr, request: HeadRequest) -> HeadResponse {
        match request {
            HeadRequest::Join(_) => HeadResponse::Joined { node: NodeId(self.joins.fetch_add(1, Ordering::SeqCst) + 1) },
            HeadRequest::Heartbeat(_) => HeadResponse::Alive { known: !self.forgets_workers.load(Ordering::SeqCst) },
            HeadRequest::ApplierExited(exit) => {
                self.exits.lock().unwrap().push(exit);
                HeadResponse::Noted
            }
            other => HeadResponse::Refused { reason: format!("not played by this test: {other:?}") },
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    _table: UdfTable,
    head: Node,
    state: Arc<TestHead>,
    client: Node,
    worker: SocketAddr,
    spec: JobSpec,
}

async fn setup(job_id: &str) -> Setup {
    setup_with(job_id, udf_table(100, 100).await.unwrap(), 0.0).await
}

/// A worker offering `gpus` GPUs, and a job on `table`.
async fn setup_with(job_id: &str, table: UdfTable, gpus: f64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    leman_runtime::tls::init_cluster(&certs_dir).unwrap();
    let certs = ClusterCerts::load(&certs_dir, leman_runtime::tls::Role::Head).unwrap();
    let spec = JobSpec {
        job_id: job_id.into(),
        table: table.location(),
        read_version: table.version,
        parts: vec![PartSpec {
            outputs: leman_engine::OutputColumns::Single("n".into()),
            udf: UdfRecord::of(&table.udf),
            filter: "id >= 0".into(),
        }],
        threads: 1,
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let state = Arc::new(TestHead::default());
    let head = Node::serve(loopback, &certs, NodeConfig::default(), state.clone()).unwrap();
    let resources = Resources { cpus: 2.0, gpus, ..Resources::default() };
    let config = WorkerConfig::new(head.local_addr().unwrap(), certs_dir, resources, table.registry.clone());
    let worker = Worker::start(&config).await.unwrap();
    let addr = worker.local_addr().unwrap();
    tokio::spawn(worker.run());
    let client = Node::client(loopback, &certs, NodeConfig::default()).unwrap();
    Setup { _dir: dir, _table: table, head, state, client, worker: addr, spec }
}

impl Setup {
    async fn ask(&self, request: WorkerRequest) -> WorkerResponse {
        self.client.request(self.worker, &request).await.unwrap()
    }

    async fn spawn(&self, index: usize, incarnation: u64) {
        self.spawn_on(index, incarnation, Vec::new()).await;
    }

    /// Starts an applier on the GPU devices `gpus`, as the head's ledger
    /// leased them.
    async fn spawn_on(&self, index: usize, incarnation: u64, gpus: Vec<u32>) {
        let request = WorkerRequest::SpawnApplier { job: self.spec.clone(), index, incarnation, gpus };
        assert_eq!(self.ask(request).await, WorkerResponse::Spawned);
    }

    async fn hosted(&self) -> Vec<(usize, u64)> {
        match self.ask(WorkerRequest::Hosted).await {
            WorkerResponse::Hosted(hosted) => hosted.into_iter().map(|h| (h.index, h.incarnation)).collect(),
            other => panic!("{other:?}"),
        }
    }

    async fn eventually_hosts(&self, expected: &[(usize, u64)], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let hosted = self.hosted().await;
            if hosted == expected {
                return;
            }
            assert!(Instant::now() < deadline, "hosts {hosted:?}, not {expected:?}, after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_that_stops_on_its_own_is_reported_to_its_spawner_and_one_stopped_on_request_is_not() {
    let s = setup("j").await;
    s.spawn(0, 1).await;
    s.spawn(1, 1).await;
    s.spawn(1, 1).await; // the same incarnation again: nothing new
    assert_eq!(s.hosted().await, [(0, 1), (1, 1)]);

    let stop = WorkerRequest::StopApplier { job_id: "j".into(), index: 0, incarnation: 1 };
    assert_eq!(s.ask(stop).await, WorkerResponse::Stopped);
    ractor::registry::where_is("applier-j-1.1").expect("applier 1 runs").kill();
    s.eventually_hosts(&[], Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.state.exits.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the kill never reached the head");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Supervision events come in order: had the requested stop been
    // reported, it would be first.
    let exits = s.state.exits.lock().unwrap().clone();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].applier, HostedApplier { job_id: "j".into(), index: 1, incarnation: 1 });
    assert_eq!(exits[0].worker, s.worker.to_string());

    let key = leman_checkpoint::KeyParts {
        udf_name: "text_len",
        udf_version: "1",
        column: "n",
        filter: "id >= 0",
        table: "t",
        fragment_id: 0,
        data_files: Vec::new(),
    };
    let task = leman_applier::TaskSpec { fragment_id: 0, rows: 0..10, key: key.batch_key(0..10), all_rows: Vec::new() };
    let gone = s.ask(WorkerRequest::RunTask { job_id: "j".into(), index: 1, task }).await;
    assert!(matches!(gone, WorkerResponse::ApplierGone { .. }), "{gone:?}");
    s.spawn(1, 2).await;
    assert_eq!(s.hosted().await, [(1, 2)], "a new incarnation starts in its place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_its_head_stops_the_jobs_it_hosts() {
    let s = setup("orphaned").await;
    s.spawn(0, 1).await;
    s.state.forgets_workers.store(true, Ordering::SeqCst);
    s.eventually_hosts(&[], Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.state.joins.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the worker did not join again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.state.forgets_workers.store(false, Ordering::SeqCst);

    s.spawn(0, 2).await;
    s.head.close(); // the head is gone for good
    s.eventually_hosts(&[], LOST_AFTER + Duration::from_secs(5)).await;
}

/// Stands for a model loaded on one GPU: answers its device ordinal.
struct OnDevice(i32);

impl StatefulUdf for OnDevice {
    fn call(&mut self, inputs: &RecordBatch) -> Result<ArrayRef, UdfError> {
        Ok(Arc::new(Int32Array::from(vec![self.0; inputs.num_rows()])))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_udf_loads_on_the_devices_leased_to_its_applier() {
    let seen: Arc<std::sync::Mutex<Vec<InstanceContext>>> = Arc::default();
    let contexts = seen.clone();
    let udf = Udf::stateful_with_context("device_ordinal", Field::new("n", DataType::Int32, true), &["text"], move |ctx| {
        contexts.lock().unwrap().push(ctx.clone());
        let ordinal = ctx.gpus.first().copied().ok_or_else(|| UdfError::new("no GPU leased"))?;
        Ok(Box::new(OnDevice(ordinal as i32)) as Box<dyn StatefulUdf>)
    })
    .with_version("1")
    .with_resources(leman_engine::Resources { cpus: 0.5, gpus: 1.0, memory: 0 });
    let mut s = setup_with("gpu", udf_table_with(100, 100, udf).await.unwrap(), 2.0).await;
    s.spec.threads = 2;
    s.spawn_on(0, 1, vec![1]).await;
    s.spawn_on(1, 1, vec![0]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut contexts = loop {
        let contexts = seen.lock().unwrap().clone();
        if contexts.len() == 4 {
            break contexts;
        }
        assert!(Instant::now() < deadline, "the factories did not run once per thread: {contexts:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    contexts.sort_by_key(|c| (c.applier, c.thread));
    let on = |applier: usize, thread: usize, gpu: u32| InstanceContext { applier, thread, gpus: vec![gpu] };
    assert_eq!(contexts, [on(0, 0, 1), on(0, 1, 1), on(1, 0, 0), on(1, 1, 0)]);
}

//! The library's cluster: a head and workers started in this process (as a
//! Rust service would), talking QUIC on 127.0.0.1. Appliers that die are
//! started again, and concurrent jobs share a worker without
//! oversubscribing it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use leman::distributed::{
    Head, HeadConfig, HostedApplier, JobView, Submission, Worker, WorkerConfig, WorkerRequest, WorkerResponse,
};
use leman::{BackfillOptions, JobStatus, Table};
use leman_runtime::{ClusterCerts, Node, NodeConfig};

use crate::engine::support::column;

struct Cluster {
    dir: tempfile::TempDir,
    certs: ClusterCerts,
    head: Head,
    workers: Vec<SocketAddr>,
    client: Node,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A head and one worker offering `cpus` CPUs, in this process.
async fn cluster(cpus: f64) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    leman_runtime::tls::init_cluster(&certs_dir).unwrap();
    let registry = leman::UdfRegistry::new();
    leman::builtins::register_all(&registry);
    let head = Head::start(&HeadConfig::new(loopback(), certs_dir.clone(), registry.clone())).unwrap();
    let resources = leman_cluster::Resources { cpus, ..Default::default() };
    let config = WorkerConfig::new(head.local_addr().unwrap(), certs_dir.clone(), resources, registry);
    let worker = Worker::start(&config).await.unwrap();
    let workers = vec![worker.local_addr().unwrap()];
    tokio::spawn(worker.run());
    // The test submits jobs and asks the worker what it hosts, which only a
    // head may: it holds the head's certificate.
    let certs = ClusterCerts::load(&certs_dir, leman_runtime::tls::Role::Head).unwrap();
    let client = Node::client(loopback(), &certs, NodeConfig::default()).unwrap();
    Cluster { dir, certs, head, workers, client }
}

impl Cluster {
    /// A table of 4 fragments of 500 rows with `busy` columns (`micros` a row).
    async fn table(&self, name: &str, columns: &[&str], micros: u64) -> Table {
        let db = leman::connect(self.dir.path().to_str().unwrap()).await.unwrap();
        leman::builtins::register_all(db.registry());
        let batches = (0..4).map(|i| leman::demo::sample_batch(i * 500, 500).unwrap()).collect();
        let table = db.create_table(name, batches, leman::CreateTableOptions { max_rows_per_file: 500, ..Default::default() }).await.unwrap();
        let udfs = columns.iter().map(|c| {
            (c.to_string(), leman::builtins::get("busy", &["id"], &[("micros".into(), micros.to_string())]).unwrap())
        });
        table.add_columns(udfs, leman::AddColumnsOptions::default()).await.unwrap();
        table
    }

    async fn submit(&self, table: &Table, column: &str, options: BackfillOptions) -> String {
        let submission = Submission { table: table.location().clone(), columns: vec![column.into()], options };
        leman::distributed::submit(self.head.local_addr().unwrap(), &self.certs, &submission).await.unwrap()
    }

    async fn job(&self, job_id: &str) -> JobView {
        leman::distributed::job_status(self.head.local_addr().unwrap(), &self.certs, job_id).await.unwrap()
    }

    async fn hosted(&self) -> Vec<HostedApplier> {
        match self.client.request(self.workers[0], &WorkerRequest::Hosted).await.unwrap() {
            WorkerResponse::Hosted(hosted) => hosted,
            other => panic!("{other:?}"),
        }
    }
}

fn busy(threads: usize, concurrency: usize) -> BackfillOptions {
    BackfillOptions::default().concurrency(concurrency).intra_applier_concurrency(threads).batch_size(50)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applier_killed_mid_job_starts_again_and_the_job_completes_as_embedded() {
    let c = cluster(2.0).await;
    let table = c.table("killed", &["slow"], 500).await;
    let job_id = c.submit(&table, "slow", busy(1, 2)).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let hosted = c.hosted().await;
        if let Some(applier) = hosted.into_iter().find(|a| a.index == 0) {
            break applier;
        }
        assert!(Instant::now() < deadline, "applier 0 never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let name = format!("applier-{job_id}-0.{}", first.incarnation);
    ractor::registry::where_is(name.clone()).unwrap_or_else(|| panic!("{name} runs")).kill();

    let mut restarted = false;
    let view = loop {
        restarted |= c.hosted().await.iter().any(|a| a.index == 0 && a.incarnation > first.incarnation);
        let view = c.job(&job_id).await;
        if view.status != JobStatus::Running {
            break view;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(60), "the job did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(view.status, JobStatus::Succeeded, "{view:?}");
    assert!(restarted, "applier 0 was started again after it was killed");
    assert_eq!(view.summary.map(|s| s.rows_computed), Some(2000));

    // The record counts what the workers wrote: at least the data files.
    let field = table.dataset().await.unwrap().schema().field("slow").unwrap().id;
    let data_bytes: u64 = table
        .dataset()
        .await
        .unwrap()
        .get_fragments()
        .iter()
        .flat_map(|f| f.metadata().files.clone())
        .filter(|file| file.fields.contains(&field))
        .map(|file| file.file_size_bytes.get().map_or(0, |size| size.get()))
        .sum();
    let record = loop {
        let record = table.job(&job_id).await.unwrap().unwrap();
        if record.status != JobStatus::Running {
            break record;
        }
        assert!(Instant::now() < deadline + Duration::from_secs(70), "the record was not final");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(data_bytes > 0 && record.cost.bytes_written >= data_bytes, "{data_bytes} bytes of data files, {:?}", record.cost);
    assert_eq!((record.cost.rows_written, record.cost.rows_read >= 2000), (2000, true), "{:?}", record.cost);

    let embedded = c.table("killed_embedded", &["slow"], 0).await;
    embedded.backfill("slow", BackfillOptions::default()).await.unwrap().wait().await.unwrap();
    assert_eq!(column(&table, "slow").await, column(&embedded, "slow").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_share_a_worker_without_oversubscribing_it() {
    let c = cluster(1.0).await;
    let table = c.table("shared", &["a", "b"], 200).await;
    // Each applier reserves 1 CPU (busy's 1 per thread): one at a time fits.
    let jobs = [c.submit(&table, "a", busy(1, 1)).await, c.submit(&table, "b", busy(1, 1)).await];

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut most_at_once = 0;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let hosted = c.hosted().await;
        most_at_once = most_at_once.max(hosted.len());
        seen.extend(hosted.into_iter().map(|a| a.job_id));
        let mut ended = 0;
        for job in &jobs {
            let view = c.job(job).await;
            assert_ne!(view.status, JobStatus::Failed, "{view:?}");
            ended += usize::from(view.status == JobStatus::Succeeded);
        }
        if ended == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not both end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(most_at_once, 1, "the 1-CPU worker never ran two 1-CPU appliers at once");
    assert_eq!(seen.len(), 2, "each job had its turn: {seen:?}");
    assert_eq!(table.count_rows(Some("a IS NOT NULL AND b IS NOT NULL")).await.unwrap(), 2000);
}

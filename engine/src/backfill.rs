//! Starting a backfill: resolve, take the column's lease, plan, open the
//! executor, and hand the job to its driver; and planning the further
//! passes a job makes when a concurrent commit rewrote its fragments.
//!
//! Everything a user can get wrong (column, UDF, inputs, types, filter,
//! options) is checked before any work starts, so a bad backfill is an
//! `Err` from [`start`] and the table is untouched. The lease is taken
//! before planning, so two jobs never plan the same column, and it is held
//! until the driver ends. A queued job (`BackfillOptions::queue`) is
//! checked the same way, then waits for the lease in its own task and
//! plans on the table as the job before it left it.

use std::sync::Arc;
use std::time::Instant;

use leman_applier::Udf;
use leman_scheduler::{JobFailure, JobRecord, JobStatus, Summary};
use tokio::sync::{mpsc, watch};

use crate::cancel::{self, CancelReason, CancelSignal};
use crate::clock::unix_millis;
use crate::cost::JobCosts;
use crate::driver::{Driver, JobChannels, new_record};
use crate::error::{Error, Result};
use crate::executor::{Executor, JobExecutor, JobSetup, JobSpec, PartSpec};
use crate::job::{Job, JobEvent};
use crate::lease::JobLeases;
use crate::location::TableLocation;
use crate::metering::StoreMeter;
use crate::options::BackfillOptions;
use crate::plan::{Plan, plan};
use crate::registry::UdfRegistry;
use crate::resolve::{Resolved, resolve};
use crate::stores::{QUEUED_RENEW_EVERY, TableStores};
use crate::udf_record::UdfRecord;

/// Validates, plans and starts a backfill of `column` of `table` (with its
/// unpacked siblings, where it is one of them, or their group), building
/// the column's UDF from `registry` and running its work on `executor`.
/// Returns once the job runs (or, with [`BackfillOptions::queue`], once it
/// waits for the column's lease); the [`Job`] tells how it goes.
pub async fn start(
    table: &TableLocation,
    column: &str,
    options: BackfillOptions,
    registry: &UdfRegistry,
    executor: Arc<dyn Executor>,
) -> Result<Job> {
    start_many(table, &[column.to_string()], options, registry, executor).await
}

/// As [`start`], for several columns in one pass: each batch's rows are
/// read once for every column's UDF, each column computes the rows of its
/// own filter (by default, where it is null), and each fragment gets one
/// data file holding all of them, committed together. The job holds every
/// column's lease.
///
/// Lance replaces a fragment's columns only where it holds all of them or
/// none, so a fragment that holds some of the columns and not the others
/// refuses the backfill, naming it: backfill those columns one at a time.
pub async fn start_many(
    table: &TableLocation,
    columns: &[String],
    options: BackfillOptions,
    registry: &UdfRegistry,
    executor: Arc<dyn Executor>,
) -> Result<Job> {
    // The timeout counts from here: planning is part of the job's time (one
    // too long to add to the clock never runs out).
    let deadline = options.timeout.and_then(|after| Some((tokio::time::Instant::now().checked_add(after)?, after)));
    let began = Instant::now();
    // Every store of the job in this process is counted, for its record.
    let meter = StoreMeter::new();
    let table = &table.clone().with_store_wrapper(meter.around(table.store_wrapper.clone()));
    let stores = TableStores::open(table).await?;
    let resolved = resolve(table, registry, columns, &options, &stores).await?;
    let id = new_job_id();
    let planner = PassPlanner {
        table: table.clone(),
        columns: resolved.parts().map(|part| part.column.clone()).collect(),
        options: options.clone(),
        registry: registry.clone(),
        executor,
        stores: stores.clone(),
        job_id: id.clone(),
    };
    let (events, receiver) = mpsc::unbounded_channel();
    let (signal, cancelled) = watch::channel(None);
    let signal = Arc::new(signal);
    let costs = Arc::new(JobCosts::new(began.elapsed(), meter));
    // A queued job's record, shown by `leman jobs` until its driver writes
    // its own.
    let queued = options.queue.then(|| {
        let udfs: Vec<&Udf> = resolved.parts().map(|part| &part.udf).collect();
        let (columns, filters) = (resolved.columns_label(), resolved.filters_label());
        let read_version = resolved.dataset.version().version;
        new_record(&id, &columns, &udfs, &filters, read_version, &resolved.table, &options, JobStatus::Queued)
    });
    let launch = Launch { planner, options, events, cancelled, costs };
    let watcher = |signal: &Arc<CancelSignal>| tokio::spawn(cancel::watch(stores.cancels.clone(), id.clone(), deadline, signal.clone()));
    let outcome = if launch.options.queue {
        // Checked already; the lease is waited for in the job's own task,
        // and the table planned once it is held (the job before may have
        // filled rows).
        let watcher = watcher(&signal);
        let job_id = id.clone();
        tokio::spawn(async move {
            let outcome = async {
                let lease = launch.queue_for_lease(queued).await?;
                let pass = launch.planner.next().await;
                launch.run(pass, lease).await
            }
            .await;
            watcher.abort();
            stores.cancels.remove(&job_id).await;
            outcome
        })
    } else {
        let lease = stores.leases(&launch.planner.columns, &id).await?;
        let pass = launch.planner.prepare(resolved).await;
        let driver = match launch.driver(pass, &lease) {
            Ok(driver) => driver,
            Err(error) => {
                lease.release().await;
                return Err(error);
            }
        };
        let watcher = watcher(&signal);
        let job_id = id.clone();
        tokio::spawn(async move {
            let outcome = driver.run().await;
            watcher.abort();
            stores.cancels.remove(&job_id).await;
            lease.release().await;
            outcome
        })
    };
    Ok(Job::new(id, receiver, outcome, signal))
}

/// What a job needs once it holds its column's lease.
struct Launch {
    planner: PassPlanner,
    options: BackfillOptions,
    events: mpsc::UnboundedSender<JobEvent>,
    cancelled: watch::Receiver<Option<CancelReason>>,
    costs: Arc<JobCosts>,
}

/// How often a queued job looks whether the column's lease is free.
const QUEUE_LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Launch {
    /// The job's driver for its first pass.
    fn driver(self, pass: Result<Pass>, lease: &JobLeases) -> Result<Driver> {
        let channels = JobChannels { user: self.events, cancelled: self.cancelled, fence: lease.fence() };
        Driver::new(pass?, self.planner, &self.options, channels, self.costs)
    }

    /// Runs the job on `pass` and gives the lease up after.
    async fn run(self, pass: Result<Pass>, lease: JobLeases) -> Result<Summary> {
        let outcome = match self.driver(pass, &lease) {
            Ok(driver) => driver.run().await,
            Err(error) => Err(error),
        };
        lease.release().await;
        outcome
    }

    /// Waits until the column's lease is this job's, telling the job's
    /// user which job it waits behind and keeping `record` (status queued)
    /// beside the table while it waits; ends if the job is cancelled (or
    /// its timeout runs out) first, recording why.
    async fn queue_for_lease(&self, record: Option<JobRecord>) -> Result<JobLeases> {
        let mut record = record;
        let outcome = self.wait_for_lease(&mut record).await;
        if let (Err(error), Some(mut record)) = (&outcome, record) {
            // A record written while waiting says how the wait ended.
            record.status = if matches!(error, Error::Cancelled { .. }) { JobStatus::Cancelled } else { JobStatus::Failed };
            record.error = Some(JobFailure { message: error.to_string(), fragment_id: None, rows: None });
            record.finished_at_ms = Some(unix_millis());
            if let Err(error) = self.planner.stores.jobs.put(&record).await {
                tracing::warn!(%error, "could not write the queued job's record");
            }
        }
        outcome
    }

    async fn wait_for_lease(&self, record: &mut Option<JobRecord>) -> Result<JobLeases> {
        let (columns, job_id) = (&self.planner.columns, &self.planner.job_id);
        let mut cancelled = self.cancelled.clone();
        let mut behind = None;
        let mut renewed: Option<tokio::time::Instant> = None;
        loop {
            match self.planner.stores.leases(columns, job_id).await {
                Ok(lease) => return Ok(lease),
                Err(Error::ColumnBusy { job_id: holder, .. }) => {
                    if behind.as_ref() != Some(&holder) {
                        tracing::info!(columns = ?columns, job = %job_id, behind = %holder, "queued for the column's lease");
                        let _ = self.events.send(JobEvent::Queued { behind: holder.clone() });
                        behind = Some(holder);
                    }
                    if let Some(record) = record.as_mut()
                        && renewed.is_none_or(|at| at.elapsed() >= QUEUED_RENEW_EVERY)
                    {
                        record.renewed_at_ms = Some(unix_millis());
                        if let Err(error) = self.planner.stores.jobs.put(record).await {
                            tracing::warn!(%error, "could not write the queued job's record");
                        }
                        renewed = Some(tokio::time::Instant::now());
                    }
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                () = tokio::time::sleep(QUEUE_LOOK_EVERY) => {}
                changed = cancelled.changed() => {
                    let reason = cancelled.borrow().clone();
                    match (changed, reason) {
                        (_, Some(reason)) => return Err(Error::Cancelled { job_id: job_id.clone(), reason }),
                        // The job's handle is gone: nobody waits for it.
                        (Err(_), None) => return Err(Error::Cancelled { job_id: job_id.clone(), reason: CancelReason::Asked }),
                        (Ok(()), None) => {}
                    }
                }
            }
        }
    }
}

/// One pass of a job over one version of the table: its plan, and where
/// its work runs. A job makes one pass, and another on the newest version
/// when a concurrent commit made it re-plan fragments.
pub(crate) struct Pass {
    pub plan: Plan,
    pub setup: Arc<JobSetup>,
    pub executor: Box<dyn JobExecutor>,
}

/// What plans a job's passes.
pub(crate) struct PassPlanner {
    table: TableLocation,
    /// The columns, as the first pass resolved them (leads of unpacked
    /// siblings).
    columns: Vec<String>,
    options: BackfillOptions,
    registry: UdfRegistry,
    executor: Arc<dyn Executor>,
    stores: TableStores,
    job_id: String,
}

impl PassPlanner {
    /// Whether the job may make another pass: not when the user pinned
    /// its version or limited its fragments, which a pass on the newest
    /// version would not honour.
    pub fn may_pass_again(&self) -> bool {
        self.options.read_version.is_none() && self.options.num_frags.is_none()
    }

    /// The stores beside the table.
    pub fn stores(&self) -> &TableStores {
        &self.stores
    }

    /// The next pass, on the table's newest version.
    pub async fn next(&self) -> Result<Pass> {
        let resolved = resolve(&self.table, &self.registry, &self.columns, &self.options, &self.stores).await?;
        self.prepare(resolved).await
    }

    async fn prepare(&self, resolved: Resolved) -> Result<Pass> {
        let plan = plan(&resolved, &self.stores.checkpoints, &self.options).await?;
        let spec = JobSpec {
            job_id: self.job_id.clone(),
            table: resolved.table.clone(),
            read_version: resolved.dataset.version().version,
            parts: resolved
                .parts()
                .map(|part| PartSpec {
                    outputs: part.outputs.clone(),
                    udf: UdfRecord::of(&part.udf),
                    filter: part.filter.sql().to_string(),
                })
                .collect(),
            threads: self.options.intra_applier_concurrency,
        };
        let setup = JobSetup {
            spec,
            dataset: resolved.dataset.clone(),
            parts: resolved.parts().map(|part| part.job_part()).collect(),
            checkpoints: self.stores.checkpoints.clone(),
        };
        let executor = self.executor.open(&setup)?;
        Ok(Pass { plan, setup: Arc::new(setup), executor })
    }
}

fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

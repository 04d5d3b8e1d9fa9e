//! Starting a backfill: resolve, take the column's lease, plan, open the
//! executor, and hand the job to its driver; and planning the further
//! passes a job makes when a concurrent commit rewrote its fragments.
//!
//! Everything a user can get wrong (column, UDF, inputs, types, filter,
//! options) is checked before any work starts, so a bad backfill is an
//! `Err` from [`start`] and the table is untouched. The lease is taken
//! before planning, so two jobs never plan the same column, and it is held
//! until the driver ends.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::cancel;
use crate::cost::JobCosts;
use crate::driver::{Driver, JobChannels};
use crate::error::Result;
use crate::executor::{Executor, JobExecutor, JobSetup, JobSpec};
use crate::job::Job;
use crate::location::TableLocation;
use crate::metering::StoreMeter;
use crate::options::BackfillOptions;
use crate::plan::{Plan, plan};
use crate::registry::UdfRegistry;
use crate::resolve::{Resolved, resolve};
use crate::stores::TableStores;
use crate::udf_record::UdfRecord;

/// Validates, plans and starts a backfill of `column` of `table`, building
/// the column's UDF from `registry` and running its work on `executor`. Returns once the job runs; the [`Job`] tells how it goes.
pub async fn start(
    table: &TableLocation,
    column: &str,
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
    let resolved = resolve(table, registry, column, &options, &stores).await?;
    let id = new_job_id();
    let lease = stores.lease(column, &id).await?;
    let planner = PassPlanner {
        table: table.clone(),
        column: column.to_string(),
        options: options.clone(),
        registry: registry.clone(),
        executor,
        stores: stores.clone(),
        job_id: id.clone(),
    };
    let (events, receiver) = mpsc::unbounded_channel();
    let (signal, cancelled) = watch::channel(None);
    let signal = Arc::new(signal);
    let channels = JobChannels { user: events, cancelled, fence: lease.fence() };
    let cancels = stores.cancels.clone();
    let costs = Arc::new(JobCosts::new(began.elapsed(), meter));
    let driver = match planner.prepare(resolved).await.and_then(|pass| Driver::new(pass, planner, &options, channels, costs)) {
        Ok(driver) => driver,
        Err(error) => {
            lease.release().await;
            return Err(error);
        }
    };
    let watcher = tokio::spawn(cancel::watch(cancels.clone(), id.clone(), deadline, signal.clone()));
    let job_id = id.clone();
    let outcome = tokio::spawn(async move {
        let outcome = driver.run().await;
        watcher.abort();
        cancels.remove(&job_id).await;
        lease.release().await;
        outcome
    });
    Ok(Job::new(id, receiver, outcome, signal))
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
    column: String,
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
        let resolved = resolve(&self.table, &self.registry, &self.column, &self.options, &self.stores).await?;
        self.prepare(resolved).await
    }

    async fn prepare(&self, resolved: Resolved) -> Result<Pass> {
        let plan = plan(&resolved, &self.stores.checkpoints, &self.options).await?;
        let spec = JobSpec {
            job_id: self.job_id.clone(),
            table: resolved.table.clone(),
            read_version: resolved.dataset.version().version,
            column: resolved.column.clone(),
            udf: UdfRecord::of(&resolved.udf),
            filter: resolved.filter.sql().to_string(),
            threads: self.options.intra_applier_concurrency,
        };
        let setup = JobSetup {
            spec,
            dataset: resolved.dataset.clone(),
            udf: resolved.udf.clone(),
            filter: resolved.filter.clone(),
            checkpoints: self.stores.checkpoints.clone(),
        };
        let executor = self.executor.open(&setup)?;
        Ok(Pass { plan, setup: Arc::new(setup), executor })
    }
}

fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

//! Starting a backfill: resolve, take the column's lease, plan, open the
//! executor, and hand the job to its driver.
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
use crate::error::{Error, Result};
use crate::executor::{Executor, JobSetup, JobSpec};
use crate::job::Job;
use crate::location::TableLocation;
use crate::metering::StoreMeter;
use crate::options::BackfillOptions;
use crate::plan::plan;
use crate::registry::UdfRegistry;
use crate::resolve::resolve;
use crate::stores::TableStores;
use crate::udf_record::UdfRecord;

/// Validates, plans and starts a backfill of `column` of `table`, building
/// the column's UDF from `registry` and running its work on `executor`. Returns once the job runs; the [`Job`] tells how it goes.
pub async fn start(
    table: &TableLocation,
    column: &str,
    options: BackfillOptions,
    registry: &UdfRegistry,
    executor: &dyn Executor,
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
    let prepared = async {
        let plan = plan(&resolved, &stores.checkpoints, &options).await?;
        let spec = JobSpec {
            job_id: id.clone(),
            table: resolved.table.clone(),
            read_version: resolved.dataset.version().version,
            column: resolved.column.clone(),
            udf: UdfRecord::of(&resolved.udf),
            filter: resolved.filter.sql().to_string(),
            threads: options.intra_applier_concurrency,
        };
        let setup = JobSetup {
            spec,
            dataset: resolved.dataset.clone(),
            udf: resolved.udf.clone(),
            filter: resolved.filter.clone(),
            checkpoints: stores.checkpoints.clone(),
        };
        let job_executor = executor.open(&setup)?;
        Ok::<_, Error>((plan, Arc::new(setup), job_executor))
    }
    .await;
    let (plan, setup, job_executor) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            lease.release().await;
            return Err(error);
        }
    };
    let (events, receiver) = mpsc::unbounded_channel();
    let (signal, cancelled) = watch::channel(None);
    let signal = Arc::new(signal);
    let channels = JobChannels { user: events, cancelled };
    let cancels = stores.cancels.clone();
    let costs = Arc::new(JobCosts::new(began.elapsed(), meter));
    let driver = match Driver::new(setup, stores, plan, &options, job_executor, channels, costs) {
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

fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

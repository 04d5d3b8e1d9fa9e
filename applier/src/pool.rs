//! An applier's threads (`intra_applier_concurrency` of them).
//!
//! Each thread owns one [`Instance`] of each of the job's UDFs (one, or
//! several for a backfill of several columns in one pass), built once when
//! the thread starts (a stateful UDF's factory runs here), and takes compute
//! jobs from a shared crossbeam channel. A job carries, for each UDF, its
//! selected input rows and its output columns' previous values; the thread
//! calls the UDF, splits its values into the columns (unpacking a struct)
//! and merges them back into place, so the async side only does I/O.
//! Threads end when the pool is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::usage::thread_cpu_time;
use crate::invoke::{CallFailure, Instance, Skipped};
use crate::output::OutputColumns;
use crate::udf::{InstanceContext, Udf};

/// One UDF's selected rows to compute and the values they replace.
#[derive(Debug)]
pub(crate) struct PartJob {
    /// The UDF's input columns, selected rows only.
    pub inputs: RecordBatch,
    /// Each of its output columns' previous values, every row of the batch;
    /// empty where every row is selected (no previous value is kept).
    pub old: Vec<ArrayRef>,
    /// Which part of the UDF's values fills each output column.
    pub outputs: Arc<OutputColumns>,
    /// Which rows of the batch are selected (none: the UDF is not called).
    pub selection: BooleanArray,
}

/// A batch to compute: one [`PartJob`] per UDF of the job, in order.
#[derive(Debug)]
pub(crate) struct ComputeJob {
    pub parts: Vec<PartJob>,
}

/// A job's result: the batch's new output columns (every part's, in
/// order), the rows left null by `skip`, and how long the UDFs took.
#[derive(Debug)]
pub(crate) struct Merged {
    pub values: Vec<ArrayRef>,
    /// Rows left null, by part and index among that part's selected rows.
    pub skipped: Vec<(usize, Skipped)>,
    /// The UDFs' own time on the batch, retries included.
    pub udf_time: Duration,
    /// The CPU time of the thread meanwhile, where the kernel keeps it.
    pub udf_cpu: Option<Duration>,
}

/// A call that failed the job, and the part whose UDF made it.
#[derive(Debug)]
pub(crate) struct PartFailure {
    pub part: usize,
    pub failure: CallFailure,
}

impl PartFailure {
    fn other(message: impl Into<String>) -> Self {
        Self { part: 0, failure: CallFailure::other(message) }
    }
}

type Envelope = (ComputeJob, oneshot::Sender<Result<Merged, PartFailure>>);

/// The threads of one applier.
#[derive(Debug)]
pub struct Pool {
    jobs: Sender<Envelope>,
}

impl Pool {
    /// Starts `threads` threads of applier `applier`, each with its own
    /// instance of each of `udfs`, whose factories are told the thread's
    /// index and the applier's GPU device ordinals `gpus`.
    pub fn start(udfs: &[Udf], threads: usize, name: &str, applier: usize, gpus: &[u32]) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::unbounded::<Envelope>();
        for thread in 0..threads.max(1) {
            let udfs = udfs.to_vec();
            let receiver = receiver.clone();
            let context = InstanceContext { applier, thread, gpus: gpus.to_vec() };
            std::thread::Builder::new()
                .name(format!("{name}-{thread}"))
                .spawn(move || serve(&udfs, &context, &receiver))?;
        }
        Ok(Self { jobs })
    }

    /// Computes `job` on the next free thread.
    pub(crate) async fn compute(&self, job: ComputeJob) -> Result<Merged, PartFailure> {
        let (reply, result) = oneshot::channel();
        let gone = || PartFailure::other("the applier's threads have stopped");
        self.jobs.send((job, reply)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

fn serve(udfs: &[Udf], context: &InstanceContext, jobs: &Receiver<Envelope>) {
    let mut instances: Vec<Result<Instance, String>> = udfs
        .iter()
        .map(|udf| Instance::new(udf, context).map_err(|e| format!("UDF {} could not be set up: {e}", udf.name())))
        .collect();
    while let Ok((job, reply)) = jobs.recv() {
        // The task may have been abandoned; nobody is left to tell.
        let _ = reply.send(compute(&mut instances, job));
    }
}

fn compute(instances: &mut [Result<Instance, String>], job: ComputeJob) -> Result<Merged, PartFailure> {
    let started = Instant::now();
    let cpu_before = thread_cpu_time();
    let mut values = Vec::new();
    let mut skipped = Vec::new();
    for (part, (instance, job)) in instances.iter_mut().zip(job.parts).enumerate() {
        if job.selection.true_count() == 0 {
            values.extend(job.old);
            continue;
        }
        let failed = |failure: CallFailure| PartFailure { part, failure };
        let instance = instance.as_mut().map_err(|message| failed(CallFailure::other(message.clone())))?;
        let (merged, part_skipped) = compute_part(instance, job).map_err(failed)?;
        values.extend(merged);
        skipped.extend(part_skipped.into_iter().map(|row| (part, row)));
    }
    let udf_time = started.elapsed();
    let udf_cpu = cpu_before.zip(thread_cpu_time()).map(|(before, after)| after.saturating_sub(before));
    Ok(Merged { values, skipped, udf_time, udf_cpu })
}

/// One UDF's values, split into its columns and merged with the old values
/// of the rows it did not compute.
fn compute_part(instance: &mut Instance, job: PartJob) -> Result<(Vec<ArrayRef>, Vec<Skipped>), CallFailure> {
    let computed = instance.compute(&job.inputs)?;
    let columns = job.outputs.split(computed.values).map_err(CallFailure::other)?;
    if job.selection.true_count() == job.selection.len() {
        return Ok((columns, computed.skipped));
    }
    let mut next = 0;
    let indices: Vec<(usize, usize)> = job
        .selection
        .values()
        .iter()
        .enumerate()
        .map(|(i, selected)| {
            if selected {
                next += 1;
                (1, next - 1)
            } else {
                (0, i)
            }
        })
        .collect();
    let values = job
        .old
        .iter()
        .zip(&columns)
        .map(|(old, new)| arrow_select::interleave::interleave(&[old.as_ref(), new.as_ref()], &indices))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CallFailure::other(format!("merging computed values: {e}")))?;
    Ok((values, computed.skipped))
}

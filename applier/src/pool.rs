//! An applier's threads (`intra_applier_concurrency` of them).
//!
//! Each thread owns one [`Instance`] of the UDF, built once when the thread
//! starts (a stateful UDF's factory runs here), and takes compute jobs from
//! a shared crossbeam channel. A job carries the selected input rows and the
//! output columns' previous values; the thread calls the UDF, splits its
//! values into the columns (unpacking a struct) and merges them back into
//! place, so the async side only does I/O. Threads end when the
//! pool is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::usage::thread_cpu_time;
use crate::invoke::{CallFailure, Instance, Skipped};
use crate::output::OutputColumns;
use crate::udf::{InstanceContext, Udf};

/// Selected rows to compute and the values they replace.
#[derive(Debug)]
pub(crate) struct ComputeJob {
    /// The UDF's input columns, selected rows only.
    pub inputs: RecordBatch,
    /// Each output column's previous values, every row of the batch.
    pub old: Vec<ArrayRef>,
    /// Which part of the UDF's values fills each output column.
    pub outputs: Arc<OutputColumns>,
    /// Which rows of the batch are selected.
    pub selection: BooleanArray,
}

/// A job's result: the batch's new output columns, the rows left null by
/// `skip`, and how long the UDF took.
#[derive(Debug)]
pub(crate) struct Merged {
    pub values: Vec<ArrayRef>,
    /// Rows left null, by index among the selected rows.
    pub skipped: Vec<Skipped>,
    /// The UDF's own time on the batch, retries included.
    pub udf_time: Duration,
    /// The CPU time of the thread meanwhile, where the kernel keeps it.
    pub udf_cpu: Option<Duration>,
}

type Envelope = (ComputeJob, oneshot::Sender<Result<Merged, CallFailure>>);

/// The threads of one applier.
#[derive(Debug)]
pub struct Pool {
    jobs: Sender<Envelope>,
}

impl Pool {
    /// Starts `threads` threads of applier `applier`, each with its own
    /// instance of `udf`, whose factory is told its thread index and the
    /// applier's GPU device ordinals `gpus`.
    pub fn start(udf: &Udf, threads: usize, name: &str, applier: usize, gpus: &[u32]) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::unbounded::<Envelope>();
        for thread in 0..threads.max(1) {
            let udf = udf.clone();
            let receiver = receiver.clone();
            let context = InstanceContext { applier, thread, gpus: gpus.to_vec() };
            std::thread::Builder::new()
                .name(format!("{name}-{thread}"))
                .spawn(move || serve(&udf, &context, &receiver))?;
        }
        Ok(Self { jobs })
    }

    /// Computes `job` on the next free thread.
    pub(crate) async fn compute(&self, job: ComputeJob) -> Result<Merged, CallFailure> {
        let (reply, result) = oneshot::channel();
        let gone = || CallFailure::other("the applier's threads have stopped");
        self.jobs.send((job, reply)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

fn serve(udf: &Udf, context: &InstanceContext, jobs: &Receiver<Envelope>) {
    let mut instance =
        Instance::new(udf, context).map_err(|e| CallFailure::other(format!("UDF {} could not be set up: {e}", udf.name())));
    while let Ok((job, reply)) = jobs.recv() {
        let result = match &mut instance {
            Ok(instance) => compute(instance, job),
            Err(failure) => Err(CallFailure::other(failure.message.clone())),
        };
        // The task may have been abandoned; nobody is left to tell.
        let _ = reply.send(result);
    }
}

fn compute(instance: &mut Instance, job: ComputeJob) -> Result<Merged, CallFailure> {
    let started = Instant::now();
    let cpu_before = thread_cpu_time();
    let computed = instance.compute(&job.inputs)?;
    let udf_time = started.elapsed();
    let udf_cpu = cpu_before.zip(thread_cpu_time()).map(|(before, after)| after.saturating_sub(before));
    let columns = job.outputs.split(computed.values).map_err(CallFailure::other)?;
    if job.selection.true_count() == job.selection.len() {
        return Ok(Merged { values: columns, skipped: computed.skipped, udf_time, udf_cpu });
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
    Ok(Merged { values, skipped: computed.skipped, udf_time, udf_cpu })
}

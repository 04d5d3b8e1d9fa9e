//! (11) A job too large to run here, on a virtual clock: a billion rows in
//! 100,000 fragments on 100 appliers, with the times of a real job's steps
//! (a task of 10,240 rows at 50 us a row, the `busy` UDF's cost, plus
//! 20 ms to read and checkpoint it; 300 ms to write a fragment; 1 s a
//! commit, as on an object store), driven through the real scheduler
//! ([`leman_scheduler::sim`]). It reports the scheduler's own time per
//! task, against the task's time, and the job's time against the least its
//! tasks allow (their time over the appliers), so that neither the driver
//! nor the commit policy is what bounds a job of that size.

use std::time::Duration;

use leman_engine::{Error, Result};
use leman_scheduler::JobConfig;
use leman_scheduler::sim::{Simulation, simulate};

use super::{Figure, secs};

/// The simulated job: full size, or a fiftieth of it with `quick`.
fn simulation(quick: bool) -> Simulation {
    let (appliers, fragments) = if quick { (10, 2_000) } else { (100, 100_000) };
    Simulation {
        appliers,
        fragments,
        rows_per_fragment: 10_000,
        task_overhead: Duration::from_millis(20),
        per_row: Duration::from_micros(50),
        jitter: 0.25,
        write_time: Duration::from_millis(300),
        commit_time: Duration::from_secs(1),
        // As the engine configures a job of `appliers` appliers with the
        // default options.
        job: JobConfig { batch_size: 10_240, commit_granularity: Some(64), max_writers: appliers.max(8), ..JobConfig::default() },
        seed: 11,
    }
}

pub(super) fn figures(quick: bool) -> Result<Vec<Figure>> {
    let sim = simulation(quick);
    let outcome = simulate(&sim).map_err(|error| Error::InvalidOptions { reason: format!("the simulated job: {error}") })?;
    let rows = if outcome.rows >= 1_000_000_000 { format!("{}B", outcome.rows / 1_000_000_000) } else { format!("{}M", outcome.rows / 1_000_000) };
    let what = format!("{rows} rows / {}k fragments / {} appliers", sim.fragments / 1000, sim.appliers);
    let tasks = u32::try_from(outcome.tasks.max(1)).unwrap_or(u32::MAX);
    let task = outcome.compute_bound * u32::try_from(sim.appliers).unwrap_or(u32::MAX) / tasks;
    let per_task = outcome.scheduler_per_task();
    let bound = outcome.job_time.as_secs_f64() / outcome.compute_bound.as_secs_f64().max(f64::EPSILON);
    Ok(vec![
        Figure {
            number: 11,
            what: format!("scheduler time per task, simulated job of {what}"),
            measured: format!("{:.1} us", per_task.as_secs_f64() * 1e6),
            baseline: format!("a task: {}", secs(task)),
            ratio: per_task.as_secs_f64() / task.as_secs_f64().max(f64::EPSILON),
            ratio_of: "scheduler time / task time".into(),
            target: "< 50 us".into(),
            met: per_task < Duration::from_micros(50),
        },
        Figure {
            number: 11,
            what: format!("simulated job time of {what}, {} commits of 1 s", outcome.commits),
            measured: secs(outcome.job_time),
            baseline: format!("its tasks over the appliers: {}", secs(outcome.compute_bound)),
            ratio: bound,
            ratio_of: "job time / compute bound".into(),
            target: "<= 1.05".into(),
            met: bound <= 1.05,
        },
    ])
}

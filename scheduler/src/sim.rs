//! A job run on a virtual clock: the [`Scheduler`] driven as the engine
//! drives it, with appliers, writers and the committer replaced by events
//! due after the time each would take. It answers two questions no real
//! run at that size can on one machine: how long a job of a billion rows
//! on a hundred appliers takes under the scheduler's policy (tasks, writes
//! and one commit in flight at a time), and how much real time the
//! scheduler itself spends per task, so that the driver is known not to be
//! what bounds such a job.
//!
//! Task times vary by a deterministic jitter (the same seed, the same run),
//! and nothing fails. The time counted as the scheduler's is that spent in
//! [`Scheduler::new`], [`Scheduler::handle`], [`Scheduler::handle_timeout`]
//! and [`Scheduler::poll_command`], measured with the process's monotonic
//! clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::{Command, Event, FragmentInput, JobConfig, PlanError, Scheduler, TaskId, TaskStats};

/// The job simulated and what each step of it takes.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// Appliers, each taking one task at a time.
    pub appliers: usize,
    /// Fragments of the table.
    pub fragments: u64,
    /// Physical rows of each fragment.
    pub rows_per_fragment: u64,
    /// What a task costs besides its rows: reading its batch, writing its
    /// checkpoint.
    pub task_overhead: Duration,
    /// UDF time of one row.
    pub per_row: Duration,
    /// Tasks take between `1 - jitter` and `1 + jitter` times their time.
    pub jitter: f64,
    /// Writing one fragment's data file from its checkpoints.
    pub write_time: Duration,
    /// One commit, whatever its size.
    pub commit_time: Duration,
    /// The job's configuration, as the engine derives it from its options.
    pub job: JobConfig,
    /// Seed of the jitter.
    pub seed: u64,
}

/// What a simulated job did and took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOutcome {
    /// Tasks run.
    pub tasks: u64,
    /// Fragments written.
    pub fragments_written: u64,
    /// Commits made.
    pub commits: u64,
    /// Rows computed.
    pub rows: u64,
    /// The job's time on the virtual clock.
    pub job_time: Duration,
    /// The least time its tasks could take: their time summed, over the
    /// appliers.
    pub compute_bound: Duration,
    /// Real time spent in the scheduler, in all.
    pub scheduler_time: Duration,
}

impl SimOutcome {
    /// Real time the scheduler spent per task.
    pub fn scheduler_per_task(&self) -> Duration {
        self.scheduler_time / u32::try_from(self.tasks.max(1)).unwrap_or(u32::MAX)
    }
}

/// Why a simulation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The job's plan was refused.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The scheduler waited for something that never comes.
    #[error("the simulated job stalled at {at:?} on the virtual clock with nothing in flight")]
    Stalled {
        /// When, from the job's start.
        at: Duration,
    },
    /// The scheduler ended the job other than by finishing it.
    #[error("the simulated job ended without finishing: {0}")]
    Ended(String),
}

/// What comes back to the scheduler when its time is due.
#[derive(Debug)]
enum Due {
    Task { id: TaskId, rows: u64, took: Duration },
    Written { fragment_id: u64 },
    Committed { fragments: Vec<u64> },
}

/// Runs `sim` to its end.
pub fn simulate(sim: &Simulation) -> Result<SimOutcome, SimError> {
    let start = Instant::now();
    let mut spent = Duration::ZERO;
    let fragments = (0..sim.fragments).map(|id| FragmentInput::new(id, sim.rows_per_fragment)).collect();
    let mut scheduler = timed(&mut spent, || Scheduler::new(start, sim.job.clone(), fragments))?;

    let mut due: BinaryHeap<Reverse<(Duration, u64)>> = BinaryHeap::new();
    let mut pending: HashMap<u64, Due> = HashMap::new();
    let mut sequence = 0u64;
    let mut jitter = SplitMix(sim.seed);
    let mut now = Duration::ZERO;
    let (mut tasks, mut written, mut commits, mut rows, mut busy) = (0u64, 0u64, 0u64, 0u64, Duration::ZERO);

    timed(&mut spent, || {
        for applier in 0..sim.appliers {
            scheduler.handle(start, Event::ApplierReady { applier, slots: 1 });
        }
    });
    loop {
        while let Some(command) = timed(&mut spent, || scheduler.poll_command()) {
            let (after, what) = match command {
                Command::Assign { task, .. } => {
                    let factor = 1.0 + sim.jitter * (2.0 * jitter.unit() - 1.0);
                    let took = (sim.task_overhead + sim.per_row * u32::try_from(task.len()).unwrap_or(u32::MAX)).mul_f64(factor.max(0.0));
                    busy += took;
                    (took, Due::Task { id: task.id, rows: task.len(), took })
                }
                Command::WriteFragment { fragment_id } => (sim.write_time, Due::Written { fragment_id }),
                Command::Commit { fragments } => (sim.commit_time, Due::Committed { fragments }),
                Command::Progress(_) => continue,
                Command::Finished(_) => {
                    let compute_bound = busy / u32::try_from(sim.appliers.max(1)).unwrap_or(u32::MAX);
                    return Ok(SimOutcome { tasks, fragments_written: written, commits, rows, job_time: now, compute_bound, scheduler_time: spent });
                }
                Command::Failed(failure) => return Err(SimError::Ended(failure.message)),
                Command::Cancelled(_) => return Err(SimError::Ended("cancelled".into())),
            };
            due.push(Reverse((now + after, sequence)));
            pending.insert(sequence, what);
            sequence += 1;
        }
        let next_event = due.peek().map(|Reverse((at, _))| *at);
        let next_timeout = scheduler.poll_timeout().map(|at| at.saturating_duration_since(start));
        match (next_event, next_timeout) {
            (None, _) => return Err(SimError::Stalled { at: now }),
            (Some(event_at), Some(timeout_at)) if timeout_at < event_at => {
                now = now.max(timeout_at);
                timed(&mut spent, || scheduler.handle_timeout(start + now));
            }
            (Some(_), _) => {
                let Some(Reverse((at, key))) = due.pop() else { continue };
                now = at;
                let Some(what) = pending.remove(&key) else { continue };
                let event = match what {
                    Due::Task { id, rows: task_rows, took } => {
                        tasks += 1;
                        rows += task_rows;
                        let stats = TaskStats { rows_computed: task_rows, udf_time: Some(took), ..TaskStats::default() };
                        Event::TaskSucceeded { task: id, stats }
                    }
                    Due::Written { fragment_id } => {
                        written += 1;
                        Event::FragmentWritten { fragment_id }
                    }
                    Due::Committed { fragments } => {
                        commits += 1;
                        Event::Committed { fragments, left_out: Vec::new(), version: Some(commits) }
                    }
                };
                timed(&mut spent, || scheduler.handle(start + now, event));
            }
        }
    }
}

/// Runs `work`, adding the real time it took to `spent`.
fn timed<T>(spent: &mut Duration, work: impl FnOnce() -> T) -> T {
    let began = Instant::now();
    let out = work();
    *spent += began.elapsed();
    out
}

/// SplitMix64: a deterministic stream of jitter, no dependency.
struct SplitMix(u64);

impl SplitMix {
    /// The next number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(commit_time: Duration) -> Simulation {
        Simulation {
            appliers: 4,
            fragments: 40,
            rows_per_fragment: 1000,
            task_overhead: Duration::from_millis(10),
            per_row: Duration::from_micros(100),
            jitter: 0.25,
            write_time: Duration::from_millis(50),
            commit_time,
            job: JobConfig { batch_size: 500, commit_granularity: Some(8), max_writers: 4, ..JobConfig::default() },
            seed: 7,
        }
    }

    #[test]
    fn every_task_write_and_commit_happens_once_and_time_adds_up() {
        let outcome = simulate(&small(Duration::from_millis(100))).unwrap();
        assert_eq!((outcome.tasks, outcome.fragments_written, outcome.commits, outcome.rows), (80, 40, 5, 40_000));
        // 80 tasks of about 60 ms on 4 appliers: about 1.2 s of compute.
        assert!(outcome.compute_bound > Duration::from_millis(900) && outcome.compute_bound < Duration::from_millis(1500), "{outcome:?}");
        assert!(outcome.job_time >= outcome.compute_bound, "{outcome:?}");
        assert_eq!(simulate(&small(Duration::from_millis(100))).unwrap().job_time, outcome.job_time, "the same seed, the same run");
    }

    #[test]
    fn commits_slower_than_writes_take_every_whole_group_waiting() {
        // Every fragment is written within about 1.3 s; commits of 2 s, one
        // at a time, of 8 fragments each would take five in a row, 10 s.
        // The second commit takes the 32 written during the first.
        let outcome = simulate(&small(Duration::from_secs(2))).unwrap();
        assert_eq!((outcome.fragments_written, outcome.commits), (40, 2), "{outcome:?}");
        assert!(outcome.job_time < Duration::from_secs(5), "{outcome:?}");
    }
}

//! Whole jobs on a virtual clock: a tiny driver completes tasks, writes and
//! commits in the order the scheduler asks, no threads, no sockets.

use super::*;

struct Harness {
    now: Instant,
    scheduler: Scheduler,
    running: VecDeque<(ApplierId, Task, u32)>,
    assigned: Vec<(ApplierId, Task)>,
    commits: Vec<Vec<u64>>,
    writes: Vec<u64>,
    end: Option<Command>,
    peak_running: usize,
}

impl Harness {
    fn new(config: JobConfig, fragments: Vec<FragmentInput>, appliers: &[usize]) -> Self {
        let now = Instant::now();
        let scheduler = match Scheduler::new(now, config, fragments) {
            Ok(s) => s,
            Err(e) => panic!("plan failed: {e}"),
        };
        let mut harness = Self {
            now,
            scheduler,
            running: VecDeque::new(),
            assigned: Vec::new(),
            commits: Vec::new(),
            writes: Vec::new(),
            end: None,
            peak_running: 0,
        };
        for (applier, &slots) in appliers.iter().enumerate() {
            harness.event(Event::ApplierReady { applier, slots });
        }
        harness
    }

    fn event(&mut self, event: Event) {
        self.scheduler.handle(self.now, event);
        self.pump();
    }

    /// Carries out commands; writes and commits complete at once.
    fn pump(&mut self) {
        while let Some(command) = self.scheduler.poll_command() {
            match command {
                Command::Assign { applier, task, attempt } => {
                    self.assigned.push((applier, task.clone()));
                    self.running.push_back((applier, task, attempt));
                    self.peak_running = self.peak_running.max(self.running.len());
                }
                Command::WriteFragment { fragment_id } => {
                    self.writes.push(fragment_id);
                    self.scheduler.handle(self.now, Event::FragmentWritten { fragment_id });
                }
                Command::Commit { fragments } => {
                    self.commits.push(fragments.clone());
                    let version = self.commits.len() as u64 + 1;
                    self.scheduler.handle(self.now, Event::Committed { fragments, left_out: Vec::new(), version: Some(version) });
                }
                Command::Progress(_) => {}
                end @ (Command::Finished(_) | Command::Failed(_) | Command::Cancelled(_)) => {
                    assert!(self.end.is_none(), "two final commands");
                    self.end = Some(end);
                }
            }
        }
    }

    /// Completes the oldest running task.
    fn complete_one(&mut self, rows_computed: u64) -> bool {
        let Some((_, task, _)) = self.running.pop_front() else { return false };
        self.now += Duration::from_millis(10);
        self.event(Event::TaskSucceeded {
            task: task.id,
            stats: TaskStats { rows_computed, ..TaskStats::default() },
        });
        true
    }

    fn run_to_end(&mut self) {
        while self.complete_one(1) {}
    }
}

fn fragments(n: u64, rows: u64) -> Vec<FragmentInput> {
    (0..n).map(|id| FragmentInput::new(id, rows)).collect()
}

#[test]
fn commit_granularity_makes_ceil_f_over_g_commits() {
    let config = JobConfig { batch_size: 10, commit_granularity: Some(3), ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(7, 25), &[2, 2]);
    h.run_to_end();
    assert_eq!(h.commits.len(), 3);
    assert_eq!(h.commits.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 1]);
    let mut committed: Vec<u64> = h.commits.concat();
    committed.sort();
    assert_eq!(committed, (0..7).collect::<Vec<_>>());
    let Some(Command::Finished(summary)) = &h.end else { panic!("job did not finish: {:?}", h.end) };
    assert_eq!(summary.commits, 3);
    assert_eq!(summary.fragments_committed, 7);
    assert_eq!(summary.rows_computed, 21, "7 fragments of 3 tasks");
}

#[test]
fn no_granularity_commits_once_at_the_end() {
    let config = JobConfig { batch_size: 10, ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(5, 20), &[1]);
    h.run_to_end();
    assert_eq!(h.commits.len(), 1, "{:?}", h.commits);
    let mut committed = h.commits.concat();
    committed.sort();
    assert_eq!(committed, vec![0, 1, 2, 3, 4]);
    assert!(matches!(h.end, Some(Command::Finished(_))));
}

#[test]
fn in_flight_tasks_never_exceed_applier_slots() {
    let config = JobConfig { batch_size: 1, ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(4, 50), &[3, 2]);
    assert_eq!(h.running.len(), 5);
    h.run_to_end();
    assert_eq!(h.peak_running, 5);
    assert_eq!(h.assigned.len(), 200);
}

#[test]
fn checkpointed_tasks_and_written_fragments_are_not_recomputed() {
    let mut inputs = fragments(3, 30);
    inputs[0].checkpointed = vec![0..10, 20..30];
    inputs[1].start = FragmentStart::Written;
    let config = JobConfig { batch_size: 10, ..JobConfig::default() };
    let mut h = Harness::new(config, inputs, &[4]);
    h.run_to_end();
    let ran: Vec<(u64, u64)> = h.assigned.iter().map(|(_, t)| (t.fragment_id, t.rows.start)).collect();
    assert_eq!(ran.len(), 4);
    assert!(ran.contains(&(0, 10)));
    assert!(ran.iter().all(|&(f, _)| f != 1));
    assert_eq!(h.writes.len(), 2, "fragment 1 is already written");
    let Some(Command::Finished(summary)) = &h.end else { panic!("{:?}", h.end) };
    assert_eq!(summary.rows_from_checkpoints, 20 + 30, "checkpointed batches and the written fragment");
    assert_eq!(summary.fragments_committed, 3);
}

#[test]
fn a_lost_applier_gives_its_tasks_to_the_others() {
    let config = JobConfig { batch_size: 10, ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(2, 40), &[2, 2]);
    let lost: Vec<Task> = h.running.iter().filter(|(a, _, _)| *a == 1).map(|(_, t, _)| t.clone()).collect();
    assert_eq!(lost.len(), 2);
    h.running.retain(|(a, _, _)| *a != 1);
    h.event(Event::ApplierLost { applier: 1 });
    h.run_to_end();
    assert!(matches!(h.end, Some(Command::Finished(_))));
    for task in lost {
        let runs = h.assigned.iter().filter(|(_, t)| t.id == task.id).collect::<Vec<_>>();
        assert_eq!(runs.len(), 2, "task {:?} runs again", task.id);
        assert_eq!(runs[1].0, 0);
    }
}

#[test]
fn a_failed_task_fails_the_job_naming_its_rows() {
    let config = JobConfig { batch_size: 10, commit_granularity: Some(1), ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(2, 20), &[1]);
    let (_, task, attempt) = h.running.pop_front().unwrap_or_else(|| panic!("nothing assigned"));
    h.event(Event::TaskFailed { task: task.id, attempt, message: "boom".into(), retryable: false });
    let Some(Command::Failed(failure)) = &h.end else { panic!("{:?}", h.end) };
    assert_eq!(failure.fragment_id, Some(task.fragment_id));
    assert_eq!(failure.rows, Some(task.rows));
    assert!(h.commits.is_empty());
    let before = h.assigned.len();
    h.event(Event::ApplierReady { applier: 9, slots: 4 });
    assert_eq!(h.assigned.len(), before, "nothing is assigned after a failure");
}

#[test]
fn retryable_failures_give_up_after_max_attempts() {
    let config = JobConfig { batch_size: 10, max_task_attempts: 2, ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(1, 10), &[1]);
    for _ in 0..2 {
        let (_, task, attempt) = h.running.pop_front().unwrap_or_else(|| panic!("nothing assigned"));
        h.event(Event::TaskFailed { task: task.id, attempt, message: "io".into(), retryable: true });
    }
    let Some(Command::Failed(failure)) = &h.end else { panic!("{:?}", h.end) };
    assert!(failure.message.contains("gave up after 2 attempts"), "{}", failure.message);
}

#[test]
fn progress_comes_at_the_refresh_cadence() {
    let config = JobConfig { batch_size: 10, refresh_status: Duration::from_secs(2), ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(1, 100), &[1]);
    let first = h.scheduler.poll_timeout().unwrap_or_else(|| panic!("no timer"));
    h.scheduler.handle_timeout(first - Duration::from_millis(1));
    assert_eq!(h.scheduler.poll_command(), None);
    h.complete_one(10);
    h.scheduler.handle_timeout(first);
    let Some(Command::Progress(progress)) = h.scheduler.poll_command() else { panic!("no progress") };
    assert_eq!((progress.tasks_done, progress.tasks_total), (1, 10));
    assert_eq!(progress.rows_done, 10);
    assert_eq!(h.scheduler.poll_timeout(), Some(first + Duration::from_secs(2)));
}

#[test]
fn zero_sizes_are_refused() {
    let now = Instant::now();
    let zero_batch = JobConfig { batch_size: 0, ..JobConfig::default() };
    assert_eq!(Scheduler::new(now, zero_batch, vec![]).err(), Some(PlanError::ZeroBatchSize));
    let zero_group = JobConfig { commit_granularity: Some(0), ..JobConfig::default() };
    assert_eq!(Scheduler::new(now, zero_group, vec![]).err(), Some(PlanError::ZeroCommitGranularity));
}

#[test]
fn an_empty_plan_finishes_at_once() {
    let h = Harness::new(JobConfig::default(), vec![], &[1]);
    let Some(Command::Finished(summary)) = &h.end else { panic!("{:?}", h.end) };
    assert_eq!(summary.commits, 0);
}

#[test]
fn late_results_of_abandoned_attempts_are_handled_once() {
    let config = JobConfig { batch_size: 10, ..JobConfig::default() };
    let mut h = Harness::new(config, fragments(1, 20), &[1, 1]);
    let (lost_applier, lost_task, lost_attempt) = h.running.iter().find(|(a, _, _)| *a == 1).cloned().unwrap_or_else(|| panic!("nothing on applier 1"));
    h.running.retain(|(a, _, _)| *a != 1);
    h.event(Event::ApplierLost { applier: lost_applier });
    // The lost applier's failure arrives late: ignored, the task stays queued once.
    h.event(Event::TaskFailed { task: lost_task.id, attempt: lost_attempt, message: "conn reset".into(), retryable: true });
    // Its late success is accepted and the queued copy dropped.
    h.event(Event::TaskSucceeded { task: lost_task.id, stats: TaskStats { rows_computed: 10, ..TaskStats::default() } });
    h.run_to_end();
    let Some(Command::Finished(summary)) = &h.end else { panic!("{:?}", h.end) };
    assert_eq!(summary.rows_computed, 10 + 1, "each task counted once: the late success and the other task");
    assert_eq!(h.assigned.iter().filter(|(_, t)| t.id == lost_task.id).count(), 1, "not run again");
}

#[test]
fn a_lost_writer_writes_its_fragment_again() {
    let now = Instant::now();
    let config = JobConfig { batch_size: 10, max_task_attempts: 2, ..JobConfig::default() };
    let mut scheduler = Scheduler::new(now, config, vec![FragmentInput { start: FragmentStart::Written, ..FragmentInput::new(0, 10) }, FragmentInput::new(1, 10)])
        .unwrap_or_else(|e| panic!("{e}"));
    scheduler.handle(now, Event::ApplierReady { applier: 0, slots: 1 });
    let Some(Command::Assign { task, .. }) = scheduler.poll_command() else { panic!("no assignment") };
    scheduler.handle(now, Event::TaskSucceeded { task: task.id, stats: TaskStats::default() });
    assert_eq!(scheduler.poll_command(), Some(Command::WriteFragment { fragment_id: 1 }));
    scheduler.handle(now, Event::FragmentFailed { fragment_id: 1, message: "worker lost".into(), retryable: true });
    assert_eq!(scheduler.poll_command(), Some(Command::WriteFragment { fragment_id: 1 }), "written again");
    scheduler.handle(now, Event::FragmentFailed { fragment_id: 1, message: "worker lost".into(), retryable: true });
    assert!(matches!(scheduler.poll_command(), Some(Command::Failed(f)) if f.fragment_id == Some(1)), "gave up after 2 attempts");
}

#[test]
fn at_most_max_writers_fragment_writes_are_in_flight() {
    let now = Instant::now();
    let config = JobConfig { batch_size: 10, max_writers: 2, ..JobConfig::default() };
    // Every batch already checkpointed: all six fragments are ready to write at once.
    let ready: Vec<FragmentInput> =
        (0..6).map(|id| FragmentInput { checkpointed: std::iter::once(0..10).collect(), ..FragmentInput::new(id, 10) }).collect();
    let mut scheduler = Scheduler::new(now, config, ready).unwrap_or_else(|e| panic!("{e}"));
    let writes = |s: &mut Scheduler| {
        std::iter::from_fn(|| s.poll_command())
            .filter_map(|c| match c {
                Command::WriteFragment { fragment_id } => Some(fragment_id),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(writes(&mut scheduler), [0, 1], "two writers, not six");
    scheduler.handle(now, Event::FragmentWritten { fragment_id: 0 });
    assert_eq!(writes(&mut scheduler), [2], "a finished write frees its slot");
    scheduler.handle(now, Event::FragmentFailed { fragment_id: 1, message: "lost".into(), retryable: true });
    assert_eq!(writes(&mut scheduler), [1], "a retry keeps its slot");
    for id in [1, 2] {
        scheduler.handle(now, Event::FragmentWritten { fragment_id: id });
    }
    assert_eq!(writes(&mut scheduler), [3, 4]);
    for id in [3, 4] {
        scheduler.handle(now, Event::FragmentWritten { fragment_id: id });
    }
    assert_eq!(writes(&mut scheduler), [5]);
    assert!(Scheduler::new(now, JobConfig { max_writers: 0, ..JobConfig::default() }, Vec::new()).is_err());
}

/// Completes every task, skipping `skip(i)` of its rows for the `i`th.
fn run_skipping(h: &mut Harness, rows: u64, skip: impl Fn(usize) -> u64) {
    let mut i = 0;
    while let Some((_, task, _)) = h.running.pop_front() {
        let skipped = skip(i);
        i += 1;
        h.event(Event::TaskSucceeded {
            task: task.id,
            stats: TaskStats { rows_computed: rows - skipped, rows_skipped: skipped, ..TaskStats::default() },
        });
    }
}

#[test]
fn a_job_past_its_skipped_rows_budget_fails_naming_it() {
    let budget = SkipBudget { max_rows: Some(3), max_fraction: None };
    let config = JobConfig { batch_size: 10, skip_budget: budget, ..JobConfig::default() };
    let mut h = Harness::new(config.clone(), fragments(4, 10), &[1]);
    run_skipping(&mut h, 10, |_| 1);
    let Some(Command::Failed(failure)) = &h.end else { panic!("{:?}", h.end) };
    assert!(failure.message.contains("4 rows skipped, more than max_skipped_rows = 3"), "{}", failure.message);
    assert!(h.commits.iter().flatten().count() < 4, "the fourth fragment was not committed");

    let mut within = Harness::new(config, fragments(4, 10), &[1]);
    run_skipping(&mut within, 10, |i| u64::from(i < 3));
    assert!(matches!(&within.end, Some(Command::Finished(s)) if s.rows_skipped == 3), "{:?}", within.end);
}

#[test]
fn the_skipped_fraction_is_judged_from_enough_rows_or_at_the_end() {
    let budget = SkipBudget { max_rows: None, max_fraction: Some(0.01) };
    // 2,000 rows in tasks of 100: one bad row in the first task is 1% of
    // 100 rows, but the job ends at 1 of 2,000 (0.05%): it succeeds.
    let config = JobConfig { batch_size: 100, skip_budget: budget, ..JobConfig::default() };
    let mut h = Harness::new(config.clone(), fragments(2, 1000), &[1]);
    run_skipping(&mut h, 100, |i| u64::from(i == 0) * 5);
    assert!(matches!(&h.end, Some(Command::Finished(s)) if s.rows_skipped == 5), "{:?}", h.end);

    // 3 rows of every 100 fail: past 1,000 rows the job is judged and fails.
    let mut bad = Harness::new(config.clone(), fragments(2, 1000), &[1]);
    run_skipping(&mut bad, 100, |_| 3);
    let Some(Command::Failed(failure)) = &bad.end else { panic!("{:?}", bad.end) };
    assert!(failure.message.contains("30 of 1000 rows skipped (3.00%), more than max_skipped_fraction = 0.01"), "{}", failure.message);

    // A small job is judged at its last task.
    let mut small = Harness::new(config, fragments(1, 200), &[1]);
    run_skipping(&mut small, 100, |i| u64::from(i == 1) * 3);
    let Some(Command::Failed(failure)) = &small.end else { panic!("{:?}", small.end) };
    assert!(failure.message.contains("3 of 200 rows skipped"), "{}", failure.message);
}

/// A job under `auto` batches whose UDF takes `per_row` a row, each task
/// finishing in the order it was assigned.
fn run_auto(h: &mut Harness, per_row: Duration) {
    while let Some((_, task, _)) = h.running.pop_front() {
        h.now += per_row * task.len() as u32;
        let stats = TaskStats { rows_computed: task.len(), udf_time: Some(per_row * task.len() as u32), ..TaskStats::default() };
        h.event(Event::TaskSucceeded { task: task.id, stats });
    }
}

fn auto_config() -> JobConfig {
    let auto = crate::AutoBatch { target: Duration::from_secs(10), min: 1, max: 10_240 };
    JobConfig { batch_size: 10_240, auto_batch: Some(auto), ..JobConfig::default() }
}

#[test]
fn auto_batches_start_small_and_grow_to_the_target_time_covering_each_row_once() {
    // 20 ms a row: 10 s is 500 rows, reached growing 4x a task.
    let mut h = Harness::new(auto_config(), fragments(1, 2_000), &[1]);
    run_auto(&mut h, Duration::from_millis(20));
    let sizes: Vec<u64> = h.assigned.iter().map(|(_, t)| t.len()).collect();
    assert_eq!(sizes, [1, 4, 16, 64, 256, 500, 500, 500, 159]);
    let mut batches = h.scheduler.fragment_batches(0);
    assert_eq!(batches.len(), sizes.len());
    batches.dedup();
    let mut next = 0;
    for rows in &batches {
        assert_eq!(rows.start, next, "batches {batches:?} leave a gap or overlap");
        next = rows.end;
    }
    assert_eq!(next, 2_000);
    assert_eq!(h.writes, [0]);
    let Some(Command::Finished(summary)) = &h.end else { panic!("{:?}", h.end) };
    assert_eq!(summary.rows_computed, 2_000);
}

#[test]
fn auto_batches_of_a_cheap_udf_reach_the_maximum() {
    // Each applier grows 1, 4, .., 4096, 10240: seven cut tasks, then whole
    // plan tasks of 10,240 rows.
    let mut h = Harness::new(auto_config(), fragments(2, 204_800), &[1, 1]);
    run_auto(&mut h, Duration::from_micros(1));
    let largest = h.assigned.iter().map(|(_, t)| t.len()).max();
    assert_eq!(largest, Some(10_240));
    assert!(h.assigned.len() <= 40 + 2 * 7, "{} tasks", h.assigned.len());
    assert!(matches!(h.end, Some(Command::Finished(_))));
    for fragment in 0..2 {
        let rows: u64 = h.scheduler.fragment_batches(fragment).iter().map(|r| r.end - r.start).sum();
        assert_eq!(rows, 204_800);
    }
}

#[test]
fn a_late_result_for_a_task_cut_after_its_retry_is_not_taken_for_a_piece() {
    let config = JobConfig { batch_size: 100, auto_batch: None, ..auto_config() };
    let mut h = Harness::new(config, fragments(1, 100), &[1]);
    let (_, whole, _) = h.running.pop_front().expect("assigned");
    assert_eq!(whole.rows, 0..100);
    // The applier is lost; a new one under auto sizes takes the task in pieces.
    h.scheduler.config.auto_batch = auto_config().auto_batch;
    h.event(Event::ApplierLost { applier: 0 });
    h.event(Event::ApplierReady { applier: 1, slots: 1 });
    let (_, piece, _) = h.running.front().cloned().expect("assigned again");
    assert_eq!(piece.rows, 0..1);
    // The lost applier's result for the whole range arrives late: ignored.
    h.event(Event::TaskSucceeded { task: whole.id, stats: TaskStats { rows_computed: 100, ..TaskStats::default() } });
    assert!(h.scheduler.fragment_batches(0).is_empty());
    run_auto(&mut h, Duration::from_millis(1));
    let batches = h.scheduler.fragment_batches(0);
    assert_eq!(batches.first().map(|r| r.start), Some(0));
    assert_eq!(batches.iter().map(|r| r.end - r.start).sum::<u64>(), 100);
    assert!(matches!(h.end, Some(Command::Finished(_))));
}

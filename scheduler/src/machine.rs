//! The job state machine.
//!
//! Events in ([`Scheduler::handle`], [`Scheduler::handle_timeout`]), commands
//! out ([`Scheduler::poll_command`]), a deadline to wake it
//! ([`Scheduler::poll_timeout`]). Time is passed in, never read, so tests run
//! whole jobs on a virtual clock without sockets or threads.
//!
//! A fragment moves from *computing* (tasks out) to *writing* (all its
//! batches checkpointed, its writer asked to write the data file) to
//! *written* (waiting for its commit group) to *committed*. Commits are
//! serialised: one group in flight at a time, of `commit_granularity`
//! fragments, or of every whole group written while the commit before was
//! in flight, and the rest at the end; so a job over F fragments makes
//! ceil(F / g) commits where commits keep up with writes, and fewer where
//! they do not, instead of piling up behind one another.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::batch::AutoBatch;
use crate::error::PlanError;
use crate::plan::{self, FragmentInput, FragmentStart, Task, TaskId};
use crate::record::{JobFailure, MAX_SUMMARY_ERRORS, Progress, RowError, Summary};

/// Identifies one applier actor of the job.
pub type ApplierId = usize;

/// Rows a job must have computed or skipped before its skipped fraction is
/// judged (else at its last task), so that one bad row among the first
/// few does not fail a job that would end well within its budget.
pub const MIN_ROWS_FOR_FRACTION: u64 = 1000;

/// How many rows the `skip` policy may leave null before the job fails.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SkipBudget {
    /// At most this many rows.
    pub max_rows: Option<u64>,
    /// At most this fraction (0 to 1) of the rows computed or skipped,
    /// judged from [`MIN_ROWS_FOR_FRACTION`] rows on and at the job's last
    /// task.
    pub max_fraction: Option<f64>,
}

impl SkipBudget {
    /// Why `skipped` rows of `processed` spend the budget, if they do;
    /// `last` when no task is left to run.
    fn exceeded(&self, skipped: u64, processed: u64, last: bool) -> Option<String> {
        if let Some(max) = self.max_rows
            && skipped > max
        {
            return Some(format!("{skipped} rows skipped, more than max_skipped_rows = {max} allows"));
        }
        let max = self.max_fraction?;
        let judged = last || processed >= MIN_ROWS_FOR_FRACTION;
        (judged && processed > 0 && skipped as f64 > max * processed as f64).then(|| {
            let percent = 100.0 * skipped as f64 / processed as f64;
            format!("{skipped} of {processed} rows skipped ({percent:.2}%), more than max_skipped_fraction = {max} allows")
        })
    }
}

/// The knobs of a job that the scheduler acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// Physical rows per task (and per checkpoint); with `auto_batch`, the
    /// most.
    pub batch_size: u64,
    /// Sizes each applier's tasks from the UDF time of its last one
    /// ([`crate::batch`]) instead of `batch_size` for all.
    pub auto_batch: Option<AutoBatch>,
    /// Fragments interleaved in the task order; see [`plan::shuffle`].
    pub task_shuffle_diversity: usize,
    /// Fragments per commit (whole multiples of it when commits fall
    /// behind writes); `None` commits everything once at the end.
    pub commit_granularity: Option<usize>,
    /// How often a [`Command::Progress`] is emitted.
    pub refresh_status: Duration,
    /// Tries of a task whose failure is retryable (its applier was lost, I/O failed).
    pub max_task_attempts: u32,
    /// Fragment writes in flight at once. A writer holds its fragment's new
    /// column until its pages are full, so this bounds a job's memory
    /// whatever the number of fragments.
    pub max_writers: usize,
    /// Rows the `skip` policy may leave null; past it the job fails.
    pub skip_budget: SkipBudget,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            batch_size: 10_240,
            auto_batch: None,
            task_shuffle_diversity: 8,
            commit_granularity: None,
            refresh_status: Duration::from_secs(2),
            max_task_attempts: 3,
            max_writers: 4,
            skip_budget: SkipBudget::default(),
        }
    }
}

/// What an applier reports for a finished task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// Rows the UDF computed.
    pub rows_computed: u64,
    /// Rows left null by the `skip` policy.
    pub rows_skipped: u64,
    /// The errors behind the skipped rows.
    pub errors: Vec<RowError>,
    /// How long the UDF took on the task's rows; `None` when it was not
    /// called (no row selected).
    pub udf_time: Option<Duration>,
}

/// Something that happened, reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An applier can take `slots` tasks at once.
    ApplierReady { applier: ApplierId, slots: usize },
    /// An applier is gone; its running tasks go back to the queue.
    ApplierLost { applier: ApplierId },
    /// A task's batch is computed and checkpointed. Accepted from any
    /// attempt: checkpoints are content-addressed, so a late result of an
    /// attempt already given up on is as good as any.
    TaskSucceeded { task: TaskId, stats: TaskStats },
    /// Attempt `attempt` of a task failed. A retryable failure runs it again,
    /// up to [`JobConfig::max_task_attempts`]; any other fails the job. A
    /// failure of an attempt that is no longer the running one is ignored.
    TaskFailed { task: TaskId, attempt: u32, message: String, retryable: bool },
    /// A fragment's data file is written and checkpointed.
    FragmentWritten { fragment_id: u64 },
    /// A fragment's writer failed. A retryable failure (its worker was lost)
    /// writes the fragment again, up to [`JobConfig::max_task_attempts`];
    /// any other fails the job.
    FragmentFailed { fragment_id: u64, message: String, retryable: bool },
    /// A commit group is settled: `fragments` are in the table at
    /// `version`; `left_out` were removed or rewritten by a concurrent
    /// commit, and the job plans their rows again after this pass.
    Committed { fragments: Vec<u64>, left_out: Vec<u64>, version: Option<u64> },
    /// A commit failed after the committer's own retries; the job fails.
    CommitFailed { message: String },
    /// The owner stopped the job.
    Cancel,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run `task` on `applier`; this is the task's attempt number `attempt`.
    Assign { applier: ApplierId, task: Task, attempt: u32 },
    /// Every batch of the fragment is checkpointed: write its data file.
    WriteFragment { fragment_id: u64 },
    /// Commit these written fragments as one `DataReplacement`.
    Commit { fragments: Vec<u64> },
    /// Report progress.
    Progress(Progress),
    /// The job is done; nothing more will come.
    Finished(Summary),
    /// The job failed; nothing more will come.
    Failed(JobFailure),
    /// The job was cancelled; nothing more will come.
    Cancelled(Summary),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FragmentPhase {
    Computing,
    /// Computed, waiting for a free writer.
    ToWrite,
    Writing,
    Written,
    Committing,
    Committed,
}

#[derive(Debug)]
struct FragmentState {
    phase: FragmentPhase,
    tasks_left: usize,
    write_attempts: u32,
    /// Row ranges whose batches are checkpointed, in the order they were.
    batches: Vec<Range<u64>>,
}

#[derive(Debug)]
struct TaskState {
    task: Task,
    attempts: u32,
    running_on: Option<ApplierId>,
}

#[derive(Debug, Default)]
struct ApplierState {
    slots: usize,
    running: HashSet<TaskId>,
    /// Rows of its next task, under `auto_batch`.
    batch: u64,
}

/// The state of one job; see the [module docs](self).
#[derive(Debug)]
pub struct Scheduler {
    config: JobConfig,
    started: Instant,
    queue: VecDeque<TaskId>,
    tasks: HashMap<TaskId, TaskState>,
    /// The id the next task cut from another gets.
    next_task_id: u32,
    fragments: BTreeMap<u64, FragmentState>,
    appliers: BTreeMap<ApplierId, ApplierState>,
    /// Computed fragments waiting for a writer, in the order they finished.
    to_write: VecDeque<u64>,
    writes_in_flight: usize,
    ready_to_commit: Vec<u64>,
    commit_in_flight: bool,
    /// Fragments not written yet (computing, waiting for a writer, writing).
    unwritten: usize,
    /// Fragments not settled yet (not committed, nor left out of a commit).
    unsettled: usize,
    commands: VecDeque<Command>,
    next_progress: Instant,
    progress: Progress,
    summary: Summary,
    /// Rows computed and skipped in the checkpoints this job reuses.
    carried: (u64, u64),
    ended: bool,
}

impl Scheduler {
    /// Plans a job over `fragments` as found at `now`.
    pub fn new(now: Instant, config: JobConfig, fragments: Vec<FragmentInput>) -> Result<Self, PlanError> {
        if config.batch_size == 0 {
            return Err(PlanError::ZeroBatchSize);
        }
        if config.commit_granularity == Some(0) {
            return Err(PlanError::ZeroCommitGranularity);
        }
        if config.max_writers == 0 {
            return Err(PlanError::ZeroWriters);
        }
        let fragments: Vec<FragmentInput> =
            fragments.into_iter().filter(|f| f.physical_rows > 0).collect();
        let mut scheduler = Self {
            started: now,
            next_progress: now + config.refresh_status,
            queue: VecDeque::new(),
            tasks: HashMap::new(),
            next_task_id: 0,
            fragments: BTreeMap::new(),
            appliers: BTreeMap::new(),
            to_write: VecDeque::new(),
            writes_in_flight: 0,
            ready_to_commit: Vec::new(),
            commit_in_flight: false,
            unwritten: fragments.len(),
            unsettled: fragments.len(),
            commands: VecDeque::new(),
            progress: Progress { fragments_total: fragments.len() as u64, ..Progress::default() },
            summary: Summary::default(),
            carried: fragments
                .iter()
                .fold((0, 0), |(c, s), f| (c + f.checkpointed_counts.0, s + f.checkpointed_counts.1)),
            ended: false,
            config,
        };
        let mut to_run = Vec::new();
        let mut reused: HashMap<u64, Vec<Range<u64>>> = HashMap::new();
        let by_id: HashMap<u64, &FragmentInput> = fragments.iter().map(|f| (f.id, f)).collect();
        for task in plan::split(&fragments, scheduler.config.batch_size) {
            scheduler.next_task_id = scheduler.next_task_id.max(task.id.0.saturating_add(1));
            scheduler.progress.tasks_total += 1;
            scheduler.progress.rows_total += task.len();
            let Some(fragment) = by_id.get(&task.fragment_id) else {
                continue;
            };
            let done = fragment.start == FragmentStart::Written || fragment.checkpointed.contains(&task.rows);
            if done {
                scheduler.progress.tasks_done += 1;
                scheduler.progress.rows_done += task.len();
                scheduler.summary.rows_from_checkpoints += task.len();
                reused.entry(task.fragment_id).or_default().push(task.rows);
            } else {
                to_run.push(task);
            }
        }
        let mut tasks_of: HashMap<u64, usize> = HashMap::new();
        for task in &to_run {
            *tasks_of.entry(task.fragment_id).or_default() += 1;
        }
        for fragment in &fragments {
            let tasks_left = tasks_of.get(&fragment.id).copied().unwrap_or(0);
            let batches = reused.remove(&fragment.id).unwrap_or_default();
            let state = FragmentState { phase: FragmentPhase::Computing, tasks_left, write_attempts: 0, batches };
            scheduler.fragments.insert(fragment.id, state);
        }
        for task in plan::shuffle(to_run, scheduler.config.task_shuffle_diversity) {
            scheduler.queue.push_back(task.id);
            scheduler.tasks.insert(task.id, TaskState { task, attempts: 0, running_on: None });
        }
        // Every batch reused: their skipped rows are judged before anything
        // is written.
        if scheduler.tasks.is_empty() && scheduler.check_skip_budget(now) {
            return Ok(scheduler);
        }
        for fragment in &fragments {
            match fragment.start {
                FragmentStart::Written => scheduler.fragment_written(fragment.id),
                FragmentStart::Compute => scheduler.maybe_write(fragment.id),
            }
        }
        scheduler.maybe_commit();
        scheduler.maybe_finish(now);
        Ok(scheduler)
    }

    /// The next thing to do, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Self::handle_timeout`] wants to be called, unless the job ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.ended).then_some(self.next_progress)
    }

    /// Progress so far.
    pub fn progress(&self, now: Instant) -> Progress {
        Progress { elapsed: now.saturating_duration_since(self.started), ..self.progress.clone() }
    }

    /// The row ranges of a fragment's checkpointed batches, in row order:
    /// what its writer reads when [`Command::WriteFragment`] asks for it.
    pub fn fragment_batches(&self, fragment_id: u64) -> Vec<Range<u64>> {
        let mut batches = self.fragments.get(&fragment_id).map(|f| f.batches.clone()).unwrap_or_default();
        batches.sort_by_key(|rows| rows.start);
        batches
    }

    /// Whether a final command has been emitted.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Emits progress when its time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended || now < self.next_progress {
            return;
        }
        self.commands.push_back(Command::Progress(self.progress(now)));
        self.next_progress = now + self.config.refresh_status;
    }

    /// Takes in one event.
    pub fn handle(&mut self, now: Instant, event: Event) {
        if self.ended {
            return;
        }
        match event {
            Event::ApplierReady { applier, slots } => {
                let first = self.config.auto_batch.map_or(self.config.batch_size, |auto| auto.first());
                let state = self.appliers.entry(applier).or_insert_with(|| ApplierState { batch: first, ..ApplierState::default() });
                state.slots = slots;
            }
            Event::ApplierLost { applier } => self.applier_lost(now, applier),
            Event::TaskSucceeded { task, stats } => self.task_succeeded(now, task, stats),
            Event::TaskFailed { task, attempt, message, retryable } => {
                self.task_failed(now, task, attempt, message, retryable)
            }
            Event::FragmentWritten { fragment_id } => {
                self.progress.fragments_written += 1;
                self.fragment_written(fragment_id);
            }
            Event::FragmentFailed { fragment_id, message, retryable } => {
                self.fragment_failed(now, fragment_id, message, retryable)
            }
            Event::Committed { fragments, left_out, version } => self.committed(fragments, left_out, version),
            Event::CommitFailed { message } => {
                self.fail(now, JobFailure { message, fragment_id: None, rows: None })
            }
            Event::Cancel => {
                self.ended = true;
                self.summary.elapsed = now.saturating_duration_since(self.started);
                self.commands.push_back(Command::Cancelled(self.summary.clone()));
                return;
            }
        }
        self.assign();
        self.maybe_commit();
        self.maybe_finish(now);
    }

    fn applier_lost(&mut self, now: Instant, applier: ApplierId) {
        let Some(state) = self.appliers.remove(&applier) else { return };
        let mut lost: Vec<TaskId> = state.running.into_iter().collect();
        lost.sort();
        for id in lost.into_iter().rev() {
            self.retry(now, id, format!("applier {applier} was lost"));
        }
    }

    fn retry(&mut self, now: Instant, id: TaskId, message: String) {
        let Some(task) = self.tasks.get_mut(&id) else { return };
        task.running_on = None;
        if task.attempts >= self.config.max_task_attempts {
            let failure = JobFailure {
                message: format!("{message}; gave up after {} attempts", task.attempts),
                fragment_id: Some(task.task.fragment_id),
                rows: Some(task.task.rows.clone()),
            };
            self.fail(now, failure);
        } else {
            self.queue.push_front(id);
        }
    }

    fn task_succeeded(&mut self, now: Instant, id: TaskId, stats: TaskStats) {
        let Some(task) = self.tasks.remove(&id) else { return };
        if task.running_on.is_none() {
            // A late result of an attempt given up on; the task was queued again.
            self.queue.retain(|queued| *queued != id);
        }
        if let Some(applier) = task.running_on.and_then(|a| self.appliers.get_mut(&a)) {
            applier.running.remove(&id);
            if let Some(auto) = self.config.auto_batch {
                applier.batch = auto.next(applier.batch, task.task.len(), stats.udf_time);
            }
        }
        self.progress.tasks_done += 1;
        self.progress.rows_done += task.task.len();
        self.summary.rows_computed += stats.rows_computed;
        self.summary.rows_skipped += stats.rows_skipped;
        let room = MAX_SUMMARY_ERRORS.saturating_sub(self.summary.errors.len());
        self.summary.errors.extend(stats.errors.into_iter().take(room));
        let fragment_id = task.task.fragment_id;
        if let Some(fragment) = self.fragments.get_mut(&fragment_id) {
            fragment.tasks_left = fragment.tasks_left.saturating_sub(1);
            fragment.batches.push(task.task.rows);
        }
        if (stats.rows_skipped > 0 || self.tasks.is_empty()) && self.check_skip_budget(now) {
            return;
        }
        self.maybe_write(fragment_id);
    }

    /// Fails the job if its skipped rows, those of reused checkpoints
    /// included, spend its budget; says whether they did.
    fn check_skip_budget(&mut self, now: Instant) -> bool {
        let skipped = self.summary.rows_skipped + self.carried.1;
        let processed = self.summary.rows_computed + self.carried.0 + skipped;
        let Some(why) = self.config.skip_budget.exceeded(skipped, processed, self.tasks.is_empty()) else { return false };
        let message = format!(
            "the skip budget is spent: {why}; checkpoints are kept, and the recorded errors (`leman errors`) say which rows failed"
        );
        self.fail(now, JobFailure { message, fragment_id: None, rows: None });
        true
    }

    fn task_failed(&mut self, now: Instant, id: TaskId, attempt: u32, message: String, retryable: bool) {
        let Some(task) = self.tasks.get(&id) else { return };
        if task.running_on.is_none() || task.attempts != attempt {
            return;
        }
        if let Some(applier) = task.running_on.and_then(|a| self.appliers.get_mut(&a)) {
            applier.running.remove(&id);
        }
        if retryable {
            self.retry(now, id, message);
        } else {
            let failure = JobFailure {
                message,
                fragment_id: Some(task.task.fragment_id),
                rows: Some(task.task.rows.clone()),
            };
            self.fail(now, failure);
        }
    }

    fn fragment_failed(&mut self, now: Instant, fragment_id: u64, message: String, retryable: bool) {
        let Some(fragment) = self.fragments.get_mut(&fragment_id) else { return };
        if fragment.phase != FragmentPhase::Writing {
            return;
        }
        if retryable && fragment.write_attempts < self.config.max_task_attempts {
            // Its writer slot stays taken by the next try.
            self.commands.push_back(Command::WriteFragment { fragment_id });
            fragment.write_attempts += 1;
        } else {
            self.writes_in_flight = self.writes_in_flight.saturating_sub(1);
            self.fail(now, JobFailure { message, fragment_id: Some(fragment_id), rows: None });
        }
    }

    /// Queues a fragment whose tasks are all done for writing.
    fn maybe_write(&mut self, fragment_id: u64) {
        if let Some(fragment) = self.fragments.get_mut(&fragment_id)
            && fragment.phase == FragmentPhase::Computing
            && fragment.tasks_left == 0
        {
            fragment.phase = FragmentPhase::ToWrite;
            self.to_write.push_back(fragment_id);
        }
        self.start_writes();
    }

    /// Starts queued writes while fewer than `max_writers` are in flight.
    fn start_writes(&mut self) {
        while self.writes_in_flight < self.config.max_writers
            && let Some(fragment_id) = self.to_write.pop_front()
        {
            let Some(fragment) = self.fragments.get_mut(&fragment_id) else { continue };
            fragment.phase = FragmentPhase::Writing;
            fragment.write_attempts = 1;
            self.writes_in_flight += 1;
            self.commands.push_back(Command::WriteFragment { fragment_id });
        }
    }

    fn fragment_written(&mut self, fragment_id: u64) {
        let Some(fragment) = self.fragments.get_mut(&fragment_id) else { return };
        match fragment.phase {
            FragmentPhase::Writing => {
                self.writes_in_flight = self.writes_in_flight.saturating_sub(1);
                self.start_writes();
            }
            // Written before this job (its fragment checkpoint was found).
            FragmentPhase::Computing => {}
            _ => return,
        }
        if let Some(fragment) = self.fragments.get_mut(&fragment_id) {
            fragment.phase = FragmentPhase::Written;
            self.unwritten = self.unwritten.saturating_sub(1);
            self.ready_to_commit.push(fragment_id);
        }
    }

    fn committed(&mut self, fragments: Vec<u64>, left_out: Vec<u64>, version: Option<u64>) {
        self.commit_in_flight = false;
        if version.is_some() {
            self.progress.commits += 1;
            self.summary.commits += 1;
            self.summary.version = version;
        }
        for id in fragments {
            if let Some(fragment) = self.fragments.get_mut(&id)
                && fragment.phase != FragmentPhase::Committed
            {
                fragment.phase = FragmentPhase::Committed;
                self.unsettled = self.unsettled.saturating_sub(1);
                self.progress.fragments_committed += 1;
                self.summary.fragments_committed += 1;
            }
        }
        // Settled for this pass: the next one plans what is left of them.
        for id in left_out {
            if let Some(fragment) = self.fragments.get_mut(&id)
                && fragment.phase != FragmentPhase::Committed
            {
                fragment.phase = FragmentPhase::Committed;
                self.unsettled = self.unsettled.saturating_sub(1);
                self.summary.fragments_replanned += 1;
            }
        }
    }

    fn assign(&mut self) {
        while let Some(&id) = self.queue.front() {
            let Some((&applier, state)) = self
                .appliers
                .iter()
                .filter(|(_, a)| a.running.len() < a.slots)
                .max_by_key(|(_, a)| a.slots - a.running.len())
            else {
                return;
            };
            let batch = state.batch;
            self.queue.pop_front();
            let id = match self.config.auto_batch {
                Some(_) => self.cut(id, batch),
                None => id,
            };
            let Some(task) = self.tasks.get_mut(&id) else { continue };
            if let Some(state) = self.appliers.get_mut(&applier) {
                state.running.insert(id);
            }
            task.attempts += 1;
            task.running_on = Some(applier);
            self.commands.push_back(Command::Assign { applier, task: task.task.clone(), attempt: task.attempts });
        }
    }

    /// Cuts the first `rows` rows off a queued task longer than that, and
    /// queues the rest behind the next tasks of other fragments (so the
    /// order still alternates fragments). Both pieces get new ids, so a late
    /// result of an attempt at the whole task (its checkpoint keyed by the
    /// whole range) is not taken for either. Returns the id to run.
    fn cut(&mut self, id: TaskId, rows: u64) -> TaskId {
        let Some(state) = self.tasks.get(&id) else { return id };
        if state.task.len() <= rows {
            return id;
        }
        let Some(whole) = self.tasks.remove(&id) else { return id };
        let split = whole.task.rows.start + rows;
        let head = TaskId(self.next_task_id);
        let rest = TaskId(self.next_task_id.saturating_add(1));
        self.next_task_id = self.next_task_id.saturating_add(2);
        let piece = |id: TaskId, rows: Range<u64>| Task { id, fragment_id: whole.task.fragment_id, rows };
        self.tasks.insert(head, TaskState { task: piece(head, whole.task.rows.start..split), ..whole });
        self.tasks.insert(rest, TaskState { task: piece(rest, split..whole.task.rows.end), attempts: 0, running_on: None });
        if let Some(fragment) = self.fragments.get_mut(&whole.task.fragment_id) {
            fragment.tasks_left += 1;
        }
        self.progress.tasks_total += 1;
        let behind = self.config.task_shuffle_diversity.saturating_sub(1).min(self.queue.len());
        self.queue.insert(behind, rest);
        head
    }

    fn maybe_commit(&mut self) {
        if self.commit_in_flight || self.ready_to_commit.is_empty() || self.ended {
            return;
        }
        let all_written = self.unwritten == 0;
        // Every whole group waiting goes in one commit: where commits take
        // longer than writes, groups would otherwise pile up behind the one
        // commit in flight and bound the job.
        let ready = self.ready_to_commit.len();
        let take = match self.config.commit_granularity {
            Some(g) if ready >= g => ready - ready % g,
            _ if all_written => ready,
            _ => return,
        };
        let group: Vec<u64> = self.ready_to_commit.drain(..take).collect();
        for id in &group {
            if let Some(fragment) = self.fragments.get_mut(id) {
                fragment.phase = FragmentPhase::Committing;
            }
        }
        self.commit_in_flight = true;
        self.commands.push_back(Command::Commit { fragments: group });
    }

    fn maybe_finish(&mut self, now: Instant) {
        if self.ended || self.unsettled > 0 {
            return;
        }
        self.ended = true;
        self.summary.elapsed = now.saturating_duration_since(self.started);
        self.commands.push_back(Command::Progress(self.progress(now)));
        self.commands.push_back(Command::Finished(self.summary.clone()));
    }

    fn fail(&mut self, now: Instant, failure: JobFailure) {
        self.ended = true;
        self.summary.elapsed = now.saturating_duration_since(self.started);
        self.commands.push_back(Command::Failed(failure));
    }
}

#[cfg(test)]
mod tests;

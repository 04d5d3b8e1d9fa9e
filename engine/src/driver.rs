//! The pump: carries out the scheduler's commands and feeds back events.
//!
//! Each command becomes a spawned future that talks to the job's
//! [`JobExecutor`] (an applier for a task, a writer for a fragment) or to
//! the committer, and sends one [`Update`] back on a channel. The loop waits
//! on that channel, the scheduler's progress deadline, the cancel signal
//! and the executor's own events (appliers gone with their host, room for
//! appliers that wait), nothing else. An applier that is gone is started
//! again, wherever the executor finds room. No decision about the job is
//! made here: the scheduler makes them.
//!
//! A job makes one pass over its read version. When a commit had to
//! re-plan because a concurrent commit rewrote or removed some of its
//! fragments (a compaction, an update that moved rows), the driver makes
//! another pass on the table's newest version, which plans what is left
//! (reusing every checkpoint that still holds), up to [`MAX_PASSES`].
//! Before each commit the column's lease is checked: a job whose lease
//! was taken over commits nothing more.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lance::Dataset;
use lance::dataset::transaction::DataReplacementGroup;
use lance_table::format::DataFile;
use leman_applier::{TaskError, TaskOutput, TaskSpec, Udf};
use leman_checkpoint::CheckpointKey;
use leman_scheduler::record::RowError;
use leman_scheduler::{
    Command, Event, FragmentStart, JobConfig, JobCost, JobFailure, JobRecord, JobStatus, Progress, Scheduler, Summary, Task,
    TaskStats,
};
use leman_writer::FragmentWrite;
use leman_writer::commit::{Committed, commit_replacements};
use tokio::sync::{mpsc, watch};

use crate::backfill::{Pass, PassPlanner};
use crate::cancel::CancelReason;
use crate::clock::unix_millis;
use crate::cost::{self, JobCosts};
use crate::error::{Error, Result};
use crate::executor::{ApplierHandle, ExecutorEvent, JobExecutor, JobSetup, Unanswered, WriteFailure};
use crate::job::JobEvent;
use crate::lease::JobFence;
use crate::location::TableLocation;
use crate::options::BackfillOptions;
use crate::plan::Plan;
use crate::row_errors::{RowErrorRecord, RowOutcome};
use crate::stage::{StagedFragment, StagedJob};
use crate::stores::TableStores;

/// Fragment writes a job may have in flight however few its appliers: a
/// small job still writes its last fragments side by side.
const MIN_WRITERS: usize = 8;
/// How long a failed or cancelled job waits for work already started.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Passes a job makes at most (the table may keep being rewritten under it).
const MAX_PASSES: u32 = 4;

/// What a spawned future reports.
#[derive(Debug)]
enum Update {
    Event(Event),
    Written { fragment_id: u64, data_file: DataFile },
    /// A commit settled; `replanned` if rows are left for another pass;
    /// `table` as the commit left it, for the next commit to build on.
    Committed { event: Event, replanned: bool, table: Arc<Dataset> },
    /// Incarnation `incarnation` of applier `index` is not running.
    ApplierGone { index: usize, incarnation: u64, reason: String },
}

/// How a driver talks to its [`Job`](crate::Job) handle.
pub(crate) struct JobChannels {
    /// Events for the handle.
    pub user: mpsc::UnboundedSender<JobEvent>,
    /// Set, with its reason, when the job is cancelled.
    pub cancelled: watch::Receiver<Option<CancelReason>>,
    /// The leases of the job's columns, checked before each commit.
    pub fence: JobFence,
}

/// A started applier: which start of its index it is, and its handle.
#[derive(Debug, Clone)]
struct Running {
    incarnation: u64,
    handle: Arc<dyn ApplierHandle>,
}

pub(crate) struct Driver {
    setup: Arc<JobSetup>,
    stores: TableStores,
    plan: Plan,
    scheduler: Scheduler,
    config: JobConfig,
    planner: PassPlanner,
    /// Passes made so far, the one running included.
    passes: u32,
    /// Whether a commit of this pass re-planned (another pass is due).
    replanned: bool,
    /// The table as the pass's last commit left it (at first, the pass's
    /// read version): the next commit is made on top of it.
    commit_base: Arc<Dataset>,
    fence: JobFence,
    threads: usize,
    executor: Box<dyn JobExecutor>,
    /// Whether any fragment needs computing (else no applier is started).
    needs_appliers: bool,
    /// Applier `i` of the job, `None` while it waits for a place.
    appliers: Vec<Option<Running>>,
    /// Starts of appliers so far.
    incarnations: u64,
    written: HashMap<u64, DataFile>,
    updates: mpsc::UnboundedSender<Update>,
    /// Spawned futures that have not reported yet.
    in_flight: usize,
    updates_in: mpsc::UnboundedReceiver<Update>,
    user: mpsc::UnboundedSender<JobEvent>,
    cancelled: watch::Receiver<Option<CancelReason>>,
    record: JobRecord,
    costs: Arc<JobCosts>,
    /// What a staged job wrote in place of commits; `None` for a job that
    /// commits.
    staged: Option<Vec<StagedFragment>>,
}

impl Driver {
    pub fn new(
        pass: Pass,
        planner: PassPlanner,
        options: &BackfillOptions,
        channels: JobChannels,
        costs: Arc<JobCosts>,
    ) -> Result<Self> {
        let JobChannels { user, cancelled, fence } = channels;
        let config = JobConfig {
            batch_size: options.planned_batch_rows(),
            auto_batch: options.auto_batch(),
            task_shuffle_diversity: options.task_shuffle_diversity,
            commit_granularity: options.commit_granularity,
            refresh_status: options.refresh_status(),
            // Enough fragments written at once to keep pace with compute (at
            // least one per applier), few enough that memory does not grow
            // with the number of fragments.
            max_writers: options.concurrency.max(MIN_WRITERS),
            skip_budget: options.skip_budget(),
            ..JobConfig::default()
        };
        let Pass { plan, setup, executor } = pass;
        let scheduler = new_scheduler(&config, &plan)?;
        let spec = &setup.spec;
        let record = JobRecord {
            progress: scheduler.progress(Instant::now()),
            cost: costs.snapshot(),
            ..new_record(
                &spec.job_id,
                &spec.columns_label(),
                &setup.parts.iter().map(|part| &part.udf).collect::<Vec<_>>(),
                &spec.filters_label(),
                spec.read_version,
                &spec.table,
                options,
                JobStatus::Running,
            )
        };
        let (updates, updates_in) = mpsc::unbounded_channel();
        let mut driver = Self {
            stores: planner.stores().clone(),
            plan: Plan::default(),
            scheduler,
            config,
            planner,
            passes: 1,
            replanned: false,
            commit_base: setup.dataset.clone(),
            fence,
            threads: options.intra_applier_concurrency,
            executor,
            needs_appliers: false,
            appliers: Vec::new(),
            incarnations: 0,
            written: HashMap::new(),
            updates,
            in_flight: 0,
            updates_in,
            user,
            cancelled,
            record,
            costs,
            staged: options.stage.then(Vec::new),
            setup,
        };
        driver.use_plan(plan, options.concurrency);
        Ok(driver)
    }

    /// Takes `plan` as the pass's own: what it has written, whether it
    /// needs appliers, and room for `concurrency` of them.
    fn use_plan(&mut self, plan: Plan, concurrency: usize) {
        self.written = plan
            .fragments
            .iter()
            .filter_map(|(id, fragment)| fragment.written.clone().map(|file| (*id, file)))
            .collect();
        self.needs_appliers = plan.inputs.iter().any(|f| f.start == FragmentStart::Compute);
        self.appliers = vec![None; concurrency];
        self.replanned = false;
        self.plan = plan;
    }

    /// Starts pass `passes + 1` of the job on the table's newest version.
    async fn next_pass(&mut self) -> Result<()> {
        let Pass { plan, setup, executor } = self.planner.next().await?;
        tracing::info!(job = %self.id(), version = setup.spec.read_version, "a commit re-planned: another pass on the newest version");
        self.scheduler = new_scheduler(&self.config, &plan)?;
        self.commit_base = setup.dataset.clone();
        self.setup = setup;
        self.executor = executor;
        self.passes += 1;
        let concurrency = self.appliers.len();
        self.use_plan(plan, concurrency);
        Ok(())
    }

    fn id(&self) -> &str {
        &self.setup.spec.job_id
    }

    /// Runs the job to its end.
    pub async fn run(mut self) -> Result<Summary> {
        self.stores.jobs.put(&self.record).await?;
        let mut done = Summary::default();
        let outcome = loop {
            match self.run_pass().await {
                Ok(summary) => {
                    done.absorb(summary);
                    if !self.replanned || self.passes == MAX_PASSES || !self.planner.may_pass_again() {
                        if self.replanned {
                            tracing::warn!(job = %self.id(), passes = self.passes, "the table is still being rewritten; rows it moved stay to the next run");
                        }
                        break Ok(done);
                    }
                    if let Err(error) = self.next_pass().await {
                        break Err(error);
                    }
                }
                Err(error) => break Err(error),
            }
        };
        self.finish(outcome).await
    }

    /// Runs the current pass to its end.
    async fn run_pass(&mut self) -> Result<Summary> {
        let progress = self.scheduler.progress(Instant::now());
        self.tell(JobEvent::Planned {
            fragments: progress.fragments_total,
            tasks: progress.tasks_total,
            rows: progress.rows_total,
        });
        let outcome = match self.place_appliers().await {
            Ok(()) => self.pump().await,
            Err(error) => Err(error),
        };
        if outcome.is_err() {
            self.drain().await;
        }
        self.stop_appliers().await;
        outcome
    }

    /// Starts every applier still without a place, taking room in index
    /// order and starting them all at once: on a cluster each start opens
    /// the table on its worker, and the last applier should not wait for
    /// the others' opens. Those without room wait for an [`ExecutorEvent`].
    /// Appliers that started are kept even when another's start fails the
    /// job, so that they are stopped with it.
    async fn place_appliers(&mut self) -> Result<()> {
        if !self.needs_appliers || self.scheduler.is_ended() {
            return Ok(());
        }
        let mut placing = Vec::new();
        let mut starts = Vec::new();
        for index in (0..self.appliers.len()).filter(|&index| self.appliers[index].is_none()) {
            self.incarnations += 1;
            placing.push((index, self.incarnations));
            starts.push(self.executor.start_applier(index, self.incarnations));
        }
        let mut failed = None;
        let mut without_room = 0;
        for ((index, incarnation), started) in placing.into_iter().zip(futures::future::join_all(starts).await) {
            match started {
                Ok(Some(handle)) => {
                    self.appliers[index] = Some(Running { incarnation, handle });
                    // Twice the threads in tasks and two more, so that
                    // batches are read and checkpointed while others compute.
                    let slots = self.threads * 2 + 2;
                    self.scheduler.handle(Instant::now(), Event::ApplierReady { applier: index, slots });
                }
                Ok(None) => without_room += 1,
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        if without_room > 0 {
            tracing::info!(job = %self.id(), appliers = without_room, "no room for these appliers yet; they wait for capacity");
        }
        failed.map_or(Ok(()), Err)
    }

    /// Incarnation `incarnation` of applier `index` is not running: its
    /// tasks go back to the queue. (News of an older incarnation is stale.)
    fn applier_gone(&mut self, index: usize, incarnation: u64, reason: &str) {
        if self.appliers.get(index).cloned().flatten().is_none_or(|a| a.incarnation != incarnation) {
            return;
        }
        tracing::warn!(job = %self.id(), index, reason, "applier gone; its tasks go to others and it starts again");
        self.appliers[index] = None;
        self.executor.applier_gone(index);
        self.scheduler.handle(Instant::now(), Event::ApplierLost { applier: index });
    }

    /// Acts on what the executor reports: gone appliers are started again,
    /// and new room is used.
    async fn executor_events(&mut self, events: Vec<ExecutorEvent>) -> Result<()> {
        for event in events {
            match event {
                ExecutorEvent::ApplierGone { index, incarnation, reason } => self.applier_gone(index, incarnation, &reason),
                ExecutorEvent::Room => {}
            }
        }
        self.place_appliers().await
    }

    async fn stop_appliers(&mut self) {
        for applier in self.appliers.iter().flatten() {
            applier.handle.stop().await;
        }
        let elsewhere = self.executor.stop().await;
        self.costs.add_store(elsewhere);
    }

    async fn pump(&mut self) -> Result<Summary> {
        loop {
            while let Some(command) = self.scheduler.poll_command() {
                match command {
                    Command::Assign { applier, task, attempt } => self.assign(applier, task, attempt),
                    Command::WriteFragment { fragment_id } => self.write(fragment_id),
                    Command::Commit { fragments } => self.commit(fragments),
                    Command::Progress(progress) => {
                        self.record.progress = progress.clone();
                        self.record.cost = self.costs.snapshot();
                        self.tell(JobEvent::Progress(progress));
                        if let Err(error) = self.stores.jobs.put(&self.record).await {
                            tracing::warn!(%error, "could not update the job record");
                        }
                    }
                    Command::Finished(summary) => return Ok(summary),
                    Command::Failed(failure) => {
                        return Err(Error::JobFailed { job_id: self.id().to_string(), failure });
                    }
                    Command::Cancelled(_) => {
                        let reason = self.cancelled.borrow().clone().unwrap_or(CancelReason::Asked);
                        return Err(Error::Cancelled { job_id: self.id().to_string(), reason });
                    }
                }
            }
            // A cancel is taken before any further result, so that no task
            // starts after it (select! alone may pick results first).
            if self.cancelled.has_changed().unwrap_or(false) {
                self.take_cancel();
                continue;
            }
            let deadline = self.scheduler.poll_timeout().unwrap_or_else(Instant::now);
            tokio::select! {
                Some(update) = self.updates_in.recv() => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    let event = match update {
                        Update::Event(event) => event,
                        Update::Written { fragment_id, data_file } => {
                            self.written.insert(fragment_id, data_file);
                            Event::FragmentWritten { fragment_id }
                        }
                        Update::Committed { event, replanned, table } => {
                            self.replanned |= replanned;
                            self.commit_base = table;
                            event
                        }
                        Update::ApplierGone { index, incarnation, reason } => {
                            self.applier_gone(index, incarnation, &reason);
                            self.place_appliers().await?;
                            continue;
                        }
                    };
                    if let Event::Committed { fragments, version: Some(version), .. } = &event {
                        self.tell(JobEvent::Committed { fragments: fragments.clone(), version: *version });
                    }
                    self.scheduler.handle(Instant::now(), event);
                }
                () = tokio::time::sleep_until(deadline.into()) => self.scheduler.handle_timeout(Instant::now()),
                events = self.executor.next_events() => self.executor_events(events).await?,
                Ok(()) = self.cancelled.changed() => self.take_cancel(),
            }
        }
    }

    fn take_cancel(&mut self) {
        if self.cancelled.borrow_and_update().is_some() {
            self.scheduler.handle(Instant::now(), Event::Cancel);
        }
    }

    /// Lets work already started finish, so that its checkpoints are kept
    /// and nothing of the job runs after `Job::wait` returns.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        while self.in_flight > 0 {
            match tokio::time::timeout_at(deadline, self.updates_in.recv()).await {
                Ok(Some(_)) => self.in_flight -= 1,
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(job = %self.id(), in_flight = self.in_flight, "work still running after the drain limit");
                    break;
                }
            }
        }
    }

    fn assign(&mut self, applier: usize, task: Task, attempt: u32) {
        let Some(Running { incarnation, handle }) = self.appliers.get(applier).cloned().flatten() else {
            return self.report(Event::ApplierLost { applier });
        };
        let Some((key, all_rows)) =
            self.plan.fragments.get(&task.fragment_id).map(|f| (f.batch_keys.key(task.rows.clone()), f.all_rows.clone()))
        else {
            return self.report(Event::TaskFailed {
                task: task.id,
                attempt,
                message: format!("internal: fragment {} is not in the plan", task.fragment_id),
                retryable: false,
            });
        };
        let run = handle.run(TaskSpec { fragment_id: task.fragment_id, rows: task.rows.clone(), key, all_rows });
        self.in_flight += 1;
        let updates = self.updates.clone();
        let udf = self.setup.udf_names();
        let recorder = self.error_recorder(&task);
        let costs = self.costs.clone();
        let began = Instant::now();
        tokio::spawn(async move {
            let event = match run.await {
                Ok(Ok(output)) => {
                    costs.task(began.elapsed(), &output);
                    recorder.skipped(&output).await;
                    Event::TaskSucceeded { task: task.id, stats: stats(output) }
                }
                Ok(Err(error)) => {
                    recorder.failed(&error).await;
                    Event::TaskFailed { task: task.id, attempt, retryable: error.is_retryable(), message: task_failure(&udf, error) }
                }
                Err(Unanswered::Gone(reason)) => {
                    let _ = updates.send(Update::ApplierGone { index: applier, incarnation, reason });
                    return;
                }
                // Whether the host lives is for the executor to find out;
                // this try is over.
                Err(Unanswered::Unreachable(message)) => Event::TaskFailed { task: task.id, attempt, message, retryable: true },
            };
            let _ = updates.send(Update::Event(event));
        });
    }

    /// Records the rows a task's UDF fails on.
    fn error_recorder(&self, task: &Task) -> ErrorRecorder {
        let spec = &self.setup.spec;
        ErrorRecorder {
            template: RowErrorRecord {
                job_id: spec.job_id.clone(),
                column: spec.columns_label(),
                fragment_id: task.fragment_id,
                row_address: None,
                task_rows: task.rows.clone(),
                udf_name: self.setup.udf_names(),
                udf_version: spec.parts.iter().map(|part| part.udf.version.as_str()).collect::<Vec<_>>().join(","),
                outcome: RowOutcome::Skipped,
                attempts: 0,
                message: String::new(),
                at_ms: 0,
            },
            stores: self.stores.clone(),
        }
    }

    fn write(&mut self, fragment_id: u64) {
        let Some(fragment) = self.plan.fragments.get_mut(&fragment_id) else {
            let message = "internal: fragment is not in the plan".to_string();
            return self.report(Event::FragmentFailed { fragment_id, message, retryable: false });
        };
        // The batches as the tasks that ran cut them.
        fragment.batches = self
            .scheduler
            .fragment_batches(fragment_id)
            .into_iter()
            .map(|rows| (rows.clone(), fragment.batch_keys.key(rows)))
            .collect();
        let write = FragmentWrite {
            fragment_id,
            batches: fragment.batches.clone(),
            fragment_key: fragment.fragment_key.clone(),
            base_output_file: fragment.base_output_file.clone(),
            origin: fragment.origin.clone(),
            fill_tags: fragment.fill_tags.clone(),
        };
        // Spawned on its own, so that a write that panics is a failed try.
        let written = tokio::spawn(self.executor.write_fragment(write));
        self.in_flight += 1;
        let updates = self.updates.clone();
        let costs = self.costs.clone();
        let fence = self.fence.clone();
        let began = Instant::now();
        tokio::spawn(async move {
            let written = written.await;
            costs.write(began.elapsed());
            let update = match written {
                Ok(Ok(data_file)) => Update::Written { fragment_id, data_file },
                // A job whose column was taken over may find the batches it
                // wrote used and removed by the job that took it: that, not
                // the missing batch, is why it fails.
                Ok(Err(WriteFailure { message, retryable })) => match fence.check().await {
                    Err(lost) => Update::Event(Event::FragmentFailed { fragment_id, message: lost.to_string(), retryable: false }),
                    Ok(()) => Update::Event(Event::FragmentFailed { fragment_id, message, retryable }),
                },
                Err(join) => Update::Event(Event::FragmentFailed { fragment_id, message: join.to_string(), retryable: true }),
            };
            let _ = updates.send(update);
        });
    }

    fn commit(&mut self, fragments: Vec<u64>) {
        let groups: Option<Vec<DataReplacementGroup>> = fragments
            .iter()
            .map(|id| self.written.get(id).map(|file| DataReplacementGroup(*id, file.clone())))
            .collect();
        let Some(groups) = groups else {
            let message = format!("internal: no data file for some of fragments {fragments:?}");
            return self.report(Event::CommitFailed { message });
        };
        let batches = self.stored_batches_of(&fragments);
        let checkpoints = self.stores.checkpoints.clone();
        if let Some(staged) = &mut self.staged {
            for DataReplacementGroup(fragment_id, data_file) in groups {
                let Some(fragment) = self.plan.fragments.get(&fragment_id) else { continue };
                staged.push(StagedFragment { fragment_id, data_file, fragment_key: fragment.fragment_key.clone() });
            }
            tokio::spawn(async move {
                if let Err(error) = checkpoints.delete_batches(&batches).await {
                    tracing::warn!(%error, "could not delete staged batch checkpoints; `leman cleanup` removes them");
                }
            });
            return self.report(Event::Committed { fragments, left_out: Vec::new(), version: None });
        }
        let read = self.setup.dataset.clone();
        let base = self.commit_base.clone();
        let column = self.setup.spec.column().to_string();
        let fence = self.fence.clone();
        self.in_flight += 1;
        let updates = self.updates.clone();
        let rows: u64 = self.plan.inputs.iter().filter(|f| fragments.contains(&f.id)).map(|f| f.physical_rows).sum();
        let costs = self.costs.clone();
        let began = Instant::now();
        tokio::spawn(async move {
            let update = match commit_checked(&fence, read, base, &column, groups).await {
                Ok(committed) => {
                    costs.commit(began.elapsed(), rows);
                    if let Err(error) = checkpoints.delete_batches(&batches).await {
                        tracing::warn!(%error, ?fragments, "could not delete committed batch checkpoints; `leman cleanup` removes them");
                    }
                    // Another pass is due for rows no commit of this one
                    // can reach: those of fragments left out or moved.
                    let replanned = !committed.left_out.is_empty() || committed.rows_moved;
                    let version = committed.version();
                    let Committed { fragments, left_out, dataset, .. } = committed;
                    let event = Event::Committed { fragments, left_out, version };
                    Update::Committed { event, replanned, table: Arc::new(dataset) }
                }
                Err(error) => Update::Event(Event::CommitFailed { message: format!("committing fragments {fragments:?}: {error}") }),
            };
            let _ = updates.send(update);
        });
    }

    /// The batch checkpoints of `fragments`, about to be committed, that
    /// may be in the store: once committed, they serve no plan (their keys
    /// name the column's old data file), and are deleted. Only the small
    /// fragment records, which let a re-run skip the fragments, stay (a
    /// staged fragment's file holds the values too; its record finds it).
    /// Batches the executor never stored are left out, unless an object of
    /// their key was there when the pass planned (one found torn, and
    /// recomputed).
    fn stored_batches_of(&mut self, fragments: &[u64]) -> Vec<CheckpointKey> {
        let keys: Vec<CheckpointKey> = fragments
            .iter()
            .filter_map(|id| self.plan.fragments.get(id))
            .flat_map(|fragment| fragment.batches.iter().map(|(_, key)| key.clone()))
            .collect();
        let maybe_stored: HashSet<CheckpointKey> = self.executor.maybe_stored(keys.clone()).into_iter().collect();
        keys.into_iter().filter(|key| maybe_stored.contains(key) || self.plan.stored_before.contains(key)).collect()
    }

    /// Reports an event now, as a spawned future would.
    fn report(&mut self, event: Event) {
        self.in_flight += 1;
        let _ = self.updates.send(Update::Event(event));
    }

    fn tell(&self, event: JobEvent) {
        // The job goes on whether or not anyone listens.
        let _ = self.user.send(event);
    }

    async fn finish(mut self, outcome: Result<Summary>) -> Result<Summary> {
        let outcome = match (outcome, self.staged.take()) {
            (Ok(summary), Some(fragments)) => stage(&self.stores.clone(), &self.setup.clone(), summary, fragments).await,
            (outcome, _) => outcome,
        };
        self.record.finished_at_ms = Some(unix_millis());
        self.record.progress = self.scheduler.progress(Instant::now());
        self.record.cost = self.costs.snapshot();
        match &outcome {
            Ok(summary) => {
                self.record.status = if summary.fragments_staged > 0 { JobStatus::Staged } else { JobStatus::Succeeded };
                self.record.summary = Some(summary.clone());
                self.tell(JobEvent::Finished(summary.clone()));
            }
            Err(Error::JobFailed { failure, .. }) => {
                self.record.status = JobStatus::Failed;
                self.record.error = Some(failure.clone());
                self.tell(JobEvent::Failed(failure.clone()));
            }
            Err(Error::Cancelled { reason, .. }) => {
                self.record.status = JobStatus::Cancelled;
                self.record.error = Some(JobFailure { message: reason.to_string(), fragment_id: None, rows: None });
            }
            Err(other) => {
                let failure = JobFailure { message: other.to_string(), fragment_id: None, rows: None };
                self.record.status = JobStatus::Failed;
                self.record.error = Some(failure.clone());
                self.tell(JobEvent::Failed(failure));
            }
        }
        if let Err(error) = self.stores.jobs.put(&self.record).await {
            tracing::warn!(%error, "could not write the final job record");
        }
        outcome
    }
}

/// Keeps what a staged job wrote, for a promote: its summary counts the
/// fragments staged, none committed.
async fn stage(stores: &TableStores, setup: &JobSetup, mut summary: Summary, mut fragments: Vec<StagedFragment>) -> Result<Summary> {
    fragments.sort_by_key(|f| f.fragment_id);
    summary.fragments_staged = fragments.len() as u64;
    summary.fragments_committed = 0;
    summary.commits = 0;
    summary.version = None;
    if fragments.is_empty() {
        return Ok(summary);
    }
    let spec = &setup.spec;
    let staged = StagedJob { job_id: spec.job_id.clone(), column: spec.column().to_string(), read_version: spec.read_version, fragments };
    stores.staged.put(&staged).await?;
    Ok(summary)
}

/// A job's record as it starts (`Running`) or waits for its lease
/// (`Queued`), before any progress or cost.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_record(
    id: &str,
    column: &str,
    udfs: &[&Udf],
    filter: &str,
    read_version: u64,
    table: &TableLocation,
    options: &BackfillOptions,
    status: JobStatus,
) -> JobRecord {
    JobRecord {
        id: id.to_string(),
        column: column.to_string(),
        udf: udfs.iter().map(|udf| udf.name()).collect::<Vec<_>>().join(","),
        udf_version: udfs.iter().map(|udf| udf.version()).collect::<Vec<_>>().join(","),
        filter: filter.to_string(),
        read_version,
        storage_options: table.storage_options.redacted(),
        status,
        started_at_ms: unix_millis(),
        finished_at_ms: None,
        progress: Progress::default(),
        summary: None,
        error: None,
        options: cost::describe(
            options,
            &udfs.iter().map(|udf| udf.error_policy().to_string()).collect::<Vec<_>>().join(","),
            &udfs.iter().map(|udf| udf.retry_backoff().to_string()).collect::<Vec<_>>().join(","),
        ),
        started_by: Some(cost::starter()),
        cost: JobCost::default(),
        renewed_at_ms: None,
    }
}

/// The scheduler of a pass over `plan`.
fn new_scheduler(config: &JobConfig, plan: &Plan) -> Result<Scheduler> {
    Scheduler::new(Instant::now(), config.clone(), plan.inputs.clone()).map_err(|e| Error::InvalidOptions { reason: e.to_string() })
}

/// Commits `groups` unless the job's lease was taken over.
async fn commit_checked(
    fence: &JobFence,
    read: Arc<Dataset>,
    base: Arc<Dataset>,
    column: &str,
    groups: Vec<DataReplacementGroup>,
) -> Result<Committed> {
    fence.check().await?;
    Ok(commit_replacements(read, base, column, groups).await?)
}

/// Writes the row error records of one task, beside the table.
struct ErrorRecorder {
    /// Job, column, UDF, fragment and rows of the task.
    template: RowErrorRecord,
    stores: TableStores,
}

impl ErrorRecorder {
    /// Records the rows the `skip` policy left null.
    async fn skipped(&self, output: &TaskOutput) {
        let at_ms = unix_millis();
        let records: Vec<RowErrorRecord> = output
            .errors
            .iter()
            .map(|row| RowErrorRecord {
                row_address: Some(row.row_address),
                attempts: row.attempts,
                message: row.message.clone(),
                at_ms,
                ..self.template.clone()
            })
            .collect();
        self.put(&records).await;
    }

    /// Records the row (or batch) that failed the task, if the UDF failed it.
    async fn failed(&self, error: &TaskError) {
        let TaskError::Udf { message, row_address, attempts } = error else { return };
        let record = RowErrorRecord {
            row_address: *row_address,
            outcome: RowOutcome::Failed,
            attempts: *attempts,
            message: message.clone(),
            at_ms: unix_millis(),
            ..self.template.clone()
        };
        self.put(&[record]).await;
    }

    async fn put(&self, records: &[RowErrorRecord]) {
        if let Err(error) = self.stores.row_errors.put(records).await {
            // The job's summary still counts them and keeps the first thousand.
            tracing::warn!(%error, rows = records.len(), "could not record the rows the UDF failed on");
        }
    }
}

/// What a failed task says, with the row it failed at when the UDF said.
fn task_failure(udf: &str, error: TaskError) -> String {
    match error {
        TaskError::Udf { message, row_address, attempts } => {
            let at = row_address.map(|address| format!(" at row {} (row address {address})", address & 0xffff_ffff)).unwrap_or_default();
            let after = if attempts > 0 { format!(" after {attempts} calls") } else { String::new() };
            format!("UDF {udf} failed{at}{after}: {message}")
        }
        io => io.to_string(),
    }
}

fn stats(output: TaskOutput) -> TaskStats {
    TaskStats {
        rows_computed: output.rows_computed,
        rows_skipped: output.rows_skipped,
        errors: output
            .errors
            .into_iter()
            .map(|row| RowError { row_address: row.row_address, message: row.message, attempts: row.attempts })
            .collect(),
        udf_time: output.udf_time,
    }
}

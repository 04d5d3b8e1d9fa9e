//! The pump: carries out the scheduler's commands and feeds back events.
//!
//! Each command becomes a spawned future that talks to an actor (an applier
//! for a task, a fresh writer for a fragment) or to the committer, and sends
//! one [`Update`] back on a channel. The loop waits on that channel, the
//! scheduler's progress deadline and the cancel signal, nothing else.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use lance::dataset::transaction::DataReplacementGroup;
use lance_table::format::DataFile;
use leman_applier::{Applier, ApplierArgs, ApplierMsg, BackfillContext, TaskOutput, TaskSpec};
use leman_scheduler::record::RowError;
use leman_scheduler::{
    Command, Event, JobConfig, JobFailure, JobRecord, JobStatus, Scheduler, Summary, Task, TaskStats,
};
use leman_writer::{FragmentWrite, Writer, WriterContext, WriterMsg, commit::commit_replacements};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tokio::sync::{mpsc, watch};

use super::plan::Plan;

/// How long a failed or cancelled job waits for work already started.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
use super::resolve::Resolved;
use super::{TableStores, unix_millis};
use crate::{BackfillOptions, Error, JobEvent, Result};

/// What a spawned future reports.
#[derive(Debug)]
enum Update {
    Event(Event),
    Written { fragment_id: u64, data_file: DataFile },
}

pub(crate) struct Driver {
    id: String,
    resolved: Arc<Resolved>,
    stores: TableStores,
    plan: Plan,
    scheduler: Scheduler,
    batch_size: u64,
    concurrency: usize,
    threads: usize,
    appliers: Vec<ActorRef<ApplierMsg>>,
    written: HashMap<u64, DataFile>,
    updates: mpsc::UnboundedSender<Update>,
    /// Spawned futures that have not reported yet.
    in_flight: usize,
    updates_in: mpsc::UnboundedReceiver<Update>,
    user: mpsc::UnboundedSender<JobEvent>,
    cancelled: watch::Receiver<bool>,
    record: JobRecord,
}

impl Driver {
    pub fn new(
        id: String,
        resolved: Arc<Resolved>,
        stores: TableStores,
        plan: Plan,
        options: &BackfillOptions,
        user: mpsc::UnboundedSender<JobEvent>,
        cancelled: watch::Receiver<bool>,
    ) -> Result<Self> {
        let config = JobConfig {
            batch_size: options.batch_size as u64,
            task_shuffle_diversity: options.task_shuffle_diversity,
            commit_granularity: options.commit_granularity,
            refresh_status: options.refresh_status(),
            ..JobConfig::default()
        };
        let scheduler = Scheduler::new(Instant::now(), config, plan.inputs.clone())
            .map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
        let written = plan
            .fragments
            .iter()
            .filter_map(|(id, fragment)| fragment.written.clone().map(|file| (*id, file)))
            .collect();
        let record = JobRecord {
            id: id.clone(),
            column: resolved.column.clone(),
            udf: resolved.udf.name().to_string(),
            udf_version: resolved.udf.version().to_string(),
            filter: resolved.filter.sql().to_string(),
            read_version: resolved.dataset.version().version,
            status: JobStatus::Running,
            started_at_ms: unix_millis(),
            finished_at_ms: None,
            progress: scheduler.progress(Instant::now()),
            summary: None,
            error: None,
        };
        let (updates, updates_in) = mpsc::unbounded_channel();
        Ok(Self {
            id,
            resolved,
            stores,
            plan,
            scheduler,
            batch_size: options.batch_size as u64,
            concurrency: options.concurrency,
            threads: options.intra_applier_concurrency,
            appliers: Vec::new(),
            written,
            updates,
            in_flight: 0,
            updates_in,
            user,
            cancelled,
            record,
        })
    }

    /// Runs the job to its end.
    pub async fn run(mut self) -> Result<Summary> {
        self.stores.jobs.put(&self.record).await?;
        let progress = self.scheduler.progress(Instant::now());
        self.tell(JobEvent::Planned {
            fragments: progress.fragments_total,
            tasks: progress.tasks_total,
            rows: progress.rows_total,
        });
        let outcome = match self.start_appliers().await {
            Ok(()) => self.pump().await,
            Err(error) => Err(error),
        };
        if outcome.is_err() {
            self.drain().await;
        }
        for applier in &self.appliers {
            applier.stop(None);
        }
        self.finish(outcome).await
    }

    async fn start_appliers(&mut self) -> Result<()> {
        if self.scheduler.is_ended() || self.plan.inputs.iter().all(|f| f.start != leman_scheduler::FragmentStart::Compute) {
            return Ok(());
        }
        let context = Arc::new(
            BackfillContext::new(
                self.resolved.dataset.clone(),
                self.resolved.udf.clone(),
                &self.resolved.column,
                self.resolved.filter.clone(),
                self.stores.checkpoints.clone(),
            )
            .map_err(|e| Error::InvalidOptions { reason: e.to_string() })?,
        );
        for index in 0..self.concurrency {
            let name = format!("applier-{}-{index}", self.id);
            let args = ApplierArgs { context: context.clone(), threads: self.threads };
            let (actor, _) = Actor::spawn(Some(name.clone()), Applier, args)
                .await
                .map_err(|e| Error::Actor { actor: name, reason: e.to_string() })?;
            self.appliers.push(actor);
            // Twice the threads in tasks, so the next batch is read while one computes.
            let slots = self.threads * 2;
            self.scheduler.handle(Instant::now(), Event::ApplierReady { applier: index, slots });
        }
        Ok(())
    }

    async fn pump(&mut self) -> Result<Summary> {
        loop {
            while let Some(command) = self.scheduler.poll_command() {
                match command {
                    Command::Assign { applier, task } => self.assign(applier, task),
                    Command::WriteFragment { fragment_id } => self.write(fragment_id).await,
                    Command::Commit { fragments } => self.commit(fragments),
                    Command::Progress(progress) => {
                        self.record.progress = progress.clone();
                        self.tell(JobEvent::Progress(progress));
                        if let Err(error) = self.stores.jobs.put(&self.record).await {
                            tracing::warn!(%error, "could not update the job record");
                        }
                    }
                    Command::Finished(summary) => return Ok(summary),
                    Command::Failed(failure) => {
                        return Err(Error::JobFailed { job_id: self.id.clone(), failure });
                    }
                    Command::Cancelled(_) => return Err(Error::Cancelled { job_id: self.id.clone() }),
                }
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
                    };
                    if let Event::Committed { fragments, version } = &event {
                        self.tell(JobEvent::Committed { fragments: fragments.clone(), version: *version });
                    }
                    self.scheduler.handle(Instant::now(), event);
                }
                () = tokio::time::sleep_until(deadline.into()) => self.scheduler.handle_timeout(Instant::now()),
                Ok(()) = self.cancelled.changed() => {
                    if *self.cancelled.borrow() {
                        self.scheduler.handle(Instant::now(), Event::Cancel);
                    }
                }
            }
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
                    tracing::warn!(job = %self.id, in_flight = self.in_flight, "work still running after the drain limit");
                    break;
                }
            }
        }
    }

    fn assign(&mut self, applier: usize, task: Task) {
        let Some(actor) = self.appliers.get(applier).cloned() else { return };
        let Some(key) = self
            .plan
            .fragments
            .get(&task.fragment_id)
            .and_then(|f| f.batches.get((task.rows.start / self.batch_size) as usize))
            .map(|(_, key)| key.clone())
        else {
            return self.report(Event::TaskFailed {
                task: task.id,
                message: format!("internal: no checkpoint key for fragment {} rows {:?}", task.fragment_id, task.rows),
                retryable: false,
            });
        };
        let spec = TaskSpec { fragment_id: task.fragment_id, rows: task.rows.clone(), key };
        self.in_flight += 1;
        let updates = self.updates.clone();
        let udf = self.resolved.udf.name().to_string();
        tokio::spawn(async move {
            let event = match actor.call(|reply| ApplierMsg::Run { spec, reply }, None).await {
                Ok(CallResult::Success(Ok(output))) => Event::TaskSucceeded { task: task.id, stats: stats(output) },
                Ok(CallResult::Success(Err(error))) => Event::TaskFailed {
                    task: task.id,
                    retryable: error.is_retryable(),
                    message: match error {
                        leman_applier::TaskError::Udf { message, row_address: Some(address) } => format!(
                            "UDF {udf} failed at row {} (row address {address}): {message}",
                            address & 0xffff_ffff
                        ),
                        leman_applier::TaskError::Udf { message, row_address: None } => {
                            format!("UDF {udf} failed: {message}")
                        }
                        io => io.to_string(),
                    },
                },
                Ok(CallResult::SenderError | CallResult::Timeout) | Err(_) => {
                    Event::ApplierLost { applier }
                }
            };
            let _ = updates.send(Update::Event(event));
        });
    }

    async fn write(&mut self, fragment_id: u64) {
        let Some(fragment) = self.plan.fragments.get(&fragment_id) else {
            let message = "internal: fragment is not in the plan".to_string();
            return self.report(Event::FragmentFailed { fragment_id, message });
        };
        let write = FragmentWrite {
            fragment_id,
            batches: fragment.batches.clone(),
            fragment_key: fragment.fragment_key.clone(),
            base_output_file: fragment.base_output_file.clone(),
        };
        let context = match WriterContext::new(
            self.resolved.dataset.clone(),
            &self.resolved.column,
            self.stores.checkpoints.clone(),
        ) {
            Ok(context) => context,
            Err(error) => return self.report(Event::FragmentFailed { fragment_id, message: error.to_string() }),
        };
        let name = format!("writer-{}-{fragment_id}", self.id);
        let actor = match Actor::spawn(Some(name), Writer, context).await {
            Ok((actor, _)) => actor,
            Err(error) => return self.report(Event::FragmentFailed { fragment_id, message: error.to_string() }),
        };
        self.in_flight += 1;
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let update = match actor.call(|reply| WriterMsg::Write { write, reply }, None).await {
                Ok(CallResult::Success(Ok(data_file))) => Update::Written { fragment_id, data_file },
                Ok(CallResult::Success(Err(message))) => Update::Event(Event::FragmentFailed { fragment_id, message }),
                other => Update::Event(Event::FragmentFailed {
                    fragment_id,
                    message: format!("writer stopped answering: {other:?}"),
                }),
            };
            actor.stop(None);
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
        let dataset = self.resolved.dataset.clone();
        self.in_flight += 1;
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let event = match commit_replacements(dataset, groups).await {
                Ok(committed) => Event::Committed { fragments, version: committed.version().version },
                Err(error) => Event::CommitFailed { message: format!("committing fragments {fragments:?}: {error}") },
            };
            let _ = updates.send(Update::Event(event));
        });
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
        self.record.finished_at_ms = Some(unix_millis());
        self.record.progress = self.scheduler.progress(Instant::now());
        match &outcome {
            Ok(summary) => {
                self.record.status = JobStatus::Succeeded;
                self.record.summary = Some(summary.clone());
                self.tell(JobEvent::Finished(summary.clone()));
            }
            Err(Error::JobFailed { failure, .. }) => {
                self.record.status = JobStatus::Failed;
                self.record.error = Some(failure.clone());
                self.tell(JobEvent::Failed(failure.clone()));
            }
            Err(Error::Cancelled { .. }) => self.record.status = JobStatus::Cancelled,
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

fn stats(output: TaskOutput) -> TaskStats {
    TaskStats {
        rows_computed: output.rows_computed,
        rows_skipped: output.rows_skipped,
        errors: output.errors.into_iter().map(|(row_address, message)| RowError { row_address, message }).collect(),
    }
}

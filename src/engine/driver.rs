//! The pump: carries out the scheduler's commands and feeds back events.
//!
//! Each command becomes a spawned future that talks to an actor (an applier
//! for a task, a fresh writer for a fragment) or to the committer, and sends
//! one [`Update`] back on a channel. The loop waits on that channel, the
//! scheduler's progress deadline and the cancel signal, nothing else.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use lance::dataset::transaction::DataReplacementGroup;
use lance_table::format::DataFile;
use leman_applier::{Applier, ApplierArgs, BackfillContext, TaskOutput, TaskSpec};
use leman_cluster::{MembershipEvent, NodeId, Resources, choose_worker};
use leman_scheduler::record::RowError;
use leman_scheduler::{
    Command, Event, JobConfig, JobFailure, JobRecord, JobStatus, Scheduler, Summary, Task, TaskStats,
};
use leman_writer::{FragmentWrite, WriterContext, commit::commit_replacements};
use ractor::Actor;
use tokio::sync::{broadcast, mpsc, watch};

use super::executor::{ApplierRef, WriteFailure, write_locally, write_remotely};
use super::placement::Placement;
use super::plan::Plan;
use crate::distributed::{JobSpec, WorkerRequest, WorkerResponse};
use crate::udf_record::UdfRecord;

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

/// How a driver talks to its [`Job`](crate::Job) handle.
pub(crate) struct JobChannels {
    /// Events for the handle.
    pub user: mpsc::UnboundedSender<JobEvent>,
    /// Set when the handle cancels.
    pub cancelled: watch::Receiver<bool>,
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
    placement: Placement,
    /// Applier `i` of the job, `None` while it waits for a place.
    appliers: Vec<Option<ApplierRef>>,
    /// Workers that hosted any of the job's work, told to stop it at the end.
    hosts: BTreeSet<SocketAddr>,
    membership: Option<broadcast::Receiver<MembershipEvent>>,
    job_spec: JobSpec,
    next_writer: usize,
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
        placement: Placement,
        channels: JobChannels,
    ) -> Result<Self> {
        let JobChannels { user, cancelled } = channels;
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
        let job_spec = JobSpec {
            job_id: id.clone(),
            table_uri: resolved.table_uri.clone(),
            read_version: resolved.dataset.version().version,
            column: resolved.column.clone(),
            udf: UdfRecord::of(&resolved.udf),
            filter: resolved.filter.sql().to_string(),
            threads: options.intra_applier_concurrency,
        };
        let membership = match &placement {
            Placement::Embedded => None,
            Placement::Cluster(view) => Some(view.events.subscribe()),
        };
        Ok(Self {
            id,
            resolved,
            stores,
            plan,
            scheduler,
            batch_size: options.batch_size as u64,
            concurrency: options.concurrency,
            threads: options.intra_applier_concurrency,
            appliers: vec![None; options.concurrency],
            hosts: BTreeSet::new(),
            placement,
            membership,
            job_spec,
            next_writer: 0,
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
        self.stop_appliers().await;
        self.finish(outcome).await
    }

    async fn start_appliers(&mut self) -> Result<()> {
        if self.scheduler.is_ended() || self.plan.inputs.iter().all(|f| f.start != leman_scheduler::FragmentStart::Compute) {
            return Ok(());
        }
        match self.placement.clone() {
            Placement::Embedded => {
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
                    self.applier_ready(index, ApplierRef::Local(actor));
                }
            }
            Placement::Cluster(_) => self.place_appliers().await,
        }
        Ok(())
    }

    fn applier_ready(&mut self, index: usize, applier: ApplierRef) {
        self.appliers[index] = Some(applier);
        // Twice the threads in tasks, so the next batch is read while one computes.
        let slots = self.threads * 2;
        self.scheduler.handle(Instant::now(), Event::ApplierReady { applier: index, slots });
    }

    /// What one applier reserves on its worker.
    fn applier_needs(&self) -> Resources {
        let hints = self.resolved.udf.resources();
        Resources { cpus: hints.cpus * self.threads as f64, gpus: hints.gpus, memory: hints.memory }
    }

    /// Places every applier still without a worker, where capacity allows.
    async fn place_appliers(&mut self) {
        let Placement::Cluster(view) = self.placement.clone() else { return };
        if self.scheduler.is_ended() {
            return;
        }
        let members = view.members();
        let need = self.applier_needs();
        for index in 0..self.appliers.len() {
            if self.appliers[index].is_some() {
                continue;
            }
            let mut used: HashMap<NodeId, Resources> = HashMap::new();
            for worker in self.appliers.iter().flatten().filter_map(ApplierRef::worker) {
                let taken = used.entry(worker).or_default();
                taken.cpus += need.cpus;
                taken.gpus += need.gpus;
                taken.memory += need.memory;
            }
            let Some(worker) = choose_worker(&members, &used, need) else {
                tracing::info!(job = %self.id, index, "no worker has room for this applier yet; it waits for capacity");
                return;
            };
            let Some(member) = members.iter().find(|m| m.id == worker) else { return };
            let Ok(addr) = member.addr.parse::<SocketAddr>() else {
                tracing::warn!(addr = %member.addr, "worker address does not parse");
                return;
            };
            let request = WorkerRequest::SpawnApplier { job: self.job_spec.clone(), index };
            match view.node.request::<_, WorkerResponse>(addr, &request).await {
                Ok(WorkerResponse::Spawned) => {
                    self.hosts.insert(addr);
                    let job_id = self.id.clone();
                    self.applier_ready(index, ApplierRef::Remote { node: view.node.clone(), worker, addr, job_id, index });
                }
                Ok(other) => {
                    tracing::warn!(%worker, ?other, "worker could not start an applier");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%worker, %error, "worker could not be asked to start an applier");
                    return;
                }
            }
        }
    }

    /// A worker is gone: its appliers' tasks go back to the queue, and new
    /// appliers are placed where there is room.
    async fn membership_changed(&mut self, event: Option<MembershipEvent>) {
        let lost: Vec<NodeId> = match &event {
            Some(MembershipEvent::Lost { node }) => vec![*node],
            Some(MembershipEvent::Joined { .. }) => Vec::new(),
            // Missed events: check every applier's worker against the members.
            None => match &self.placement {
                Placement::Cluster(view) => {
                    let live: Vec<NodeId> = view.members().iter().map(|m| m.id).collect();
                    self.appliers.iter().flatten().filter_map(ApplierRef::worker).filter(|w| !live.contains(w)).collect()
                }
                Placement::Embedded => Vec::new(),
            },
        };
        for index in 0..self.appliers.len() {
            if self.appliers[index].as_ref().and_then(ApplierRef::worker).is_some_and(|w| lost.contains(&w)) {
                tracing::warn!(job = %self.id, index, "applier lost with its worker; its tasks go to others");
                self.appliers[index] = None;
                self.scheduler.handle(Instant::now(), Event::ApplierLost { applier: index });
            }
        }
        self.place_appliers().await;
    }

    async fn stop_appliers(&mut self) {
        for applier in self.appliers.iter().flatten() {
            applier.stop();
        }
        if let Placement::Cluster(view) = &self.placement {
            for addr in &self.hosts {
                let request = WorkerRequest::StopJob { job_id: self.id.clone() };
                if let Err(error) = view.node.request::<_, WorkerResponse>(*addr, &request).await {
                    tracing::debug!(%addr, %error, "could not tell a worker to stop the job");
                }
            }
        }
    }

    async fn pump(&mut self) -> Result<Summary> {
        loop {
            while let Some(command) = self.scheduler.poll_command() {
                match command {
                    Command::Assign { applier, task, attempt } => self.assign(applier, task, attempt),
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
                change = next_change(&mut self.membership) => self.membership_changed(change).await,
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

    fn assign(&mut self, applier: usize, task: Task, attempt: u32) {
        let Some(actor) = self.appliers.get(applier).cloned().flatten() else {
            return self.report(Event::ApplierLost { applier });
        };
        let Some(key) = self
            .plan
            .fragments
            .get(&task.fragment_id)
            .and_then(|f| f.batches.get((task.rows.start / self.batch_size) as usize))
            .map(|(_, key)| key.clone())
        else {
            return self.report(Event::TaskFailed {
                task: task.id,
                attempt,
                message: format!("internal: no checkpoint key for fragment {} rows {:?}", task.fragment_id, task.rows),
                retryable: false,
            });
        };
        let spec = TaskSpec { fragment_id: task.fragment_id, rows: task.rows.clone(), key };
        self.in_flight += 1;
        let updates = self.updates.clone();
        let udf = self.resolved.udf.name().to_string();
        tokio::spawn(async move {
            let event = match actor.run(spec).await {
                Ok(Ok(output)) => Event::TaskSucceeded { task: task.id, stats: stats(output) },
                Ok(Err(error)) => Event::TaskFailed {
                    task: task.id,
                    attempt,
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
                Err(lost) => match actor {
                    ApplierRef::Local(_) => Event::ApplierLost { applier },
                    // The worker's fate is for heartbeats to decide; this try is over.
                    ApplierRef::Remote { .. } => Event::TaskFailed { task: task.id, attempt, message: lost, retryable: true },
                },
            };
            let _ = updates.send(Update::Event(event));
        });
    }

    async fn write(&mut self, fragment_id: u64) {
        let Some(fragment) = self.plan.fragments.get(&fragment_id) else {
            let message = "internal: fragment is not in the plan".to_string();
            return self.report(Event::FragmentFailed { fragment_id, message, retryable: false });
        };
        let write = FragmentWrite {
            fragment_id,
            batches: fragment.batches.clone(),
            fragment_key: fragment.fragment_key.clone(),
            base_output_file: fragment.base_output_file.clone(),
        };
        let worker = match &self.placement {
            Placement::Cluster(view) => {
                let members = view.members();
                self.next_writer = self.next_writer.wrapping_add(1);
                let chosen = members.get(self.next_writer % members.len().max(1));
                chosen.and_then(|m| m.addr.parse::<SocketAddr>().ok()).map(|addr| (view.node.clone(), addr))
            }
            Placement::Embedded => None,
        };
        let outcome = match worker {
            Some((node, addr)) => {
                self.hosts.insert(addr);
                let job = self.job_spec.clone();
                tokio::spawn(async move { write_remotely(&node, addr, job, write).await })
            }
            None => {
                let context = match WriterContext::new(
                    self.resolved.dataset.clone(),
                    &self.resolved.column,
                    self.stores.checkpoints.clone(),
                ) {
                    Ok(context) => context,
                    Err(error) => {
                        return self.report(Event::FragmentFailed { fragment_id, message: error.to_string(), retryable: false });
                    }
                };
                tokio::spawn(write_locally(context, write))
            }
        };
        self.in_flight += 1;
        let updates = self.updates.clone();
        tokio::spawn(async move {
            let update = match outcome.await {
                Ok(Ok(data_file)) => Update::Written { fragment_id, data_file },
                Ok(Err(WriteFailure { message, retryable })) => {
                    Update::Event(Event::FragmentFailed { fragment_id, message, retryable })
                }
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

/// The next membership change; `None` when events were missed. Pends
/// forever for an embedded job.
async fn next_change(events: &mut Option<broadcast::Receiver<MembershipEvent>>) -> Option<MembershipEvent> {
    let Some(receiver) = events else { return std::future::pending().await };
    match receiver.recv().await {
        Ok(event) => Some(event),
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => {
            *events = None;
            std::future::pending().await
        }
    }
}

fn stats(output: TaskOutput) -> TaskStats {
    TaskStats {
        rows_computed: output.rows_computed,
        rows_skipped: output.rows_skipped,
        errors: output.errors.into_iter().map(|(row_address, message)| RowError { row_address, message }).collect(),
    }
}

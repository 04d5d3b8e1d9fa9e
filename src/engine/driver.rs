//! The pump: carries out the scheduler's commands and feeds back events.
//!
//! Each command becomes a spawned future that talks to an actor (an applier
//! for a task, a fresh writer for a fragment) or to the committer, and sends
//! one [`Update`] back on a channel. The loop waits on that channel, the
//! scheduler's progress deadline, the cancel signal and, on a cluster, the
//! cluster's events (workers joining and lost, appliers that stopped on
//! their own, resources released by other jobs), nothing else. An applier
//! that is gone is started again, here or wherever there is room.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use lance::dataset::transaction::DataReplacementGroup;
use lance_table::format::DataFile;
use leman_applier::{Applier, ApplierArgs, BackfillContext, TaskOutput, TaskSpec};
use leman_cluster::{Holder, MembershipEvent, NodeId, Resources};
use leman_scheduler::record::RowError;
use leman_scheduler::{
    Command, Event, JobConfig, JobFailure, JobRecord, JobStatus, Scheduler, Summary, Task, TaskStats,
};
use leman_writer::{FragmentWrite, WriterContext, commit::commit_replacements};
use ractor::Actor;
use tokio::sync::{broadcast, mpsc, watch};

use super::executor::{ApplierRef, Unanswered, WriteFailure, write_locally, write_remotely};
use super::placement::{ClusterEvent, Placement};
use super::plan::Plan;
use crate::distributed::{JobSpec, WorkerRequest, WorkerResponse};
use crate::udf_record::UdfRecord;

/// Fragment writes a job may have in flight however few its appliers: a
/// small job still writes its last fragments side by side.
const MIN_WRITERS: usize = 8;
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
    /// Incarnation `incarnation` of applier `index` is not running.
    ApplierGone { index: usize, incarnation: u64, reason: String },
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
    /// Starts of appliers so far.
    incarnations: u64,
    /// What local appliers are started with (embedded jobs).
    local_context: Option<Arc<BackfillContext>>,
    /// Workers that hosted any of the job's work, told to stop it at the end.
    hosts: BTreeSet<SocketAddr>,
    cluster_events: Option<broadcast::Receiver<ClusterEvent>>,
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
            // Enough fragments written at once to keep pace with compute (at
            // least one per applier), few enough that memory does not grow
            // with the number of fragments.
            max_writers: options.concurrency.max(MIN_WRITERS),
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
        let cluster_events = match &placement {
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
            incarnations: 0,
            local_context: None,
            hosts: BTreeSet::new(),
            placement,
            cluster_events,
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
                let context = BackfillContext::new(
                    self.resolved.dataset.clone(),
                    self.resolved.udf.clone(),
                    &self.resolved.column,
                    self.resolved.filter.clone(),
                    self.stores.checkpoints.clone(),
                )
                .map_err(|e| Error::InvalidOptions { reason: e.to_string() })?;
                self.local_context = Some(Arc::new(context));
                for index in 0..self.concurrency {
                    self.spawn_local(index).await?;
                }
            }
            Placement::Cluster(_) => self.place_appliers().await,
        }
        Ok(())
    }

    /// Starts applier `index` as an actor of this process.
    async fn spawn_local(&mut self, index: usize) -> Result<()> {
        let Some(context) = self.local_context.clone() else { return Ok(()) };
        self.incarnations += 1;
        let incarnation = self.incarnations;
        let name = format!("applier-{}-{index}.{incarnation}", self.id);
        let args = ApplierArgs { context, threads: self.threads };
        let (actor, _) = Actor::spawn(Some(name.clone()), Applier, args)
            .await
            .map_err(|e| Error::Actor { actor: name, reason: e.to_string() })?;
        self.applier_ready(index, ApplierRef::Local { actor, incarnation });
        Ok(())
    }

    fn applier_ready(&mut self, index: usize, applier: ApplierRef) {
        self.appliers[index] = Some(applier);
        // Twice the threads in tasks and two more, so that batches are read
        // and checkpointed while others compute.
        let slots = self.threads * 2 + 2;
        self.scheduler.handle(Instant::now(), Event::ApplierReady { applier: index, slots });
    }

    /// What one applier reserves on its worker.
    fn applier_needs(&self) -> Resources {
        let hints = self.resolved.udf.resources();
        Resources { cpus: hints.cpus * self.threads as f64, gpus: hints.gpus, memory: hints.memory }
    }

    fn holder(&self, index: usize) -> Holder {
        Holder { job: self.id.clone(), index }
    }

    /// Places every applier still without a worker, where capacity allows.
    async fn place_appliers(&mut self) {
        let Placement::Cluster(view) = self.placement.clone() else { return };
        if self.scheduler.is_ended() {
            return;
        }
        let need = self.applier_needs();
        for index in 0..self.appliers.len() {
            if self.appliers[index].is_some() {
                continue;
            }
            let holder = self.holder(index);
            let Some(member) = view.reserve(holder.clone(), need) else {
                tracing::info!(job = %self.id, index, "no worker has room for this applier yet; it waits for capacity");
                return;
            };
            let Ok(addr) = member.addr.parse::<SocketAddr>() else {
                tracing::warn!(addr = %member.addr, "worker address does not parse");
                view.cancel(&holder);
                return;
            };
            self.incarnations += 1;
            let incarnation = self.incarnations;
            let request = WorkerRequest::SpawnApplier { job: self.job_spec.clone(), index, incarnation };
            let refused = match view.node.request::<_, WorkerResponse>(addr, &request).await {
                Ok(WorkerResponse::Spawned) => None,
                Ok(other) => Some(format!("{other:?}")),
                Err(error) => Some(error.to_string()),
            };
            if let Some(reason) = refused {
                tracing::warn!(worker = %member.id, %reason, "worker could not start an applier; it waits for the next change in the cluster");
                view.cancel(&holder);
                return;
            }
            self.hosts.insert(addr);
            let (node, worker, job_id) = (view.node.clone(), member.id, self.id.clone());
            self.applier_ready(index, ApplierRef::Remote { node, worker, addr, job_id, index, incarnation });
        }
    }

    /// Incarnation `incarnation` of applier `index` is not running: its
    /// tasks go back to the queue and it is started again.
    async fn applier_gone(&mut self, index: usize, incarnation: u64, reason: &str) -> Result<()> {
        if self.appliers.get(index).cloned().flatten().is_none_or(|a| a.incarnation() != incarnation) {
            return Ok(());
        }
        tracing::warn!(job = %self.id, index, reason, "applier gone; its tasks go to others and it starts again");
        self.appliers[index] = None;
        self.scheduler.handle(Instant::now(), Event::ApplierLost { applier: index });
        if self.scheduler.is_ended() {
            return Ok(());
        }
        match self.placement.clone() {
            Placement::Embedded => self.spawn_local(index).await,
            Placement::Cluster(view) => {
                view.release(&self.holder(index));
                self.place_appliers().await;
                Ok(())
            }
        }
    }

    /// Acts on what the cluster says: lost workers' appliers are lost,
    /// exited appliers are gone, and new room is used.
    async fn cluster_changed(&mut self, event: Option<ClusterEvent>) {
        let Placement::Cluster(view) = self.placement.clone() else { return };
        let lost: Vec<NodeId> = match &event {
            Some(ClusterEvent::Member(MembershipEvent::Lost { node })) => vec![*node],
            Some(ClusterEvent::ApplierExited(exit)) => {
                if exit.applier.job_id == self.id {
                    let (index, incarnation) = (exit.applier.index, exit.applier.incarnation);
                    let reason = format!("stopped on worker {}: {}", exit.worker, exit.reason);
                    // Remote starts do not fail the job; they wait for room.
                    let _ = self.applier_gone(index, incarnation, &reason).await;
                }
                return;
            }
            Some(ClusterEvent::Member(MembershipEvent::Joined { .. }) | ClusterEvent::CapacityFreed) => Vec::new(),
            // Missed events: check every applier's worker against the members.
            None => {
                let live: Vec<NodeId> = view.members().iter().map(|m| m.id).collect();
                self.appliers.iter().flatten().filter_map(ApplierRef::worker).filter(|w| !live.contains(w)).collect()
            }
        };
        for index in 0..self.appliers.len() {
            if self.appliers[index].as_ref().and_then(ApplierRef::worker).is_some_and(|w| lost.contains(&w)) {
                tracing::warn!(job = %self.id, index, "applier lost with its worker; its tasks go to others");
                self.appliers[index] = None;
                view.release(&self.holder(index));
                self.scheduler.handle(Instant::now(), Event::ApplierLost { applier: index });
            }
        }
        if self.appliers.iter().any(Option::is_none) {
            self.place_appliers().await;
        }
    }

    async fn stop_appliers(&mut self) {
        for applier in self.appliers.iter().flatten() {
            applier.stop().await;
        }
        if let Placement::Cluster(view) = &self.placement {
            view.release_job(&self.id);
            // Also drops the job's context on workers that only wrote.
            for addr in &self.hosts {
                let request = WorkerRequest::StopJob { job_id: self.id.clone() };
                if let Err(error) = view.node.cast(*addr, &request).await {
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
                        Update::ApplierGone { index, incarnation, reason } => {
                            self.applier_gone(index, incarnation, &reason).await?;
                            continue;
                        }
                    };
                    if let Event::Committed { fragments, version } = &event {
                        self.tell(JobEvent::Committed { fragments: fragments.clone(), version: *version });
                    }
                    self.scheduler.handle(Instant::now(), event);
                }
                () = tokio::time::sleep_until(deadline.into()) => self.scheduler.handle_timeout(Instant::now()),
                change = next_change(&mut self.cluster_events) => self.cluster_changed(change).await,
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
        let lost = self.lost_signal(actor.worker());
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
            let outcome = tokio::select! {
                outcome = actor.run(spec) => outcome,
                () = lost => Err(Unanswered::Unreachable("its worker was lost".to_string())),
            };
            let event = match outcome {
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
                Err(Unanswered::Gone(reason)) => {
                    let _ = updates.send(Update::ApplierGone { index: applier, incarnation: actor.incarnation(), reason });
                    return;
                }
                // The worker's fate is for heartbeats to decide; this try is over.
                Err(Unanswered::Unreachable(message)) => Event::TaskFailed { task: task.id, attempt, message, retryable: true },
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
                chosen.and_then(|m| Some((m.id, m.addr.parse::<SocketAddr>().ok()?))).map(|(id, addr)| (view.node.clone(), id, addr))
            }
            Placement::Embedded => None,
        };
        let outcome = match worker {
            Some((node, id, addr)) => {
                self.hosts.insert(addr);
                let job = self.job_spec.clone();
                let lost = self.lost_signal(Some(id));
                tokio::spawn(async move {
                    tokio::select! {
                        written = write_remotely(&node, addr, job, write) => written,
                        () = lost => Err(WriteFailure { message: format!("worker {addr} was lost"), retryable: true }),
                    }
                })
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

    /// Resolves when `worker` is lost (never for local work), so that a
    /// request to a dead worker ends with its loss, not with a timeout.
    fn lost_signal(&self, worker: Option<NodeId>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let watch = match (&self.placement, worker) {
            (Placement::Cluster(view), Some(worker)) => Some((view.clone(), worker)),
            _ => None,
        };
        async move {
            match watch {
                Some((view, worker)) => view.lost(worker).await,
                None => std::future::pending().await,
            }
        }
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

/// The cluster's next event; `None` when events were missed. Pends forever
/// for an embedded job.
async fn next_change(events: &mut Option<broadcast::Receiver<ClusterEvent>>) -> Option<ClusterEvent> {
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

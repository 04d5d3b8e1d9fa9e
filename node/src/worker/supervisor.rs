//! The parent of a worker's appliers, and the reports of the ones that
//! stopped on their own to the head that spawned them.

use std::net::SocketAddr;
use std::sync::Arc;

use leman_runtime::Node;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, watch};

use super::service::WorkerService;
use crate::protocol::{ApplierExit, HeadRequest};

/// The parent of a worker's appliers: passes on the exit of each, which
/// the worker reports to the head if it was not asked for.
pub(super) struct ApplierSupervisor;

impl Actor for ApplierSupervisor {
    type Msg = ();
    type State = mpsc::UnboundedSender<(ActorId, String)>;
    type Arguments = mpsc::UnboundedSender<(ActorId, String)>;

    async fn pre_start(&self, _myself: ActorRef<()>, exits: Self::Arguments) -> std::result::Result<Self::State, ActorProcessingErr> {
        Ok(exits)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        exits: &mut Self::State,
    ) -> std::result::Result<(), ActorProcessingErr> {
        // Unlike the default, a child's end never stops the supervisor.
        let exit = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell.get_id(), reason.unwrap_or_else(|| "stopped".to_string())),
            SupervisionEvent::ActorFailed(cell, error) => (cell.get_id(), format!("failed: {error}")),
            _ => return Ok(()),
        };
        let _ = exits.send(exit);
        Ok(())
    }
}

/// Reports appliers that stopped on their own to the head the worker last
/// joined.
pub(super) async fn report_exits(
    service: Arc<WorkerService>,
    node: Arc<Node>,
    head: watch::Receiver<SocketAddr>,
    worker: String,
    mut exits: mpsc::UnboundedReceiver<(ActorId, String)>,
) {
    while let Some((actor, reason)) = exits.recv().await {
        let Some(applier) = service.forget(actor).await else { continue };
        tracing::warn!(job = %applier.job_id, index = applier.index, %reason, "applier stopped on its own; telling the head");
        let exit = HeadRequest::ApplierExited(ApplierExit { applier, worker: worker.clone(), reason });
        let head = *head.borrow();
        if let Err(error) = node.cast(head, &exit).await {
            tracing::warn!(%error, "could not tell the head; it will find out when the task fails");
        }
    }
}

//! The [`Controller`] handle: starts one controller (its storage, its Raft, its peers), writes
//! commands (applied here when it leads, else passed once to the leader), reads the state
//! linearizably, and reports its Raft metrics. [`serve`] runs its gRPC service on a listener
//! of its own; a server that embeds it adds [`Controller::grpc_service`] to its router instead.

use crate::config::ControllerConfig;
use crate::network::{raft_client, Network, PeerTrust};
use crate::service::{write_here, RaftService};
use crate::state::{Command, CommandResult, ControllerState};
use crate::store::{self, machine::StateReader};
use crate::types::{NodeId, Raft};
use apogee_proto::controller::raft_server::RaftServer;
use apogee_proto::controller::RaftPayload;
use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::{BasicNode, LogId, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid controller config: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] store::OpenError),
    #[error("starting the controller's Raft: {0}")]
    Raft(String),
}

/// Why a command was not applied (a refusal by the rules is an applied
/// [`CommandResult::Refused`], not an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WriteError {
    /// The controller asked does not lead, and the write was not passed on (or the one it was
    /// passed to does not lead either): ask the leader named, if any.
    #[error("not the controller leader; the leader is {}", leader_text(.leader, .address))]
    NotLeader {
        leader: Option<NodeId>,
        address: Option<String>,
    },
    /// The leader could not be reached.
    #[error("the controller leader {leader} at {address} could not be reached: {reason}")]
    Unreachable {
        leader: NodeId,
        address: String,
        reason: String,
    },
    /// The Raft group failed the write (shut down, a fatal storage error).
    #[error("controller Raft: {0}")]
    Raft(String),
}

fn leader_text(leader: &Option<NodeId>, address: &Option<String>) -> String {
    match (leader, address) {
        (Some(id), Some(address)) => format!("{id} at {address}"),
        (Some(id), None) => id.to_string(),
        _ => "not known yet".into(),
    }
}

/// Why a linearizable read failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not the controller leader; the leader is {}", leader_text(.leader, .address))]
    NotLeader {
        leader: Option<NodeId>,
        address: Option<String>,
    },
    #[error("controller Raft: {0}")]
    Raft(String),
}

/// A controller's Raft figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerMetrics {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_applied: Option<LogId<NodeId>>,
    pub is_leader: bool,
}

/// One running controller. Clones share it.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    raft: Raft,
    machine: StateReader,
    /// True once the storage is closed, which shutdown waits for.
    database_closed: tokio::sync::watch::Receiver<bool>,
    /// What calls to the other controllers carry and what this one's service asks.
    trust: PeerTrust,
    /// `controller.unclean_election`, for the `Elect` commands this controller issues.
    unclean_election: bool,
}

/// The longest [`Controller::shutdown`] waits for openraft's tasks to let go of the storage.
pub const STORAGE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl Controller {
    /// Opens the storage in `config.data_dir`, starts the Raft node and, on storage that has
    /// never been part of a group, forms the group of `config.peers` (every voter does the
    /// same with the same voters, which openraft allows). Its calls to the others, and what
    /// its service asks of theirs, follow `trust`.
    pub async fn start(
        config: ControllerConfig,
        trust: PeerTrust,
    ) -> Result<Controller, StartError> {
        config.validate().map_err(StartError::Config)?;
        let raft_config = Arc::new(config.raft_config().map_err(StartError::Config)?);
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Config(format!(
                "controller.data_dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        if config.unclean_election {
            tracing::warn!(
                node = config.node_id,
                "controller.unclean_election is ON: when no in-sync member of a broker group is \
                 alive, a member outside the in-sync set may become master and messages the old \
                 master acknowledged may be lost"
            );
        }
        let (log, machine) = store::open(&config.data_dir)?;
        let (reader, database_closed) = (machine.reader(), machine.database_closed());
        let network = Network {
            own_id: config.node_id,
            trust: trust.clone(),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log, machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let voters: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, address)| (*id, BasicNode::new(address)))
            .collect();
        match raft.initialize(voters).await {
            Ok(()) => {
                tracing::info!(node = config.node_id, peers = ?config.peers, "controller group formed")
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::info!(node = config.node_id, "controller rejoins its group")
            }
            Err(e) => return Err(StartError::Raft(e.to_string())),
        }
        Ok(Controller {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft,
                machine: reader,
                database_closed,
                trust,
                unclean_election: config.unclean_election,
            }),
        })
    }

    /// Whether the `Elect` commands this controller issues allow an unclean election
    /// (`controller.unclean_election`; nothing issues `Elect` yet: the failure detector that
    /// will reads it here).
    pub fn unclean_election(&self) -> bool {
        self.inner.unclean_election
    }

    /// The controller's gRPC service, for a server's router.
    pub fn grpc_service(&self) -> RaftServer<RaftService> {
        RaftService::new(self.inner.raft.clone(), self.inner.trust.secret.clone()).into_server()
    }

    /// Applies `command` through the Raft group and returns its result: here when this
    /// controller leads, else passed once to the leader it knows of.
    pub async fn write(&self, command: Command) -> Result<CommandResult, WriteError> {
        match write_here(&self.inner.raft, command.clone()).await {
            Err(WriteError::NotLeader {
                leader: Some(leader),
                address: Some(address),
            }) if leader != self.inner.node_id => {
                forward(leader, &address, &command, &self.inner.trust).await
            }
            other => other,
        }
    }

    /// The state with every write committed before the call applied (openraft's read index:
    /// the leader confirms with a quorum that it still leads). Only the leader answers.
    pub async fn read_state(&self) -> Result<ControllerState, ReadError> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(self.inner.machine.read(|applied| applied.state.clone())),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(ReadError::NotLeader {
                    leader: forward.leader_id,
                    address: forward.leader_node.map(|n| n.addr),
                })
            }
            Err(e) => Err(ReadError::Raft(e.to_string())),
        }
    }

    /// The state as applied on this controller so far, without asking the others (may be
    /// behind the leader's).
    pub fn local_state(&self) -> ControllerState {
        self.inner.machine.read(|applied| applied.state.clone())
    }

    /// The Raft figures as this controller sees them.
    pub fn metrics(&self) -> ControllerMetrics {
        let metrics = self.inner.raft.metrics().borrow().clone();
        ControllerMetrics {
            node_id: self.inner.node_id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_applied: metrics.last_applied,
            is_leader: metrics.state == ServerState::Leader,
        }
    }

    /// Stops the Raft node (it answers no more calls) and waits, at most
    /// [`STORAGE_CLOSE_TIMEOUT`], until its storage is closed, so the data dir can be opened
    /// again at once (openraft's state machine task ends just after the node).
    pub async fn shutdown(&self) {
        let node = self.inner.node_id;
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(node, "controller Raft stopped with an error: {e}");
        }
        let mut closed = self.inner.database_closed.clone();
        let wait = tokio::time::timeout(STORAGE_CLOSE_TIMEOUT, closed.wait_for(|closed| *closed));
        if !matches!(wait.await, Ok(Ok(_))) {
            tracing::warn!(
                node,
                "controller storage still open {STORAGE_CLOSE_TIMEOUT:?} after its Raft stopped"
            );
        }
    }
}

/// Passes a write to the leader's `Write` call.
async fn forward(
    leader: NodeId,
    address: &str,
    command: &Command,
    trust: &PeerTrust,
) -> Result<CommandResult, WriteError> {
    let unreachable = |reason: String| WriteError::Unreachable {
        leader,
        address: address.to_string(),
        reason,
    };
    let json = serde_json::to_vec(command).map_err(|e| unreachable(e.to_string()))?;
    let mut client = raft_client(trust.channel(address).map_err(unreachable)?);
    let mut request = tonic::Request::new(RaftPayload { json });
    trust.sign(&mut request);
    let answer = client
        .write(request)
        .await
        .map_err(|status| unreachable(status.to_string()))?;
    serde_json::from_slice::<Result<CommandResult, WriteError>>(&answer.into_inner().json)
        .map_err(|e| unreachable(format!("undecodable answer: {e}")))?
}

/// Serves `controller`'s gRPC service alone on `listener` until `shutdown` completes (a
/// controller run as its own process, and the tests).
pub async fn serve(
    controller: Controller,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(controller.grpc_service())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

//! The [`Controller`] handle: starts one controller (its storage, its Raft, its peers), writes
//! commands (applied here when it leads, else passed once to the leader), reads the state
//! linearizably, and reports its Raft metrics. Failover ([`crate::failover`]): it takes the
//! members' beats ([`Controller::on_beat`], answered with the group's assignment only when
//! it leads) and their sessions' ends, and a background task started with it elects
//! replacements of dead masters every [`ELECTION_TICK`] while it leads. [`serve`] runs its gRPC service on a listener
//! of its own; a server that embeds it adds [`Controller::grpc_service`] to its router instead.

use crate::config::ControllerConfig;
use crate::control_service::ControlService;
use crate::failover::{Failover, FailoverStatus, MemberBeat, NameServerId, SessionEnd};
use crate::network::{raft_client, Network, PeerTrust};
use crate::service::{write_here, RaftService};
use crate::state::{Command, CommandResult, ControllerState, MemberId, Refusal};
use crate::store::{self, machine::StateReader};
use crate::types::{NodeId, Raft};
use apogee_proto::cluster::Assignment;
use apogee_proto::controller::controller_service_server::ControllerServiceServer;
use apogee_proto::controller::raft_server::RaftServer;
use apogee_proto::controller::RaftPayload;
use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::{BasicNode, LogId, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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
    /// A planned election was asked while an election of the group is under way.
    #[error("an election of broker group {0} is under way; ask again when it is done")]
    ElectionInFlight(String),
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
    /// A remote controller's answer (its own reason, as text), or why none answered.
    #[error("{0}")]
    Remote(String),
    /// The leader did not confirm its state in the time given.
    #[error("the leader did not confirm its state within {} ms", .0.as_millis())]
    Timeout(Duration),
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
    /// The leader-local failover table (locked before the state machine's, never across an
    /// await).
    failover: parking_lot::Mutex<Failover>,
    /// Set at shutdown (or dropped with the last handle): the election task stops.
    stop_elections: tokio::sync::watch::Sender<bool>,
}

/// How often the leader looks for groups to elect a master of.
pub const ELECTION_TICK: Duration = Duration::from_millis(200);

/// The longest [`Controller::shutdown`] waits for openraft's tasks to let go of the storage.
pub const STORAGE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a planned election looks whether the master stepped down.
const HANDOVER_POLL: Duration = Duration::from_millis(20);

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
            health: Default::default(),
        };
        let raft = Raft::new(config.node_id, raft_config, network, log, machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let voters: BTreeMap<NodeId, BasicNode> = config
            .peers
            .iter()
            .map(|(id, address)| (*id, BasicNode::new(address)))
            .collect();
        // Asked first: openraft logs an ERROR ("Can not initialize") when `initialize` is
        // called on storage that already holds the group, which is every restart.
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if initialized {
            tracing::info!(node = config.node_id, "controller rejoins its group");
        } else {
            match raft.initialize(voters).await {
                Ok(()) => {
                    tracing::info!(node = config.node_id, peers = ?config.peers, "controller group formed")
                }
                // Another voter's first entries reached this one between the two calls.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    tracing::info!(node = config.node_id, "controller rejoins its group")
                }
                Err(e) => return Err(StartError::Raft(e.to_string())),
            }
        }
        let (stop_elections, stop) = tokio::sync::watch::channel(false);
        let controller = Controller {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                raft,
                machine: reader,
                database_closed,
                trust,
                unclean_election: config.unclean_election,
                failover: parking_lot::Mutex::new(Failover::new(config.failover_timings())),
                stop_elections,
            }),
        };
        spawn_election_task(Arc::downgrade(&controller.inner), stop);
        Ok(controller)
    }

    /// Whether the `Elect` commands this controller issues allow an unclean election
    /// (`controller.unclean_election`).
    pub fn unclean_election(&self) -> bool {
        self.inner.unclean_election
    }

    /// The controller's gRPC service, for a server's router.
    pub fn grpc_service(&self) -> RaftServer<RaftService> {
        RaftService::new(self.inner.raft.clone(), self.inner.trust.secret.clone()).into_server()
    }

    /// The service a NameServer calls on a controller run as its own process
    /// (`apogee.controller.v1.ControllerService`), for that process's router.
    pub fn control_service(&self) -> ControllerServiceServer<ControlService> {
        ControlService::new(self.clone(), self.inner.trust.secret.clone()).into_server()
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

    /// The leader this controller knows of, and its address (its listener), if known.
    pub fn leader_hint(&self) -> (Option<NodeId>, Option<String>) {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let address = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        (metrics.current_leader, address)
    }

    /// Whether this controller leads now (as its Raft metrics say; a lease is granted only
    /// after a quorum confirms it).
    pub fn is_leader(&self) -> bool {
        self.leading_term().is_some()
    }

    /// The Raft term this controller leads in, if it leads.
    fn leading_term(&self) -> Option<u64> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.state == ServerState::Leader).then_some(metrics.current_term)
    }

    /// Confirms with a quorum that this controller still leads, with every committed write
    /// applied here (openraft's read index).
    async fn confirm_leadership(&self) -> Result<(), ReadError> {
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(ReadError::NotLeader {
                    leader: forward.leader_id,
                    address: forward.leader_node.map(|n| n.addr),
                })
            }
            Err(e) => Err(ReadError::Raft(e.to_string())),
        }
    }

    /// A member's beat (controller mode). Recorded as liveness on every controller; only the
    /// leader acts on it (nothing is passed on: `None` from a follower). The leader writes
    /// what the beat calls for (a registration, the master's in-sync set, a new group's
    /// first election), then confirms with a quorum that it still leads, after the beat
    /// arrived, and only then answers with the group's assignment read from the confirmed
    /// state: with a lease when the member is the master there (see [`crate::failover`]).
    /// `None` too when the leadership could not be confirmed.
    pub async fn on_beat(&self, beat: MemberBeat) -> Option<Assignment> {
        let arrived = Instant::now();
        let leading = self.leading_term();
        let commands = {
            let mut failover = self.inner.failover.lock();
            failover.observe_leadership(leading, arrived);
            self.inner
                .machine
                .read(|applied| failover.on_beat(&applied.state, &beat, arrived))
        };
        leading?;
        for command in commands {
            match write_here(&self.inner.raft, command.clone()).await {
                Ok(CommandResult::Refused(refusal)) => log_beat_refusal(&beat, &refusal),
                Ok(_) => {}
                Err(WriteError::NotLeader { .. }) => return None,
                Err(e) => {
                    tracing::warn!(group = %beat.group, member = beat.member,
                        "controller write for a member's beat failed: {e}");
                    return None;
                }
            }
        }
        // A new group's first election comes at once, and so does the successor of a master
        // that stepped down (this beat's answer then names it); other replacements of a
        // master are the election task's.
        let elect_now = self.inner.machine.read(|applied| {
            applied.state.group(&beat.group).is_some_and(|g| {
                g.master.is_none()
                    || (g.master == Some(beat.member)
                        && beat.report.stepped_down
                        && beat.report.master_epoch == g.master_epoch)
            })
        });
        if elect_now {
            self.run_elections(Some(&beat.group)).await;
        }
        let ticket = self
            .inner
            .failover
            .lock()
            .grant_ticket(&beat.group, Instant::now());
        self.confirm_leadership().await.ok()?;
        let now = Instant::now();
        let mut failover = self.inner.failover.lock();
        failover.observe_leadership(self.leading_term(), now);
        Some(self.inner.machine.read(|applied| {
            failover.assignment(
                &applied.state,
                &beat.group,
                beat.member,
                ticket,
                self.inner.node_id,
                now,
            )
        }))
    }

    /// The member's session with the NameServer `via` ended, as `end` says: that session
    /// keeps it alive no more. A master whose process exited is replaced now, not at the
    /// next election tick (see [`crate::failover`]).
    pub async fn member_gone(
        &self,
        group: &str,
        member: MemberId,
        via: NameServerId,
        end: SessionEnd,
    ) {
        self.inner
            .failover
            .lock()
            .member_gone(group, member, via, end);
        if end == SessionEnd::ClosedByMember {
            self.run_elections(Some(group)).await;
        }
    }

    /// What failover knows, per broker group: the committed assignment as applied here, the
    /// members alive, the last election this node made and the age of its last lease grant
    /// to the master (the figures are this node's: a follower's table has no grants and no
    /// elections).
    pub fn failover_status(&self) -> FailoverStatus {
        let now = Instant::now();
        let leading = self.leading_term();
        let mut failover = self.inner.failover.lock();
        failover.observe_leadership(leading, now);
        self.inner
            .machine
            .read(|applied| failover.status(&applied.state, now))
    }

    /// A planned election (an operator's switch of `group`'s master to `member`, which must
    /// be in sync), made safely on the leader: leases to the group's master stop at once and
    /// the answers to its beats ask it to hand over to `member`; the `ElectNamed` is written
    /// as soon as the master reports it stepped down (it stopped taking sends and let
    /// `member` catch up first), else once every lease it may hold has run out (up to
    /// `lease_ms + lease_margin_ms`: a master that does not answer, or runs a release
    /// without handovers); its outcome is logged like an election. Not passed on: a controller that does not lead
    /// answers [`WriteError::NotLeader`] naming the leader, whose NameServer must be asked.
    pub async fn elect_named(
        &self,
        group: &str,
        member: MemberId,
    ) -> Result<CommandResult, WriteError> {
        let not_leader = || {
            let (leader, address) = self.leader_hint();
            WriteError::NotLeader { leader, address }
        };
        let begun = {
            let mut failover = self.inner.failover.lock();
            failover.observe_leadership(self.leading_term(), Instant::now());
            self.inner
                .machine
                .read(|applied| failover.begin_planned_election(&applied.state, group, member))
        };
        if begun.is_none() {
            if self.leading_term().is_none() {
                return Err(not_leader());
            }
            // Not leading is handled above: the group is unknown, or an election is in flight.
            let known = self
                .inner
                .machine
                .read(|applied| applied.state.group(group).is_some());
            return if known {
                Err(WriteError::ElectionInFlight(group.to_string()))
            } else {
                Ok(CommandResult::Refused(Refusal::UnknownGroup(
                    group.to_string(),
                )))
            };
        }
        let mut pending = PendingElection {
            inner: &self.inner,
            group,
            reported: false,
        };
        loop {
            let now = Instant::now();
            let ready = {
                let mut failover = self.inner.failover.lock();
                failover.observe_leadership(self.leading_term(), now);
                self.inner
                    .machine
                    .read(|applied| failover.planned_election_ready_at(&applied.state, group, now))
            };
            match ready {
                None => return Err(not_leader()),
                Some(ready) if ready <= now => break,
                // Looked at again soon: the master's beat saying it stepped down makes it ready.
                Some(ready) => {
                    tokio::time::sleep_until(ready.min(now + HANDOVER_POLL).into()).await
                }
            }
        }
        let result = write_here(
            &self.inner.raft,
            Command::ElectNamed {
                group: group.to_string(),
                member,
            },
        )
        .await;
        pending.reported = true;
        self.inner
            .failover
            .lock()
            .election_written(group, result.as_ref().ok(), Instant::now());
        result
    }

    /// Writes the elections due now (of `only` that group, else of every group), when this
    /// controller leads.
    async fn run_elections(&self, only: Option<&str>) {
        let now = Instant::now();
        let leading = self.leading_term();
        let commands = {
            let mut failover = self.inner.failover.lock();
            failover.observe_leadership(leading, now);
            if leading.is_none() {
                return;
            }
            let unclean = self.inner.unclean_election;
            self.inner.machine.read(|applied| match only {
                Some(group) => failover
                    .election_for(&applied.state, group, now, unclean)
                    .into_iter()
                    .collect(),
                None => failover.elections(&applied.state, now, unclean),
            })
        };
        for command in commands {
            self.write_election(command).await;
        }
    }

    /// Writes one election and reports its outcome to the failover table, also when this
    /// future is dropped half-way (the outcome is then unknown).
    async fn write_election(&self, command: Command) {
        let group = command.group().to_string();
        let mut pending = PendingElection {
            inner: &self.inner,
            group: &group,
            reported: false,
        };
        let result = write_here(&self.inner.raft, command).await;
        pending.reported = true;
        if let Err(e) = &result {
            tracing::warn!(group, "writing an election failed: {e}");
        }
        self.inner
            .failover
            .lock()
            .election_written(&group, result.as_ref().ok(), Instant::now());
    }

    /// Stops the Raft node (it answers no more calls) and waits, at most
    /// [`STORAGE_CLOSE_TIMEOUT`], until its storage is closed, so the data dir can be opened
    /// again at once (openraft's state machine task ends just after the node).
    pub async fn shutdown(&self) {
        let node = self.inner.node_id;
        self.inner.stop_elections.send_replace(true);
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

/// An election being written; reports an unknown outcome if dropped before the write's
/// result is known.
struct PendingElection<'a> {
    inner: &'a Inner,
    group: &'a str,
    reported: bool,
}

impl Drop for PendingElection<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.inner
                .failover
                .lock()
                .election_written(self.group, None, Instant::now());
        }
    }
}

/// Every [`ELECTION_TICK`], while the controller leads, writes the elections due. Ends at
/// shutdown or when the last handle is dropped.
fn spawn_election_task(inner: Weak<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ELECTION_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => break,
                _ = tick.tick() => {}
            }
            let Some(inner) = inner.upgrade() else { break };
            Controller { inner }.run_elections(None).await;
        }
    });
}

/// Logs a refused registration or in-sync change a beat called for: WARN for what the
/// member's configuration must fix, DEBUG for a race with a change of epochs.
fn log_beat_refusal(beat: &MemberBeat, refusal: &Refusal) {
    match refusal {
        Refusal::InvalidGroup(_)
        | Refusal::InvalidAddress { .. }
        | Refusal::TooManyMembers
        | Refusal::TooManyGroups => tracing::warn!(group = %beat.group, member = beat.member,
            address = %beat.address, "the controller refused a member: {refusal}"),
        _ => tracing::debug!(group = %beat.group, member = beat.member,
            "a beat's controller write was refused: {refusal}"),
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
        .add_service(controller.control_service())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

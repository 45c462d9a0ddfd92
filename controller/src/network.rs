//! The Raft network over gRPC, the client side: openraft's messages to another controller as
//! JSON in `apogee.controller.v1.Raft` calls, over one lazily connected channel per peer.
//!
//! A peer that cannot be reached (connection refused, reset, DNS) is `Unreachable`, so
//! openraft backs off; a call that ran past openraft's time-to-live is a `Timeout`; an answer
//! the peer's Raft gave (a higher vote, say) comes back as a `RemoteError`.
//!
//! A lost peer is logged here, once: a warning when calls to it start failing, naming the
//! failure, and a line when it answers again ([`PeerHealth`]). openraft logs every failed call
//! itself at ERROR (each replication attempt and each leadership check of a lease), which
//! the servers' log filter drops (`apogee_server::logging`): an expected peer loss is one
//! warning, not dozens of errors a second.
//!
//! [`PeerTrust`]: what the calls carry, the same as a broker's calls to a NameServer: the
//! cluster proof (`security.cluster_secret_file`) on every call, and TLS verified against
//! `tls.ca_file` (this server's certificate presented with `tls.cluster_mtls`) when the
//! server has `[tls]`.

use crate::types::{NodeId, TypeConfig};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::controller::raft_client::RaftClient;
use apogee_proto::controller::RaftPayload;
use apogee_proto::tls::ClientTls;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The longest a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The most bytes one Raft message may have (a snapshot chunk, a batch of entries).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What a controller's calls to the others carry, and what its service asks of theirs.
#[derive(Clone, Debug, Default)]
pub struct PeerTrust {
    /// The cluster secret: every call carries its proof, and the service refuses a call
    /// without a valid one (UNAUTHENTICATED, as a NameServer refuses such a broker).
    pub secret: Option<ClusterSecret>,
    /// TLS of the calls (`https`, the peer's certificate verified); none: plain text.
    pub tls: Option<ClientTls>,
}

impl PeerTrust {
    /// Plain text, no proof: a server without `[tls]` or a cluster secret.
    pub fn plain() -> PeerTrust {
        PeerTrust::default()
    }

    /// A lazily connecting channel to a controller at `address` (host:port), over TLS when
    /// this trust has it.
    pub(crate) fn channel(&self, address: &str) -> Result<Channel, String> {
        Ok(apogee_proto::tls::endpoint(address, self.tls.as_ref())?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy())
    }

    /// Adds the cluster proof, if there is a secret, to an outgoing call.
    pub(crate) fn sign<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(secret) = &self.secret {
            secret.sign(request);
        }
    }
}

/// Makes a [`Connection`] per peer.
#[derive(Clone)]
pub struct Network {
    /// This controller's id (named in timeouts).
    pub own_id: NodeId,
    /// What the calls carry.
    pub trust: PeerTrust,
    /// Which peers answer, shared by every connection openraft makes.
    pub health: Arc<PeerHealth>,
}

/// Which peers fail their calls, to log a peer's loss and its return once each.
#[derive(Default)]
pub struct PeerHealth {
    /// Peers whose last call failed, with when they started failing.
    failing: parking_lot::Mutex<HashMap<NodeId, Instant>>,
}

impl PeerHealth {
    /// A call to `peer` got its Raft's answer: logged when the peer had been failing.
    fn answered(&self, peer: NodeId, address: &str) {
        let since = self.failing.lock().remove(&peer);
        if let Some(since) = since {
            tracing::info!(
                peer,
                address,
                failing_ms = since.elapsed().as_millis() as u64,
                "controller peer answers again"
            );
        }
    }

    /// A call to `peer` failed: a warning when it is the first failure since it answered.
    fn failed(&self, peer: NodeId, address: &str, error: &dyn std::fmt::Display) {
        let first = {
            let mut failing = self.failing.lock();
            match failing.entry(peer) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Instant::now());
                    true
                }
            }
        };
        if first {
            tracing::warn!(
                peer,
                address,
                %error,
                "controller peer does not answer; the group goes on while a majority does \
                 (logged once, until it answers again)"
            );
        }
    }

    /// Whether calls to `peer` are failing.
    pub fn is_failing(&self, peer: NodeId) -> bool {
        self.failing.lock().contains_key(&peer)
    }
}

/// One peer: its id and the channel to its address.
pub struct Connection {
    own_id: NodeId,
    target: NodeId,
    address: String,
    client: Option<RaftClient<Channel>>,
    trust: PeerTrust,
    health: Arc<PeerHealth>,
}

pub(crate) fn raft_client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        // A bad address fails every call as unreachable (below), with the address named.
        let client = self.trust.channel(&node.addr).ok().map(raft_client);
        Connection {
            own_id: self.own_id,
            target,
            address: node.addr.clone(),
            client,
            trust: self.trust.clone(),
            health: self.health.clone(),
        }
    }
}

/// Which call of the Raft service.
#[derive(Clone, Copy)]
enum Call {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// Why a call did not get the peer's Raft answer.
enum Failure {
    Unreachable(std::io::Error),
    Timeout,
    Network(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) | Failure::Network(e) => e.fmt(f),
            Failure::Timeout => f.write_str("no answer within the call's time to live"),
        }
    }
}

impl Connection {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        call: Call,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure> {
        let Some(client) = self.client.as_mut() else {
            return Err(Failure::Unreachable(std::io::Error::other(format!(
                "controller {} has an invalid address {:?}",
                self.target, self.address
            ))));
        };
        let json = serde_json::to_vec(request).map_err(|e| Failure::Network(e.into()))?;
        let mut request = tonic::Request::new(RaftPayload { json });
        request.set_timeout(ttl);
        self.trust.sign(&mut request);
        let answer = match call {
            Call::AppendEntries => client.append_entries(request).await,
            Call::Vote => client.vote(request).await,
            Call::InstallSnapshot => client.install_snapshot(request).await,
        };
        match answer {
            Ok(answer) => serde_json::from_slice(&answer.into_inner().json)
                .map_err(|e| Failure::Network(e.into())),
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => Err(Failure::Timeout),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                Err(Failure::Unreachable(std::io::Error::other(format!(
                    "controller {} at {}: {status}",
                    self.target, self.address
                ))))
            }
            Err(status) => Err(Failure::Network(std::io::Error::other(format!(
                "controller {} at {}: {status}",
                self.target, self.address
            )))),
        }
    }

    /// One call and its answer as openraft wants them.
    async fn rpc<Req, Resp, E>(
        &mut self,
        call: Call,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        let outcome = self
            .call::<Req, Result<Resp, RaftError<NodeId, E>>>(call, request, ttl)
            .await;
        match &outcome {
            Ok(_) => self.health.answered(self.target, &self.address),
            Err(failure) => self.health.failed(self.target, &self.address, failure),
        }
        match outcome {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(raft_error)) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                raft_error,
            ))),
            Err(Failure::Unreachable(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(Failure::Network(e)) => Err(RPCError::Network(NetworkError::new(&e))),
            Err(Failure::Timeout) => Err(RPCError::Timeout(Timeout {
                action: match call {
                    Call::AppendEntries => openraft::network::RPCTypes::AppendEntries,
                    Call::Vote => openraft::network::RPCTypes::Vote,
                    Call::InstallSnapshot => openraft::network::RPCTypes::InstallSnapshot,
                },
                id: self.own_id,
                target: self.target,
                timeout: ttl,
            })),
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Call::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc(Call::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Call::Vote, &rpc, &option).await
    }
}

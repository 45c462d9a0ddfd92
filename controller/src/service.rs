//! The Raft network over gRPC, the server side: `apogee.controller.v1.Raft` handing each
//! decoded openraft message to the local Raft, and the `Write` a follower passes on to the
//! leader (applied here only if this controller leads; never passed on again).
//!
//! With a cluster secret every call must carry the cluster proof: one without a valid proof
//! is refused UNAUTHENTICATED by apogee-server's `cluster_proof` check, the one a NameServer
//! applies to a broker's registration, and logged with the caller's address.

use crate::controller::WriteError;
use crate::state::{Command, CommandResult};
use crate::types::{Raft, TypeConfig};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::controller::raft_server::{self, RaftServer};
use apogee_proto::controller::RaftPayload;
use apogee_server::cluster_proof;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

/// The gRPC service in front of one controller's Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    /// The cluster secret whose proof every call must carry (none: no proof asked).
    secret: Option<ClusterSecret>,
}

impl RaftService {
    pub(crate) fn new(raft: Raft, secret: Option<ClusterSecret>) -> Self {
        RaftService { raft, secret }
    }

    /// The call's payload, once the caller has proven it is a member of the cluster.
    fn admit<T: DeserializeOwned>(&self, request: Request<RaftPayload>) -> Result<T, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "controller Raft call")?;
        decode(request)
    }

    /// The service, ready to be added to a tonic router.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(crate::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_MESSAGE_BYTES)
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable controller message: {e}")))
}

fn encode<T: Serialize>(answer: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(answer)
        .map(|json| Response::new(RaftPayload { json }))
        .map_err(|e| Status::internal(format!("encoding a controller answer: {e}")))
}

/// Applies `command` on this controller's Raft if it leads, else says who leads.
pub(crate) async fn write_here(raft: &Raft, command: Command) -> Result<CommandResult, WriteError> {
    match raft.client_write(command).await {
        Ok(response) => Ok(response.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(WriteError::NotLeader {
                leader: forward.leader_id,
                address: forward.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(WriteError::Raft(e.to_string())),
    }
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.admit(request)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<u64> = self.admit(request)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.admit(request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn write(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let command: Command = self.admit(request)?;
        encode(&write_here(&self.raft, command).await)
    }
}

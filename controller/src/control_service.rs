//! The controller's service to NameServers (`apogee.controller.v1.ControllerService`), served
//! by a controller run as its own process: the [`crate::FailoverAuthority`] calls of a
//! NameServer with `[controller] endpoints`, over gRPC.
//!
//! Only the leader acts on a beat, a session's end or a planned election. A controller that
//! does not lead answers `not_leader` with the leader it knows of and passes nothing on; the
//! caller asks the leader itself ([`crate::remote::RemoteController`]). A session's end is
//! also recorded here (liveness is recorded on every controller). With a cluster secret
//! every call must carry the cluster proof (UNAUTHENTICATED otherwise), as the Raft calls.

use crate::authority::FailoverAuthority;
use crate::controller::{Controller, WriteError};
use crate::failover::{MemberBeat, SessionEnd};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::controller::controller_service_server::{self, ControllerServiceServer};
use apogee_proto::controller::{
    BeatAnswer, BeatRequest, ElectNamedAnswer, ElectNamedRequest, MemberGoneAnswer,
    MemberGoneRequest, NotLeader, StatusAnswer, StatusRequest,
};
use apogee_server::cluster_proof;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The read timeout of a Status call that names none.
pub const DEFAULT_STATUS_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest read timeout a Status call may ask for.
pub const MAX_STATUS_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The service in front of one controller.
#[derive(Clone)]
pub struct ControlService {
    controller: Controller,
    secret: Option<ClusterSecret>,
}

impl ControlService {
    pub(crate) fn new(controller: Controller, secret: Option<ClusterSecret>) -> Self {
        ControlService { controller, secret }
    }

    /// The service, ready to be added to a tonic router.
    pub fn into_server(self) -> ControllerServiceServer<ControlService> {
        ControllerServiceServer::new(self)
    }

    fn admit<T>(&self, request: Request<T>) -> Result<T, Status> {
        cluster_proof::check(self.secret.as_ref(), &request, "controller service call")?;
        Ok(request.into_inner())
    }

    /// None while this controller leads, else the leader it knows of.
    fn not_leader(&self) -> Option<NotLeader> {
        if self.controller.is_leader() {
            return None;
        }
        let (leader_id, address) = self.controller.leader_hint();
        Some(NotLeader {
            leader_id,
            leader_address: address.unwrap_or_default(),
        })
    }
}

#[tonic::async_trait]
impl controller_service_server::ControllerService for ControlService {
    async fn beat(&self, request: Request<BeatRequest>) -> Result<Response<BeatAnswer>, Status> {
        let req = self.admit(request)?;
        let Some(report) = req.report else {
            return Err(Status::invalid_argument("a beat without a member report"));
        };
        if req.member == 0 || req.group.is_empty() {
            return Err(Status::invalid_argument(
                "a beat names its group and a member id >= 1",
            ));
        }
        let beat = MemberBeat {
            group: req.group,
            member: req.member,
            address: req.address,
            report,
            via: req.via,
        };
        // A follower's on_beat records the beat as liveness and answers nothing.
        let assignment = self.controller.on_beat(beat).await;
        let not_leader = assignment.is_none().then(|| self.not_leader()).flatten();
        Ok(Response::new(BeatAnswer {
            assignment,
            not_leader,
        }))
    }

    async fn member_gone(
        &self,
        request: Request<MemberGoneRequest>,
    ) -> Result<Response<MemberGoneAnswer>, Status> {
        let req = self.admit(request)?;
        let end = if req.closed_by_member {
            SessionEnd::ClosedByMember
        } else {
            SessionEnd::Lost
        };
        self.controller
            .member_gone(&req.group, req.member, req.via, end)
            .await;
        Ok(Response::new(MemberGoneAnswer {
            not_leader: self.not_leader(),
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusAnswer>, Status> {
        let req = self.admit(request)?;
        let read_timeout = match req.read_timeout_ms {
            0 => DEFAULT_STATUS_READ_TIMEOUT,
            ms => Duration::from_millis(ms).min(MAX_STATUS_READ_TIMEOUT),
        };
        let report = FailoverAuthority::report(&self.controller, read_timeout).await;
        let state_json = serde_json::to_vec(&report.state)
            .map_err(|e| Status::internal(format!("encoding the controller state: {e}")))?;
        Ok(Response::new(StatusAnswer {
            node_id: report.node_id,
            leader_id: report.leader,
            term: report.term,
            last_applied_index: report.last_applied_index,
            last_applied_term: report.last_applied_term,
            is_leader: report.is_leader,
            state_json,
            read_error: report.read_error.map(|e| e.to_string()).unwrap_or_default(),
            not_leader: self.not_leader(),
        }))
    }

    async fn elect_named(
        &self,
        request: Request<ElectNamedRequest>,
    ) -> Result<Response<ElectNamedAnswer>, Status> {
        let req = self.admit(request)?;
        let result: Result<_, WriteError> =
            self.controller.elect_named(&req.group, req.member).await;
        let result_json = serde_json::to_vec(&result)
            .map_err(|e| Status::internal(format!("encoding an election's result: {e}")))?;
        Ok(Response::new(ElectNamedAnswer { result_json }))
    }
}

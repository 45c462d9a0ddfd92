//! [`RemoteController`]: the [`FailoverAuthority`] of a NameServer whose controller runs as
//! its own process (`[controller] endpoints`), reached over gRPC
//! (`apogee.controller.v1.ControllerService`, [`crate::control_service`]).
//!
//! Finding the leader: a call goes first to the controller that led at the last answer, then
//! to each endpoint in order; a controller that does not lead names the leader it knows of,
//! which is asked next (also when its address is not among the endpoints). Each attempt is
//! bounded ([`BEAT_ATTEMPT_TIMEOUT`] and the others below) and one call makes at most
//! [`MAX_ATTEMPTS`] of them, so a dead or silent controller costs a bounded time. The calls
//! carry what the embedded controller's Raft calls carry ([`PeerTrust`]): the cluster
//! proof, over TLS when the NameServer has `[tls]`.
//!
//! The lease rule is the leader's: it grants a lease only after confirming with a quorum
//! that it still leads, after the beat arrived; a follower's answer never carries one.

use crate::authority::{ControllerReport, FailoverAuthority};
use crate::controller::{ReadError, WriteError};
use crate::failover::{MemberBeat, NameServerId, SessionEnd};
use crate::network::PeerTrust;
use crate::state::{CommandResult, ControllerState, MemberId};
use apogee_proto::cluster::Assignment;
use apogee_proto::controller::controller_service_client::ControllerServiceClient;
use apogee_proto::controller::{
    BeatRequest, ElectNamedRequest, MemberGoneRequest, NotLeader, StatusRequest,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tonic::transport::Channel;

/// The longest one attempt of a beat may take (the NameServer answers the broker's beat
/// within a second in any case).
pub const BEAT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest one attempt to report a session's end may take.
pub const GONE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Added to the read timeout of a status call, per attempt.
pub const STATUS_ATTEMPT_SLACK: Duration = Duration::from_secs(1);
/// The longest one attempt of a planned election may take (the leader waits out the
/// master's lease and margin before it writes it).
pub const ELECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most controllers one call asks (a leader named by a follower included).
pub const MAX_ATTEMPTS: usize = 9;

type Client = ControllerServiceClient<Channel>;
type Attempt<T> =
    Pin<Box<dyn Future<Output = Result<(T, Option<NotLeader>), tonic::Status>> + Send>>;

/// A controller group reached over gRPC.
pub struct RemoteController {
    endpoints: Vec<String>,
    trust: PeerTrust,
    channels: parking_lot::Mutex<HashMap<String, Channel>>,
    /// The address of the controller that led at the last answer.
    leader: parking_lot::Mutex<Option<String>>,
}

impl RemoteController {
    /// A client of the controllers at `endpoints` (host:port each; connections are made
    /// when first used).
    pub fn new(endpoints: Vec<String>, trust: PeerTrust) -> RemoteController {
        RemoteController {
            endpoints,
            trust,
            channels: parking_lot::Mutex::new(HashMap::new()),
            leader: parking_lot::Mutex::new(None),
        }
    }

    /// The endpoints it was given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn client(&self, address: &str) -> Result<Client, String> {
        let mut channels = self.channels.lock();
        let channel = match channels.get(address) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.trust.channel(address)?;
                channels.insert(address.to_string(), channel.clone());
                channel
            }
        };
        Ok(ControllerServiceClient::new(channel))
    }

    /// A request carrying the cluster proof.
    fn signed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.trust.sign(&mut request);
        request
    }

    /// Asks the leader: the last leader first, then the endpoints, following the leader a
    /// follower names. Returns the leader's answer, else the last follower's answer, else
    /// why no controller answered.
    async fn ask<T: Send + 'static>(
        &self,
        what: &str,
        attempt_timeout: Duration,
        call: impl Fn(Client) -> Attempt<T>,
    ) -> Result<T, String> {
        let mut queue: VecDeque<String> = self.leader.lock().iter().cloned().collect();
        queue.extend(self.endpoints.iter().cloned());
        let mut asked: Vec<String> = Vec::new();
        let mut follower_answer = None;
        let mut failure = String::from("no controller endpoint");
        while let Some(address) = queue.pop_front() {
            if asked.contains(&address) {
                continue;
            }
            if asked.len() >= MAX_ATTEMPTS {
                break;
            }
            asked.push(address.clone());
            let client = match self.client(&address) {
                Ok(client) => client,
                Err(e) => {
                    failure = format!("{address}: {e}");
                    continue;
                }
            };
            match tokio::time::timeout(attempt_timeout, call(client)).await {
                Ok(Ok((answer, None))) => {
                    *self.leader.lock() = Some(address);
                    return Ok(answer);
                }
                Ok(Ok((answer, Some(not_leader)))) => {
                    failure = format!(
                        "{address} does not lead (leader {})",
                        not_leader
                            .leader_id
                            .map_or("not known".to_string(), |id| id.to_string())
                    );
                    if !not_leader.leader_address.is_empty() {
                        queue.push_front(not_leader.leader_address);
                    }
                    follower_answer = Some(answer);
                }
                Ok(Err(status)) => {
                    failure = format!("{address}: {}: {}", status.code(), status.message())
                }
                Err(_) => {
                    failure = format!(
                        "{address} did not answer within {} ms",
                        attempt_timeout.as_millis()
                    )
                }
            }
        }
        self.leader.lock().take();
        tracing::debug!(what, asked = ?asked, "no controller leader answered: {failure}");
        follower_answer.ok_or(failure)
    }
}

#[tonic::async_trait]
impl FailoverAuthority for RemoteController {
    async fn on_beat(&self, beat: MemberBeat) -> Option<Assignment> {
        let request = BeatRequest {
            group: beat.group,
            member: beat.member,
            address: beat.address,
            report: Some(beat.report),
            via: beat.via,
        };
        let answer = self
            .ask("beat", BEAT_ATTEMPT_TIMEOUT, |mut client| {
                let request = self.signed(request.clone());
                Box::pin(async move {
                    let answer = client.beat(request).await?.into_inner();
                    Ok((answer.assignment, answer.not_leader))
                })
            })
            .await;
        match answer {
            Ok(assignment) => assignment,
            Err(e) => {
                tracing::debug!("no controller answered a member's beat: {e}");
                None
            }
        }
    }

    async fn member_gone(&self, group: &str, member: MemberId, via: NameServerId, end: SessionEnd) {
        let request = MemberGoneRequest {
            group: group.to_string(),
            member,
            via,
            closed_by_member: end == SessionEnd::ClosedByMember,
        };
        let answer = self
            .ask("member gone", GONE_ATTEMPT_TIMEOUT, |mut client| {
                let request = self.signed(request.clone());
                Box::pin(async move {
                    let answer = client.member_gone(request).await?.into_inner();
                    Ok(((), answer.not_leader))
                })
            })
            .await;
        if let Err(e) = answer {
            tracing::warn!(
                group,
                member,
                "the controller could not be told a member's session ended: {e}"
            );
        }
    }

    async fn report(&self, read_timeout: Duration) -> ControllerReport {
        let request = StatusRequest {
            read_timeout_ms: read_timeout.as_millis() as u64,
        };
        let answer = self
            .ask(
                "status",
                read_timeout + STATUS_ATTEMPT_SLACK,
                |mut client| {
                    let request = self.signed(request);
                    Box::pin(async move {
                        let answer = client.status(request).await?.into_inner();
                        let not_leader = answer.not_leader.clone();
                        Ok((answer, not_leader))
                    })
                },
            )
            .await;
        let unreachable = |reason: String| ControllerReport {
            node_id: 0,
            leader: None,
            term: 0,
            last_applied_index: None,
            last_applied_term: 0,
            is_leader: false,
            state: ControllerState::default(),
            read_error: Some(ReadError::Remote(reason)),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                return unreachable(format!(
                    "no controller of {:?} answered: {e}",
                    self.endpoints
                ))
            }
        };
        let state = match serde_json::from_slice::<ControllerState>(&answer.state_json) {
            Ok(state) => state,
            Err(e) => {
                return unreachable(format!(
                    "controller {} sent an undecodable state: {e}",
                    answer.node_id
                ))
            }
        };
        ControllerReport {
            node_id: answer.node_id,
            leader: answer.leader_id,
            term: answer.term,
            last_applied_index: answer.last_applied_index,
            last_applied_term: answer.last_applied_term,
            is_leader: answer.is_leader,
            state,
            // A follower's NotLeader is not passed on with an address: the leader was asked
            // already, and it is a controller's address, not a NameServer's.
            read_error: (!answer.read_error.is_empty())
                .then_some(ReadError::Remote(answer.read_error)),
        }
    }

    async fn elect_named(
        &self,
        group: &str,
        member: MemberId,
    ) -> Result<CommandResult, WriteError> {
        let request = ElectNamedRequest {
            group: group.to_string(),
            member,
        };
        let answer = self
            .ask("planned election", ELECT_ATTEMPT_TIMEOUT, |mut client| {
                let request = self.signed(request.clone());
                Box::pin(async move {
                    let answer = client.elect_named(request).await?.into_inner();
                    let result: Result<CommandResult, WriteError> =
                        serde_json::from_slice(&answer.result_json).map_err(|e| {
                            tonic::Status::internal(format!("undecodable election result: {e}"))
                        })?;
                    let not_leader = match &result {
                        Err(WriteError::NotLeader { leader, address }) => Some(NotLeader {
                            leader_id: *leader,
                            leader_address: address.clone().unwrap_or_default(),
                        }),
                        _ => None,
                    };
                    Ok((result, not_leader))
                })
            })
            .await;
        match answer {
            // A follower's NotLeader is answered without an address: see `report`.
            Ok(Err(WriteError::NotLeader { leader, .. })) => Err(WriteError::NotLeader {
                leader,
                address: None,
            }),
            Ok(result) => result,
            Err(reason) => Err(WriteError::Raft(format!(
                "no controller of {:?} answered: {reason}",
                self.endpoints
            ))),
        }
    }
}

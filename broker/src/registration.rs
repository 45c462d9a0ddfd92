//! The broker's link to its NameServers: it registers (with its topics, its
//! consumer groups and data version) with every configured NameServer, keeps a
//! session (`Registry.BrokerSession`, a stream) open with each and beats on it every
//! `heartbeat_interval_ms` (a beat is the data version only), registers again at once
//! when its topics or groups change or a NameServer asks (a restarted one knows
//! nothing, so it asks when the session reconnects), and unregisters on shutdown. A
//! NameServer drops the broker when its session closes or misses beats; a broken
//! session is opened again after a short backoff (200 ms doubling to 1 s), and the
//! NameServer then asks for a registration. Every NameServer is talked to at the same
//! time, so a dead one delays none of the others.
//!
//! At start, before serving, the broker registers once with every NameServer it
//! can reach: one that refuses because another live process holds this broker
//! id stops the start ([`RegistrationRefused`]); unreachable ones do not (the
//! loop keeps trying them). A refusal later on is logged; that NameServer refuses this
//! broker's session too until the other process is gone, and then asks for a
//! registration.
//!
//! It also forwards the route queries clients send to the broker (QueryRoute,
//! QueryAssignment) to a NameServer, and relays transaction check-backs through
//! the NameServers.

use crate::access::AccessTable;
use crate::config::BrokerConfig;
use crate::failover_link::{beat_period, take_answer, BeatClock, ControllerMember};
use crate::groups::GroupTable;
use crate::topics::{TopicConfig, TopicTable};
use apogee_proto::cluster::{self, registry_client::RegistryClient, BrokerRole, SessionBeat};
use apogee_proto::cluster_auth::ClusterSecret;
use apogee_proto::tls::ClientTls;
use apogee_proto::v2::{self, messaging_service_client::MessagingServiceClient};
use apogee_proto::ApogeeError;
use futures::future::join_all;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// The first and the longest pause before a broken session is opened again.
const SESSION_RETRY_FIRST: Duration = Duration::from_millis(200);
const SESSION_RETRY_MAX: Duration = Duration::from_secs(1);

/// A session whose NameServer answered nothing for this many beat intervals (and at least
/// [`RPC_TIMEOUT`]) is taken as broken and opened again.
const UNANSWERED_BEATS: u32 = 3;

/// A NameServer refused to register this broker: another live process holds its
/// broker id (the NameServer's reason names both endpoints).
#[derive(Debug, thiserror::Error)]
#[error("nameserver {nameserver} refused to register this broker: {reason}")]
pub struct RegistrationRefused {
    pub nameserver: String,
    pub reason: String,
}

/// One configured NameServer.
struct NameServer {
    addr: String,
    channel: Channel,
    /// Its last registration answer was a refusal (a clash of broker ids).
    refused: AtomicBool,
    /// Its last call failed (logged once per outage, not per heartbeat).
    failing: AtomicBool,
    /// It accepted a registration (and no unregister since).
    registered: AtomicBool,
}

/// What one registration attempt came to.
enum Outcome {
    Accepted,
    /// Refused for a clash of broker ids, with the NameServer's reason.
    Refused(String),
    /// Not answered, or refused for another reason (logged).
    Failed,
}

pub struct NameServerLink {
    config: BrokerConfig,
    nameservers: Vec<NameServer>,
    /// Proves this broker belongs to the cluster (`apogee_proto::cluster_auth`).
    secret: Option<ClusterSecret>,
    /// Users and ACL entries, registered with the topics and groups.
    access: Option<Arc<AccessTable>>,
    /// The data version of the last registration sent: when the tables' version moves past
    /// it, the broker registers again.
    sent_version: AtomicI64,
    /// Drawn at start: names this process in its registrations and sessions.
    instance_id: u64,
    /// Controller mode: the member's state, reported on every beat and assigned from the
    /// answers (`failover_link`).
    member: Option<Arc<dyn ControllerMember>>,
    /// The broker is stopping and unregisters: the NameServers end its sessions then, which
    /// is no failure to warn about.
    unregistering: AtomicBool,
    /// Woken by [`NameServerLink::leave_routes`]: unregister now, before the broker stops.
    leave: Notify,
}

/// How a session ended.
enum SessionEnd {
    /// After the NameServer answered (the next attempt starts at the first backoff).
    Answered,
    /// Without an answer (the backoff grows).
    Unanswered,
}

/// A channel to a NameServer, over TLS with `tls`.
fn channel(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, ApogeeError> {
    Ok(apogee_proto::tls::endpoint(addr, tls)
        .map_err(|e| ApogeeError::BadRequest(format!("nameserver {e}")))?
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy())
}

impl NameServerLink {
    /// The link to `config`'s NameServers, proving `secret` (the cluster secret) when set.
    pub fn new(config: &BrokerConfig, secret: Option<ClusterSecret>) -> Result<Self, ApogeeError> {
        let tls = config.tls.client_tls().map_err(ApogeeError::BadRequest)?;
        let nameservers = config
            .nameservers
            .iter()
            .map(|a| {
                Ok(NameServer {
                    addr: a.clone(),
                    channel: channel(a, tls.as_ref())?,
                    refused: AtomicBool::new(false),
                    failing: AtomicBool::new(false),
                    registered: AtomicBool::new(false),
                })
            })
            .collect::<Result<_, ApogeeError>>()?;
        Ok(NameServerLink {
            config: config.clone(),
            nameservers,
            secret,
            access: None,
            sent_version: AtomicI64::new(-1),
            instance_id: rand::random::<u64>().max(1),
            unregistering: AtomicBool::new(false),
            leave: Notify::new(),
            member: None,
        })
    }

    /// Registers `access`'s users and ACL entries too (and re-registers when they change).
    pub fn with_access(mut self, access: Arc<AccessTable>) -> Self {
        self.access = Some(access);
        self
    }

    /// Controller mode: reports `member` on every beat and follows the assignments the
    /// controller leader answers with; registrations name the role and epoch it holds.
    pub fn with_member(mut self, member: Arc<dyn ControllerMember>) -> Self {
        self.member = Some(member);
        self
    }

    /// What a NameServer compares to know it holds the latest registration: the topics',
    /// groups' and access tables' versions, and in controller mode the role held (a new
    /// epoch or role is registered at once, so routes follow a failover).
    fn data_version(&self, topics: &TopicTable, groups: &GroupTable) -> i64 {
        let access = self.access.as_ref().map_or(0, |a| a.data_version());
        let role = self.member.as_ref().map_or(0, |m| {
            let (role, epoch) = m.registered_role();
            (epoch as i64).saturating_mul(4) + role as i64
        });
        // Turning topic creation on send on or off (runtime config) is a change too.
        data_version(topics, groups)
            .saturating_add(access)
            .saturating_add(role)
            .saturating_add(topics.auto_creates() as i64)
    }

    /// The role and master epoch to register with: the controller's in controller mode, else
    /// the configured role (epoch 0).
    fn registered_role(&self) -> (BrokerRole, u64) {
        match &self.member {
            Some(member) => member.registered_role(),
            None => (self.config.role.into(), 0),
        }
    }

    /// A request to a NameServer, with the cluster proof when there is a secret.
    fn signed<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(secret) = &self.secret {
            secret.sign(&mut request);
        }
        request
    }

    fn registration(
        &self,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> cluster::RegisterBrokerRequest {
        // Read before the tables: a change made while they are read is registered again.
        let data_version = self.data_version(topics, groups);
        self.sent_version.store(data_version, Ordering::SeqCst);
        let access = self
            .access
            .as_ref()
            .map(|a| a.snapshot())
            .unwrap_or_default();
        let (role, master_epoch) = self.registered_role();
        cluster::RegisterBrokerRequest {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            endpoint: self.config.advertised_endpoint(),
            role: role as i32,
            topics: topics.list().iter().map(TopicConfig::to_wire).collect(),
            data_version,
            groups: groups
                .list()
                .iter()
                .map(|g| cluster::GroupConfig::from(g.as_ref()))
                .collect(),
            users: access.all_users().cloned().collect(),
            acls: access.all_acls().cloned().collect(),
            instance_id: self.instance_id,
            controller_mode: self.member.is_some(),
            master_epoch,
            remoting_endpoint: remoting_endpoint(&self.config),
            auto_create_queue_count: if topics.auto_creates() {
                i32::try_from(self.config.default_queue_count).unwrap_or(i32::MAX)
            } else {
                0
            },
            serves_remoting: self.config.remoting.enabled,
        }
    }

    /// Registers with one NameServer; logs what happened and remembers a refusal.
    async fn register_one(
        &self,
        ns: &NameServer,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> Outcome {
        let mut client = RegistryClient::new(ns.channel.clone());
        let call = client.register_broker(self.signed(self.registration(topics, groups)));
        let status = match call.await {
            Ok(_) => {
                ns.registered.store(true, Ordering::Relaxed);
                if ns.refused.swap(false, Ordering::Relaxed) {
                    tracing::info!(nameserver = %ns.addr, "registration accepted again");
                }
                self.reached(ns);
                return Outcome::Accepted;
            }
            Err(status) => status,
        };
        if status.code() == tonic::Code::AlreadyExists {
            self.reached(ns);
            if ns.refused.swap(true, Ordering::Relaxed) {
                tracing::debug!(nameserver = %ns.addr, "registration refused: {}", status.message());
            } else {
                tracing::error!(nameserver = %ns.addr, "registration refused: {}", status.message());
            }
            return Outcome::Refused(status.message().to_string());
        }
        self.failed(ns, "registration", &status);
        Outcome::Failed
    }

    /// Notes a NameServer answered (logging its return after an outage).
    fn reached(&self, ns: &NameServer) {
        if ns.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(nameserver = %ns.addr, "nameserver reachable again");
        }
    }

    /// Logs a failed call: a warning when a NameServer starts failing, then quietly; quietly
    /// too once the broker unregisters (a NameServer ends the session of a broker it drops).
    fn failed(&self, ns: &NameServer, what: &str, status: &tonic::Status) {
        if self.unregistering.load(Ordering::SeqCst) {
            tracing::debug!(nameserver = %ns.addr, "{what} ended as the broker stops: {}", status.message());
        } else if ns.failing.swap(true, Ordering::Relaxed) {
            tracing::debug!(nameserver = %ns.addr, "{what} failed: {}", status.message());
        } else {
            tracing::warn!(nameserver = %ns.addr, "{what} failed: {}", status.message());
        }
    }

    /// Whether at least one NameServer holds this broker's registration and
    /// answered the last call (readiness).
    pub fn registered_anywhere(&self) -> bool {
        self.nameservers.iter().any(|ns| {
            ns.registered.load(Ordering::Relaxed)
                && !ns.failing.load(Ordering::Relaxed)
                && !ns.refused.load(Ordering::Relaxed)
        })
    }

    /// Registers with every NameServer once, all at once (failures are logged).
    pub async fn register_all(&self, topics: &TopicTable, groups: &GroupTable) {
        join_all(
            self.nameservers
                .iter()
                .map(|ns| self.register_one(ns, topics, groups)),
        )
        .await;
    }

    /// The registration at start, before the broker serves: once with every
    /// NameServer, all at once. A refusal for a clash of broker ids is an error
    /// (after taking back the registrations other NameServers accepted, which
    /// would hide the other process there); unreachable NameServers are not.
    pub async fn register_at_start(
        &self,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> Result<(), RegistrationRefused> {
        let outcomes = join_all(
            self.nameservers
                .iter()
                .map(|ns| self.register_one(ns, topics, groups)),
        )
        .await;
        let refusal = self
            .nameservers
            .iter()
            .zip(&outcomes)
            .find_map(|(ns, o)| match o {
                Outcome::Refused(reason) => Some(RegistrationRefused {
                    nameserver: ns.addr.clone(),
                    reason: reason.clone(),
                }),
                _ => None,
            });
        let Some(refusal) = refusal else {
            return Ok(());
        };
        let accepted = self
            .nameservers
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Accepted))
            .map(|(ns, _)| self.unregister_one(ns));
        join_all(accepted).await;
        Err(refusal)
    }

    async fn unregister_one(&self, ns: &NameServer) {
        let req = cluster::UnregisterBrokerRequest {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
        };
        ns.registered.store(false, Ordering::Relaxed);
        let mut client = RegistryClient::new(ns.channel.clone());
        if let Err(e) = client.unregister_broker(self.signed(req)).await {
            tracing::warn!(nameserver = %ns.addr, "unregister failed: {}", e.message());
        }
    }

    /// Unregisters from every NameServer except those that refused this broker: there
    /// the entry is the other process's (an unregister names no endpoint).
    async fn unregister_all(&self) {
        let registered = self
            .nameservers
            .iter()
            .filter(|ns| !ns.refused.load(Ordering::Relaxed));
        join_all(registered.map(|ns| self.unregister_one(ns))).await;
    }

    /// Takes this broker out of the routes while it still serves (a master that handed its
    /// role over, draining before it stops): [`run`](Self::run) unregisters and ends its
    /// sessions now instead of at shutdown, so the clients' next route refresh leaves this
    /// address out before it closes.
    pub fn leave_routes(&self) {
        self.leave.notify_one();
    }

    /// Keeps the registration fresh and a session open with every NameServer until
    /// `shutdown` turns true or [`leave_routes`](Self::leave_routes) is called, then
    /// unregisters (and only then ends the sessions, so that the NameServers do not take the
    /// shutdown for a failure).
    pub async fn run(
        self: Arc<Self>,
        topics: Arc<TopicTable>,
        groups: Arc<GroupTable>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if let Some(warning) = self.config.heartbeat_deprecation() {
            tracing::warn!("{warning}");
        }
        let sessions: Vec<_> = (0..self.nameservers.len())
            .map(|i| tokio::spawn(self.clone().keep_session(i, topics.clone(), groups.clone())))
            .collect();
        let mut register =
            tokio::time::interval(Duration::from_secs(self.config.register_interval_secs));
        // A slow round is not made up for with a burst of them.
        register.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The start registered already: the first round comes one interval later.
        register.tick().await;
        let mut role_changes = self.member.as_ref().map(|m| m.changes());
        loop {
            // Armed before the version is compared, so a change made while a registration
            // is on its way wakes the next round instead of waiting for a heartbeat.
            let changed = topics.changed().notified();
            let groups_changed = groups.changed().notified();
            let access_changed = async {
                match &self.access {
                    Some(a) => a.changed().notified().await,
                    None => std::future::pending().await,
                }
            };
            let member_changed = marked_changed(role_changes.as_mut());
            if self.data_version(&topics, &groups) != self.sent_version.load(Ordering::SeqCst) {
                self.register_all(&topics, &groups).await;
            }
            tokio::select! {
                _ = register.tick() => self.register_all(&topics, &groups).await,
                _ = changed => {}
                _ = groups_changed => {}
                _ = access_changed => {}
                _ = member_changed => {}
                _ = shutdown.changed() => break,
                _ = self.leave.notified() => {
                    tracing::info!("leaving the routes: unregistering from the nameservers");
                    break;
                }
            }
        }
        self.unregistering.store(true, Ordering::SeqCst);
        self.unregister_all().await;
        for session in sessions {
            session.abort();
        }
    }

    /// Keeps this broker's session with NameServer `index` open, opening it again after a
    /// backoff whenever it breaks; runs until aborted.
    async fn keep_session(
        self: Arc<Self>,
        index: usize,
        topics: Arc<TopicTable>,
        groups: Arc<GroupTable>,
    ) {
        let ns = &self.nameservers[index];
        let mut retry = SESSION_RETRY_FIRST;
        loop {
            if let SessionEnd::Answered = self.session(ns, &topics, &groups).await {
                retry = SESSION_RETRY_FIRST;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(SESSION_RETRY_MAX);
        }
    }

    /// One session with `ns`: opens it, beats every interval and registers whenever the
    /// NameServer asks (beside the beats, so a long registration delays none), until the
    /// stream ends, fails or goes unanswered.
    async fn session(
        &self,
        ns: &NameServer,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> SessionEnd {
        let interval = self.config.heartbeat_interval();
        let (beats, outgoing) = mpsc::channel(4);
        let mut clock = BeatClock::default();
        let open = cluster::SessionOpen {
            cluster_name: self.config.cluster_name.clone(),
            broker_name: self.config.broker_name.clone(),
            broker_id: self.config.broker_id,
            endpoint: self.config.advertised_endpoint(),
            instance_id: self.instance_id,
            heartbeat_interval_ms: interval.as_millis() as u64,
            controller_mode: self.member.is_some(),
        };
        let open = self.beat(&mut clock, Some(open), topics, groups);
        if beats.try_send(open).is_err() {
            return SessionEnd::Unanswered;
        }
        let mut client = RegistryClient::new(ns.channel.clone());
        let call = client.broker_session(self.signed(ReceiverStream::new(outgoing)));
        let mut answers = match call.await {
            Ok(answers) => answers.into_inner(),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                self.reached(ns);
                tracing::debug!(nameserver = %ns.addr, "session refused: {}", status.message());
                return SessionEnd::Unanswered;
            }
            Err(status) => {
                self.failed(ns, "session", &status);
                return SessionEnd::Unanswered;
            }
        };
        let register_wanted = Notify::new();
        let registering = async {
            loop {
                register_wanted.notified().await;
                self.register_one(ns, topics, groups).await;
            }
        };
        let silence_allowed = (interval * UNANSWERED_BEATS).max(RPC_TIMEOUT);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // The opening message was the first beat.
        let mut answered = SessionEnd::Unanswered;
        let mut member_changes = self.member.as_ref().map(|m| m.changes());
        let beating = async {
            let mut last_answer = Instant::now();
            loop {
                let member_changed = marked_changed(member_changes.as_mut());
                tokio::select! {
                    _ = ticker.tick() => {
                        // A full queue is a NameServer not reading: the silence check ends it.
                        let _ = beats.try_send(self.beat(&mut clock, None, topics, groups));
                    }
                    _ = member_changed => {
                        let _ = beats.try_send(self.beat(&mut clock, None, topics, groups));
                    }
                    answer = tokio::time::timeout_at(last_answer + silence_allowed, answers.message()) => {
                        match answer {
                            Ok(Ok(Some(a))) => {
                                last_answer = Instant::now();
                                answered = SessionEnd::Answered;
                                self.reached(ns);
                                if let Some(member) = &self.member {
                                    take_answer(member.as_ref(), &mut clock, &a);
                                    if let Some(asked_ms) = a.assignment.as_ref().map(|x| x.beat_ms) {
                                        let period = beat_period(interval, asked_ms);
                                        if period != ticker.period() {
                                            tracing::info!(
                                                nameserver = %ns.addr,
                                                beat_ms = period.as_millis() as u64,
                                                asked_ms,
                                                "beating at this interval (as the controller asks, at most the configured {} ms)",
                                                interval.as_millis()
                                            );
                                            ticker = tokio::time::interval_at(Instant::now() + period, period);
                                            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                                        }
                                    }
                                }
                                if a.register_required {
                                    tracing::debug!(nameserver = %ns.addr, "the nameserver asks for a registration");
                                    register_wanted.notify_one();
                                }
                            }
                            Ok(Ok(None)) => {
                                tracing::info!(nameserver = %ns.addr, "the nameserver ended the session; opening another");
                                return;
                            }
                            Ok(Err(status)) => {
                                self.failed(ns, "session", &status);
                                return;
                            }
                            Err(_) => {
                                let status = tonic::Status::deadline_exceeded(format!(
                                    "no answer for {} ms", silence_allowed.as_millis()
                                ));
                                self.failed(ns, "session", &status);
                                return;
                            }
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = beating => {}
            _ = registering => {}
        }
        answered
    }

    /// A beat of a session (its opening one with `open`): the data version, and in
    /// controller mode the member's report, numbered by `clock`.
    fn beat(
        &self,
        clock: &mut BeatClock,
        open: Option<cluster::SessionOpen>,
        topics: &TopicTable,
        groups: &GroupTable,
    ) -> SessionBeat {
        let member = self.member.as_ref().map(|m| m.report());
        SessionBeat {
            open,
            data_version: self.data_version(topics, groups),
            member,
            seq: clock.sent(crate::membership::BootInstant::now()),
        }
    }

    /// Asks the NameServers in turn until `accept` takes an answer; returns it, or the last
    /// transport error.
    async fn ask_each<T, F, Fut>(
        &self,
        call: F,
        accept: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, ApogeeError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = Err(ApogeeError::Unavailable("no nameserver configured".into()));
        for ns in &self.nameservers {
            let addr = &ns.addr;
            match call(ns.channel.clone()).await {
                Ok(r) if accept(r.get_ref()) => return Ok(Some(r.into_inner())),
                Ok(_) => last = Ok(None),
                Err(e) => {
                    last = Err(ApogeeError::Unavailable(format!(
                        "nameserver {addr}: {}",
                        e.message()
                    )))
                }
            }
        }
        last
    }

    /// Asks the NameServers in turn; the first answer wins.
    pub async fn query_route(&self, req: v2::QueryRouteRequest) -> v2::QueryRouteResponse {
        let answer = self
            .ask_each(
                |ch| {
                    let req = self.signed(req.clone());
                    async move { MessagingServiceClient::new(ch).query_route(req).await }
                },
                |_| true,
            )
            .await;
        match answer {
            Ok(Some(r)) => r,
            other => v2::QueryRouteResponse {
                status: Some(failure_status(&other)),
                message_queues: vec![],
            },
        }
    }

    pub async fn query_assignment(
        &self,
        req: v2::QueryAssignmentRequest,
    ) -> v2::QueryAssignmentResponse {
        let answer = self
            .ask_each(
                |ch| {
                    let req = self.signed(req.clone());
                    async move { MessagingServiceClient::new(ch).query_assignment(req).await }
                },
                |_| true,
            )
            .await;
        match answer {
            Ok(Some(r)) => r,
            other => v2::QueryAssignmentResponse {
                status: Some(failure_status(&other)),
                assignments: vec![],
            },
        }
    }

    /// Asks the NameServers in turn to push a transaction check-back to a producer connected
    /// to them; returns the client reached.
    pub async fn relay_check_back(&self, req: cluster::RelayCheckBackRequest) -> Option<String> {
        let answer = self
            .ask_each(
                |ch| {
                    let req = self.signed(req.clone());
                    async move { RegistryClient::new(ch).relay_check_back(req).await }
                },
                |r: &cluster::RelayCheckBackResponse| !r.delivered_to.is_empty(),
            )
            .await;
        match answer {
            Ok(r) => r.map(|r| r.delivered_to),
            Err(e) => {
                tracing::debug!(error = %e, "could not relay a check-back");
                None
            }
        }
    }
}

/// The version a NameServer compares: it grows with every topic or group change (both
/// counters are persisted and only grow).
fn data_version(topics: &TopicTable, groups: &GroupTable) -> i64 {
    topics.data_version().saturating_add(groups.data_version())
}

/// The remoting listener clients dial when remoting has one of its own (`[remoting] listen`):
/// the advertised host with that listener's port; "" when remoting shares the gRPC listener.
fn remoting_endpoint(config: &BrokerConfig) -> String {
    let remoting = &config.remoting;
    if !remoting.enabled || remoting.listen.is_empty() {
        return String::new();
    }
    let advertised = config.advertised_endpoint();
    match (
        advertised.rsplit_once(':'),
        remoting.listen.rsplit_once(':'),
    ) {
        (Some((host, _)), Some((_, port))) => format!("{host}:{port}"),
        _ => String::new(),
    }
}

/// Completes when `changes` (if any) is marked changed; never when there is none or its
/// sender is gone.
async fn marked_changed(changes: Option<&mut watch::Receiver<u64>>) {
    match changes {
        Some(changes) => {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

/// The status to answer when no NameServer gave an answer.
fn failure_status<T>(answer: &Result<Option<T>, ApogeeError>) -> v2::Status {
    match answer {
        Err(e) => e.to_status(),
        Ok(_) => ApogeeError::Unavailable("no nameserver answered".into()).to_status(),
    }
}

#[cfg(test)]
#[path = "registration_tests.rs"]
mod tests;

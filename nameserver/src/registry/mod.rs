//! The broker table: which broker groups exist, which members (master id 0,
//! slaves id > 0) each has, where they listen, which topics they host and when
//! they were last heard from. This module owns membership (register,
//! heartbeat, unregister, expiry; one live process per broker id, or per member id in
//! controller mode); [`epochs`] the rules of controller mode (identity apart from role:
//! the master is the live member registered as master with the newest epoch, presented
//! as broker id 0); [`sessions`] the
//! brokers' liveness sessions (a member bound to its process's session is dropped when the
//! session ends or misses beats); [`query`] owns the read side (routes,
//! cluster info, topic lists) and the topic changes applied after an admin
//! fan-out; [`groups`] the consumer-group configs brokers register.
//!
//! Thread-safe behind a `parking_lot::RwLock`; no I/O, no async. Time is
//! passed in (`*_at` methods) so expiry is testable without sleeping.

#[cfg(test)]
mod epoch_tests;
mod epochs;
mod groups;
mod query;
#[cfg(test)]
mod session_tests;
mod sessions;
#[cfg(test)]
mod tests;

pub(crate) use epochs::check_member_id;
pub use groups::GroupListing;
pub use query::{AdminTarget, Placement, TopicListing};
pub use sessions::{BeatAnswer, SessionMember, SessionOpened};

use apogee_proto::cluster::{BrokerRole, GroupConfig, RegisterBrokerRequest, TopicConfig};
use apogee_proto::ApogeeError;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// How many announced beat intervals a session may miss before its member is dropped,
/// unless the NameServer's config says otherwise (`broker_missed_heartbeats`).
pub const DEFAULT_MISSED_HEARTBEATS: u32 = 2;

/// A broker group's identity: its cluster and its broker name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub cluster: String,
    pub broker_name: String,
}

impl GroupKey {
    pub fn new(cluster: impl Into<String>, broker_name: impl Into<String>) -> Self {
        GroupKey {
            cluster: cluster.into(),
            broker_name: broker_name.into(),
        }
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.cluster, self.broker_name)
    }
}

/// One broker process of a group, as last registered.
#[derive(Clone, Debug)]
struct Member {
    endpoint: String,
    /// Its remoting listener when it has one of its own ("" when remoting shares `endpoint`).
    remoting_endpoint: String,
    /// The queue count of topics it creates on send; 0: it creates none.
    auto_create_queue_count: i32,
    /// Whether it serves remoting clients (remoting routes list only those that do).
    serves_remoting: bool,
    /// The role recorded: as registered, except a master registration of an older epoch
    /// than the group's newest, recorded as a slave (controller mode).
    role: BrokerRole,
    /// Registered in controller mode: its key in the group is its member id for life.
    controller_mode: bool,
    /// The master epoch it registered with (controller mode; 0 otherwise).
    master_epoch: u64,
    /// The stale master epoch a WARN was logged for (once per epoch).
    stale_warned: Option<u64>,
    topics: BTreeMap<String, TopicConfig>,
    /// Consumer-group configs, by name.
    groups: BTreeMap<String, GroupConfig>,
    data_version: i64,
    last_seen: Instant,
    last_seen_ms: i64,
    /// The process's `instance_id` (0: a broker without sessions).
    instance: u64,
    /// The session of the same process this member is bound to: its end drops the member.
    session: Option<u64>,
    /// Silence after which the member is not live: the missed beats of its session's
    /// interval when bound to one, else the expiry window.
    silence_limit: Duration,
}

#[derive(Clone, Debug, Default)]
struct Group {
    /// By broker id (static mode) or member id (controller mode).
    members: BTreeMap<i64, Member>,
}

/// What a successful registration tells the registrant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The group's live master endpoint, for a slave; `None` for a master or
    /// when the master is not known.
    pub master_endpoint: Option<String>,
    /// Whether this member was not in the table before (or was, from another
    /// endpoint that had gone silent).
    pub is_new: bool,
}

/// A member dropped by the expiry scan or by its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub group: GroupKey,
    pub broker_id: i64,
    pub endpoint: String,
    /// How long the member had been silent.
    pub silent_for: Duration,
    /// The silence it was allowed: the expiry window, or its session's missed beats.
    pub silence_limit: Duration,
    /// The session it was bound to (ended with it).
    pub session: Option<u64>,
}

/// A member's identity: its group and broker id.
pub(crate) type MemberKey = (GroupKey, i64);

/// The NameServer's broker table.
#[derive(Debug)]
pub struct Registry {
    groups: RwLock<BTreeMap<GroupKey, Group>>,
    /// The current session of each member identity (locked after `groups` when both are).
    sessions: Mutex<HashMap<MemberKey, sessions::Lease>>,
    next_session: AtomicU64,
    /// Controller mode: the highest master epoch registered for each group (kept when the
    /// group empties, so a restarted old master never passes for the newest; one entry per
    /// group name ever registered in controller mode). Locked after `groups`.
    master_epochs: Mutex<HashMap<GroupKey, u64>>,
    expiry: Duration,
    missed_heartbeats: u32,
}

impl Registry {
    /// An empty table whose members expire after `expiry` of silence (members bound to a
    /// session: after [`DEFAULT_MISSED_HEARTBEATS`] of its intervals).
    pub fn new(expiry: Duration) -> Self {
        Registry {
            groups: RwLock::new(BTreeMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            master_epochs: Mutex::new(HashMap::new()),
            expiry,
            missed_heartbeats: DEFAULT_MISSED_HEARTBEATS,
        }
    }

    /// Drops a member bound to a session after `n` of its announced intervals without a beat.
    pub fn with_missed_heartbeats(mut self, n: u32) -> Self {
        self.missed_heartbeats = n.max(1);
        self
    }

    /// The expiry window.
    pub fn expiry(&self) -> Duration {
        self.expiry
    }

    /// Registers (or re-registers) a broker with its full topic set. The
    /// request must already be validated (see `grpc::registry`).
    ///
    /// A broker id of a group is one process: while a live member holds it
    /// from another endpoint, the registration is refused with
    /// [`ApogeeError::AlreadyExists`] naming both endpoints. The same endpoint
    /// registering again is that broker (restarted or refreshing): accepted.
    ///
    /// In controller mode (`controller_mode`), `broker_id` is the member id (>= 1, else
    /// [`ApogeeError::BadRequest`]) and the role and master epoch are the controller's: see
    /// [`epochs`] for how a master of an older epoch is recorded. A group takes members of
    /// one mode only while any of them is live ([`ApogeeError::PreconditionFailed`]).
    pub fn register(&self, req: &RegisterBrokerRequest) -> Result<Registered, ApogeeError> {
        self.register_at(req, Instant::now())
    }

    pub(crate) fn register_at(
        &self,
        req: &RegisterBrokerRequest,
        now: Instant,
    ) -> Result<Registered, ApogeeError> {
        let key = GroupKey::new(&req.cluster_name, &req.broker_name);
        if req.controller_mode {
            epochs::check_member_id(req.broker_id)?;
        }
        let role = effective_role(req.broker_id, req.role, req.controller_mode);
        let mut member = Member {
            endpoint: req.endpoint.clone(),
            remoting_endpoint: req.remoting_endpoint.clone(),
            auto_create_queue_count: req.auto_create_queue_count.max(0),
            serves_remoting: req.serves_remoting,
            role,
            controller_mode: req.controller_mode,
            master_epoch: if req.controller_mode {
                req.master_epoch
            } else {
                0
            },
            stale_warned: None,
            topics: req
                .topics
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            groups: req
                .groups
                .iter()
                .map(|g| (g.name.clone(), g.clone()))
                .collect(),
            data_version: req.data_version,
            last_seen: now,
            last_seen_ms: apogee_proto::time::now_ms(),
            instance: req.instance_id,
            session: None,
            silence_limit: self.expiry,
        };
        let mut groups = self.groups.write();
        let holder = groups
            .get(&key)
            .and_then(|g| g.members.get(&req.broker_id))
            .filter(|m| m.endpoint != req.endpoint && self.is_live(m, now));
        if let Some(holder) = holder {
            return Err(ApogeeError::AlreadyExists(format!(
                "broker {key} id {} is already registered from {} (heard from {} ms ago); \
                 refusing the registration from {}",
                req.broker_id,
                holder.endpoint,
                now.saturating_duration_since(holder.last_seen).as_millis(),
                req.endpoint
            )));
        }
        if let Some(group) = groups.get(&key) {
            self.check_one_mode(&key, group, req, now)?;
        }
        self.bind_session(&key, req.broker_id, &mut member);
        let group = groups.entry(key.clone()).or_default();
        if req.controller_mode {
            let previous = group.members.get(&req.broker_id);
            member.stale_warned = previous.and_then(|p| p.stale_warned);
            self.record_epoch(&key, group, req.broker_id, &mut member);
        }
        let previous = group.members.insert(req.broker_id, member);
        let is_new = previous.is_none_or(|p| p.endpoint != req.endpoint);
        let master = self.master_key(group, now);
        let master_endpoint = match master {
            Some(id) if id != req.broker_id => group.members.get(&id).map(|m| m.endpoint.clone()),
            _ => None,
        };
        Ok(Registered {
            master_endpoint,
            is_new,
        })
    }

    /// Records a heartbeat. Returns `true` (register required) when the
    /// broker is unknown or its data version differs from the registered one.
    pub fn heartbeat(
        &self,
        cluster: &str,
        broker_name: &str,
        broker_id: i64,
        data_version: i64,
    ) -> bool {
        self.heartbeat_at(
            cluster,
            broker_name,
            broker_id,
            data_version,
            Instant::now(),
        )
    }

    pub(crate) fn heartbeat_at(
        &self,
        cluster: &str,
        broker_name: &str,
        broker_id: i64,
        data_version: i64,
        now: Instant,
    ) -> bool {
        let key = GroupKey::new(cluster, broker_name);
        let mut groups = self.groups.write();
        let Some(member) = groups
            .get_mut(&key)
            .and_then(|g| g.members.get_mut(&broker_id))
        else {
            return true;
        };
        member.last_seen = now;
        member.last_seen_ms = apogee_proto::time::now_ms();
        member.data_version != data_version
    }

    /// Removes a member (and its group when it was the last). Returns whether
    /// it was registered.
    pub fn unregister(&self, cluster: &str, broker_name: &str, broker_id: i64) -> bool {
        let key = GroupKey::new(cluster, broker_name);
        let mut groups = self.groups.write();
        let Some(group) = groups.get_mut(&key) else {
            return false;
        };
        let removed = group.members.remove(&broker_id).is_some();
        self.sessions.lock().remove(&(key.clone(), broker_id));
        if group.members.is_empty() {
            groups.remove(&key);
        }
        removed
    }

    /// Drops every member silent for longer than the expiry window.
    pub fn expire(&self) -> Vec<Expired> {
        self.expire_at(Instant::now())
    }

    pub(crate) fn expire_at(&self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        let mut groups = self.groups.write();
        groups.retain(|key, group| {
            group.members.retain(|id, m| {
                let live = self.is_live(m, now);
                if !live {
                    expired.push(Expired {
                        group: key.clone(),
                        broker_id: *id,
                        endpoint: m.endpoint.clone(),
                        silent_for: now.saturating_duration_since(m.last_seen),
                        silence_limit: m.silence_limit,
                        session: m.session,
                    });
                }
                live
            });
            !group.members.is_empty()
        });
        self.end_leases(&expired);
        expired
    }

    fn is_live(&self, m: &Member, now: Instant) -> bool {
        now.saturating_duration_since(m.last_seen) <= m.silence_limit
    }
}

/// The role declared: as sent, or the one implied by the id (a member in controller mode
/// that names none is a slave).
fn effective_role(broker_id: i64, declared: i32, controller_mode: bool) -> BrokerRole {
    match BrokerRole::try_from(declared).unwrap_or(BrokerRole::Unspecified) {
        BrokerRole::Unspecified if broker_id == 0 && !controller_mode => BrokerRole::AsyncMaster,
        BrokerRole::Unspecified => BrokerRole::Slave,
        r => r,
    }
}

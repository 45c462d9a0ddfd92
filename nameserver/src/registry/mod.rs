//! The broker table: which broker groups exist, which members (master id 0,
//! slaves id > 0) each has, where they listen, which topics they host and when
//! they were last heard from. This module owns membership (register,
//! heartbeat, unregister, expiry; one live process per broker id); [`query`] owns the read side (routes,
//! cluster info, topic lists) and the topic changes applied after an admin
//! fan-out; [`groups`] the consumer-group configs brokers register.
//!
//! Thread-safe behind a `parking_lot::RwLock`; no I/O, no async. Time is
//! passed in (`*_at` methods) so expiry is testable without sleeping.

mod groups;
mod query;
#[cfg(test)]
mod tests;

pub use groups::GroupListing;
pub use query::{AdminTarget, Placement, TopicListing};

use apogee_proto::cluster::{BrokerRole, GroupConfig, RegisterBrokerRequest, TopicConfig};
use apogee_proto::ApogeeError;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    role: BrokerRole,
    topics: BTreeMap<String, TopicConfig>,
    /// Consumer-group configs, by name.
    groups: BTreeMap<String, GroupConfig>,
    data_version: i64,
    last_seen: Instant,
    last_seen_ms: i64,
}

#[derive(Clone, Debug, Default)]
struct Group {
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

/// A member dropped by the expiry scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    pub group: GroupKey,
    pub broker_id: i64,
    pub endpoint: String,
    /// How long the member had been silent.
    pub silent_for: Duration,
}

/// The NameServer's broker table.
#[derive(Debug)]
pub struct Registry {
    groups: RwLock<BTreeMap<GroupKey, Group>>,
    expiry: Duration,
}

impl Registry {
    /// An empty table whose members expire after `expiry` of silence.
    pub fn new(expiry: Duration) -> Self {
        Registry {
            groups: RwLock::new(BTreeMap::new()),
            expiry,
        }
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
    pub fn register(&self, req: &RegisterBrokerRequest) -> Result<Registered, ApogeeError> {
        self.register_at(req, Instant::now())
    }

    pub(crate) fn register_at(
        &self,
        req: &RegisterBrokerRequest,
        now: Instant,
    ) -> Result<Registered, ApogeeError> {
        let key = GroupKey::new(&req.cluster_name, &req.broker_name);
        let role = effective_role(req.broker_id, req.role);
        let member = Member {
            endpoint: req.endpoint.clone(),
            role,
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
        let group = groups.entry(key).or_default();
        let previous = group.members.insert(req.broker_id, member);
        let is_new = previous.is_none_or(|p| p.endpoint != req.endpoint);
        let master_endpoint = if req.broker_id == 0 {
            None
        } else {
            group
                .members
                .get(&0)
                .filter(|m| self.is_live(m, now))
                .map(|m| m.endpoint.clone())
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
                    });
                }
                live
            });
            !group.members.is_empty()
        });
        expired
    }

    fn is_live(&self, m: &Member, now: Instant) -> bool {
        now.saturating_duration_since(m.last_seen) <= self.expiry
    }
}

/// The role to record: the one declared, or the one implied by the id.
fn effective_role(broker_id: i64, declared: i32) -> BrokerRole {
    match BrokerRole::try_from(declared).unwrap_or(BrokerRole::Unspecified) {
        BrokerRole::Unspecified if broker_id == 0 => BrokerRole::AsyncMaster,
        BrokerRole::Unspecified => BrokerRole::Slave,
        r => r,
    }
}

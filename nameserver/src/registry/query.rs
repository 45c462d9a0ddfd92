//! The read side of the broker table (routes, cluster info, topic lists,
//! admin target lookup) and the topic changes applied to it right after a
//! successful admin fan-out. Queries only ever show live members (heard from
//! within the expiry window), even before the expiry scan drops the others, and
//! present each group's master as broker id 0 (in controller mode the others keep
//! their member id, see [`super::epochs`]).

use super::epochs::presented_id;
use super::{Group, GroupKey, Member, Registry};
use apogee_proto::cluster::{BrokerGroup, BrokerMember, TopicConfig};
use std::collections::BTreeMap;
use std::time::Instant;

/// One broker group hosting a topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub group: GroupKey,
    /// The topic's config on this group (the master's when it has one).
    pub config: TopicConfig,
    /// The group's live members, lowest presented broker id (the master, 0) first.
    pub members: Vec<BrokerMember>,
}

impl Placement {
    /// The live master, if any.
    pub fn master(&self) -> Option<&BrokerMember> {
        self.members.iter().find(|m| m.broker_id == 0)
    }

    /// The live slave with the lowest id, if any.
    pub fn first_slave(&self) -> Option<&BrokerMember> {
        self.members.iter().find(|m| m.broker_id > 0)
    }

    /// As the cluster protocol's `TopicPlacement`.
    pub fn to_proto(&self) -> apogee_proto::cluster::TopicPlacement {
        apogee_proto::cluster::TopicPlacement {
            group: Some(BrokerGroup {
                cluster_name: self.group.cluster.clone(),
                broker_name: self.group.broker_name.clone(),
                members: self.members.clone(),
            }),
            config: Some(self.config.clone()),
        }
    }
}

/// A config (topic or consumer group) across the cluster, for lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing<C> {
    /// The config on the first broker group holding it (by cluster and broker name; the
    /// master's when it has one).
    pub config: C,
    /// Every broker group holding it, sorted, without duplicates.
    pub broker_names: Vec<String>,
}

/// A topic across the cluster, for topic lists.
pub type TopicListing = Listing<TopicConfig>;

/// A broker group as an admin operation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTarget {
    pub group: GroupKey,
    /// Endpoint of the live master, if any.
    pub master_endpoint: Option<String>,
    /// Whether a live member hosts the topic asked about.
    pub hosts_topic: bool,
}

/// A live member as queries present it.
struct Presented<'a> {
    /// The broker id clients see: 0 for the master, else the member's key.
    broker_id: i64,
    /// Its key in the group: its broker id (static mode) or member id (controller mode).
    key: i64,
    member: &'a Member,
}

impl Presented<'_> {
    fn to_proto(&self) -> BrokerMember {
        let m = self.member;
        BrokerMember {
            broker_id: self.broker_id,
            endpoint: m.endpoint.clone(),
            role: m.role as i32,
            last_seen_ms: m.last_seen_ms,
            data_version: m.data_version,
            topic_count: m.topics.len().min(i32::MAX as usize) as i32,
            member_id: self.key,
            master_epoch: m.master_epoch,
            remoting_endpoint: m.remoting_endpoint.clone(),
            auto_create_queue_count: m.auto_create_queue_count,
            serves_remoting: m.serves_remoting,
        }
    }
}

impl Registry {
    /// A group's live members as presented, the master (0) first, then by broker id.
    fn presented<'a>(&self, group: &'a Group, now: Instant) -> Vec<Presented<'a>> {
        let master = self.master_key(group, now);
        let mut live: Vec<Presented<'a>> = group
            .members
            .iter()
            .filter(|(_, m)| self.is_live(m, now))
            .map(|(key, member)| Presented {
                broker_id: presented_id(*key, master),
                key: *key,
                member,
            })
            .collect();
        live.sort_by_key(|p| p.broker_id);
        live
    }

    /// Where `topic` lives: one placement per broker group with a live
    /// member hosting it, ordered by cluster and broker name.
    pub fn route(&self, topic: &str) -> Vec<Placement> {
        self.route_at(topic, Instant::now())
    }

    pub(crate) fn route_at(&self, topic: &str, now: Instant) -> Vec<Placement> {
        let groups = self.groups.read();
        let mut out = Vec::new();
        for (key, group) in groups.iter() {
            // The master (0) comes first when present.
            let live = self.presented(group, now);
            let Some(config) = live.iter().find_map(|p| p.member.topics.get(topic)) else {
                continue;
            };
            out.push(Placement {
                group: key.clone(),
                config: config.clone(),
                members: live.iter().map(Presented::to_proto).collect(),
            });
        }
        out
    }

    /// Every broker group with its live members.
    pub fn cluster_info(&self) -> Vec<BrokerGroup> {
        self.cluster_info_at(Instant::now())
    }

    pub(crate) fn cluster_info_at(&self, now: Instant) -> Vec<BrokerGroup> {
        let groups = self.groups.read();
        groups
            .iter()
            .filter_map(|(key, group)| {
                let members: Vec<BrokerMember> = self
                    .presented(group, now)
                    .iter()
                    .map(Presented::to_proto)
                    .collect();
                (!members.is_empty()).then(|| BrokerGroup {
                    cluster_name: key.cluster.clone(),
                    broker_name: key.broker_name.clone(),
                    members,
                })
            })
            .collect()
    }

    /// Every topic hosted by a live member, by name.
    pub fn topics(&self) -> BTreeMap<String, TopicListing> {
        self.listings(|m| &m.topics)
    }

    /// What live members hold in one of their config maps (`of`), by name.
    pub(super) fn listings<C: Clone>(
        &self,
        of: impl Fn(&Member) -> &BTreeMap<String, C>,
    ) -> BTreeMap<String, Listing<C>> {
        let now = Instant::now();
        let groups = self.groups.read();
        let mut out: BTreeMap<String, Listing<C>> = BTreeMap::new();
        for (key, group) in groups.iter() {
            // The master (0) first.
            for p in self.presented(group, now) {
                for (name, config) in of(p.member) {
                    let listing = out.entry(name.clone()).or_insert_with(|| Listing {
                        config: config.clone(),
                        broker_names: Vec::new(),
                    });
                    if !listing.broker_names.contains(&key.broker_name) {
                        listing.broker_names.push(key.broker_name.clone());
                    }
                }
            }
        }
        for listing in out.values_mut() {
            listing.broker_names.sort();
        }
        out
    }

    /// Every broker group with at least one live member, with its live master
    /// (if any) and whether it hosts `topic`.
    pub fn admin_targets(&self, topic: &str) -> Vec<AdminTarget> {
        self.admin_targets_at(topic, Instant::now())
    }

    pub(crate) fn admin_targets_at(&self, topic: &str, now: Instant) -> Vec<AdminTarget> {
        let groups = self.groups.read();
        groups
            .iter()
            .filter_map(|(key, group)| {
                let mut any_live = false;
                let mut hosts_topic = false;
                let mut master_endpoint = None;
                for p in self.presented(group, now) {
                    any_live = true;
                    hosts_topic |= p.member.topics.contains_key(topic);
                    if p.broker_id == 0 {
                        master_endpoint = Some(p.member.endpoint.clone());
                    }
                }
                any_live.then(|| AdminTarget {
                    group: key.clone(),
                    master_endpoint,
                    hosts_topic,
                })
            })
            .collect()
    }

    /// Records that a group now hosts `config` (created or updated through
    /// an admin fan-out), on every member so routes see it at once.
    pub fn upsert_topic(&self, group: &GroupKey, config: &TopicConfig) {
        let mut groups = self.groups.write();
        if let Some(g) = groups.get_mut(group) {
            for m in g.members.values_mut() {
                m.topics.insert(config.name.clone(), config.clone());
            }
        }
    }

    /// Forgets `topic` on every broker group (of `cluster` only, when named), as a deletion
    /// RocketMQ's tools send the NameServers after the brokers' asks; answers how many
    /// groups listed it. A member that still hosts it lists it again at its next
    /// registration.
    pub fn forget_topic(&self, topic: &str, cluster: Option<&str>) -> usize {
        let mut groups = self.groups.write();
        let mut forgotten = 0;
        for (key, g) in groups.iter_mut() {
            if cluster.is_some_and(|c| c != key.cluster) {
                continue;
            }
            let mut listed = false;
            for m in g.members.values_mut() {
                listed |= m.topics.remove(topic).is_some();
            }
            forgotten += usize::from(listed);
        }
        forgotten
    }

    /// Records that a group no longer hosts `topic` (deleted through an admin
    /// fan-out).
    pub fn remove_topic(&self, group: &GroupKey, topic: &str) {
        let mut groups = self.groups.write();
        if let Some(g) = groups.get_mut(group) {
            for m in g.members.values_mut() {
                m.topics.remove(topic);
            }
        }
    }
}

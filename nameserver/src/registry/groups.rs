//! Consumer groups in the broker table: the group configs each broker sends
//! with its registration, read back across the live members (group lists,
//! the config a consumer's Settings reply carries), and the changes applied
//! right after a successful group admin fan-out so lists show them at once.

use super::{GroupKey, Registry};
use apogee_proto::cluster::GroupConfig;
use std::collections::BTreeMap;
use std::time::Instant;

/// A consumer group across the cluster, for group lists.
pub type GroupListing = super::query::Listing<GroupConfig>;

impl Registry {
    /// Every consumer group a live member holds, by name.
    pub fn groups(&self) -> BTreeMap<String, GroupListing> {
        self.listings(|m| &m.groups)
    }

    /// The config of consumer group `name` as the first live member holding it has it.
    pub fn group(&self, name: &str) -> Option<GroupConfig> {
        let now = Instant::now();
        let groups = self.groups.read();
        groups.values().find_map(|g| {
            g.members
                .values()
                .filter(|m| self.is_live(m, now))
                .find_map(|m| m.groups.get(name).cloned())
        })
    }

    /// Records that a broker group now holds `config` (created or updated
    /// through an admin fan-out), on every member.
    pub fn upsert_group(&self, group: &GroupKey, config: &GroupConfig) {
        let mut groups = self.groups.write();
        if let Some(g) = groups.get_mut(group) {
            for m in g.members.values_mut() {
                m.groups.insert(config.name.clone(), config.clone());
            }
        }
    }

    /// Records that a broker group no longer holds consumer group `name`.
    pub fn remove_group(&self, group: &GroupKey, name: &str) {
        let mut groups = self.groups.write();
        if let Some(g) = groups.get_mut(group) {
            for m in g.members.values_mut() {
                m.groups.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest};
    use std::time::Duration;

    fn register(reg: &Registry, broker: &str, groups: &[(&str, u32)]) {
        reg.register(&RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: broker.into(),
            broker_id: 0,
            endpoint: format!("{broker}:10911"),
            role: BrokerRole::AsyncMaster as i32,
            topics: vec![],
            data_version: 1,
            groups: groups
                .iter()
                .map(|(name, attempts)| GroupConfig {
                    name: name.to_string(),
                    max_delivery_attempts: *attempts,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn registered_groups_are_listed_across_broker_groups() {
        let reg = Registry::new(Duration::from_secs(120));
        register(&reg, "b1", &[("g1", 3), ("g2", 16)]);
        register(&reg, "b2", &[("g1", 3)]);
        let all = reg.groups();
        assert_eq!(all.len(), 2);
        assert_eq!(all["g1"].broker_names, ["b1", "b2"]);
        assert_eq!(all["g2"].broker_names, ["b1"]);
        assert_eq!(reg.group("g1").unwrap().max_delivery_attempts, 3);
        assert!(reg.group("nope").is_none());
    }

    #[test]
    fn admin_changes_show_at_once() {
        let reg = Registry::new(Duration::from_secs(120));
        register(&reg, "b1", &[]);
        let b1 = GroupKey::new("c", "b1");
        reg.upsert_group(
            &b1,
            &GroupConfig {
                name: "g".into(),
                fifo: true,
                ..Default::default()
            },
        );
        assert!(reg.group("g").unwrap().fifo);
        reg.remove_group(&b1, "g");
        assert!(reg.groups().is_empty());
    }
}

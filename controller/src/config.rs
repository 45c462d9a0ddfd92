//! A controller's settings: its id, every voter's address, where it keeps its Raft data, the
//! Raft timings and the failover timings (lease, margin, member timeout), with their
//! validation.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The most voters a controller group may have (a Raft group of more only slows commits).
pub const MAX_VOTERS: usize = 7;

/// One controller's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// This controller's id; a key of `peers`.
    pub node_id: NodeId,
    /// Every voter's id and gRPC address (host:port), this one's included. The group is formed
    /// with exactly these voters the first time the controllers start on empty data dirs.
    pub peers: BTreeMap<NodeId, String>,
    /// Where the Raft log, vote and snapshots are kept (created when absent).
    pub data_dir: PathBuf,
    /// How often the leader sends heartbeats to the others.
    pub heartbeat_interval_ms: u64,
    /// A follower that has heard no leader for `election_timeout_max_ms` (the Raft leader's
    /// own lease, during which followers refuse to vote) plus a random time in [min, max]
    /// stands for election: a dead leader is replaced within twice the max.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Whether an election may choose a member outside the in-sync set when no in-sync member
    /// is alive (`allow_unclean` of the `Elect` the leader issues): it may lose messages the
    /// old master acknowledged. Off by default.
    pub unclean_election: bool,
    /// The lease the leader grants a broker group's master, counted by the master from the
    /// sending of the beat it answers.
    pub lease_ms: u64,
    /// Waited past a lease (after the last grant to a master that is no longer alive, and
    /// after becoming leader) before a replacement is elected.
    pub lease_margin_ms: u64,
    /// A member that has not beat for this long is not alive.
    pub member_timeout_ms: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            node_id: 1,
            peers: BTreeMap::new(),
            data_dir: PathBuf::from("controller"),
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            unclean_election: false,
            lease_ms: 2000,
            lease_margin_ms: 500,
            member_timeout_ms: 2000,
        }
    }
}

impl ControllerConfig {
    /// A single voter (the `--standalone` controller): this node alone, at `address`.
    pub fn single(node_id: NodeId, address: &str, data_dir: PathBuf) -> Self {
        ControllerConfig {
            node_id,
            peers: BTreeMap::from([(node_id, address.to_string())]),
            data_dir,
            ..ControllerConfig::default()
        }
    }

    /// Checks every setting; the error names the one that is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        if self.peers.is_empty() {
            return Err("controller.peers is empty: name every voter, this one included".into());
        }
        if self.peers.len() > MAX_VOTERS {
            return Err(format!(
                "controller.peers has {} voters; at most {MAX_VOTERS}",
                self.peers.len()
            ));
        }
        if !self.peers.contains_key(&self.node_id) {
            return Err(format!(
                "controller.node_id {} is not one of controller.peers ({:?})",
                self.node_id,
                self.peers.keys().collect::<Vec<_>>()
            ));
        }
        for (id, address) in &self.peers {
            apogee_proto::names::parse_host_port(address)
                .map_err(|e| format!("controller.peers: voter {id}: {e}"))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("controller.data_dir is empty".into());
        }
        if self.heartbeat_interval_ms == 0 {
            return Err("controller.heartbeat_interval_ms must be above 0".into());
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return Err(format!(
                "controller.election_timeout_min_ms ({}) must be above the heartbeat interval ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(format!(
                "controller.election_timeout_max_ms ({}) must be above election_timeout_min_ms ({})",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        for (name, value) in [
            ("lease_ms", self.lease_ms),
            ("lease_margin_ms", self.lease_margin_ms),
            ("member_timeout_ms", self.member_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("controller.{name} must be above 0"));
            }
        }
        if self.lease_margin_ms >= self.lease_ms {
            return Err(format!(
                "controller.lease_margin_ms ({}) must be below lease_ms ({})",
                self.lease_margin_ms, self.lease_ms
            ));
        }
        // A single voter has no leader to lose.
        let leader_change = self.longest_leader_change();
        if self.peers.len() > 1 && leader_change >= self.lease_without_two_beats() {
            return Err(format!(
                "controller.lease_ms ({}) is too short for the Raft timings: a dead leader is \
                 replaced within twice election_timeout_max_ms ({} ms), and a master's lease must \
                 outlast that plus two of its beats (a quarter of the lease), or every change of \
                 controller leader stops writes; raise lease_ms or lower election_timeout_max_ms",
                self.lease_ms,
                leader_change.as_millis()
            ));
        }
        Ok(())
    }

    /// The failover timings.
    pub fn failover_timings(&self) -> crate::failover::FailoverTimings {
        crate::failover::FailoverTimings {
            lease: Duration::from_millis(self.lease_ms),
            lease_margin: Duration::from_millis(self.lease_margin_ms),
            member_timeout: Duration::from_millis(self.member_timeout_ms),
        }
    }

    /// This controller's own address.
    pub fn own_address(&self) -> Option<&str> {
        self.peers.get(&self.node_id).map(String::as_str)
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, String> {
        openraft::Config {
            cluster_name: "apogee-controller".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| format!("controller Raft settings: {e}"))
    }

    /// The longest a group of voters goes without a leader when the leader dies: a follower
    /// stands only once the old leader's Raft lease (`election_timeout_max_ms`) and then its
    /// own election timeout (at most the max) passed without a heartbeat.
    pub fn longest_leader_change(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms.saturating_mul(2))
    }

    /// What a master's lease still has to run at the worst moment a leader can die (just
    /// before a beat's answer), less the beat that reaches the new leader: the lease less two
    /// beats of the master (`BEATS_PER_LEASE` = 8 per lease).
    fn lease_without_two_beats(&self) -> Duration {
        Duration::from_millis(self.lease_ms - self.lease_ms / 4)
    }

    /// The heartbeat interval as a duration.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> ControllerConfig {
        ControllerConfig {
            node_id: 2,
            peers: (1..=3)
                .map(|i| (i, format!("127.0.0.1:{}", 9000 + i)))
                .collect(),
            data_dir: PathBuf::from("data"),
            ..ControllerConfig::default()
        }
    }

    #[test]
    fn a_valid_config_passes_and_single_is_valid() {
        assert_eq!(three().validate(), Ok(()));
        let single = ControllerConfig::single(1, "127.0.0.1:9876", PathBuf::from("d"));
        assert_eq!(single.validate(), Ok(()));
        let short_lease = ControllerConfig {
            lease_ms: 300,
            lease_margin_ms: 100,
            ..single.clone()
        };
        assert_eq!(
            short_lease.validate(),
            Ok(()),
            "a single voter changes no leader"
        );
        assert_eq!(single.own_address(), Some("127.0.0.1:9876"));
        assert!(three().raft_config().is_ok());
        let timings = ControllerConfig::default().failover_timings();
        assert_eq!(
            (timings.lease, timings.lease_margin, timings.member_timeout),
            (
                Duration::from_millis(2000),
                Duration::from_millis(500),
                Duration::from_millis(2000)
            )
        );
    }

    #[test]
    fn each_bad_setting_is_refused_by_name() {
        let cases: Vec<(ControllerConfig, &str)> = vec![
            (
                ControllerConfig {
                    peers: BTreeMap::new(),
                    ..three()
                },
                "peers is empty",
            ),
            (
                ControllerConfig {
                    node_id: 9,
                    ..three()
                },
                "node_id 9 is not one of",
            ),
            (
                ControllerConfig {
                    peers: (1..=8).map(|i| (i, format!("h:{i}"))).collect(),
                    node_id: 1,
                    ..three()
                },
                "at most 7",
            ),
            (
                ControllerConfig {
                    peers: BTreeMap::from([(2, "no-port".to_string())]),
                    ..three()
                },
                "voter 2",
            ),
            (
                ControllerConfig {
                    data_dir: PathBuf::new(),
                    ..three()
                },
                "data_dir is empty",
            ),
            (
                ControllerConfig {
                    heartbeat_interval_ms: 0,
                    ..three()
                },
                "heartbeat_interval_ms",
            ),
            (
                ControllerConfig {
                    election_timeout_min_ms: 100,
                    ..three()
                },
                "election_timeout_min_ms (100)",
            ),
            (
                ControllerConfig {
                    election_timeout_max_ms: 300,
                    ..three()
                },
                "election_timeout_max_ms (300)",
            ),
            (
                ControllerConfig {
                    election_timeout_min_ms: 1000,
                    election_timeout_max_ms: 2000,
                    ..three()
                },
                "lease_ms (2000) is too short for the Raft timings",
            ),
            (
                ControllerConfig {
                    lease_ms: 0,
                    ..three()
                },
                "lease_ms must be above 0",
            ),
            (
                ControllerConfig {
                    lease_margin_ms: 0,
                    ..three()
                },
                "lease_margin_ms must be above 0",
            ),
            (
                ControllerConfig {
                    member_timeout_ms: 0,
                    ..three()
                },
                "member_timeout_ms must be above 0",
            ),
            (
                ControllerConfig {
                    lease_ms: 2000,
                    lease_margin_ms: 2000,
                    ..three()
                },
                "lease_margin_ms (2000) must be below lease_ms (2000)",
            ),
        ];
        for (config, expected) in cases {
            let error = config.validate().expect_err(expected);
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn seven_voters_are_allowed() {
        let config = ControllerConfig {
            peers: (1..=7).map(|i| (i, format!("h:{i}"))).collect(),
            ..three()
        };
        assert_eq!(config.validate(), Ok(()));
    }
}

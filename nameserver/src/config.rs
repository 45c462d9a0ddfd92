//! The NameServer's configuration: its keys, defaults and validation (what both servers
//! share is validated by [`apogee_server::shared_config`]). Loading (TOML file +
//! `APOGEE_NAMESERVER_*` environment overrides) is done by the shared
//! [`apogee_server::config_file`] loader. Every key is documented in
//! `deploy/nameserver.toml`.

use apogee_server::config_file::{self, ConfigError};
use apogee_server::logging::LogFormat;
use apogee_server::security::SecuritySection;
use apogee_server::shared_config::SharedSettings;
use apogee_server::tls_config::TlsSection;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Environment prefix of NameServer overrides (`APOGEE_NAMESERVER_<KEY>`).
pub const ENV_PREFIX: &str = "NAMESERVER";

/// Most beat intervals a session may miss: more would keep a hung broker routed for long.
pub const MAX_MISSED_HEARTBEATS: u32 = 10;
/// Longest expiry window for brokers without a session (one day).
pub const MAX_EXPIRY_SECS: u64 = 86_400;

/// Which members' addresses a route's `Endpoints` list per broker group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAddresses {
    /// Every live member's for Rust clients, the serving member's for the others.
    #[default]
    Auto,
    /// Every live member's, for every client.
    All,
    /// The serving member's alone.
    Serving,
}

/// Everything a NameServer process can be configured with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NameServerConfig {
    /// host:port the gRPC server listens on.
    pub listen: String,
    /// host:port of the HTTP operations endpoint (metrics, health); empty = none.
    pub http_listen: String,
    /// A broker of an earlier release (unary heartbeats, no session) that sent no register
    /// or heartbeat for this long is dropped.
    pub broker_expiry_secs: u64,
    /// A broker with a session is dropped after this many of its announced beat
    /// intervals without a beat (and at once when its session closes).
    pub broker_missed_heartbeats: u32,
    /// How often the expiry scan runs.
    pub expiry_scan_interval_secs: u64,
    /// Largest message body, told to producers in the Telemetry settings.
    pub max_body_bytes: usize,
    /// Which members' addresses a route lists per broker group: `auto` (every live member's
    /// for Rust clients, which never fetch a route again; the serving member's for the
    /// others), `all` or `serving` (see `grpc::route::member_addresses`).
    pub route_addresses: RouteAddresses,
    /// Connections one client IP address may hold open at once (0: no limit).
    pub max_connections_per_address: usize,
    /// Telemetry sessions (clients) from one IP address (0: no limit).
    pub max_sessions_per_address: usize,
    /// Log filter used when RUST_LOG is not set (e.g. "info", "debug").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Log lines as text or as JSON objects.
    pub log_format: LogFormat,
    pub security: SecuritySection,
    pub tls: TlsSection,
    /// RocketMQ 4.x remoting clients (`apogee_server::remoting`).
    pub remoting: apogee_server::remoting::RemotingSection,
    /// What clients are told of their own metrics (`apogee_server::settings`).
    pub telemetry: apogee_server::settings::TelemetrySection,
    /// The embedded controller of automatic failover (off by default).
    pub controller: ControllerSection,
    /// The web console (`/console`).
    pub console: crate::console::ConsoleSection,
}

/// `[controller]`: this NameServer as a voter of the controllers' Raft group (`enabled`), or
/// a client of controllers run as their own processes (`endpoints`). The `apogee-controller`
/// process takes the same section for its own settings (`enabled` and `endpoints` aside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerSection {
    /// Run the controller embedded in this NameServer, as a voter.
    pub enabled: bool,
    /// The `apogee-controller` processes to use instead (host:port each, any of the group's
    /// voters; the leader is found among them). Not with `enabled`.
    pub endpoints: Vec<String>,
    /// This NameServer's id among the voters.
    pub node_id: u64,
    /// Every voter as "id=host:port" (the NameServers' gRPC addresses, this one's included);
    /// empty: this NameServer alone, a single voter at its listen address.
    pub peers: Vec<String>,
    /// Where the Raft log, vote and snapshots are kept.
    pub data_dir: String,
    /// Whether a member outside the in-sync set may become master when no in-sync member is
    /// alive (messages the old master acknowledged may be lost). Off by default.
    pub unclean_election: bool,
    /// The lease granted to a broker group's master (ms).
    pub lease_ms: u64,
    /// Waited past a lease before a master that is not alive is replaced (ms).
    pub lease_margin_ms: u64,
    /// A member without a beat for this long is not alive (ms).
    pub member_timeout_ms: u64,
    /// How often the Raft leader sends heartbeats (ms).
    pub heartbeat_interval_ms: u64,
    /// The Raft election timeout range (ms).
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for ControllerSection {
    fn default() -> Self {
        let defaults = apogee_controller::ControllerConfig::default();
        ControllerSection {
            enabled: false,
            endpoints: Vec::new(),
            node_id: 1,
            peers: Vec::new(),
            data_dir: "controller-data".into(),
            unclean_election: false,
            lease_ms: defaults.lease_ms,
            lease_margin_ms: defaults.lease_margin_ms,
            member_timeout_ms: defaults.member_timeout_ms,
            heartbeat_interval_ms: defaults.heartbeat_interval_ms,
            election_timeout_min_ms: defaults.election_timeout_min_ms,
            election_timeout_max_ms: defaults.election_timeout_max_ms,
        }
    }
}

impl ControllerSection {
    /// The remote controllers' endpoints, checked: none when `endpoints` is empty; refused
    /// with `enabled`, or when one is not host:port, named twice, or more than
    /// [`apogee_controller::config::MAX_VOTERS`] are named.
    pub fn remote_endpoints(&self) -> Result<Option<Vec<String>>, String> {
        if self.endpoints.is_empty() {
            return Ok(None);
        }
        if self.enabled {
            return Err(
                "controller.enabled and controller.endpoints exclude each other: \
                 enabled runs the controller inside this NameServer, endpoints uses \
                 apogee-controller processes; set one"
                    .into(),
            );
        }
        let max = apogee_controller::config::MAX_VOTERS;
        if self.endpoints.len() > max {
            return Err(format!(
                "controller.endpoints names {} controllers; at most {max}",
                self.endpoints.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for endpoint in &self.endpoints {
            let endpoint = endpoint.trim();
            apogee_proto::names::parse_host_port(endpoint)
                .map_err(|e| format!("controller.endpoints: {endpoint:?}: {e}"))?;
            if !seen.insert(endpoint) {
                return Err(format!("controller.endpoints: {endpoint} is named twice"));
            }
        }
        Ok(Some(
            self.endpoints
                .iter()
                .map(|e| e.trim().to_string())
                .collect(),
        ))
    }

    /// The controller's settings, with `own_address` (the address this NameServer's gRPC
    /// listener has) as the single voter when `peers` is empty.
    pub fn controller_config(
        &self,
        own_address: &str,
    ) -> Result<apogee_controller::ControllerConfig, String> {
        let mut peers = std::collections::BTreeMap::new();
        for entry in &self.peers {
            let (id, address) = entry
                .split_once('=')
                .ok_or_else(|| format!("controller.peers: {entry:?} is not id=host:port"))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| format!("controller.peers: {entry:?}: the id is not a number"))?;
            if peers.insert(id, address.trim().to_string()).is_some() {
                return Err(format!("controller.peers: voter {id} is named twice"));
            }
        }
        if peers.is_empty() {
            peers.insert(self.node_id, own_address.to_string());
        }
        let config = apogee_controller::ControllerConfig {
            node_id: self.node_id,
            peers,
            data_dir: self.data_dir.clone().into(),
            unclean_election: self.unclean_election,
            lease_ms: self.lease_ms,
            lease_margin_ms: self.lease_margin_ms,
            member_timeout_ms: self.member_timeout_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
        };
        config.validate()?;
        Ok(config)
    }
}

impl Default for NameServerConfig {
    fn default() -> Self {
        NameServerConfig {
            listen: format!("127.0.0.1:{}", apogee_proto::names::DEFAULT_NAMESERVER_PORT),
            http_listen: format!(
                "127.0.0.1:{}",
                apogee_proto::names::DEFAULT_NAMESERVER_HTTP_PORT
            ),
            broker_expiry_secs: 120,
            broker_missed_heartbeats: crate::registry::DEFAULT_MISSED_HEARTBEATS,
            expiry_scan_interval_secs: 5,
            max_body_bytes: apogee_proto::limits::DEFAULT_MAX_BODY_BYTES,
            route_addresses: RouteAddresses::Auto,
            max_connections_per_address: 1024,
            max_sessions_per_address: 1024,
            log_level: None,
            log_format: LogFormat::Text,
            security: SecuritySection::default(),
            tls: Default::default(),
            remoting: Default::default(),
            telemetry: Default::default(),
            controller: ControllerSection::default(),
            console: crate::console::ConsoleSection::default(),
        }
    }
}

impl NameServerConfig {
    /// Loads the config from an optional file plus `APOGEE_NAMESERVER_*`
    /// environment overrides, and validates it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config: NameServerConfig = config_file::load(path, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and formats that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.shared().validate().or_else(invalid)?;
        if self.broker_expiry_secs == 0 {
            return invalid("broker_expiry_secs must be at least 1".into());
        }
        if self.broker_expiry_secs > MAX_EXPIRY_SECS {
            return invalid(format!(
                "broker_expiry_secs = {} must be at most {MAX_EXPIRY_SECS}",
                self.broker_expiry_secs
            ));
        }
        if !(1..=MAX_MISSED_HEARTBEATS).contains(&self.broker_missed_heartbeats) {
            return invalid(format!(
                "broker_missed_heartbeats = {} must be between 1 and {MAX_MISSED_HEARTBEATS}",
                self.broker_missed_heartbeats
            ));
        }
        if self.expiry_scan_interval_secs == 0 {
            return invalid("expiry_scan_interval_secs must be at least 1".into());
        }
        let max = apogee_proto::limits::MAX_BATCH_BYTES;
        if self.max_body_bytes == 0 || self.max_body_bytes > max {
            return invalid(format!(
                "max_body_bytes = {} must be between 1 and {max}",
                self.max_body_bytes
            ));
        }
        self.validate_controller().or_else(invalid)?;
        self.console
            .validate(&self.http_listen, &self.security)
            .or_else(invalid)?;
        Ok(())
    }

    fn validate_controller(&self) -> Result<(), String> {
        self.controller.remote_endpoints()?;
        if !self.controller.enabled {
            return Ok(());
        }
        self.controller.controller_config(&self.listen).map(|_| ())
    }

    /// The settings both servers have, for their one validation.
    pub fn shared(&self) -> SharedSettings<'_> {
        SharedSettings {
            env_prefix: ENV_PREFIX,
            listen: &self.listen,
            http_listen: &self.http_listen,
            log_level: self.log_level.as_deref(),
            security: &self.security,
            tls: &self.tls,
            remoting: &self.remoting,
            telemetry: &self.telemetry,
        }
    }

    /// [`Self::broker_expiry_secs`] as a duration.
    pub fn broker_expiry(&self) -> Duration {
        Duration::from_secs(self.broker_expiry_secs)
    }

    /// [`Self::expiry_scan_interval_secs`] as a duration.
    pub fn expiry_scan_interval(&self) -> Duration {
        Duration::from_secs(self.expiry_scan_interval_secs)
    }

    /// The effective config as TOML (what `--check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_server::security::is_loopback;

    const DEPLOY_DEFAULTS: &str = include_str!("../../deploy/nameserver.toml");

    #[test]
    fn defaults_follow_rocketmq() {
        let c = NameServerConfig::default();
        assert_eq!(c.listen, "127.0.0.1:9876");
        assert_eq!(c.broker_expiry_secs, 120);
        assert_eq!(c.broker_missed_heartbeats, 2);
        assert_eq!(c.expiry_scan_interval_secs, 5);
        assert_eq!(c.max_body_bytes, 4 * 1024 * 1024);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn deploy_file_parses_and_matches_defaults() {
        let parsed: NameServerConfig =
            toml::from_str(DEPLOY_DEFAULTS).expect("deploy/nameserver.toml");
        let defaults = NameServerConfig::default();
        assert_eq!(parsed.listen, defaults.listen);
        assert_eq!(parsed.broker_expiry_secs, defaults.broker_expiry_secs);
        assert_eq!(
            parsed.broker_missed_heartbeats,
            defaults.broker_missed_heartbeats
        );
        assert_eq!(
            parsed.expiry_scan_interval_secs,
            defaults.expiry_scan_interval_secs
        );
        assert_eq!(parsed.max_body_bytes, defaults.max_body_bytes);
        parsed.validate().unwrap();
    }

    #[test]
    fn a_non_loopback_listen_needs_allow_anonymous() {
        let open = NameServerConfig {
            listen: "0.0.0.0:9876".into(),
            ..Default::default()
        };
        let err = open.validate().unwrap_err().to_string();
        assert!(err.contains("reachable from other hosts"), "{err}");
        assert!(
            err.contains("APOGEE_NAMESERVER_SECURITY__ALLOW_ANONYMOUS"),
            "{err}"
        );
        let allowed = NameServerConfig {
            security: SecuritySection {
                allow_anonymous: true,
                ..SecuritySection::default()
            },
            ..open
        };
        assert!(allowed.validate().is_ok());
        assert!(is_loopback("127.0.0.1:1") && is_loopback("[::1]:1") && is_loopback("localhost:1"));
        assert!(!is_loopback("10.0.0.1:1") && !is_loopback("ns1:9876"));
    }

    #[test]
    fn controller_is_off_by_default_and_a_single_voter_without_peers() {
        let c = NameServerConfig::default();
        assert!(!c.controller.enabled);
        let single = c.controller.controller_config("127.0.0.1:9876").unwrap();
        assert_eq!(single.peers.len(), 1);
        assert_eq!(single.own_address(), Some("127.0.0.1:9876"));
    }

    #[test]
    fn controller_peers_are_parsed_and_bad_ones_refused() {
        let section = ControllerSection {
            enabled: true,
            node_id: 2,
            peers: vec![
                "1=ns1:9876".into(),
                " 2 = ns2:9876".into(),
                "3=ns3:9876".into(),
            ],
            data_dir: "d".into(),
            ..ControllerSection::default()
        };
        let config = section.controller_config("ignored:1").unwrap();
        assert_eq!(config.own_address(), Some("ns2:9876"));
        assert_eq!(config.peers.len(), 3);
        for (peers, expected) in [
            (vec!["ns1:9876"], "is not id=host:port"),
            (vec!["x=ns1:9876"], "the id is not a number"),
            (vec!["1=a:1", "1=b:2"], "voter 1 is named twice"),
            (vec!["1=a:1", "3=b:2"], "node_id 2 is not one of"),
        ] {
            let section = ControllerSection {
                peers: peers.into_iter().map(String::from).collect(),
                ..section.clone()
            };
            let error = section.controller_config("x:1").unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn failover_timings_are_carried_into_the_controller_and_checked() {
        let defaults = ControllerSection::default();
        let config = defaults.controller_config("x:1").unwrap();
        assert_eq!(
            (
                config.lease_ms,
                config.lease_margin_ms,
                config.member_timeout_ms
            ),
            (2000, 500, 2000)
        );
        let section = ControllerSection {
            lease_ms: 300,
            lease_margin_ms: 100,
            member_timeout_ms: 400,
            ..defaults.clone()
        };
        let config = section.controller_config("x:1").unwrap();
        assert_eq!(
            (
                config.lease_ms,
                config.lease_margin_ms,
                config.member_timeout_ms
            ),
            (300, 100, 400)
        );
        let section = ControllerSection {
            lease_margin_ms: 2000,
            ..defaults
        };
        let error = section.controller_config("x:1").unwrap_err();
        assert!(error.contains("lease_margin_ms (2000)"), "{error}");
    }

    #[test]
    fn unclean_election_is_off_by_default_and_carried_into_the_controller() {
        let mut section = ControllerSection::default();
        assert!(!section.unclean_election);
        assert!(!section.controller_config("x:1").unwrap().unclean_election);
        section.unclean_election = true;
        assert!(section.controller_config("x:1").unwrap().unclean_election);
    }

    #[test]
    fn deploy_file_documents_every_key() {
        let c = NameServerConfig {
            log_level: Some("info".into()),
            ..Default::default()
        };
        let rendered: toml::Table = toml::from_str(&c.to_toml()).unwrap();
        for (key, value) in &rendered {
            let keys: Vec<String> = match value.as_table() {
                Some(section) => {
                    assert!(DEPLOY_DEFAULTS.contains(&format!("[{key}]")), "no [{key}]");
                    section.keys().map(|k| format!("{k} =")).collect()
                }
                None => vec![format!("{key} =")],
            };
            for k in keys {
                assert!(
                    DEPLOY_DEFAULTS.contains(&k),
                    "deploy/nameserver.toml does not document `{k}`"
                );
            }
        }
    }

    #[test]
    fn env_overrides_apply_to_nameserver_keys() {
        let c: NameServerConfig = config_file::load_with_env(
            None,
            ENV_PREFIX,
            [(
                "APOGEE_NAMESERVER_BROKER_EXPIRY_SECS".to_string(),
                "30".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.broker_expiry_secs, 30);
    }

    #[test]
    fn route_addresses_are_auto_by_default_and_set_by_name() {
        assert_eq!(
            NameServerConfig::default().route_addresses,
            RouteAddresses::Auto
        );
        for (value, expected) in [
            ("all", Some(RouteAddresses::All)),
            ("serving", Some(RouteAddresses::Serving)),
            ("auto", Some(RouteAddresses::Auto)),
            ("every", None),
        ] {
            let c: Result<NameServerConfig, _> = config_file::load_with_env(
                None,
                ENV_PREFIX,
                [(
                    "APOGEE_NAMESERVER_ROUTE_ADDRESSES".to_string(),
                    value.to_string(),
                )],
            );
            assert_eq!(c.ok().map(|c| c.route_addresses), expected, "{value}");
        }
    }

    #[test]
    fn missed_heartbeats_are_bounded_and_set_from_the_environment() {
        let c: NameServerConfig = config_file::load_with_env(
            None,
            ENV_PREFIX,
            [(
                "APOGEE_NAMESERVER_BROKER_MISSED_HEARTBEATS".to_string(),
                "3".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(c.broker_missed_heartbeats, 3);
        for (n, ok) in [
            (0, false),
            (1, true),
            (MAX_MISSED_HEARTBEATS, true),
            (11, false),
        ] {
            let c = NameServerConfig {
                broker_missed_heartbeats: n,
                ..Default::default()
            };
            match c.validate() {
                Ok(()) => assert!(ok, "{n} accepted"),
                Err(e) => {
                    assert!(!ok, "{n} refused: {e}");
                    assert!(e.to_string().contains("broker_missed_heartbeats"), "{e}");
                }
            }
        }
        let too_long = NameServerConfig {
            broker_expiry_secs: MAX_EXPIRY_SECS + 1,
            ..Default::default()
        };
        let err = too_long.validate().unwrap_err().to_string();
        assert!(err.contains("broker_expiry_secs"), "{err}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let c = NameServerConfig::default();
        let back: NameServerConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let bad = [
            NameServerConfig {
                listen: "nowhere".into(),
                ..Default::default()
            },
            NameServerConfig {
                broker_expiry_secs: 0,
                ..Default::default()
            },
            NameServerConfig {
                expiry_scan_interval_secs: 0,
                ..Default::default()
            },
            NameServerConfig {
                max_body_bytes: 0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn remote_controller_endpoints_are_checked_and_exclude_the_embedded_one() {
        let remote = |endpoints: &[&str]| NameServerConfig {
            controller: ControllerSection {
                endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
                ..ControllerSection::default()
            },
            ..NameServerConfig::default()
        };
        assert_eq!(
            NameServerConfig::default().controller.remote_endpoints(),
            Ok(None)
        );
        let good = remote(&["c1:9870", " c2:9870", "10.0.0.3:9870"]);
        assert!(good.validate().is_ok());
        assert_eq!(
            good.controller.remote_endpoints().unwrap().unwrap(),
            ["c1:9870", "c2:9870", "10.0.0.3:9870"]
        );
        let both = NameServerConfig {
            controller: ControllerSection {
                enabled: true,
                ..good.controller.clone()
            },
            ..good.clone()
        };
        let error = both.validate().unwrap_err().to_string();
        assert!(
            error.contains("controller.enabled and controller.endpoints exclude each other"),
            "{error}"
        );
        for (endpoints, expected) in [
            (&["c1"][..], "controller.endpoints: \"c1\""),
            (&["c1:1", "c1:1"][..], "c1:1 is named twice"),
            (
                &["a:1", "b:1", "c:1", "d:1", "e:1", "f:1", "g:1", "h:1"][..],
                "at most 7",
            ),
        ] {
            let error = remote(endpoints).validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{endpoints:?}: {error}");
        }
    }
}

//! The broker's configuration: a TOML file (see `deploy/broker.toml` for every
//! key with its default), `APOGEE_BROKER_...` environment overrides, and the
//! command-line flags the `apogee-broker` executable (broker/cmd) applies on top.
//! Unknown keys are rejected.

use apogee_server::shared_config::SharedSettings;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod coherence;
mod failover;
mod heartbeat;
mod lite;
mod priority;
mod tier;
mod trace;
pub use failover::{AckMode, FailoverSection, MAX_GROUP_MEMBERS, MAX_HANDOVER_OR_DRAIN_MS};
pub use lite::LiteSection;
pub use priority::{PriorityOrder, PrioritySection};
pub use tier::{TierSection, READ_CHUNK_BYTES};
pub use trace::{TraceSection, TRACE_TOPIC_QUEUES};

/// Environment prefix of broker overrides (`APOGEE_BROKER_<KEY>`).
pub const ENV_PREFIX: &str = "BROKER";

/// Default `heartbeat_interval_ms`: with the NameServers' default of 2 missed beats, a
/// hung broker leaves the routes within 2 s.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1_000;

/// What this broker process is in its broker group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    AsyncMaster,
    SyncMaster,
    Slave,
}

impl From<Role> for apogee_proto::cluster::BrokerRole {
    /// The role as registrations and status name it.
    fn from(role: Role) -> Self {
        match role {
            Role::AsyncMaster => Self::AsyncMaster,
            Role::SyncMaster => Self::SyncMaster,
            Role::Slave => Self::Slave,
        }
    }
}

/// When a send is acknowledged relative to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushPolicy {
    /// After a group-commit fdatasync that covers the record.
    Sync,
    /// After the write; a flusher syncs every `async_flush_interval_ms`.
    Async,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub role: Role,
    pub listen: String,
    /// host:port published to the NameServers; empty = derived from `listen`.
    pub advertise: String,
    /// host:port of the HTTP operations endpoint (`/metrics`, `/healthz`,
    /// `/readyz`); empty = none.
    pub http_listen: String,
    /// Log filter when RUST_LOG is not set (tracing's EnvFilter syntax).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Log lines as text or as JSON objects.
    pub log_format: apogee_server::logging::LogFormat,
    /// NameServer addresses (`host:port`): a list, or one string with `;` or `,` between
    /// them (RocketMQ's `namesrvAddr`); each is checked by [`BrokerConfig::validate`].
    #[serde(deserialize_with = "address_list")]
    pub nameservers: Vec<String>,
    pub data_dir: PathBuf,
    pub auto_create_topics: bool,
    pub default_queue_count: u32,
    pub max_body_bytes: usize,
    pub register_interval_secs: u64,
    /// Milliseconds between beats on the broker's session with each NameServer.
    pub heartbeat_interval_ms: u64,
    /// Deprecated (seconds): the key of earlier releases, still read so their config files
    /// start; when set it is the interval (see [`BrokerConfig::heartbeat_interval`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_secs: Option<u64>,
    pub store: StoreSection,
    pub transaction: TransactionSection,
    pub schedule: ScheduleSection,
    pub consume: ConsumeSection,
    pub replication: ReplicationSection,
    pub failover: FailoverSection,
    pub lite: LiteSection,
    pub priority: PrioritySection,
    /// The object-store tier (`crate::tier`).
    pub tier: TierSection,
    /// Message trace records of clients (`RMQ_SYS_TRACE_TOPIC`).
    pub trace: TraceSection,
    /// RocketMQ 4.x remoting clients (`apogee_server::remoting`).
    pub remoting: apogee_server::remoting::RemotingSection,
    /// What clients are told of their own metrics (`apogee_server::settings`).
    pub telemetry: apogee_server::settings::TelemetrySection,
    pub limits: crate::quotas::LimitsSection,
    pub security: apogee_server::security::SecuritySection,
    pub tls: apogee_server::tls_config::TlsSection,
}

/// Master/slave replication of the commit log and the consume state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSection {
    /// A slave's master (host:port of its gRPC listener). Empty: the group's
    /// master as registered with the NameServers (broker id 0, same broker name).
    pub master: String,
    /// SYNC_MASTER: longest a send waits for an in-sync slave to confirm it;
    /// then it is answered SLAVE_PERSISTENCE_TIMEOUT (the message is stored).
    pub sync_timeout_ms: u64,
    /// A slave more than this many bytes behind the master's log end is out of sync.
    pub max_lag_bytes: u64,
    /// Most log bytes per message on the replication stream (one record is
    /// always sent whole, even when larger).
    pub chunk_bytes: usize,
    /// A master that has had slaves holds receives back this long after it
    /// starts, unless a slave reconnects and hands back the consume state it
    /// served while the master was away; so acknowledged messages are not
    /// delivered again.
    pub handback_wait_ms: u64,
    /// A slave's pause between attempts to reach its master.
    pub reconnect_ms: u64,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            master: String::new(),
            sync_timeout_ms: 3_000,
            max_lag_bytes: 256 << 20,
            chunk_bytes: 1 << 20,
            handback_wait_ms: 10_000,
            reconnect_ms: 1_000,
        }
    }
}

/// Where a consumer group created on first use starts reading (`consume.auto_create_start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoCreateStart {
    /// At the first message still stored in each queue (RocketMQ's default).
    Earliest,
    /// At the messages stored after the group was created.
    Latest,
}

impl AutoCreateStart {
    /// As the config file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoCreateStart::Earliest => "earliest",
            AutoCreateStart::Latest => "latest",
        }
    }
}

/// Consumer groups and deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumeSection {
    /// A group nobody created is created with the defaults on first use; false refuses
    /// its receives with CONSUMER_GROUP_NOT_FOUND.
    pub auto_create_groups: bool,
    /// Where a group created on first use starts reading: every message still stored, or
    /// only the messages stored after it was created.
    pub auto_create_start: AutoCreateStart,
    /// Receives with `auto_renew` (push consumers) keep their messages invisible until
    /// acknowledged or nacked, but no longer than this; then they are delivered again.
    pub max_auto_renew_ms: u64,
    /// Invisible time of one auto-renew period: the broker renews in-flight messages of
    /// auto-renew receives this long at a time.
    pub auto_renew_period_ms: u64,
}

impl Default for ConsumeSection {
    fn default() -> Self {
        ConsumeSection {
            auto_create_groups: true,
            auto_create_start: AutoCreateStart::Earliest,
            max_auto_renew_ms: 30 * 60 * 1000,
            auto_renew_period_ms: 30_000,
        }
    }
}

/// Scheduled (DELAY) messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// Latest delivery time accepted, as a delay from now (7 days).
    pub max_delay_ms: u64,
    /// Longest the delivery loop sleeps before it looks at the due index again. It normally
    /// sleeps until the next due time and is woken by earlier new messages; this bounds how
    /// late a wall-clock change is noticed.
    pub scan_interval_ms: u64,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        ScheduleSection {
            max_delay_ms: 7 * 24 * 3600 * 1000,
            scan_interval_ms: 1_000,
        }
    }
}

/// Transactional (half) messages and their check-backs (RocketMQ's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionSection {
    /// First check-back this long after the half message was stored (unless the message
    /// sets its own orphaned-transaction-recovery duration).
    pub check_delay_ms: u64,
    /// Then one every this often while the outcome stays unknown.
    pub check_interval_ms: u64,
    /// Checks made before the half message is parked for an operator.
    pub max_checks: u32,
    /// Queues of the internal half-message topic.
    pub half_queues: u32,
    /// How often the broker looks for due check-backs.
    pub scan_interval_ms: u64,
}

impl Default for TransactionSection {
    fn default() -> Self {
        TransactionSection {
            check_delay_ms: 6_000,
            check_interval_ms: 30_000,
            max_checks: 15,
            half_queues: 8,
            scan_interval_ms: 1_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub flush: FlushPolicy,
    pub async_flush_interval_ms: u64,
    pub segment_bytes: u64,
    /// Zeros kept written ahead of the last record (0: off; capped at `segment_bytes`).
    pub preallocate_bytes: u64,
    /// The newest flushed bytes of the commit log left in the page cache (0: all, the kernel's
    /// choice).
    pub cached_tail_bytes: u64,
    /// Sealed segments last written longer ago than this are deleted.
    pub retention_hours: u64,
    /// Above this used fraction of the disk the oldest segments go, whatever their age.
    pub disk_clean_ratio: f64,
    /// At or above this used fraction of the disk sends are refused.
    pub disk_refuse_ratio: f64,
    /// Milliseconds between retention passes (and disk checks).
    pub retention_check_ms: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            flush: FlushPolicy::Async,
            async_flush_interval_ms: 500,
            segment_bytes: 1 << 30,
            preallocate_bytes: crate::store::DEFAULT_PREALLOCATE_BYTES,
            cached_tail_bytes: crate::store::DEFAULT_CACHED_TAIL_BYTES,
            retention_hours: 72,
            disk_clean_ratio: 0.75,
            disk_refuse_ratio: 0.90,
            retention_check_ms: 1000,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            cluster_name: "DefaultCluster".into(),
            broker_name: "broker-a".into(),
            broker_id: 0,
            role: Role::AsyncMaster,
            listen: format!("127.0.0.1:{}", apogee_proto::names::DEFAULT_BROKER_PORT),
            advertise: String::new(),
            http_listen: format!(
                "127.0.0.1:{}",
                apogee_proto::names::DEFAULT_BROKER_HTTP_PORT
            ),
            log_level: None,
            log_format: apogee_server::logging::LogFormat::Text,
            nameservers: vec![format!(
                "127.0.0.1:{}",
                apogee_proto::names::DEFAULT_NAMESERVER_PORT
            )],
            data_dir: PathBuf::from("./apogee-data/broker"),
            auto_create_topics: false,
            default_queue_count: 8,
            max_body_bytes: apogee_proto::limits::DEFAULT_MAX_BODY_BYTES,
            register_interval_secs: 30,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            heartbeat_interval_secs: None,
            store: StoreSection::default(),
            transaction: TransactionSection::default(),
            schedule: ScheduleSection::default(),
            consume: ConsumeSection::default(),
            replication: ReplicationSection::default(),
            failover: FailoverSection::default(),
            lite: LiteSection::default(),
            priority: PrioritySection::default(),
            tier: TierSection::default(),
            trace: TraceSection::default(),
            remoting: Default::default(),
            telemetry: Default::default(),
            limits: crate::quotas::LimitsSection::default(),
            security: Default::default(),
            tls: Default::default(),
        }
    }
}

/// `nameservers` as a list of strings or one string, each split at `;` and `,` (so
/// `APOGEE_BROKER_NAMESERVERS='a:9876;b:9876'` and `nameservers = ["a:9876;b:9876"]` are
/// two NameServers, as they are to the CLI and the client).
fn address_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let entries = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    Ok(entries
        .iter()
        .flat_map(|e| apogee_proto::names::split_address_list(e))
        .collect())
}

/// A configuration that parses but cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid broker config: {0}")]
pub struct InvalidConfig(pub String);

impl BrokerConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |m: String| Err(InvalidConfig(m));
        if self.broker_name.is_empty() || self.cluster_name.is_empty() {
            return bad("cluster_name and broker_name must be set".into());
        }
        if self.broker_id < 0 {
            return bad("broker_id must be >= 0".into());
        }
        self.validate_failover().or_else(bad)?;
        self.lite.validate().or_else(bad)?;
        self.tier.validate().or_else(bad)?;
        if !self.failover.controller_mode && (self.broker_id == 0) == (self.role == Role::Slave) {
            return bad(
                "broker_id 0 is the master; slaves need broker_id > 0 and role = \"slave\"".into(),
            );
        }
        self.shared().validate().or_else(bad)?;
        self.remoting
            .check_body_fits(self.max_body_bytes)
            .or_else(bad)?;
        if self.nameservers.is_empty() {
            return bad("at least one nameserver is required".into());
        }
        for ns in &self.nameservers {
            if let Err(e) = apogee_proto::names::parse_host_port(ns) {
                return bad(format!("nameservers: {e}"));
            }
        }
        if !(1..=apogee_proto::limits::MAX_QUEUES_PER_TOPIC.unsigned_abs())
            .contains(&self.default_queue_count)
        {
            return bad("default_queue_count must be within 1..=1024".into());
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > apogee_proto::limits::MAX_BATCH_BYTES {
            return bad(format!(
                "max_body_bytes must be within 1..={}",
                apogee_proto::limits::MAX_BATCH_BYTES
            ));
        }
        let ratio_ok = |r: f64| r > 0.0 && r <= 1.0;
        if !ratio_ok(self.store.disk_clean_ratio) || !ratio_ok(self.store.disk_refuse_ratio) {
            return bad(format!(
                "store.disk_clean_ratio ({}) and store.disk_refuse_ratio ({}) must be in (0, 1]",
                self.store.disk_clean_ratio, self.store.disk_refuse_ratio
            ));
        }
        self.check_pairs().or_else(bad)?;
        if self.store.retention_hours == 0 || self.store.retention_check_ms == 0 {
            return bad(
                "store.retention_hours and store.retention_check_ms must be positive".into(),
            );
        }
        if self.store.segment_bytes < 65536 {
            return bad("store.segment_bytes must be at least 65536".into());
        }
        if self.register_interval_secs == 0 {
            return bad("register_interval_secs must be > 0".into());
        }
        self.validate_heartbeat().or_else(bad)?;
        let t = &self.transaction;
        if t.check_interval_ms == 0 || t.scan_interval_ms == 0 {
            return bad(
                "transaction.check_interval_ms and transaction.scan_interval_ms must be > 0".into(),
            );
        }
        if !(1..=1024).contains(&t.half_queues) {
            return bad("transaction.half_queues must be within 1..=1024".into());
        }
        if self.schedule.scan_interval_ms == 0 || self.schedule.max_delay_ms == 0 {
            return bad("schedule.scan_interval_ms and schedule.max_delay_ms must be > 0".into());
        }
        let r = &self.replication;
        if r.sync_timeout_ms == 0 || r.reconnect_ms == 0 {
            return bad(
                "replication.sync_timeout_ms and replication.reconnect_ms must be > 0".into(),
            );
        }
        if !(4096..=apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES / 2).contains(&r.chunk_bytes) {
            return bad(format!(
                "replication.chunk_bytes must be within 4096..={}",
                apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES / 2
            ));
        }
        if !r.master.is_empty() {
            if self.role != Role::Slave {
                return bad(format!(
                    "replication.master is set ({:?}) but this broker is not a slave",
                    r.master
                ));
            }
            if r.master == self.advertised_endpoint() {
                return bad(format!(
                    "replication.master {:?} is this broker's own address",
                    r.master
                ));
            }
        }
        Ok(())
    }

    /// The settings both servers have, for their one validation
    /// ([`apogee_server::shared_config`]).
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

    fn validate_failover(&self) -> Result<(), String> {
        let f = &self.failover;
        if !(1..=MAX_GROUP_MEMBERS).contains(&f.min_in_sync_replicas) {
            return Err(format!(
                "failover.min_in_sync_replicas must be within 1..={MAX_GROUP_MEMBERS}"
            ));
        }
        if !(1..=MAX_HANDOVER_OR_DRAIN_MS).contains(&f.handover_timeout_ms) {
            return Err(format!(
                "failover.handover_timeout_ms must be within 1..={MAX_HANDOVER_OR_DRAIN_MS}"
            ));
        }
        if f.drain_ms > MAX_HANDOVER_OR_DRAIN_MS {
            return Err(format!(
                "failover.drain_ms must be at most {MAX_HANDOVER_OR_DRAIN_MS} (0: exit at once)"
            ));
        }
        if !f.controller_mode {
            if f.ack == AckMode::MinInSync {
                return Err(
                    "failover.ack = \"min_in_sync\" applies to controller mode only: set \
                     failover.controller_mode = true, or choose the acknowledgement with \
                     `role` (sync_master, async_master)"
                        .to_string(),
                );
            }
            return Ok(());
        }
        if self.broker_id < 1 {
            return Err(format!(
                "failover.controller_mode: broker_id is the member's id for life and must be \
                 >= 1 (the controller decides which member is the master; got {})",
                self.broker_id
            ));
        }
        if !self.replication.master.is_empty() {
            return Err(format!(
                "failover.controller_mode: replication.master ({:?}) must be empty (the \
                 controller names the master)",
                self.replication.master
            ));
        }
        Ok(())
    }

    /// Whether the role comes from the controller (`failover.controller_mode`).
    pub fn controller_mode(&self) -> bool {
        self.failover.controller_mode
    }

    /// The endpoint clients and NameServers should use to reach this broker.
    pub fn advertised_endpoint(&self) -> String {
        if !self.advertise.is_empty() {
            return self.advertise.clone();
        }
        match self.listen.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
            _ => self.listen.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_parses_and_matches_defaults() {
        let text = include_str!("../../deploy/broker.toml");
        let parsed: BrokerConfig = toml::from_str(text).expect("deploy/broker.toml parses");
        parsed.validate().expect("valid");
        assert_eq!(parsed, BrokerConfig::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<BrokerConfig>("brokr_name = \"x\"").unwrap_err();
        assert!(err.to_string().contains("brokr_name"), "{err}");
        let err = toml::from_str::<BrokerConfig>("[store]\nflsh = \"sync\"").unwrap_err();
        assert!(err.to_string().contains("flsh"), "{err}");
    }

    #[test]
    fn auto_create_start_is_earliest_or_latest() {
        let latest: BrokerConfig =
            toml::from_str("[consume]\nauto_create_start = \"latest\"").unwrap();
        assert_eq!(latest.consume.auto_create_start, AutoCreateStart::Latest);
        let err = toml::from_str::<BrokerConfig>("[consume]\nauto_create_start = \"lastest\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lastest") && err.contains("earliest") && err.contains("latest"),
            "{err}"
        );
    }

    #[test]
    fn controller_mode_takes_member_ids_from_one_and_no_configured_master() {
        let member = |text: &str| -> Result<(), String> {
            let c: BrokerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
            c.validate().map_err(|e| e.to_string())
        };
        let on = "[failover]\ncontroller_mode = true\n";
        // The role no longer says master or slave: any member id >= 1, any role key.
        member(&format!("broker_id = 1\n{on}")).unwrap();
        member(&format!("broker_id = 2\nrole = \"async_master\"\n{on}")).unwrap();
        let zero = member(&format!("broker_id = 0\n{on}")).unwrap_err();
        assert!(zero.contains("must be >= 1"), "{zero}");
        let pinned = member(&format!(
            "broker_id = 2\n[replication]\nmaster = \"127.0.0.1:1\"\n{on}"
        ))
        .unwrap_err();
        assert!(pinned.contains("replication.master"), "{pinned}");
        for (min, ok) in [
            (0, false),
            (1, true),
            (MAX_GROUP_MEMBERS, true),
            (17, false),
        ] {
            let result = member(&format!("[failover]\nmin_in_sync_replicas = {min}"));
            assert_eq!(result.is_ok(), ok, "min_in_sync_replicas {min}: {result:?}");
        }
        for (setting, ok) in [
            ("handover_timeout_ms = 0", false),
            ("handover_timeout_ms = 600000", true),
            ("handover_timeout_ms = 600001", false),
            ("drain_ms = 0", true),
            ("drain_ms = 600000", true),
            ("drain_ms = 600001", false),
        ] {
            let result = member(&format!("[failover]\n{setting}"));
            assert_eq!(result.is_ok(), ok, "{setting}: {result:?}");
        }
        let defaults = FailoverSection::default();
        assert!(!defaults.controller_mode);
        assert_eq!(
            (defaults.election_priority, defaults.min_in_sync_replicas),
            (255, 1)
        );
    }

    #[test]
    fn ack_mode_defaults_to_all_in_sync_and_min_in_sync_needs_controller_mode() {
        let member = |text: &str| -> Result<BrokerConfig, String> {
            let c: BrokerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
            c.validate().map_err(|e| e.to_string())?;
            Ok(c)
        };
        assert_eq!(FailoverSection::default().ack, AckMode::AllInSync);
        let on = "broker_id = 1\n[failover]\ncontroller_mode = true\n";
        let quorum = member(&format!(
            "{on}ack = \"min_in_sync\"\nmin_in_sync_replicas = 2\n"
        ))
        .unwrap();
        assert_eq!(quorum.failover.ack, AckMode::MinInSync);
        let all = member(&format!("{on}ack = \"all_in_sync\"\n")).unwrap();
        assert_eq!(all.failover.ack, AckMode::AllInSync);
        let unknown = member(&format!("{on}ack = \"majority\"\n")).unwrap_err();
        assert!(
            unknown.contains("all_in_sync") && unknown.contains("min_in_sync"),
            "{unknown}"
        );
        let static_mode = member("[failover]\nack = \"min_in_sync\"\n").unwrap_err();
        assert!(
            static_mode.contains("controller mode only"),
            "{static_mode}"
        );
    }

    #[test]
    fn master_and_slave_ids_must_match_roles() {
        let slave_id_as_master = BrokerConfig {
            broker_id: 1,
            ..BrokerConfig::default()
        };
        assert!(slave_id_as_master.validate().is_err());
        let slave = BrokerConfig {
            role: Role::Slave,
            ..slave_id_as_master
        };
        assert!(slave.validate().is_ok());
    }

    #[test]
    fn nameserver_lists_split_at_semicolons_and_commas() {
        let want = vec!["a:9876".to_string(), "b:9876".into(), "c:9876".into()];
        for text in [
            "nameservers = \"a:9876;b:9876,c:9876\"",
            "nameservers = [\"a:9876;b:9876\", \"c:9876\"]",
            "nameservers = [\"a:9876\", \"b:9876\", \"c:9876\"]",
        ] {
            let c: BrokerConfig = toml::from_str(text).unwrap();
            assert_eq!(c.nameservers, want, "{text}");
            c.validate().unwrap();
        }
        let err = toml::from_str::<BrokerConfig>("nameservers = 5").unwrap_err();
        assert!(err.to_string().contains("nameservers"), "{err}");
    }

    #[test]
    fn bad_nameserver_addresses_are_named() {
        for (list, bad) in [
            ("a:9876;b", "\"b\""),
            ("a:9876;b:99999", "\"b:99999\""),
            ("a:0", "\"a:0\""),
            ("a:port", "\"a:port\""),
        ] {
            let c = BrokerConfig {
                nameservers: apogee_proto::names::split_address_list(list),
                ..BrokerConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("nameservers") && err.contains(bad),
                "{list}: {err}"
            );
        }
        let none: BrokerConfig = toml::from_str("nameservers = \" ; \"").unwrap();
        let err = none.validate().unwrap_err().to_string();
        assert!(err.contains("at least one nameserver"), "{err}");
    }

    #[test]
    fn unspecified_listen_address_advertises_loopback() {
        let c = BrokerConfig {
            listen: "0.0.0.0:10911".into(),
            ..BrokerConfig::default()
        };
        assert_eq!(c.advertised_endpoint(), "127.0.0.1:10911");
    }

    #[test]
    fn a_non_loopback_listen_needs_allow_anonymous() {
        for (listen, http) in [
            ("0.0.0.0:10911", "127.0.0.1:5557"),
            ("127.0.0.1:10911", "0.0.0.0:5557"),
        ] {
            let open = BrokerConfig {
                listen: listen.into(),
                http_listen: http.into(),
                ..BrokerConfig::default()
            };
            let err = open.validate().unwrap_err().to_string();
            assert!(err.contains("reachable from other hosts"), "{err}");
            assert!(
                err.contains("APOGEE_BROKER_SECURITY__ALLOW_ANONYMOUS"),
                "{err}"
            );
            let mut allowed = open.clone();
            allowed.security.allow_anonymous = true;
            assert!(allowed.validate().is_ok());
        }
    }

    #[test]
    fn listen_is_host_colon_port_as_on_the_nameserver() {
        // What the broker accepted before (ip:port) and what the NameServer accepts (a host
        // name) are both taken; what is no address is refused naming the setting.
        for ok in [
            "127.0.0.1:10911",
            "127.0.0.1:0",
            "localhost:10911",
            "[::1]:10911",
        ] {
            let c = BrokerConfig {
                listen: ok.into(),
                ..BrokerConfig::default()
            };
            c.validate().unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let named = BrokerConfig {
            listen: "localhost:10911".into(),
            ..BrokerConfig::default()
        };
        assert_eq!(named.advertised_endpoint(), "localhost:10911");
        for bad in ["nowhere", ":10911", "localhost:port"] {
            let c = BrokerConfig {
                listen: bad.into(),
                ..BrokerConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("listen = ") && err.contains("host:port"),
                "{err}"
            );
        }
    }
}

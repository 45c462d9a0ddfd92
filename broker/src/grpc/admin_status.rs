//! `Admin.GetBrokerStatus` on a broker: who this broker is (cluster, name, id, role,
//! endpoint, version, start time), where its commit log starts, ends and is flushed to, how
//! many topics and consumer groups it holds, and its replication state: a master's table of
//! slaves, or a slave's link to its master. The broker reads them at one moment
//! ([`Broker::broker_status`]); this module puts them into the wire's message.

use crate::actions::admin::{LinkView, LogOffsets};
use crate::config::BrokerConfig;
use crate::services::Broker;
use apogee_proto::cluster::{BrokerRole, BrokerStatus, SlaveStatus};

fn clamp_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn clamp_i32(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

/// Everything but the replication state: identity, version, start time, log offsets, counts.
pub fn base_status(
    config: &BrokerConfig,
    started_at_ms: i64,
    log: LogOffsets,
    topic_count: usize,
    group_count: usize,
) -> BrokerStatus {
    BrokerStatus {
        cluster_name: config.cluster_name.clone(),
        broker_name: config.broker_name.clone(),
        broker_id: config.broker_id,
        role: BrokerRole::from(config.role) as i32,
        endpoint: config.advertised_endpoint(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms,
        log_start_offset: clamp_i64(log.start),
        log_end_offset: clamp_i64(log.end),
        flushed_offset: clamp_i64(log.flushed),
        topic_count: clamp_i32(topic_count),
        group_count: clamp_i32(group_count),
        nameservers: config.nameservers.clone(),
        ..BrokerStatus::default()
    }
}

/// Adds a master's slaves and a slave's link to its master. The slave's lag is the master's
/// log end as last heard minus its own log end (never below 0: the master's end may be stale).
pub fn set_replication(
    status: &mut BrokerStatus,
    slaves: Vec<SlaveStatus>,
    link: Option<LinkView>,
) {
    status.slaves = slaves;
    if let Some(link) = link {
        let own_end = status.log_end_offset.max(0) as u64;
        status.master_endpoint = link.endpoint;
        status.master_connected = link.connected;
        status.master_end_offset = clamp_i64(link.master_end_offset);
        status.lag_bytes = clamp_i64(link.master_end_offset.saturating_sub(own_end));
        status.last_master_contact_ms = link.last_contact_ms;
    }
}

/// This broker's status now.
pub fn broker_status(broker: &Broker) -> BrokerStatus {
    let now = broker.broker_status();
    let mut status = base_status(
        broker.config(),
        now.started_at_ms,
        now.log,
        now.topic_count,
        now.group_count,
    );
    // The role now (it changes at runtime in controller mode).
    status.role = BrokerRole::from(now.role) as i32;
    status.master_since_ms = now.master_since_ms;
    set_replication(&mut status, now.slaves, now.link);
    status.tier = now.tier.map(|(t, location)| tier_status(t, location));
    status
}

/// The tier's status on the wire.
fn tier_status(t: crate::tier::TierStatus, location: String) -> apogee_proto::cluster::TierStatus {
    let (uploading_base, uploading_bytes) = t.uploading.unwrap_or_default();
    let (last_error_at_ms, last_error) = t.last_error.unwrap_or_default();
    apogee_proto::cluster::TierStatus {
        local_segments: t.local_segments,
        local_bytes: t.local_bytes,
        uploading_base,
        uploading_bytes,
        uploading: t.uploading.is_some(),
        tiered_segments: t.tiered_segments,
        tiered_bytes: t.tiered_bytes,
        lag_bytes: t.lag_bytes,
        lag_secs: t.lag_secs,
        last_error,
        last_error_at_ms,
        location,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn config(role: Role, id: i64) -> BrokerConfig {
        BrokerConfig {
            cluster_name: "c1".into(),
            broker_name: "broker-a".into(),
            broker_id: id,
            role,
            listen: "0.0.0.0:10911".into(),
            nameservers: vec!["ns1:9876".into(), "ns2:9876".into()],
            ..BrokerConfig::default()
        }
    }

    fn offsets() -> LogOffsets {
        LogOffsets {
            start: 0,
            end: 4_096,
            flushed: 2_048,
        }
    }

    #[test]
    fn status_names_the_broker_and_its_log() {
        let s = base_status(&config(Role::SyncMaster, 0), 1_700, offsets(), 5, 2);
        assert_eq!(s.cluster_name, "c1");
        assert_eq!(s.broker_name, "broker-a");
        assert_eq!(s.broker_id, 0);
        assert_eq!(s.role, BrokerRole::SyncMaster as i32);
        assert_eq!(s.endpoint, "127.0.0.1:10911");
        assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(s.started_at_ms, 1_700);
        assert_eq!(
            (s.log_start_offset, s.log_end_offset, s.flushed_offset),
            (0, 4_096, 2_048)
        );
        assert_eq!((s.topic_count, s.group_count), (5, 2));
        assert_eq!(s.nameservers, vec!["ns1:9876", "ns2:9876"]);
    }

    #[test]
    fn a_master_lists_its_slaves() {
        let mut s = base_status(&config(Role::AsyncMaster, 0), 0, offsets(), 0, 0);
        let slave = SlaveStatus {
            broker_id: 1,
            endpoint: "h:10921".into(),
            connected: true,
            written_offset: 4_000,
            lag_bytes: 96,
            ..SlaveStatus::default()
        };
        set_replication(&mut s, vec![slave.clone()], None);
        assert_eq!(s.slaves, vec![slave]);
        assert_eq!(s.master_endpoint, "");
        assert_eq!(s.lag_bytes, 0);
    }

    #[test]
    fn a_slave_lag_is_the_master_end_minus_its_own() {
        let mut s = base_status(&config(Role::Slave, 1), 0, offsets(), 0, 0);
        let link = LinkView {
            endpoint: "m:10911".into(),
            connected: true,
            master_end_offset: 10_000,
            last_contact_ms: 99,
        };
        set_replication(&mut s, Vec::new(), Some(link.clone()));
        assert_eq!(s.role, BrokerRole::Slave as i32);
        assert_eq!(s.master_endpoint, "m:10911");
        assert!(s.master_connected);
        assert_eq!(s.master_end_offset, 10_000);
        assert_eq!(s.lag_bytes, 10_000 - 4_096);
        assert_eq!(s.last_master_contact_ms, 99);
        // A master end heard before the slave caught up is not a negative lag.
        let mut s = base_status(&config(Role::Slave, 1), 0, offsets(), 0, 0);
        let stale = LinkView {
            master_end_offset: 1_000,
            connected: false,
            ..link
        };
        set_replication(&mut s, Vec::new(), Some(stale));
        assert_eq!(s.lag_bytes, 0);
        assert!(!s.master_connected);
    }
}

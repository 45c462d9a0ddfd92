//! Unit tests of controller mode in the broker table: member ids, the master by epoch, stale
//! masters recorded as slaves, and the presentation of the master as broker id 0 (time
//! passed in).

use super::*;
use apogee_proto::v2::Permission;

const EXPIRY: Duration = Duration::from_secs(120);

fn group() -> GroupKey {
    GroupKey::new("c", "b1")
}

/// A controller-mode registration of member `id` of `b1` at `h:<id>`, hosting topic `t`.
fn member(id: i64, role: BrokerRole, epoch: u64) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster_name: "c".into(),
        broker_name: "b1".into(),
        broker_id: id,
        endpoint: format!("h:{id}"),
        role: role as i32,
        topics: vec![TopicConfig {
            name: "t".into(),
            queue_count: 4,
            permission: Permission::ReadWrite as i32,
            message_types: vec![],
            lite_expire_after_secs: 0,
        }],
        data_version: 1,
        controller_mode: true,
        master_epoch: epoch,
        ..Default::default()
    }
}

/// (presented broker id, member id, role, epoch) of every live member of `b1`'s route.
fn presented(reg: &Registry, now: Instant) -> Vec<(i64, i64, BrokerRole, u64)> {
    reg.route_at("t", now)
        .first()
        .map(|p| {
            p.members
                .iter()
                .map(|m| {
                    (
                        m.broker_id,
                        m.member_id,
                        BrokerRole::try_from(m.role).unwrap(),
                        m.master_epoch,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

use BrokerRole::{Slave, SyncMaster};

#[test]
fn member_id_zero_is_refused_in_controller_mode() {
    let reg = Registry::new(EXPIRY);
    let err = reg
        .register_at(&member(0, SyncMaster, 1), Instant::now())
        .unwrap_err();
    assert!(matches!(err, ApogeeError::BadRequest(_)), "{err:?}");
    assert!(err.to_string().contains("member ids start at 1"), "{err}");
    assert!(reg.cluster_info().is_empty());
}

#[test]
fn the_master_is_presented_as_zero_and_the_others_under_their_member_id() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(1, Slave, 3), t0).unwrap();
    reg.register_at(&member(3, Slave, 3), t0).unwrap();
    let r = reg.register_at(&member(2, SyncMaster, 3), t0).unwrap();
    assert_eq!(r.master_endpoint, None, "the registrant is the master");
    assert_eq!(
        presented(&reg, t0),
        [(0, 2, SyncMaster, 3), (1, 1, Slave, 3), (3, 3, Slave, 3)]
    );
    let route = reg.route_at("t", t0);
    assert_eq!(route[0].master().unwrap().endpoint, "h:2");
    assert_eq!(route[0].first_slave().unwrap().endpoint, "h:1");
    // Cluster info and admin targets present it alike.
    let info = reg.cluster_info_at(t0);
    assert_eq!(info[0].members[0].broker_id, 0);
    assert_eq!(info[0].members[0].member_id, 2);
    let targets = reg.admin_targets_at("t", t0);
    assert_eq!(targets[0].master_endpoint.as_deref(), Some("h:2"));
    // A slave learns the master's endpoint.
    let r = reg.register_at(&member(1, Slave, 3), t0).unwrap();
    assert_eq!(r.master_endpoint.as_deref(), Some("h:2"));
}

#[test]
fn a_master_of_an_older_epoch_is_recorded_as_a_slave_and_never_replaces_the_newer() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(2, SyncMaster, 5), t0).unwrap();
    // The old master, cut off while member 2 was elected, comes back believing it leads.
    let r = reg.register_at(&member(1, SyncMaster, 4), t0).unwrap();
    assert_eq!(r.master_endpoint.as_deref(), Some("h:2"));
    assert_eq!(
        presented(&reg, t0),
        [(0, 2, SyncMaster, 5), (1, 1, Slave, 4)],
        "recorded as a slave with the epoch it sent"
    );
    assert_eq!(reg.highest_master_epoch(&group()), 5);
    // Again (the WARN is logged once): still a slave.
    reg.register_at(&member(1, SyncMaster, 4), t0).unwrap();
    assert_eq!(presented(&reg, t0)[1], (1, 1, Slave, 4));
}

#[test]
fn a_newer_master_records_the_older_one_as_a_slave_and_its_death_leaves_no_master() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(1, SyncMaster, 4), t0).unwrap();
    assert_eq!(presented(&reg, t0)[0], (0, 1, SyncMaster, 4));
    let t1 = t0 + Duration::from_secs(60);
    reg.register_at(&member(2, SyncMaster, 5), t1).unwrap();
    assert_eq!(
        presented(&reg, t1),
        [(0, 2, SyncMaster, 5), (1, 1, Slave, 4)]
    );
    // The new master goes silent; the old one is still heard from: no master at all (the
    // old one waits for the controller), so no broker id 0 and no writable queue.
    let t2 = t1 + EXPIRY + Duration::from_secs(1);
    assert!(!reg.heartbeat_at("c", "b1", 1, 1, t0 + EXPIRY));
    let route = reg.route_at("t", t0 + EXPIRY);
    assert_eq!(route[0].master().unwrap().member_id, 2);
    reg.heartbeat_at("c", "b1", 1, 1, t2 - Duration::from_secs(1));
    let route = reg.route_at("t", t2);
    assert!(route[0].master().is_none(), "{route:?}");
    assert_eq!(route[0].first_slave().unwrap().member_id, 1);
    assert_eq!(reg.admin_targets_at("t", t2)[0].master_endpoint, None);
    // The clients' queues: read-only, from the slave.
    use crate::grpc::route::{message_queues, MemberAddresses};
    let topic = apogee_proto::v2::Resource {
        resource_namespace: String::new(),
        name: "t".into(),
    };
    let queues = message_queues(&route, &topic, MemberAddresses::Serving);
    assert_eq!(queues.len(), 4);
    assert!(queues
        .iter()
        .all(|q| q.permission == Permission::Read as i32));
}

#[test]
fn a_later_registration_of_the_same_member_with_a_higher_epoch_replaces_its_older_one() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(1, SyncMaster, 4), t0).unwrap();
    reg.register_at(&member(2, Slave, 4), t0).unwrap();
    // A planned switch: member 2 becomes master at epoch 5, member 1 follows it.
    let r = reg.register_at(&member(2, SyncMaster, 5), t0).unwrap();
    assert!(!r.is_new, "the same member from the same endpoint");
    assert_eq!(
        presented(&reg, t0),
        [(0, 2, SyncMaster, 5), (1, 1, Slave, 4)]
    );
    reg.register_at(&member(1, Slave, 5), t0).unwrap();
    assert_eq!(
        presented(&reg, t0),
        [(0, 2, SyncMaster, 5), (1, 1, Slave, 5)]
    );
    // Member 1 elected back at epoch 6.
    reg.register_at(&member(1, SyncMaster, 6), t0).unwrap();
    assert_eq!(
        presented(&reg, t0),
        [(0, 1, SyncMaster, 6), (2, 2, Slave, 5)]
    );
}

#[test]
fn a_slave_following_a_newer_epoch_fences_an_older_master() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    // The new master (epoch 6) has not registered here yet; its slave has.
    reg.register_at(&member(3, Slave, 6), t0).unwrap();
    reg.register_at(&member(1, SyncMaster, 5), t0).unwrap();
    let route = reg.route_at("t", t0);
    assert!(route[0].master().is_none());
    reg.register_at(&member(2, SyncMaster, 6), t0).unwrap();
    assert_eq!(reg.route_at("t", t0)[0].master().unwrap().member_id, 2);
}

#[test]
fn the_highest_epoch_outlives_an_emptied_group() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(2, SyncMaster, 7), t0).unwrap();
    assert!(reg.unregister("c", "b1", 2));
    assert!(reg.cluster_info_at(t0).is_empty());
    reg.register_at(&member(1, SyncMaster, 6), t0).unwrap();
    assert_eq!(presented(&reg, t0), [(1, 1, Slave, 6)]);
}

#[test]
fn one_live_process_per_member_id() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(1, SyncMaster, 1), t0).unwrap();
    let mut other = member(1, SyncMaster, 2);
    other.endpoint = "elsewhere:1".into();
    let err = reg.register_at(&other, t0).unwrap_err();
    assert!(matches!(err, ApogeeError::AlreadyExists(_)), "{err:?}");
    assert_eq!(presented(&reg, t0), [(0, 1, SyncMaster, 1)]);
    // The holder silent past its window: the id is free.
    let later = t0 + EXPIRY + Duration::from_secs(1);
    reg.register_at(&other, later).unwrap();
    assert_eq!(
        reg.route_at("t", later)[0].members[0].endpoint,
        "elsewhere:1"
    );
}

#[test]
fn a_group_takes_members_of_one_mode_while_any_is_live() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&member(1, SyncMaster, 1), t0).unwrap();
    let mut static_master = member(0, SyncMaster, 0);
    static_master.controller_mode = false;
    static_master.endpoint = "s:0".into();
    let err = reg.register_at(&static_master, t0).unwrap_err();
    assert!(matches!(err, ApogeeError::PreconditionFailed(_)), "{err:?}");
    assert!(err.to_string().contains("one mode"), "{err}");
    // Once the controller-mode member is gone, the group may change mode.
    let later = t0 + EXPIRY + Duration::from_secs(1);
    reg.register_at(&static_master, later).unwrap();
    let mut slave = member(2, Slave, 1);
    slave.controller_mode = false;
    slave.master_epoch = 0;
    reg.register_at(&slave, later).unwrap();
    let mut controller_slave = member(3, Slave, 1);
    controller_slave.endpoint = "x:3".into();
    assert!(reg.register_at(&controller_slave, later).is_err());
}

#[test]
fn static_members_say_their_broker_id_as_member_id_and_no_epoch() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    let mut master = member(0, SyncMaster, 9);
    master.controller_mode = false;
    reg.register_at(&master, t0).unwrap();
    let mut slave = member(1, Slave, 9);
    slave.controller_mode = false;
    reg.register_at(&slave, t0).unwrap();
    assert_eq!(
        presented(&reg, t0),
        [(0, 0, SyncMaster, 0), (1, 1, Slave, 0)]
    );
    assert_eq!(reg.highest_master_epoch(&group()), 0);
}

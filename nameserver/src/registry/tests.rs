//! Unit tests of the broker table: membership, expiry and routes.

use super::*;
use apogee_proto::v2::{MessageType, Permission};

const EXPIRY: Duration = Duration::from_secs(120);

fn topic(name: &str, queues: i32) -> TopicConfig {
    TopicConfig {
        name: name.into(),
        queue_count: queues,
        permission: Permission::ReadWrite as i32,
        message_types: vec![MessageType::Normal as i32],
        lite_expire_after_secs: 0,
    }
}

fn req(
    broker: &str,
    id: i64,
    endpoint: &str,
    topics: &[TopicConfig],
    version: i64,
) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster_name: "DefaultCluster".into(),
        broker_name: broker.into(),
        broker_id: id,
        endpoint: endpoint.into(),
        role: if id == 0 {
            BrokerRole::AsyncMaster as i32
        } else {
            BrokerRole::Slave as i32
        },
        topics: topics.to_vec(),
        data_version: version,
        groups: vec![],
        ..Default::default()
    }
}

#[test]
fn expiry_drops_a_silent_broker() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 4)], 1), t0)
        .unwrap();
    reg.register_at(&req("b2", 0, "10.0.0.2:10911", &[topic("t", 4)], 1), t0)
        .unwrap();

    // b2 keeps heartbeating, b1 goes silent.
    let later = t0 + Duration::from_secs(100);
    assert!(!reg.heartbeat_at("DefaultCluster", "b2", 0, 1, later));
    assert!(reg.expire_at(t0 + Duration::from_secs(119)).is_empty());

    let expired = reg.expire_at(t0 + Duration::from_secs(121));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].group, GroupKey::new("DefaultCluster", "b1"));
    assert_eq!(expired[0].endpoint, "10.0.0.1:10911");

    let route = reg.route_at("t", t0 + Duration::from_secs(121));
    assert_eq!(route.len(), 1);
    assert_eq!(route[0].group.broker_name, "b2");
    // The dropped broker must register again before a heartbeat counts.
    assert!(reg.heartbeat_at("DefaultCluster", "b1", 0, 1, t0 + Duration::from_secs(122)));
}

#[test]
fn silent_broker_is_hidden_from_routes_before_the_scan() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 4)], 1), t0)
        .unwrap();
    assert_eq!(reg.route_at("t", t0 + Duration::from_secs(60)).len(), 1);
    assert!(reg.route_at("t", t0 + Duration::from_secs(121)).is_empty());
}

#[test]
fn heartbeat_with_stale_version_asks_for_re_register() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    // Unknown broker.
    assert!(reg.heartbeat_at("DefaultCluster", "b1", 0, 1, t0));
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[], 1), t0)
        .unwrap();
    assert!(!reg.heartbeat_at("DefaultCluster", "b1", 0, 1, t0));
    // The broker's topic set changed (version 2) but the table has version 1.
    assert!(reg.heartbeat_at("DefaultCluster", "b1", 0, 2, t0));
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 1)], 2), t0)
        .unwrap();
    assert!(!reg.heartbeat_at("DefaultCluster", "b1", 0, 2, t0));
    // Unknown member of a known group, and a known name in another cluster.
    assert!(reg.heartbeat_at("DefaultCluster", "b1", 1, 2, t0));
    assert!(reg.heartbeat_at("OtherCluster", "b1", 0, 2, t0));
}

#[test]
fn route_across_two_groups() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(
        &req(
            "b1",
            0,
            "10.0.0.1:10911",
            &[topic("t", 4), topic("only1", 2)],
            1,
        ),
        t0,
    )
    .unwrap();
    reg.register_at(&req("b1", 1, "10.0.0.11:10911", &[topic("t", 4)], 1), t0)
        .unwrap();
    reg.register_at(&req("b2", 0, "10.0.0.2:10911", &[topic("t", 8)], 1), t0)
        .unwrap();

    let route = reg.route_at("t", t0);
    assert_eq!(route.len(), 2);
    assert_eq!(route[0].group.broker_name, "b1");
    assert_eq!(route[0].config.queue_count, 4);
    assert_eq!(route[0].master().unwrap().endpoint, "10.0.0.1:10911");
    assert_eq!(route[0].first_slave().unwrap().endpoint, "10.0.0.11:10911");
    assert_eq!(route[1].group.broker_name, "b2");
    assert_eq!(route[1].config.queue_count, 8);
    assert!(route[1].first_slave().is_none());

    assert_eq!(reg.route_at("only1", t0).len(), 1);
    assert!(reg.route_at("missing", t0).is_empty());
}

#[test]
fn route_falls_back_to_a_slave_when_the_master_is_gone() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 4)], 1), t0)
        .unwrap();
    reg.register_at(&req("b1", 1, "10.0.0.11:10911", &[topic("t", 4)], 1), t0)
        .unwrap();
    assert!(reg.unregister("DefaultCluster", "b1", 0));
    let route = reg.route_at("t", t0);
    assert_eq!(route.len(), 1);
    assert!(route[0].master().is_none());
    assert_eq!(route[0].first_slave().unwrap().broker_id, 1);
}

#[test]
fn slave_registration_learns_the_master_endpoint() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    let r = reg
        .register_at(&req("b1", 1, "10.0.0.11:10911", &[], 1), t0)
        .unwrap();
    assert_eq!(r.master_endpoint, None);
    assert!(r.is_new);
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[], 1), t0)
        .unwrap();
    let r = reg
        .register_at(&req("b1", 1, "10.0.0.11:10911", &[], 1), t0)
        .unwrap();
    assert_eq!(r.master_endpoint.as_deref(), Some("10.0.0.1:10911"));
    assert!(!r.is_new);
}

#[test]
fn unregister_removes_member_and_empty_group() {
    let reg = Registry::new(EXPIRY);
    reg.register(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 1)], 1))
        .unwrap();
    assert_eq!(reg.cluster_info().len(), 1);
    assert!(reg.unregister("DefaultCluster", "b1", 0));
    assert!(!reg.unregister("DefaultCluster", "b1", 0));
    assert!(reg.cluster_info().is_empty());
    assert!(reg.route("t").is_empty());
}

#[test]
fn topic_changes_apply_to_every_member_of_the_group() {
    let reg = Registry::new(EXPIRY);
    reg.register(&req("b1", 0, "10.0.0.1:10911", &[], 1))
        .unwrap();
    reg.register(&req("b1", 1, "10.0.0.11:10911", &[], 1))
        .unwrap();
    reg.register(&req("b2", 0, "10.0.0.2:10911", &[], 1))
        .unwrap();
    let b1 = GroupKey::new("DefaultCluster", "b1");
    reg.upsert_topic(&b1, &topic("new", 3));
    let route = reg.route("new");
    assert_eq!(route.len(), 1);
    assert_eq!(route[0].members.len(), 2);
    assert_eq!(reg.topics()["new"].broker_names, vec!["b1".to_string()]);

    let targets = reg.admin_targets("new");
    assert_eq!(targets.len(), 2);
    assert!(targets[0].hosts_topic && !targets[1].hosts_topic);
    assert_eq!(
        targets[1].master_endpoint.as_deref(),
        Some("10.0.0.2:10911")
    );

    reg.remove_topic(&b1, "new");
    assert!(reg.route("new").is_empty());
    assert!(reg.topics().is_empty());
}

#[test]
fn unspecified_role_follows_the_broker_id() {
    let reg = Registry::new(EXPIRY);
    let mut r = req("b1", 0, "h:1", &[], 1);
    r.role = 0;
    reg.register(&r).unwrap();
    let mut r = req("b1", 2, "h:2", &[], 1);
    r.role = 0;
    reg.register(&r).unwrap();
    let info = reg.cluster_info();
    let roles: Vec<i32> = info[0].members.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![BrokerRole::AsyncMaster as i32, BrokerRole::Slave as i32]
    );
}

#[test]
fn a_broker_id_held_by_a_live_endpoint_refuses_another() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 4)], 1), t0)
        .unwrap();
    let err = reg
        .register_at(&req("b1", 0, "10.0.0.9:10911", &[], 1), t0)
        .unwrap_err();
    assert!(matches!(err, ApogeeError::AlreadyExists(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("10.0.0.1:10911") && text.contains("10.0.0.9:10911"),
        "{text}"
    );
    // The holder keeps its entry and its topics.
    let route = reg.route_at("t", t0);
    assert_eq!(route[0].members[0].endpoint, "10.0.0.1:10911");
    // Other ids of the group and the same id in another group are free.
    reg.register_at(&req("b1", 1, "10.0.0.9:10911", &[], 1), t0)
        .unwrap();
    reg.register_at(&req("b2", 0, "10.0.0.9:10912", &[], 1), t0)
        .unwrap();
}

#[test]
fn the_same_endpoint_registering_again_is_the_same_broker() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    let first = reg
        .register_at(&req("b1", 0, "10.0.0.1:10911", &[], 1), t0)
        .unwrap();
    assert!(first.is_new);
    let again = reg
        .register_at(&req("b1", 0, "10.0.0.1:10911", &[topic("t", 2)], 2), t0)
        .unwrap();
    assert!(!again.is_new);
    assert_eq!(reg.route_at("t", t0).len(), 1);
}

#[test]
fn a_silent_or_unregistered_holder_frees_its_id() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&req("b1", 0, "10.0.0.1:10911", &[], 1), t0)
        .unwrap();
    // Silent past the expiry window (not yet scanned): the id is free.
    let later = t0 + EXPIRY + Duration::from_secs(1);
    let moved = reg
        .register_at(&req("b1", 0, "10.0.0.2:10911", &[], 1), later)
        .unwrap();
    assert!(moved.is_new, "another process took the id over");
    // Unregistered: free at once.
    assert!(reg.unregister("DefaultCluster", "b1", 0));
    reg.register_at(&req("b1", 0, "10.0.0.3:10911", &[], 1), later)
        .unwrap();
}

//! Unit tests of the brokers' sessions in the broker table: binding, the end of the
//! current session only, missed beats (time passed in), and brokers without sessions.

use super::*;
use apogee_proto::v2::Permission;

const EXPIRY: Duration = Duration::from_secs(120);
const INTERVAL: Duration = Duration::from_secs(1);
const ENDPOINT: &str = "10.0.0.1:10911";

fn group() -> GroupKey {
    GroupKey::new("DefaultCluster", "b1")
}

/// A registration of master `b1` by process `instance` at `endpoint`, hosting topic `t`.
fn registration(instance: u64, endpoint: &str, version: i64) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster_name: "DefaultCluster".into(),
        broker_name: "b1".into(),
        broker_id: 0,
        endpoint: endpoint.into(),
        role: BrokerRole::AsyncMaster as i32,
        topics: vec![TopicConfig {
            name: "t".into(),
            queue_count: 4,
            permission: Permission::ReadWrite as i32,
            message_types: vec![],
            lite_expire_after_secs: 0,
        }],
        data_version: version,
        instance_id: instance,
        ..Default::default()
    }
}

fn open(
    reg: &Registry,
    instance: u64,
    endpoint: &str,
    version: i64,
    now: Instant,
) -> Result<SessionOpened, ApogeeError> {
    let group = group();
    let who = SessionMember {
        group: &group,
        broker_id: 0,
        endpoint,
        instance,
        interval: INTERVAL,
    };
    reg.open_session_at(who, version, now)
}

fn routed(reg: &Registry, now: Instant) -> Vec<String> {
    reg.route_at("t", now)
        .iter()
        .flat_map(|p| p.members.iter().map(|m| m.endpoint.clone()))
        .collect()
}

#[test]
fn a_session_asks_for_a_registration_until_its_process_registered_its_version() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    // A restarted NameServer: the session comes before any registration.
    let s = open(&reg, 7, ENDPOINT, 3, t0).unwrap();
    assert!(s.register_required);
    assert_eq!(
        reg.beat_at(&group(), 0, s.id, 3, t0),
        BeatAnswer::Live {
            register_required: true
        }
    );
    reg.register_at(&registration(7, ENDPOINT, 3), t0).unwrap();
    assert_eq!(
        reg.beat_at(&group(), 0, s.id, 3, t0),
        BeatAnswer::Live {
            register_required: false
        }
    );
    // The broker's topics changed: its beat carries the new version.
    assert_eq!(
        reg.beat_at(&group(), 0, s.id, 4, t0),
        BeatAnswer::Live {
            register_required: true
        }
    );
    // A session opened after the registration is bound at once.
    let again = open(&reg, 7, ENDPOINT, 3, t0).unwrap();
    assert!(!again.register_required);
}

#[test]
fn the_end_of_its_session_drops_the_member_at_once() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&registration(7, ENDPOINT, 1), t0).unwrap();
    let s = open(&reg, 7, ENDPOINT, 1, t0).unwrap();
    assert_eq!(routed(&reg, t0), [ENDPOINT]);
    let dropped = reg.end_session_at(&group(), 0, s.id, t0).expect("dropped");
    assert_eq!(
        (dropped.endpoint.as_str(), dropped.session),
        (ENDPOINT, Some(s.id))
    );
    assert!(routed(&reg, t0).is_empty());
    assert!(reg.cluster_info().is_empty(), "the empty group goes too");
    // Its stale beats are told so (the stream is then ended).
    assert_eq!(reg.beat_at(&group(), 0, s.id, 1, t0), BeatAnswer::Ended);
}

#[test]
fn the_old_session_of_a_restarted_broker_never_drops_its_new_registration() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&registration(1, ENDPOINT, 1), t0).unwrap();
    let old = open(&reg, 1, ENDPOINT, 1, t0).unwrap();
    // The broker restarts on the same endpoint and registers before the NameServer
    // sees the old process's stream close.
    reg.register_at(&registration(2, ENDPOINT, 1), t0).unwrap();
    assert_eq!(reg.end_session_at(&group(), 0, old.id, t0), None);
    assert_eq!(routed(&reg, t0), [ENDPOINT]);

    // The same with the new session opened before the old one's close is seen.
    let new = open(&reg, 2, ENDPOINT, 1, t0).unwrap();
    assert!(!new.register_required);
    assert_eq!(reg.beat_at(&group(), 0, old.id, 1, t0), BeatAnswer::Ended);
    assert_eq!(reg.end_session_at(&group(), 0, old.id, t0), None);
    assert_eq!(routed(&reg, t0), [ENDPOINT]);
    // The new session is the one that counts.
    assert!(reg.end_session_at(&group(), 0, new.id, t0).is_some());
    assert!(routed(&reg, t0).is_empty());
}

#[test]
fn a_session_missing_its_beats_drops_its_member_after_the_allowed_count() {
    let reg = Registry::new(EXPIRY).with_missed_heartbeats(2);
    let t0 = Instant::now();
    reg.register_at(&registration(7, ENDPOINT, 1), t0).unwrap();
    let s = open(&reg, 7, ENDPOINT, 1, t0).unwrap();
    let last_beat = t0 + Duration::from_millis(500);
    assert!(matches!(
        reg.beat_at(&group(), 0, s.id, 1, last_beat),
        BeatAnswer::Live { .. }
    ));
    // Two intervals (2 s) after the last beat it is still live; past them, not.
    let at_limit = last_beat + 2 * INTERVAL;
    assert!(reg.expire_at(at_limit).is_empty());
    assert_eq!(routed(&reg, at_limit), [ENDPOINT]);
    let past = at_limit + Duration::from_millis(1);
    assert!(routed(&reg, past).is_empty(), "hidden before the scan");
    let expired = reg.expire_at(past);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].silence_limit, 2 * INTERVAL);
    assert_eq!(expired[0].session, Some(s.id));
    // Its session is over: a beat after the hang is told so, and the broker's next
    // session asks for a registration.
    assert_eq!(reg.beat_at(&group(), 0, s.id, 1, past), BeatAnswer::Ended);
    assert!(open(&reg, 7, ENDPOINT, 1, past).unwrap().register_required);
}

#[test]
fn the_missed_beat_count_sets_the_allowed_silence() {
    let reg = Registry::new(EXPIRY).with_missed_heartbeats(5);
    assert_eq!(reg.session_silence_limit(INTERVAL), 5 * INTERVAL);
    let t0 = Instant::now();
    reg.register_at(&registration(7, ENDPOINT, 1), t0).unwrap();
    open(&reg, 7, ENDPOINT, 1, t0).unwrap();
    assert!(reg.expire_at(t0 + 5 * INTERVAL).is_empty());
    assert_eq!(
        reg.expire_at(t0 + 5 * INTERVAL + Duration::from_millis(1))
            .len(),
        1
    );
}

#[test]
fn a_session_is_refused_while_another_endpoint_holds_the_id() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&registration(1, ENDPOINT, 1), t0).unwrap();
    let held = open(&reg, 1, ENDPOINT, 1, t0).unwrap();
    let err = open(&reg, 2, "10.0.0.2:10911", 1, t0).unwrap_err();
    assert!(matches!(err, ApogeeError::AlreadyExists(_)), "{err:?}");
    // The holder's session stays the current one.
    assert!(matches!(
        reg.beat_at(&group(), 0, held.id, 1, t0),
        BeatAnswer::Live { .. }
    ));
}

#[test]
fn brokers_without_a_session_keep_the_expiry_window() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    // A broker of an earlier release: instance 0, unary heartbeats.
    reg.register_at(&registration(0, ENDPOINT, 1), t0).unwrap();
    assert!(reg.expire_at(t0 + Duration::from_secs(60)).is_empty());
    assert!(!reg.heartbeat_at("DefaultCluster", "b1", 0, 1, t0 + Duration::from_secs(100)));
    assert!(reg.expire_at(t0 + Duration::from_secs(219)).is_empty());
    assert_eq!(reg.expire_at(t0 + Duration::from_secs(221)).len(), 1);
    // A registration whose process has no open session yet keeps the window too.
    reg.register_at(&registration(9, ENDPOINT, 1), t0).unwrap();
    assert!(reg.expire_at(t0 + Duration::from_secs(100)).is_empty());
}

#[test]
fn unregistering_forgets_the_session() {
    let reg = Registry::new(EXPIRY);
    let t0 = Instant::now();
    reg.register_at(&registration(7, ENDPOINT, 1), t0).unwrap();
    let s = open(&reg, 7, ENDPOINT, 1, t0).unwrap();
    assert!(reg.unregister("DefaultCluster", "b1", 0));
    assert_eq!(reg.end_session_at(&group(), 0, s.id, t0), None);
    assert_eq!(reg.beat_at(&group(), 0, s.id, 1, t0), BeatAnswer::Ended);
}

//! Unit tests of the replication view: merging cluster info with the members' statuses, and
//! the tables and JSON of `cluster list` and `broker status`.

use super::*;
use apogee_proto::cluster::{BrokerGroup, BrokerMember, BrokerRole, GetClusterInfoResponse};

const NOW: i64 = 100_000;

fn member(id: i64, endpoint: &str, role: BrokerRole) -> BrokerMember {
    BrokerMember {
        broker_id: id,
        endpoint: endpoint.into(),
        role: role as i32,
        last_seen_ms: NOW - 2_000,
        data_version: 4,
        topic_count: 3,
        ..BrokerMember::default()
    }
}

/// broker-a: a sync master (a:0) with slaves 1 (a:1) and 2 (a:2).
fn info() -> GetClusterInfoResponse {
    GetClusterInfoResponse {
        groups: vec![BrokerGroup {
            cluster_name: "c1".into(),
            broker_name: "broker-a".into(),
            members: vec![
                member(2, "a:2", BrokerRole::Slave),
                member(0, "a:0", BrokerRole::SyncMaster),
                member(1, "a:1", BrokerRole::Slave),
            ],
        }],
    }
}

fn key(id: i64) -> MemberKey {
    ("c1".into(), "broker-a".into(), id)
}

fn master_status(slaves: Vec<SlaveStatus>) -> BrokerStatus {
    BrokerStatus {
        cluster_name: "c1".into(),
        broker_name: "broker-a".into(),
        broker_id: 0,
        role: BrokerRole::SyncMaster as i32,
        endpoint: "a:0".into(),
        version: "0.1.0".into(),
        started_at_ms: NOW - 60_000,
        log_end_offset: 10_000,
        flushed_offset: 9_000,
        topic_count: 3,
        group_count: 1,
        nameservers: vec!["ns:9876".into()],
        slaves,
        ..Default::default()
    }
}

fn slave_entry(id: i64, lag_bytes: i64, lag_ms: i64, in_sync: bool) -> SlaveStatus {
    SlaveStatus {
        broker_id: id,
        endpoint: format!("a:{id}"),
        connected: true,
        written_offset: 10_000 - lag_bytes,
        synced_offset: 10_000 - lag_bytes,
        lag_bytes,
        lag_ms,
        in_sync,
        last_report_ms: NOW - 500,
    }
}

fn slave_status(id: i64, log_end: i64, lag_bytes: i64, connected: bool) -> BrokerStatus {
    BrokerStatus {
        cluster_name: "c1".into(),
        broker_name: "broker-a".into(),
        broker_id: id,
        role: BrokerRole::Slave as i32,
        endpoint: format!("a:{id}"),
        version: "0.1.0".into(),
        log_end_offset: log_end,
        master_endpoint: "a:0".into(),
        master_connected: connected,
        master_end_offset: log_end + lag_bytes,
        lag_bytes,
        last_master_contact_ms: NOW - 1_000,
        ..Default::default()
    }
}

fn row(rows: &[ClusterRow], id: i64) -> &ClusterRow {
    rows.iter().find(|r| r.member.id == id).expect("a row")
}

#[test]
fn a_slave_lag_comes_from_its_master_when_the_master_answered() {
    let mut probes = Probes::new();
    probes.insert(
        key(0),
        Ok(master_status(vec![slave_entry(1, 2_048, 1_500, false)])),
    );
    // The slave's own view is older and rosier: the master's entry wins.
    probes.insert(key(1), Ok(slave_status(1, 7_952, 0, true)));
    let rows = cluster_rows(&info(), &probes, NOW);
    let ids: Vec<i64> = rows.iter().map(|r| r.member.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);

    let master = row(&rows, 0);
    assert!(master.reachable);
    assert_eq!(master.log_end_offset, Some(10_000));
    assert_eq!((master.lag_bytes, master.in_sync), (None, None));

    let slave = row(&rows, 1);
    assert!(slave.reachable);
    assert_eq!(slave.log_end_offset, Some(7_952));
    assert_eq!(slave.lag_bytes, Some(2_048));
    assert_eq!(slave.lag_ms, Some(1_500));
    assert_eq!(slave.in_sync, Some(false));
    assert_eq!(slave.lag_source, Some(LagSource::Master));
}

#[test]
fn an_unreachable_member_is_a_row_not_a_failure() {
    let mut probes = Probes::new();
    probes.insert(key(0), Err("cannot reach broker a:0: refused".into()));
    probes.insert(key(1), Ok(slave_status(1, 9_000, 1_000, false)));
    probes.insert(key(2), Err("broker a:2 did not answer in time".into()));
    let rows = cluster_rows(&info(), &probes, NOW);
    assert_eq!(rows.len(), 3);

    let master = row(&rows, 0);
    assert!(!master.reachable);
    assert_eq!(
        master.error.as_deref(),
        Some("cannot reach broker a:0: refused")
    );
    assert_eq!(master.status, None);
    // The master is down: the slave's own view is all there is.
    let slave = row(&rows, 1);
    assert_eq!(slave.lag_bytes, Some(1_000));
    assert_eq!(slave.lag_ms, None);
    assert_eq!(slave.in_sync, Some(false));
    assert_eq!(slave.lag_source, Some(LagSource::Slave));
    // Neither the slave nor its master answered: nothing is known.
    let lost = row(&rows, 2);
    assert!(!lost.reachable);
    assert_eq!(
        (lost.lag_bytes, lost.in_sync, lost.lag_source),
        (None, None, None)
    );

    assert_eq!(
        render_list(&rows, Format::Table),
        "CLUSTER  BROKER    MEMBER  ROLE         EPOCH  ENDPOINT  TOPICS  LAST SEEN  VERSION  \
         DATA VERSION  LOG END      LAG    LAG TIME  IN SYNC\n\
         c1       broker-a  0       sync-master  -      a:0       3       2.0s ago   -        \
         4             unreachable  -      -         -\n\
         c1       broker-a  1       slave        -      a:1       3       2.0s ago   0.1.0    \
         4             9000         1000B  -         no\n\
         c1       broker-a  2       slave        -      a:2       3       2.0s ago   -        \
         4             unreachable  -      -         -\n"
    );
}

#[test]
fn the_master_entry_serves_a_slave_that_does_not_answer() {
    let mut probes = Probes::new();
    probes.insert(key(0), Ok(master_status(vec![slave_entry(2, 0, 0, true)])));
    probes.insert(key(1), Err("refused".into()));
    probes.insert(key(2), Err("refused".into()));
    let rows = cluster_rows(&info(), &probes, NOW);
    let known = row(&rows, 2);
    assert!(!known.reachable);
    assert_eq!(
        (known.lag_bytes, known.lag_ms, known.in_sync),
        (Some(0), Some(0), Some(true))
    );
    // The master answered and has not seen slave 1 since it started: not in sync.
    let unseen = row(&rows, 1);
    assert_eq!(
        (unseen.lag_bytes, unseen.in_sync, unseen.lag_source),
        (None, Some(false), Some(LagSource::Master))
    );
}

#[test]
fn a_slave_that_never_heard_from_a_master_has_no_lag() {
    let mut probes = Probes::new();
    let mut lonely = slave_status(1, 0, 0, false);
    lonely.last_master_contact_ms = 0;
    lonely.master_endpoint.clear();
    probes.insert(key(1), Ok(lonely));
    let rows = cluster_rows(&info(), &probes, NOW);
    let slave = row(&rows, 1);
    assert_eq!((slave.lag_bytes, slave.in_sync), (None, Some(false)));
    // A member the command did not ask (no answer recorded) says so.
    assert_eq!(
        row(&rows, 0).error.as_deref(),
        Some("not asked: no endpoint registered")
    );
}

#[test]
fn cluster_list_json_keeps_the_member_fields_and_adds_the_status() {
    let mut probes = Probes::new();
    probes.insert(
        key(0),
        Ok(master_status(vec![slave_entry(1, 64, 20, true)])),
    );
    let rows = cluster_rows(&info(), &probes, NOW);
    let v: serde_json::Value = serde_json::from_str(&render_list(&rows, Format::Json)).unwrap();
    // The fields `cluster list` always had.
    assert_eq!(v[0]["endpoint"], "a:0");
    assert_eq!(v[0]["role"], "sync-master");
    assert_eq!(v[0]["data_version"], 4);
    // The build it runs, from its own answer (none from a member that did not answer).
    assert_eq!(v[0]["version"], "0.1.0");
    assert!(v[1]["version"].is_null());
    assert_eq!(v[0]["last_seen_ago_ms"], 2_000);
    // And the broker's own answer.
    assert_eq!(v[0]["reachable"], true);
    assert_eq!(v[0]["log_end_offset"], 10_000);
    assert_eq!(v[0]["status"]["slaves"][0]["id"], 1);
    assert_eq!(v[0]["status"]["uptime_ms"], 60_000);
    assert_eq!(v[1]["lag_bytes"], 64);
    assert_eq!(v[1]["lag_source"], "master");
    assert_eq!(v[1]["reachable"], false);
    assert!(v[1]["status"].is_null());
    assert_eq!(ClusterRow::headers().len(), rows[0].cells().len());
}

#[test]
fn a_master_status_shows_its_slaves() {
    let s = master_status(vec![
        slave_entry(1, 0, 0, true),
        slave_entry(2, 5_000, 3_000, false),
    ]);
    let view = StatusView::new(&s, NOW);
    assert_eq!(view.master, None);
    let text = render_status(&view, Format::Table);
    assert!(
        text.starts_with("cluster      c1\nbroker       broker-a\n"),
        "{text}"
    );
    assert!(text.contains("\nrole         sync-master\n"), "{text}");
    assert!(text.contains("(up 1m0s)"), "{text}");
    assert!(text.contains("\nlog end      10000\n"), "{text}");
    assert!(text.contains("\nnameservers  ns:9876\n"), "{text}");
    assert!(
        text.contains(
            "SLAVE  ENDPOINT  CONNECTED  WRITTEN  SYNCED  LAG     LAG TIME  IN SYNC  LAST REPORT\n\
             1      a:1       yes        10000    10000   0B      0.0s      yes      0.5s ago\n\
             2      a:2       yes        5000     5000    4.9KiB  3.0s      no       0.5s ago\n"
        ),
        "{text}"
    );
    let none = render_status(&StatusView::new(&master_status(vec![]), NOW), Format::Table);
    assert!(
        none.ends_with("\nno slaves seen since the broker started\n"),
        "{none}"
    );
}

#[test]
fn a_slave_status_shows_its_master_link() {
    let view = StatusView::new(&slave_status(1, 8_000, 2_000, true), NOW);
    let text = render_status(&view, Format::Table);
    assert!(text.contains("\nmaster               a:0\n"), "{text}");
    assert!(text.contains("\nmaster connected     yes\n"), "{text}");
    assert!(text.contains("\nmaster log end       10000\n"), "{text}");
    assert!(text.contains("\nlag                  2.0KiB\n"), "{text}");
    assert!(text.contains("\nlast master contact  1.0s ago\n"), "{text}");
    assert!(text.contains("\nstarted              -\n"), "{text}");
    // The build version the status reports; nothing is left blank (and no line ends in spaces).
    assert!(text.contains("\nversion              0.1.0\n"), "{text}");
    assert!(text.lines().all(|l| !l.ends_with(' ')), "{text}");
    assert!(!text.contains("SLAVE"), "{text}");

    let v: serde_json::Value = serde_json::from_str(&render_status(&view, Format::Json)).unwrap();
    assert_eq!(v["role"], "slave");
    assert_eq!(v["master"]["endpoint"], "a:0");
    assert_eq!(v["master"]["lag_bytes"], 2_000);
    assert!(v["started_at_ms"].is_null());
    assert!(v["slaves"].as_array().unwrap().is_empty());
}

#[test]
fn byte_counts_are_short() {
    assert_eq!(format_bytes(0), "0B");
    assert_eq!(format_bytes(1_023), "1023B");
    assert_eq!(format_bytes(1_536), "1.5KiB");
    assert_eq!(format_bytes(12 << 20), "12.0MiB");
    assert_eq!(format_bytes(3 << 40), "3.0TiB");
}

/// broker-b in controller mode: member 2 the master (presented as 0, epoch 5), member 1 a
/// slave following epoch 5, member 3 an old master of epoch 4 recorded as a slave.
fn controller_info() -> GetClusterInfoResponse {
    let controller_member = |id: i64, member_id: i64, role: BrokerRole, epoch: u64| BrokerMember {
        member_id,
        master_epoch: epoch,
        endpoint: format!("b:{member_id}"),
        ..member(id, "", role)
    };
    GetClusterInfoResponse {
        groups: vec![BrokerGroup {
            cluster_name: "c1".into(),
            broker_name: "broker-b".into(),
            members: vec![
                controller_member(0, 2, BrokerRole::SyncMaster, 5),
                controller_member(1, 1, BrokerRole::Slave, 5),
                controller_member(3, 3, BrokerRole::Slave, 4),
            ],
        }],
    }
}

#[test]
fn cluster_list_shows_member_role_epoch_and_both_versions_in_either_mode() {
    let mut probes = Probes::new();
    probes.insert(
        ("c1".into(), "broker-b".into(), 0),
        Ok(BrokerStatus {
            version: "0.1.0".into(),
            ..Default::default()
        }),
    );
    let rows = cluster_rows(&controller_info(), &probes, NOW);
    // Member 2 is the master: MEMBER says 2 (not the 0 clients see), ROLE says master.
    assert_eq!(
        render_cluster_rows(&rows, Format::Table),
        "CLUSTER  BROKER    MEMBER  ROLE         EPOCH  ENDPOINT  TOPICS  LAST SEEN  VERSION  \
         DATA VERSION  LOG END      LAG  LAG TIME  IN SYNC\n\
         c1       broker-b  2       sync-master  5      b:2       3       2.0s ago   0.1.0    \
         4             0            -    -         -\n\
         c1       broker-b  1       slave        5      b:1       3       2.0s ago   -        \
         4             unreachable  -    -         no\n\
         c1       broker-b  3       slave        4      b:3       3       2.0s ago   -        \
         4             unreachable  -    -         no\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&render_cluster_rows(&rows, Format::Json)).unwrap();
    assert_eq!(
        (v[0]["id"].as_i64(), v[0]["member_id"].as_i64()),
        (Some(0), Some(2))
    );
    assert_eq!(v[0]["version"], "0.1.0");
    assert_eq!(v[0]["data_version"], 4);
    assert_eq!(v[2]["master_epoch"], 4);

    // A static cluster: the same columns, member id = broker id, no epoch.
    let rows = cluster_rows(&info(), &Probes::new(), NOW);
    let table = render_cluster_rows(&rows, Format::Table);
    assert!(
        table.starts_with("CLUSTER  BROKER    MEMBER  ROLE         EPOCH  ENDPOINT"),
        "{table}"
    );
    assert!(
        table.contains("\nc1       broker-a  1       slave        -      a:1"),
        "{table}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&render_cluster_rows(&rows, Format::Json)).unwrap();
    assert_eq!(
        (v[1]["id"].as_i64(), v[1]["member_id"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(v[1]["master_epoch"], 0);
}

#[test]
fn cluster_list_in_controller_mode_ends_with_the_leader_and_each_masters_takeover() {
    let mut probes = Probes::new();
    probes.insert(
        ("c1".into(), "broker-b".into(), 0),
        Ok(BrokerStatus {
            broker_name: "broker-b".into(),
            broker_id: 0,
            started_at_ms: NOW - 60_000,
            master_since_ms: NOW - 60_000,
            ..master_status(vec![])
        }),
    );
    let rows = cluster_rows(&controller_info(), &probes, NOW);
    let takeover = NOW - 60_000;
    assert_eq!(
        row_of(&rows, 0).status.as_ref().unwrap().master_since_ms,
        Some(takeover)
    );
    let controller = crate::controller::ControllerStatusView::new(
        &apogee_proto::cluster::ControllerStatusResponse {
            node_id: 1,
            leader_id: Some(3),
            term: 7,
            groups: vec![
                apogee_proto::cluster::ControllerGroupStatus {
                    broker_name: "broker-b".into(),
                    master: 2,
                    master_epoch: 5,
                    in_sync: vec![1, 2],
                    ..Default::default()
                },
                apogee_proto::cluster::ControllerGroupStatus {
                    broker_name: "broker-c".into(),
                    master_epoch: 2,
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    let footer = crate::controller::cluster_footer(Ok(&controller), &rows, NOW);
    assert_eq!(
        footer,
        format!(
            "\ncontroller: leader node 3, term 7\n  broker-b: master member 2, epoch 5, in sync \
             1,2; master since {} (1m0s ago)\n  broker-c: no master (epoch 2)\n",
            crate::message_query::rfc3339(takeover)
        )
    );
    assert_eq!(
        crate::controller::cluster_footer(Err("unreachable"), &rows, NOW),
        "\ncontroller: not answering (unreachable)\n"
    );
}

fn row_of(rows: &[ClusterRow], id: i64) -> &ClusterRow {
    rows.iter().find(|r| r.member.id == id).unwrap()
}

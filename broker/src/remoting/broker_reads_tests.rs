//! Unit tests of the broker-info requests over a broker on the in-memory index: the bodies
//! RocketMQ's tools parse, the refusals for a caller that is not an admin, and a slave's
//! refusal of a change.

use super::*;
use crate::actions::admin::LogOffsets;
use crate::config::Role;
use crate::metrics::traffic::DayTotals;
use crate::remoting::clients::tests::{remote, remote_with, TOPIC};
use crate::store::retention::DiskSpace;
use apogee_proto::auth::{acl::AclSet, Identity, Role as UserRole};
use apogee_proto::remoting::codes::request as code;
use std::sync::Arc;

fn table_of(answer: &RemotingCommand) -> BTreeMap<String, String> {
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    serde_json::from_value(v["table"].clone()).unwrap()
}

fn properties_of(answer: &RemotingCommand) -> BTreeMap<String, String> {
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    parse_properties(std::str::from_utf8(&answer.body).unwrap())
        .into_iter()
        .collect()
}

fn update(key_value: &str) -> RemotingCommand {
    RemotingCommand::request(code::UPDATE_BROKER_CONFIG).with_body(key_value.to_string())
}

#[tokio::test]
async fn the_runtime_info_holds_what_cluster_list_parses_from_real_figures() {
    let r = remote(1);
    r.store(0, "t", 3).await;
    r.broker
        .metrics()
        .stored(TOPIC, apogee_proto::v2::MessageType::Normal, [10, 20]);
    r.broker.metrics().delivered(TOPIC, "g", 1, 10);
    let before = apogee_proto::time::now_ms();
    let request = RemotingCommand::request(code::GET_BROKER_RUNTIME_INFO);
    let t = table_of(&runtime_info(&r.broker, &Caller::default(), &request));

    assert_eq!(t["brokerActive"], "true");
    assert_eq!(
        t["brokerVersionDesc"],
        format!("Apogee {}", env!("CARGO_PKG_VERSION"))
    );
    // clusterList: the first of the space-separated rates as a double.
    for key in ["putTps", "getTransferredTps"] {
        let rates: Vec<f64> = t[key].split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(rates.len(), 3, "{key}");
    }
    let earliest: i64 = t["earliestMessageTimeStamp"].parse().unwrap();
    assert!(
        earliest > before - 60_000 && earliest <= before,
        "{earliest}"
    );
    let ratio: f64 = t["commitLogDiskRatio"].parse().unwrap();
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    assert!(t["commitLogDirCapacity"].starts_with("Total : "));
    for key in ["timerReadBehind", "timerOffsetBehind", "timerCongestNum"] {
        assert_eq!(t[key].parse::<i64>().unwrap(), 0, "{key}");
    }
    for key in ["timerEnqueueTps", "timerDequeueTps"] {
        assert_eq!(t[key].parse::<f32>().unwrap(), 0.0, "{key}");
    }
    // clusterList -m: today's totals since this process started.
    assert_eq!(t["msgPutTotalTodayNow"], "2");
    assert_eq!(t["msgGetTotalTodayNow"], "1");
    assert_eq!(t["msgPutTotalTodayMorning"], "0");
    assert_eq!(t["msgGetTotalYesterdayMorning"], "0");
    assert_eq!(
        t["commitLogMaxOffset"],
        r.broker.store().log_end_offset().to_string()
    );
    for key in [
        "sendThreadPoolQueueSize",
        "sendThreadPoolQueueHeadWaitTimeMills",
        "pullThreadPoolQueueSize",
        "pullThreadPoolQueueHeadWaitTimeMills",
        "pageCacheLockTimeMills",
        "bootTimestamp",
    ] {
        assert!(t[key].parse::<i64>().is_ok(), "{key} = {}", t[key]);
    }
}

#[test]
fn figures_apogee_lacks_are_rocketmqs_none() {
    let figures = RuntimeFigures {
        version: "1.2.3",
        started_at_ms: 1_000,
        is_master: false,
        active: false,
        log: LogOffsets {
            start: 0,
            end: 3 << 20,
            flushed: 1 << 20,
        },
        earliest_store_ms: None,
        disk: None,
        traffic: crate::metrics::traffic::TrafficSummary {
            in_per_sec: vec![1.5, 0.25, 0.0],
            out_per_sec: vec![0.0; 3],
            in_totals: DayTotals {
                now: 30,
                today_start: 20,
                yesterday_start: 5,
            },
            out_totals: DayTotals::default(),
        },
    };
    let t = runtime_table(&figures, 1_000 + 90_061_000);
    assert_eq!(t["earliestMessageTimeStamp"], "-1");
    assert_eq!(t["commitLogDiskRatio"], "-1.0");
    assert!(!t.contains_key("commitLogDirCapacity"));
    assert_eq!(t["brokerActive"], "false");
    assert_eq!(t["putTps"], "1.5 0.25 0.0");
    assert_eq!(t["msgPutTotalYesterdayMorning"], "5");
    assert_eq!(t["remainHowManyDataToFlush"], "2.0 MiB");
    assert_eq!(t["runtime"], "[ 1 days, 1 hours, 1 minutes, 1 seconds ]");

    let disk = DiskSpace {
        used: 301,
        available: 699,
    };
    let t = runtime_table(
        &RuntimeFigures {
            disk: Some(disk),
            ..figures
        },
        0,
    );
    // Percent rounded up, as RocketMQ's broker writes it.
    assert_eq!(t["commitLogDiskRatio"], "0.31");
    assert_eq!(t["commitLogDirCapacity"], "Total : 1000 B, Free : 699 B.");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(5 << 30), "5.0 GiB");
}

/// A caller signed in as a user that is not an admin (authentication on).
fn not_admin() -> Caller {
    Caller {
        identity: Some(Identity::User {
            access_key: "reader".into(),
            role: UserRole::User,
        }),
        acls: Some(Arc::new(AclSet::of(std::iter::empty()))),
    }
}

#[tokio::test]
async fn only_an_admin_reads_or_changes_the_broker() {
    let r = remote(1);
    let reader = not_admin();
    let admin = Caller {
        identity: Some(Identity::User {
            access_key: "root".into(),
            role: UserRole::Admin,
        }),
        acls: None,
    };
    let info = RemotingCommand::request(code::GET_BROKER_RUNTIME_INFO);
    let config = RemotingCommand::request(code::GET_BROKER_CONFIG);
    let change = update("transaction.max_checks=7");
    for answer in [
        runtime_info(&r.broker, &reader, &info),
        broker_config(&r.broker, &reader, &config),
        update_broker_config(&r.broker, &reader, &change),
    ] {
        assert_eq!(answer.code, response::NO_PERMISSION, "{:?}", answer.remark);
        assert!(answer.remark.unwrap().contains("reader is not an admin"));
    }
    assert_ne!(r.broker.txns().max_checks(), 7);
    assert_eq!(
        runtime_info(&r.broker, &admin, &info).code,
        response::SUCCESS
    );
    assert_eq!(
        broker_config(&r.broker, &admin, &config).code,
        response::SUCCESS
    );
    let changed = update_broker_config(&r.broker, &admin, &change);
    assert_eq!(changed.code, response::SUCCESS, "{:?}", changed.remark);
    assert_eq!(r.broker.txns().max_checks(), 7);
}

#[tokio::test]
async fn the_config_is_properties_by_dotted_key_and_rocketmq_name_without_key_material() {
    let r = remote_with(1, |c| {
        c.security.admin_access_key = "root-key".into();
        c.security.admin_secret_file = "/secrets/admin".into();
        c.tier.credentials_file = "/secrets/aws".into();
        c.nameservers = vec!["10.0.0.1:9876".into(), "10.0.0.2:9876".into()];
    });
    let request = RemotingCommand::request(code::GET_BROKER_CONFIG);
    let p = properties_of(&broker_config(&r.broker, &Caller::default(), &request));
    assert_eq!(p["broker_name"], "broker-a");
    assert_eq!(p["brokerName"], "broker-a");
    assert_eq!(p["brokerClusterName"], "DefaultCluster");
    assert_eq!(p["namesrvAddr"], "10.0.0.1:9876;10.0.0.2:9876");
    assert_eq!(p["store.retention_hours"], "72");
    assert_eq!(p["fileReservedTime"], "72");
    assert_eq!(p["flushDiskType"], "ASYNC_FLUSH");
    assert_eq!(p["autoCreateTopicEnable"], p["auto_create_topics"]);
    for withheld in WITHHELD {
        assert!(!p.contains_key(withheld), "{withheld}");
    }
    let body =
        String::from_utf8_lossy(&broker_config(&r.broker, &Caller::default(), &request).body)
            .into_owned();
    assert!(
        !body.contains("root-key") && !body.contains("/secrets/"),
        "{body}"
    );

    // A runtime change shows in the config read next.
    let answer = update_broker_config(
        &r.broker,
        &Caller::default(),
        &update("fileReservedTime=48\n"),
    );
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert!(answer
        .remark
        .unwrap()
        .contains("store.retention_hours changed from 72 to 48"));
    let p = properties_of(&broker_config(&r.broker, &Caller::default(), &request));
    assert_eq!(p["store.retention_hours"], "48");
    assert_eq!(p["fileReservedTime"], "48");
}

#[tokio::test]
async fn a_change_outside_the_allow_list_or_on_a_slave_is_refused_with_the_reason() {
    let r = remote(1);
    let nobody = Caller::default();
    let unknown = update_broker_config(&r.broker, &nobody, &update("brokerPermission=2"));
    assert_eq!(unknown.code, response::INVALID_PARAMETER);
    let why = unknown.remark.unwrap();
    assert!(
        why.contains("brokerPermission") && why.contains("store.retention_hours"),
        "{why}"
    );

    let bad = update_broker_config(&r.broker, &nobody, &update("store.disk_clean_ratio=7"));
    assert_eq!(bad.code, response::INVALID_PARAMETER, "{:?}", bad.remark);
    for body in ["", "# nothing\n", "a=1\nb=2\n"] {
        let answer = update_broker_config(&r.broker, &nobody, &update(body));
        assert_eq!(answer.code, response::INVALID_PARAMETER, "{body:?}");
    }

    let slave = remote_with(1, |c| {
        c.role = Role::Slave;
        c.broker_id = 1;
    });
    let refused = update_broker_config(&slave.broker, &nobody, &update("transactionCheckMax=7"));
    assert_eq!(refused.code, response::INVALID_PARAMETER);
    assert!(refused.remark.unwrap().contains("not the master"));
    assert_ne!(slave.broker.txns().max_checks(), 7);
    // A slave still answers what it is.
    let info = RemotingCommand::request(code::GET_BROKER_RUNTIME_INFO);
    assert_eq!(
        table_of(&runtime_info(&slave.broker, &nobody, &info))["brokerActive"],
        "false"
    );
}

#[test]
fn properties_text_reads_back_as_it_was_written() {
    let tricky = [
        ("a key", " leading space"),
        ("k=v:w", "x=y:z #not a comment"),
        ("path", "C:\\data\\broker"),
        ("naïve", "日本 ✓ 😀"),
        ("lines", "one\ntwo\tthree"),
    ];
    let mut text = String::new();
    for (k, v) in tricky {
        write_property(&mut text, k, v);
    }
    assert!(text.is_ascii(), "{text}");
    let read = parse_properties(&text);
    let expected: Vec<(String, String)> = tricky
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(read, expected);
    // As Java writes and continues lines, with ':' and blank separators.
    let read = parse_properties("# c\n! c\n\n  a : 1\nb 2\nc=long \\\n    value\nb=3");
    let get = |k: &str| {
        read.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        (get("a"), get("b"), get("c")),
        (Some("1"), Some("3"), Some("long value"))
    );
}

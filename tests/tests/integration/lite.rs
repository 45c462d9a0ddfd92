//! Lite topics (RocketMQ's RIP-83) with real processes: apogee-client's lite consumers and
//! producer against a broker, and RocketMQ's official Python client (`tests/python/lite.py`).
//!
//! - two lite push consumers of one shared group split 100 lite topics, each lite topic's
//!   messages handled in order and once;
//! - an exclusive group: a second client taking a lite topic evicts the first, which is told
//!   (NotifyUnsubscribeLiteCommand) and drops it from its set;
//! - partial syncs (add, remove) and the periodic complete sync keep the broker's set the
//!   client's;
//! - offset options: MIN reaches a send made before any subscription, MAX does not;
//! - the limits: ILLEGAL_LITE_TOPIC (a name over the broker's length), LITE_TOPIC_QUOTA_EXCEEDED
//!   (`[lite] max_lite_topics`), LITE_SUBSCRIPTION_QUOTA_EXCEEDED (`[lite] subscription_quota`);
//! - expiry: a parent's `lite_expire_after_secs` drops an idle lite topic (its messages are
//!   not delivered again) and tells its subscribers;
//! - across a broker restart the clients' periodic sync brings their subscriptions back and
//!   nothing acknowledged-as-sent is lost.

use apogee_client::{
    ConsumeResult, LiteOffset, LitePushConsumer, LiteSimpleConsumer, Message, Producer,
    ReceivedMessage,
};
use apogee_proto::v2::{self, MessageType};
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INVISIBLE: Duration = Duration::from_secs(30);

/// A cluster of one broker (with the given `[lite]` settings) and a LITE parent `parent`
/// with a group `group` bound to it (`mode`: shared or exclusive).
async fn lite_cluster(env: &[(&str, &str)], parent: &str, group: &str, mode: &str) -> Cluster {
    let mut broker = BrokerSpec::new("broker-a");
    for (k, v) in env {
        broker = broker.env(k, *v);
    }
    let cluster = Cluster::builder().broker(broker).start().await;
    cluster
        .create_typed_topic(parent, 1, &[MessageType::Lite])
        .await;
    bind_group(&cluster, group, parent, mode);
    cluster
}

fn bind_group(cluster: &Cluster, group: &str, parent: &str, mode: &str) {
    cluster
        .cli(&[
            "group",
            "create",
            group,
            "--lite-bind",
            parent,
            "--lite-mode",
            mode,
        ])
        .success();
}

async fn producer(cluster: &Cluster) -> Producer {
    Producer::connect(cluster.client_config())
        .await
        .expect("producer")
}

async fn send_lite(producer: &Producer, parent: &str, lite: &str, body: &str) {
    let m = Message::builder(parent, body.to_string())
        .lite_topic(lite)
        .build();
    producer
        .send(m)
        .await
        .unwrap_or_else(|e| panic!("send to lite topic {lite}: {e}"));
}

async fn simple(cluster: &Cluster, group: &str, parent: &str) -> LiteSimpleConsumer {
    LiteSimpleConsumer::builder(cluster.client_config(), group, parent)
        .sync_interval(Duration::from_secs(1))
        .connect()
        .await
        .expect("lite simple consumer")
}

/// Receives and acks until `want` messages arrived (or the timeout); (lite topic, body) in
/// arrival order.
async fn receive_n(
    consumer: &LiteSimpleConsumer,
    want: usize,
    timeout: Duration,
) -> Vec<(String, String)> {
    let got = Arc::new(Mutex::new(Vec::new()));
    wait_until(timeout, &format!("{want} lite messages"), || {
        let got = got.clone();
        async move {
            let batch = consumer
                .receive(32, INVISIBLE, Duration::from_secs(1))
                .await
                .map_err(|e| format!("receive: {e}"))?;
            for r in consumer.ack_many(&batch).await {
                r.map_err(|e| format!("ack: {e}"))?;
            }
            let mut all = got.lock().unwrap();
            all.extend(batch.iter().map(|m| {
                (
                    m.lite_topic.clone().unwrap_or_default(),
                    m.body_lossy().into_owned(),
                )
            }));
            if all.len() >= want {
                Ok(all.clone())
            } else {
                Err(format!("{} so far: {all:?}", all.len()))
            }
        }
    })
    .await
}

fn code_of(e: &apogee_client::ClientError) -> Option<v2::Code> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_of_one_group_share_100_lite_topics_in_order() {
    const PARENT: &str = "chat";
    const GROUP: &str = "chat-shared";
    const TOPICS: usize = 100;
    const PER_TOPIC: usize = 5;
    let cluster = lite_cluster(&[], PARENT, GROUP, "shared").await;
    // Per lite topic, the sequence numbers in the order the listeners saw them, and which
    // consumer handled each.
    type Seen = Arc<Mutex<BTreeMap<String, Vec<(usize, &'static str)>>>>;
    let seen: Seen = Arc::default();
    let listener = |name: &'static str| {
        let seen = seen.clone();
        move |m: ReceivedMessage| {
            let seen = seen.clone();
            async move {
                let body = m.body_lossy().into_owned();
                let seq: usize = body.rsplit('-').next().unwrap().parse().unwrap();
                let lite = m.lite_topic.clone().unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .entry(lite)
                    .or_default()
                    .push((seq, name));
                ConsumeResult::Success
            }
        }
    };
    let mut consumers = Vec::new();
    for name in ["c1", "c2"] {
        let c = LitePushConsumer::builder(cluster.client_config(), GROUP, PARENT)
            .listener(listener(name))
            .start()
            .await
            .expect("lite push consumer");
        for i in 0..TOPICS {
            c.subscribe_lite(&format!("s-{i}"))
                .await
                .expect("subscribe");
        }
        assert_eq!(c.lite_topics().len(), TOPICS);
        consumers.push(c);
    }
    let producer = producer(&cluster).await;
    for seq in 0..PER_TOPIC {
        for i in 0..TOPICS {
            send_lite(
                &producer,
                PARENT,
                &format!("s-{i}"),
                &format!("s-{i}-{seq}"),
            )
            .await;
        }
    }
    let seen = wait_until(
        Duration::from_secs(40),
        "every lite message handled",
        || {
            let seen = seen.clone();
            async move {
                let s = seen.lock().unwrap();
                let n: usize = s.values().map(Vec::len).sum();
                if n >= TOPICS * PER_TOPIC {
                    Ok(s.clone())
                } else {
                    Err(format!("{n} of {}", TOPICS * PER_TOPIC))
                }
            }
        },
    )
    .await;
    let mut by_consumer: HashMap<&str, usize> = HashMap::new();
    for (lite, calls) in &seen {
        let seqs: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(
            seqs,
            (0..PER_TOPIC).collect::<Vec<_>>(),
            "lite topic {lite}: handled once each, in order"
        );
        for (_, who) in calls {
            *by_consumer.entry(who).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), TOPICS);
    assert!(
        by_consumer.len() == 2,
        "both consumers of the group take lite topics: {by_consumer:?}"
    );
    for c in consumers {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_mode_evicts_the_old_client_and_tells_it() {
    const PARENT: &str = "agents";
    const GROUP: &str = "agents-excl";
    let cluster = lite_cluster(&[], PARENT, GROUP, "exclusive").await;
    let first = simple(&cluster, GROUP, PARENT).await;
    first.subscribe_lite("session-1").await.expect("first");
    first.subscribe_lite("session-2").await.expect("first");
    let second = simple(&cluster, GROUP, PARENT).await;
    second.subscribe_lite("session-1").await.expect("second");

    let told = wait_until(Duration::from_secs(20), "the eviction notice", || async {
        let gone = first.take_unsubscribed();
        if gone.is_empty() {
            Err("no notice yet".to_string())
        } else {
            Ok(gone)
        }
    })
    .await;
    assert_eq!(told, vec!["session-1".to_string()]);
    assert_eq!(first.lite_topics(), vec!["session-2".to_string()]);

    let producer = producer(&cluster).await;
    send_lite(&producer, PARENT, "session-1", "for-the-new-owner").await;
    let got = receive_n(&second, 1, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        vec![("session-1".to_string(), "for-the-new-owner".to_string())]
    );
    // The evicted client still has session-2, and only that.
    send_lite(&producer, PARENT, "session-2", "still-mine").await;
    let got = receive_n(&first, 1, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        vec![("session-2".to_string(), "still-mine".to_string())]
    );
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_and_complete_syncs_keep_the_brokers_set_the_clients() {
    const PARENT: &str = "rooms";
    const GROUP: &str = "rooms-g";
    let cluster = lite_cluster(&[], PARENT, GROUP, "shared").await;
    let c = simple(&cluster, GROUP, PARENT).await;
    for name in ["a", "b", "c"] {
        c.subscribe_lite(name).await.expect("subscribe");
    }
    c.unsubscribe_lite("b").await.expect("unsubscribe");
    // Not subscribed: nothing is sent, nothing fails.
    c.unsubscribe_lite("never").await.expect("no-op");
    assert_eq!(c.lite_topics(), vec!["a".to_string(), "c".to_string()]);

    let producer = producer(&cluster).await;
    for round in 0..2 {
        if round == 1 {
            // A complete sync (the periodic one runs every second here, and one explicit)
            // replaces the broker's set with the same set.
            c.subscriptions().sync_all().await.expect("complete sync");
        }
        // b's message goes first: a broker still handing out b would deliver it.
        for name in ["b", "a", "c"] {
            send_lite(&producer, PARENT, name, &format!("{name}{round}")).await;
        }
        let mut got = receive_n(&c, 2, Duration::from_secs(20)).await;
        got.sort();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), format!("a{round}")),
                ("c".to_string(), format!("c{round}"))
            ],
            "round {round}: a and c only"
        );
    }
    // b was never consumed by anyone: a subscription from MIN finds both of its messages.
    c.subscribe_lite_from("b", LiteOffset::Min)
        .await
        .expect("subscribe b");
    let got = receive_n(&c, 2, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        vec![
            ("b".to_string(), "b0".to_string()),
            ("b".to_string(), "b1".to_string())
        ]
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_reaches_a_send_before_any_subscription_and_max_does_not() {
    const PARENT: &str = "inbox";
    const GROUP: &str = "inbox-g";
    let cluster = lite_cluster(&[], PARENT, GROUP, "shared").await;
    let producer = producer(&cluster).await;
    send_lite(&producer, PARENT, "early", "before-anyone").await;
    send_lite(&producer, PARENT, "skipped", "old").await;

    let c = simple(&cluster, GROUP, PARENT).await;
    c.subscribe_lite_from("early", LiteOffset::Min)
        .await
        .expect("subscribe from MIN");
    let got = receive_n(&c, 1, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        vec![("early".to_string(), "before-anyone".to_string())]
    );

    c.subscribe_lite_from("skipped", LiteOffset::Max)
        .await
        .expect("subscribe from MAX");
    send_lite(&producer, PARENT, "skipped", "new").await;
    let got = receive_n(&c, 1, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        vec![("skipped".to_string(), "new".to_string())],
        "MAX starts after the message sent before the subscription"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lite_limits_are_refused_with_their_codes() {
    const PARENT: &str = "quota";
    const GROUP: &str = "quota-g";
    let cluster = lite_cluster(
        &[
            ("LITE__MAX_TOPIC_LEN", "8"),
            ("LITE__MAX_LITE_TOPICS", "3"),
            ("LITE__SUBSCRIPTION_QUOTA", "2"),
        ],
        PARENT,
        GROUP,
        "shared",
    )
    .await;
    let producer = producer(&cluster).await;
    // Within the client's rule (64) but over the broker's (8).
    let long = Message::builder(PARENT, "x")
        .lite_topic("nine-char")
        .build();
    let e = producer.send(long).await.expect_err("a name over 8");
    assert_eq!(code_of(&e), Some(v2::Code::IllegalLiteTopic), "{e}");

    for name in ["l1", "l2", "l3"] {
        send_lite(&producer, PARENT, name, "x").await;
    }
    let fourth = Message::builder(PARENT, "x").lite_topic("l4").build();
    let e = producer
        .send(fourth)
        .await
        .expect_err("a fourth lite topic");
    assert_eq!(code_of(&e), Some(v2::Code::LiteTopicQuotaExceeded), "{e}");
    // An existing lite topic still takes messages.
    send_lite(&producer, PARENT, "l1", "again").await;

    let c = simple(&cluster, GROUP, PARENT).await;
    assert_eq!(c.subscriptions().limits().subscription_quota, Some(2));
    assert_eq!(c.subscriptions().limits().max_lite_topic_len, Some(8));
    c.subscribe_lite("l1").await.expect("first");
    c.subscribe_lite("l2").await.expect("second");
    let e = c.subscribe_lite("l3").await.expect_err("over the quota");
    assert_eq!(
        code_of(&e),
        Some(v2::Code::LiteSubscriptionQuotaExceeded),
        "{e}"
    );
    let e = c.subscribe_lite("nine-char").await.expect_err("too long");
    assert_eq!(code_of(&e), Some(v2::Code::IllegalLiteTopic), "{e}");
    assert_eq!(c.lite_topics(), vec!["l1".to_string(), "l2".to_string()]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lite_topic_expires_and_its_subscribers_are_told() {
    const PARENT: &str = "ephemeral";
    const GROUP: &str = "ephemeral-g";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("LITE__EXPIRY_SCAN_INTERVAL_SECS", "1"))
        .start()
        .await;
    cluster
        .cli(&[
            "topic",
            "create",
            PARENT,
            "--queues",
            "1",
            "--type",
            "lite",
            "--lite-expire",
            "2s",
        ])
        .success();
    bind_group(&cluster, GROUP, PARENT, "shared");
    let producer = producer(&cluster).await;
    send_lite(&producer, PARENT, "old", "left-behind").await;
    let c = simple(&cluster, GROUP, PARENT).await;
    // Subscribed from MAX: the message stays unconsumed until the lite topic expires.
    c.subscribe_lite_from("old", LiteOffset::Max)
        .await
        .expect("subscribe");
    let told = wait_until(Duration::from_secs(30), "the expiry notice", || async {
        let gone = c.take_unsubscribed();
        if gone.is_empty() {
            Err("no notice yet".to_string())
        } else {
            Ok(gone)
        }
    })
    .await;
    assert_eq!(told, vec!["old".to_string()]);
    assert!(c.lite_topics().is_empty());
    // The lite topic's messages are gone: a subscription from MIN finds only a new one.
    c.subscribe_lite_from("old", LiteOffset::Min)
        .await
        .expect("subscribe again");
    send_lite(&producer, PARENT, "old", "after-expiry").await;
    let got = receive_n(&c, 1, Duration::from_secs(20)).await;
    assert_eq!(
        got,
        vec![("old".to_string(), "after-expiry".to_string())],
        "the expired message is unreachable"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_after_a_broker_restart_and_nothing_is_lost() {
    const PARENT: &str = "durable";
    const GROUP: &str = "durable-g";
    let mut cluster = lite_cluster(&[], PARENT, GROUP, "shared").await;
    let c = simple(&cluster, GROUP, PARENT).await;
    c.subscribe_lite("a").await.expect("subscribe a");
    c.subscribe_lite("b").await.expect("subscribe b");
    let producer = producer(&cluster).await;
    send_lite(&producer, PARENT, "a", "a1").await;
    let got = receive_n(&c, 1, Duration::from_secs(20)).await;
    assert_eq!(got, vec![("a".to_string(), "a1".to_string())]);
    // Sent and never received before the restart.
    send_lite(&producer, PARENT, "b", "b1").await;

    cluster.kill_broker("broker-a");
    cluster.restart_broker("broker-a").await;
    // The producer retries on a fresh route until the broker serves again.
    wait_until(
        Duration::from_secs(30),
        "a send after the restart",
        || async {
            let m = Message::builder(PARENT, "a2").lite_topic("a").build();
            producer
                .send(m)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    send_lite(&producer, PARENT, "b", "b2").await;

    // Only the client's periodic COMPLETE_ADD (every second here) tells the restarted
    // broker about a and b again.
    let mut got = receive_n(&c, 3, Duration::from_secs(40)).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            ("a".to_string(), "a2".to_string()),
            ("b".to_string(), "b1".to_string()),
            ("b".to_string(), "b2".to_string()),
        ]
    );
    assert_eq!(c.lite_topics(), vec!["a".to_string(), "b".to_string()]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_lite_consumer_receives_its_lite_topics_in_order() {
    if !crate::official_python::python_client_usable() {
        return;
    }
    const PARENT: &str = "py-lite";
    const GROUP: &str = "py-lite-g";
    const TOPICS: usize = 10;
    const PER_TOPIC: usize = 3;
    let cluster = lite_cluster(&[], PARENT, GROUP, "shared").await;
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/lite.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "--endpoint",
            cluster.ns_addr(),
            "--topic",
            PARENT,
            "--group",
            GROUP,
        ])
        .args([
            "--lite-topics",
            &TOPICS.to_string(),
            "--count",
            &PER_TOPIC.to_string(),
        ])
        .args(["--timeout", "40"])
        // The client writes its log under $HOME/logs.
        .env("HOME", cluster.dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(55), run)
        .await
        .expect("the script ran over 55 s")
        .expect("starting python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report; stdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(report["error"].is_null(), "{report}\nstderr:\n{stderr}");
    // The Settings reply named the limits (the client refuses every subscribe without them).
    assert!(
        report["quota"].as_i64().unwrap_or(0) >= TOPICS as i64,
        "{report}"
    );
    assert!(report["max_len"].as_i64().unwrap_or(0) > 0, "{report}");
    let mut per_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in report["received"].as_array().expect("received") {
        per_topic
            .entry(m["lite_topic"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(m["body"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(per_topic.len(), TOPICS, "{report}");
    for (lite, bodies) in &per_topic {
        let expected: Vec<String> = (0..PER_TOPIC).map(|s| format!("{lite}-{s}")).collect();
        assert_eq!(bodies, &expected, "lite topic {lite}: once each, in order");
    }
    assert_eq!(
        report["subscribed_after"].as_array().map(Vec::len),
        Some(TOPICS - 1),
        "{report}"
    );
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{stderr}",
        out.status
    );
}

/// `apogee consume --lite-topic`: the CLI's lite consumer prints what its lite topic holds
/// and nothing of another lite topic of the same parent, acks what it printed (a second run
/// from the group's committed position finds nothing), and ends at `--max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_consumes_one_lite_topic_and_acks_what_it_printed() {
    const PARENT: &str = "cli-lite";
    const GROUP: &str = "cli-lite-g";
    let cluster = lite_cluster(&[], PARENT, GROUP, "shared").await;
    let p = producer(&cluster).await;
    for (lite, body) in [("s-1", "one"), ("s-2", "other"), ("s-1", "two")] {
        send_lite(&p, PARENT, lite, body).await;
    }
    let consume = |extra: &[&str]| {
        let mut args = vec![
            "-o",
            "json",
            "consume",
            "--topic",
            PARENT,
            "--group",
            GROUP,
            "--lite-topic",
            "s-1",
        ];
        args.extend_from_slice(extra);
        let out = cluster.cli(&args).success();
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
        rows.iter()
            .map(|r| r["body"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        consume(&["--lite-offset", "min", "--max", "2", "--wait", "20s"]),
        ["one", "two"]
    );
    assert!(consume(&["--max", "1", "--wait", "2s"]).is_empty());
    p.shutdown().await;
}

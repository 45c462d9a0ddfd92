//! Consumer lag covers everything a group has not acknowledged: every queue of every topic it
//! consumes, on every broker group, also the queues it never received from (`apogee group
//! describe` through the NameServer, and `rocketmq_consumer_lag_messages` on a broker's
//! `/metrics`). And where a group created by its first receive starts
//! (`consume.auto_create_start`), with what `apogee consume` and the broker say about it, and
//! `apogee group create` of a group a consume created.

use apogee_proto::{time, v2};
use apogee_tests::telemetry::RawSession;
use apogee_tests::{http, rpc, wait_until, BrokerSpec, CliOutput, Cluster};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Sends to `topic` on the broker at `addr`: `per_queue[q]` messages to queue q.
async fn send_spread(addr: &str, topic: &str, per_queue: &[usize]) {
    let mut client = rpc::messaging(addr);
    for (queue, &count) in per_queue.iter().enumerate() {
        let messages: Vec<v2::Message> = (0..count)
            .map(|i| rpc::message(topic, queue as i32, format!("q{queue}-{i}")))
            .collect();
        for chunk in messages.chunks(10) {
            let resp = rpc::send(&mut client, chunk.to_vec()).await;
            assert_eq!(
                rpc::code(resp.status.as_ref()),
                v2::Code::Ok as i32,
                "{resp:?}"
            );
        }
    }
}

/// `apogee -o json group describe`, once it answers.
async fn describe(cluster: &Cluster, group: &str) -> Value {
    wait_until(WAIT, "group describe to answer", || async {
        let out = cluster.cli(&["-o", "json", "group", "describe", group]);
        if out.code == 0 {
            Ok(out.json())
        } else {
            Err(out.to_string())
        }
    })
    .await
}

/// Waits until the description shows `lag` (and `inflight`); returns it.
async fn wait_lag(cluster: &Cluster, group: &str, lag: u64, inflight: u64) -> Value {
    wait_until(
        WAIT,
        &format!("lag {lag}, in flight {inflight}"),
        || async {
            let d = describe(cluster, group).await;
            if d["lag"] == lag && d["inflight"] == inflight {
                Ok(d)
            } else {
                Err(format!("{d:#}"))
            }
        },
    )
    .await
}

/// The `rocketmq_consumer_lag_messages` sample of (topic, group) on a broker's `/metrics`.
async fn lag_metric(http_addr: &str, topic: &str, group: &str) -> Option<f64> {
    let (status, body) = http::get(http_addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "rocketmq_consumer_lag_messages"
                && s.labels.get("topic") == Some(topic)
                && s.labels.get("consumer_group") == Some(group)
        })
        .and_then(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

async fn wait_lag_metric(http_addr: &str, topic: &str, group: &str, lag: f64) {
    wait_until(WAIT, &format!("lag metric {lag}"), || async {
        match lag_metric(http_addr, topic, group).await {
            Some(v) if v == lag => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// One receive of at most one message of `topic` for `group` from the broker at `addr`.
async fn receive_one(addr: &str, group: &str, topic: &str) -> Vec<v2::Message> {
    let (messages, status) = rpc::receive(
        &mut rpc::messaging(addr),
        group,
        topic,
        1,
        Some(time::duration(Duration::from_secs(300))),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(messages.len(), 1, "{status:?}");
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_lags_by_every_message_of_every_queue() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    let http_addr = cluster.broker_http_addr("broker-a").to_string();
    cluster.create_topic("lag-8", 8).await;
    // 36 messages, unevenly over the 8 queues.
    let per_queue = [1, 2, 3, 4, 5, 6, 7, 8];
    let n: u64 = per_queue.iter().sum::<usize>() as u64;
    send_spread(&addr, "lag-8", &per_queue).await;

    // Subscribed (its Settings), nothing received yet: every message is lag.
    let _session =
        RawSession::consumer(&addr, "lag-client", "lag-8-g", "lag-8", v2::Language::Java).await;
    let d = wait_lag(&cluster, "lag-8-g", n, 0).await;
    let queues = d["queues"].as_array().unwrap();
    assert_eq!(queues.len(), 8, "every queue: {d:#}");
    for q in queues {
        let id = q["queue_id"].as_u64().unwrap() as usize;
        assert_eq!(q["lag"], per_queue[id] as u64, "{d:#}");
        assert_eq!(q["consumer_offset"], 0, "{d:#}");
    }
    wait_lag_metric(&http_addr, "lag-8", "lag-8-g", n as f64).await;

    // One message received: still lag (not acknowledged), and in flight; acknowledged, N-1.
    let got = receive_one(&addr, "lag-8-g", "lag-8").await;
    let d = wait_lag(&cluster, "lag-8-g", n, 1).await;
    assert_eq!(d["queues"].as_array().unwrap().len(), 8, "{d:#}");
    rpc::ack_all(&addr, "lag-8-g", "lag-8", &got).await;
    wait_lag(&cluster, "lag-8-g", n - 1, 0).await;
    wait_lag_metric(&http_addr, "lag-8", "lag-8-g", (n - 1) as f64).await;

    // Without the session the group still consumes the topic (it received from it).
    drop(_session);
    let d = wait_lag(&cluster, "lag-8-g", n - 1, 0).await;
    assert_eq!(d["queues"].as_array().unwrap().len(), 8, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_counts_the_messages_on_a_broker_group_the_group_never_received_from() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;
    let a = cluster.broker_addr("broker-a").to_string();
    let b = cluster.broker_addr("broker-b").to_string();
    cluster.create_topic("lag-two", 2).await;
    send_spread(&a, "lag-two", &[5, 0]).await;
    send_spread(&b, "lag-two", &[12, 8]).await;

    // The group receives and acknowledges everything on broker-a only.
    let got = rpc::receive_exactly(&a, "two-g", "lag-two", 5).await;
    rpc::ack_all(&a, "two-g", "lag-two", &got).await;

    let d = wait_lag(&cluster, "two-g", 20, 0).await;
    let on_b: u64 = d["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["broker"] == "broker-b")
        .map(|q| q["lag"].as_u64().unwrap())
        .sum();
    assert_eq!(on_b, 20, "{d:#}");
    assert_eq!(d["queues"].as_array().unwrap().len(), 4, "{d:#}");
    // broker-b does not hold the group: it is listed where it exists.
    assert_eq!(d["brokers"], serde_json::json!(["broker-a"]), "{d:#}");
    assert_eq!(d["max_delivery_attempts"], 16, "{d:#}");
}

/// `apogee consume` of `count` messages at most, JSON; the consumed bodies and the output.
fn consume(cluster: &Cluster, group: &str, topic: &str, max: usize) -> (Vec<String>, CliOutput) {
    let max = max.to_string();
    let out = cluster
        .cli(&[
            "-o", "json", "consume", "--topic", topic, "--group", group, "--max", &max, "--wait",
            "2s",
        ])
        .success();
    let bodies = out
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("a JSON array:\n{out}"))
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect();
    (bodies, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_created_by_a_receive_start_at_the_latest_when_configured() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("CONSUME__AUTO_CREATE_START", "latest"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("late-t", 2).await;
    send_spread(&addr, "late-t", &[4, 6]).await;

    let (bodies, out) = consume(&cluster, "late-g", "late-t", 20);
    assert!(bodies.is_empty(), "nothing stored before it existed: {out}");
    assert!(
        out.stderr.contains(
            "group late-g did not exist: created on broker-a, starting at the latest offset"
        ),
        "{out}"
    );
    let log = cluster.broker_log("broker-a");
    let line = log
        .lines()
        .find(|l| l.contains("consumer group did not exist: created on first use"))
        .unwrap_or_else(|| panic!("no log line:\n{log}"));
    for field in ["late-g", "late-t", "latest", "client"] {
        assert!(line.contains(field), "{line}");
    }
    wait_lag(&cluster, "late-g", 0, 0).await;

    // What is stored after it was created is its lag, and what it receives.
    send_spread(&addr, "late-t", &[2, 1]).await;
    wait_lag(&cluster, "late-g", 3, 0).await;
    let (mut bodies, out) = consume(&cluster, "late-g", "late-t", 20);
    bodies.sort();
    assert_eq!(bodies, ["q0-0", "q0-1", "q1-0"], "{out}");
    assert!(!out.stderr.contains("did not exist"), "said once: {out}");

    // A broker that refuses the setting's other spellings.
    let mut cluster = cluster;
    let (status, log) = cluster
        .broker_start_failure(
            BrokerSpec::new("broker-x").env("CONSUME__AUTO_CREATE_START", "lastest"),
        )
        .await;
    assert!(!status.success());
    assert!(
        log.contains("lastest") && log.contains("earliest") && log.contains("latest"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_created_by_a_receive_start_at_the_earliest_by_default() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("early-t", 2).await;
    send_spread(&addr, "early-t", &[3, 2]).await;

    let (bodies, out) = consume(&cluster, "billling", "early-t", 20);
    assert_eq!(bodies.len(), 5, "the whole topic: {out}");
    assert!(
        out.stderr.contains(
            "group billling did not exist: created on broker-a, starting at the earliest offset"
        ),
        "{out}"
    );
    wait_lag(&cluster, "billling", 0, 0).await;

    // Creating it now (as the README's tour does after a consume) names the way to change it.
    wait_until(WAIT, "the created group in the list", || async {
        let out = cluster.cli(&["group", "list"]).success();
        match out.stdout.contains("billling") {
            true => Ok(()),
            false => Err(out.to_string()),
        }
    })
    .await;
    let exists = cluster.cli(&["group", "create", "billling", "--max-attempts", "3"]);
    assert_eq!(exists.code, 1, "{exists}");
    assert!(
        exists.stderr.contains("`apogee group update billling`")
            && exists.stderr.contains("--update-if-exists"),
        "{exists}"
    );
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "group",
            "create",
            "billling",
            "--max-attempts",
            "3",
            "--update-if-exists",
        ])
        .success();
    assert_eq!(out.json()["max_delivery_attempts"], 3, "{out}");

    // An explicitly created group is no news.
    cluster.cli(&["group", "create", "billing"]).success();
    let (bodies, out) = consume(&cluster, "billing", "early-t", 20);
    assert_eq!(bodies.len(), 5, "{out}");
    assert!(!out.stderr.contains("did not exist"), "{out}");
}

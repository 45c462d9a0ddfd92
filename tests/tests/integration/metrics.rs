//! The operations endpoints: `/metrics` of a broker and a NameServer scraped
//! after a known workload (counters, lag and in-flight equal what the workload
//! did; the exposition parses with a Prometheus text parser apart from the
//! servers' encoder), every series the Grafana dashboard queries exposed from the start,
//! and `/healthz` and `/readyz` over the lifetime of a broker.

use apogee_proto::v2;
use apogee_tests::{http, rpc, wait_until, BrokerSpec, Cluster};
use prometheus_parse::{Scrape, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Long enough for a heartbeat round (10 s) plus its timeout (3 s) on a loaded machine.
const WAIT: Duration = Duration::from_secs(40);

/// Scrapes and parses `/metrics` of `addr`.
async fn scrape(addr: &str) -> Scrape {
    let (status, body) = http::get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("the exposition parses")
}

/// The value of the sample of `metric` whose labels include all of `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_known_workload_equal_what_it_did() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    let http = cluster.broker_http_addr("broker-a").to_string();
    cluster.create_topic("metrics-t", 1).await;
    cluster
        .create_typed_topic("metrics-txn", 1, &[v2::MessageType::Transaction])
        .await;

    // 50 messages (bodies "m-0".."m-49": 140 bytes in all) in 5 requests; 20 received
    // and acknowledged, 5 more received and left in flight.
    rpc::send_numbered(&addr, "metrics-t", 50).await;
    let first = rpc::receive_exactly(&addr, "metrics-g", "metrics-t", 20).await;
    let entries: Vec<(String, String)> = first
        .iter()
        .map(|m| (rpc::id_of(m), rpc::handle_of(m)))
        .collect();
    let acked = rpc::ack(
        &mut rpc::messaging(&addr),
        "metrics-g",
        "metrics-t",
        &entries,
    )
    .await;
    assert_eq!(rpc::code(acked.status.as_ref()), v2::Code::Ok as i32);
    rpc::receive_exactly(&addr, "metrics-g", "metrics-t", 5).await;
    // Three transactions: one committed, one rolled back, one left open.
    let mut client = rpc::messaging(&addr);
    let half = || rpc::txn_message("metrics-txn", 0, "t");
    let commit = rpc::send_half(&mut client, half()).await;
    let rollback = rpc::send_half(&mut client, half()).await;
    rpc::send_half(&mut client, half()).await;
    use v2::TransactionResolution::{Commit, Rollback};
    let ok = v2::Code::Ok as i32;
    assert_eq!(
        rpc::end_transaction(&mut client, "metrics-txn", &commit, Commit).await,
        ok
    );
    assert_eq!(
        rpc::end_transaction(&mut client, "metrics-txn", &rollback, Rollback).await,
        ok
    );

    let s = scrape(&http).await;
    let t = [("topic", "metrics-t"), ("message_type", "normal")];
    assert_eq!(value(&s, "rocketmq_messages_in_total", &t), Some(50.0));
    let body_bytes: usize = (0..50).map(|i| format!("m-{i}").len()).sum();
    assert_eq!(
        value(&s, "rocketmq_throughput_in_total", &t),
        Some(body_bytes as f64)
    );
    assert_eq!(value(&s, "rocketmq_message_size_count", &t), Some(50.0));
    let tg = [("topic", "metrics-t"), ("consumer_group", "metrics-g")];
    assert_eq!(value(&s, "rocketmq_messages_out_total", &tg), Some(25.0));
    assert_eq!(value(&s, "rocketmq_consumer_lag_messages", &tg), Some(30.0));
    assert_eq!(
        value(&s, "rocketmq_consumer_inflight_messages", &tg),
        Some(5.0)
    );
    assert_eq!(
        value(&s, "rocketmq_consumer_ready_messages", &tg),
        Some(25.0)
    );
    let lag_ms = value(&s, "rocketmq_consumer_lag_latency", &tg).expect("lag latency");
    assert!(lag_ms >= 0.0, "lag latency {lag_ms}");
    let txn = [("topic", "metrics-txn"), ("message_type", "transaction")];
    assert_eq!(value(&s, "rocketmq_messages_in_total", &txn), Some(3.0));
    let by_topic = [("topic", "metrics-txn")];
    assert_eq!(
        value(&s, "rocketmq_commit_messages_total", &by_topic),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "rocketmq_rollback_messages_total", &by_topic),
        Some(1.0)
    );
    assert_eq!(value(&s, "rocketmq_half_messages", &by_topic), Some(1.0));
    // Five requests for the normal messages, three for the half messages.
    let sends = [("protocol_type", "grpc"), ("request_code", "SendMessage")];
    assert_eq!(value(&s, "rocketmq_rpc_latency_count", &sends), Some(8.0));
    let node = [
        ("cluster", "DefaultCluster"),
        ("node_type", "broker"),
        ("node_id", "broker-a"),
    ];
    assert!(value(&s, "rocketmq_topic_number", &node).unwrap() >= 2.0);
    assert!(value(&s, "rocketmq_storage_size", &node).unwrap() > 0.0);
    assert!(value(&s, "apogee_storage_disk_free_bytes", &node).unwrap() > 0.0);

    // The NameServer: one live broker, the topics it hosts, its own request latency.
    let ns_http = cluster.nameserver_http_addr(0).to_string();
    let ns = wait_until(WAIT, "the nameserver to count the broker", || async {
        let s = scrape(&ns_http).await;
        match value(&s, "apogee_nameserver_brokers", &[("role", "async_master")]) {
            Some(1.0) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        value(
            &ns,
            "apogee_nameserver_topics",
            &[("node_type", "nameserver")]
        )
        .unwrap()
            >= 2.0
    );
    let registers = [("request_code", "RegisterBroker"), ("response_code", "OK")];
    assert!(value(&ns, "rocketmq_rpc_latency_count", &registers).unwrap() >= 1.0);

    // Every metric the shipped Grafana dashboard queries is one the servers expose.
    assert_dashboard_exposed(&[&s, &ns]);
}

/// Asserts that every metric the shipped Grafana dashboard queries has a sample in one of
/// `scrapes` (a histogram's `_bucket`, `_count` and `_sum` by its own name).
fn assert_dashboard_exposed(scrapes: &[&Scrape]) {
    let exposed: HashSet<&str> = scrapes
        .iter()
        .flat_map(|s| &s.samples)
        .map(|x| x.metric.as_str())
        .collect();
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|name| {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            !exposed.contains(name.as_str()) && !exposed.contains(base)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which no server exposes (its panels say No data)"
    );
}

/// A broker and a NameServer that have seen no message, client, slave, dead letter or
/// transaction expose every series the dashboard queries, at 0 where nothing happened yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cluster_exposes_every_series_the_dashboard_queries() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let broker = scrape(cluster.broker_http_addr("broker-a")).await;
    let nameserver = scrape(cluster.nameserver_http_addr(0)).await;
    assert_dashboard_exposed(&[&broker, &nameserver]);
    // Nothing was sent: the placeholder of messages in is 0, and it names no topic.
    let placeholder = broker
        .samples
        .iter()
        .find(|s| s.metric == "rocketmq_messages_in_total")
        .expect("messages in");
    assert_eq!(placeholder.labels.get("topic").unwrap_or(""), "");
    assert_eq!(placeholder.value, Value::Counter(0.0));
    assert_eq!(
        value(&broker, "rocketmq_send_to_dlq_messages_total", &[]),
        Some(0.0)
    );
}

/// The metric names in the expressions of `deploy/grafana/apogee-dashboard.json`.
fn dashboard_metrics() -> HashSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/apogee-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut names = HashSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expression");
            let mut word = String::new();
            for c in expr.chars().chain([' ']) {
                if c.is_ascii_alphanumeric() || c == '_' {
                    word.push(c);
                    continue;
                }
                if word.starts_with("rocketmq_") || word.starts_with("apogee_") {
                    names.insert(std::mem::take(&mut word));
                }
                word.clear();
            }
        }
    }
    assert!(names.len() >= 15, "only {names:?} in the dashboard");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_up_at_once_and_ready_once_registered_until_shutdown() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let http = cluster.broker_http_addr("broker-a").to_string();
    assert_eq!(
        http::get(&http, "/healthz").await,
        (200, "ok\n".to_string())
    );
    // The harness waits for the registration: ready.
    assert_eq!(
        http::get(&http, "/readyz").await,
        (200, "ready\n".to_string())
    );
    let ns_http = cluster.nameserver_http_addr(0).to_string();
    assert_eq!(http::get(&ns_http, "/readyz").await.0, 200);
    assert_eq!(http::get(&ns_http, "/healthz").await.0, 200);
    assert_eq!(http::get(&http, "/nothing-here").await.0, 404);

    // Without its NameServer the broker serves but is not ready, and says why.
    cluster.kill_nameserver(0);
    let why = wait_until(WAIT, "readyz to turn 503", || async {
        match http::get(&http, "/readyz").await {
            (503, body) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(why.contains("not registered with any NameServer"), "{why}");
    assert_eq!(http::get(&http, "/healthz").await.0, 200);
    cluster.restart_nameserver(0).await;
    wait_until(WAIT, "readyz to be 200 again", || async {
        match http::get(&http, "/readyz").await {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// `/proc/<pid>/status` field `key` (the first number on its line).
fn proc_status(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_metrics_describe_the_serving_process() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let pid = cluster.broker("broker-a").pid();
    let http = cluster.broker_http_addr("broker-a").to_string();
    let before = scrape(&http).await;
    let cpu_before = value(&before, "process_cpu_seconds_total", &[]).expect("process CPU");
    cluster.create_topic("process-t", 4).await;
    rpc::send_numbered(cluster.broker_addr("broker-a"), "process-t", 500).await;

    let s = scrape(&http).await;
    // The figures are the broker's own (read from its /proc entries), not the test's.
    let rss = value(&s, "process_resident_memory_bytes", &[]).expect("resident memory");
    let vm_rss = proc_status(pid, "VmRSS") * 1024.0;
    assert!(
        rss > vm_rss / 2.0 && rss < vm_rss * 2.0,
        "resident {rss} bytes, /proc says {vm_rss}"
    );
    let threads = value(&s, "process_threads", &[]).expect("threads");
    let proc_threads = proc_status(pid, "Threads");
    assert!(
        (threads - proc_threads).abs() <= 4.0,
        "{threads} threads, /proc says {proc_threads}"
    );
    let fds = value(&s, "process_open_fds", &[]).expect("open fds");
    let proc_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    assert!(
        (fds - proc_fds).abs() <= 16.0,
        "{fds} open fds, /proc says {proc_fds}"
    );
    assert!(value(&s, "process_max_fds", &[]).expect("max fds") >= fds);
    let cpu = value(&s, "process_cpu_seconds_total", &[]).expect("process CPU");
    assert!(cpu >= cpu_before, "CPU went from {cpu_before} to {cpu}");
    assert!(value(&s, "process_start_time_seconds", &[]).expect("start time") > 1.7e9);

    // The NameServer's endpoint has the same set (an idle one may have used no CPU second yet).
    let ns = scrape(cluster.nameserver_http_addr(0)).await;
    assert!(value(
        &ns,
        "process_cpu_seconds_total",
        &[("node_type", "nameserver")]
    )
    .is_some());
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
    ] {
        assert!(
            value(&ns, name, &[("node_type", "nameserver")]).is_some_and(|v| v > 0.0),
            "the NameServer has no {name}"
        );
    }
}

//! What RocketMQ's official Python client (rocketmq-python-client 5.1.2) relies on: at the
//! protocol level, the `delivery_timestamp` entry of a ReceiveMessage stream that carries
//! messages (the hand-out time; its PushConsumer handles nothing without it); and the client
//! itself, running `tests/python/push_consumer_and_delay.py`: its PushConsumer handles and
//! acks a batch, and its delayed message (milliseconds in the timestamp's seconds field)
//! arrives not before its time; and `tests/python/lite_push_consumer.py`: its LitePushConsumer,
//! subscribed with `subscribe_lite` alone, handles every message of each lite topic once and
//! in order.
//!
//! The client test needs python3 with the package (`pip install -r
//! tests/python/requirements.txt`): without them it prints SKIPPED, except under CI
//! (`CI=true`), where it fails.

use apogee_proto::time::{now_ms, timestamp_ms};
use apogee_proto::v2::{self, receive_message_response::Content};
use apogee_tests::{rpc, BrokerSpec, Cluster};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The client version the script is written against (tests/python/requirements.txt).
const CLIENT_VERSION: &str = "5.1.2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_stream_carries_the_hand_out_time() {
    const TOPIC: &str = "hand-out";
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, 1).await;
    let addr = cluster.broker("broker-a").addr.clone();
    rpc::send_numbered(&addr, TOPIC, 5).await;

    let mut client = rpc::messaging(&addr);
    let request = rpc::receive_request(
        "hand-out-g",
        TOPIC,
        16,
        Some(apogee_proto::time::duration(Duration::from_secs(30))),
        Duration::from_secs(5),
    );
    let before = now_ms();
    let mut stream = client
        .receive_message(request)
        .await
        .expect("ReceiveMessage transport error")
        .into_inner();
    let mut entries = Vec::new();
    while let Some(item) = stream.message().await.expect("ReceiveMessage stream") {
        entries.push(item.content.expect("an entry with no content"));
    }
    let after = now_ms();

    let stamps: Vec<i64> = entries
        .iter()
        .filter_map(|c| match c {
            Content::DeliveryTimestamp(t) => Some(timestamp_ms(t)),
            _ => None,
        })
        .collect();
    let messages = entries
        .iter()
        .filter(|c| matches!(c, Content::Message(_)))
        .count();
    assert_eq!(messages, 5, "{entries:?}");
    assert_eq!(stamps.len(), 1, "one delivery_timestamp entry: {entries:?}");
    assert!(
        (before..=after).contains(&stamps[0]),
        "hand-out time {} outside the call ({before}..={after})",
        stamps[0]
    );
    // The stream still ends with its one status, OK.
    match entries.last() {
        Some(Content::Status(s)) => assert_eq!(s.code, v2::Code::Ok as i32, "{s:?}"),
        other => panic!("the stream ends with {other:?}, not its status"),
    }
}

/// Why the official Python client cannot run here, or None when it can.
pub(crate) fn python_client_missing() -> Option<String> {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m, rocketmq; \
             print(m.version('rocketmq-python-client'))",
        ])
        .output();
    match probe {
        Err(e) => Some(format!("python3 cannot be run ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "python3 cannot import rocketmq-python-client ({})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no error printed")
                .trim()
        )),
        Ok(out) => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (version != CLIENT_VERSION).then(|| {
                format!("rocketmq-python-client {version} is installed, not {CLIENT_VERSION}")
            })
        }
    }
}

/// Whether the official Python client can run here; prints why it is skipped when not (and
/// fails under CI, which must run it).
pub(crate) fn python_client_usable() -> bool {
    apogee_tests::prerequisite::present(
        "the official Python client",
        python_client_missing(),
        "pip install -r tests/python/requirements.txt",
    )
}

/// Runs `tests/python/<script>` until it reports; returns its report and the still running
/// script (it runs until its standard input closes).
async fn run_script(
    cluster: &Cluster,
    script: &str,
    args: &[&str],
) -> (Value, tokio::process::Child) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let mut child = tokio::process::Command::new("python3")
        .arg(path)
        .args(["--endpoint", cluster.ns_addr()])
        .args(args)
        // The client writes its log under $HOME/logs.
        .env("HOME", cluster.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting python3");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), stdout.next_line()).await;
    let line = match line {
        Ok(Ok(Some(line))) => line,
        other => {
            let _ = child.start_kill();
            let out = child.wait_with_output().await.expect("the script's output");
            panic!(
                "the script reported nothing ({other:?}); stderr:\n{}\nclient log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                client_log(cluster)
            );
        }
    };
    let report = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the script printed no JSON ({e}): {line}"));
    (report, child)
}

/// The end of the Python client's own log.
fn client_log(cluster: &Cluster) -> String {
    let path = cluster
        .dir()
        .join("logs/rocketmq_python/rocketmq_client.log");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_push_consumer_handles_a_batch_and_a_delayed_message() {
    if !python_client_usable() {
        return;
    }
    const TOPIC: &str = "py-orders";
    const DELAY_TOPIC: &str = "py-reminders";
    const GROUP: &str = "py-group";
    const COUNT: usize = 40;
    const DELAY_MS: i64 = 4_000;
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, 4).await;
    cluster
        .create_typed_topic(DELAY_TOPIC, 2, &[v2::MessageType::Delay])
        .await;
    // Created before the sends, so it starts at the first message wherever new groups start.
    cluster.cli(&["group", "create", GROUP]).success();

    let count = COUNT.to_string();
    let delay = DELAY_MS.to_string();
    let (report, child) = run_script(
        &cluster,
        "push_consumer_and_delay.py",
        &[
            "--topic",
            TOPIC,
            "--delay-topic",
            DELAY_TOPIC,
            "--group",
            GROUP,
            "--count",
            &count,
            "--delay-ms",
            &delay,
            "--timeout",
            "40",
        ],
    )
    .await;

    let received = report["received"].as_array().expect("received");
    let ids = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .map(|x| x.as_str().expect("an id").to_string())
            .collect()
    };
    let sent = ids(&report["sent"]);
    let delayed_id = report["delayed"]["id"].as_str().expect("delayed id");
    let due_ms = report["delayed"]["due_ms"].as_i64().expect("due");
    let got: BTreeSet<String> = received
        .iter()
        .filter(|m| m["topic"] == TOPIC)
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent.len(), COUNT, "{report}");
    assert_eq!(
        got, sent,
        "the PushConsumer handled every message: {report}"
    );
    assert!(ids(&report["duplicates"]).is_empty(), "{report}");
    for m in received {
        assert_eq!(m["attempt"], 1, "{m}");
        // The client saw the stream's hand-out time, before its listener ran.
        let transport = m["transport_ms"].as_i64().unwrap_or(0);
        assert!(
            transport > 0 && transport <= m["at_ms"].as_i64().unwrap(),
            "{m}"
        );
    }
    let delayed = received
        .iter()
        .find(|m| m["id"] == delayed_id)
        .unwrap_or_else(|| panic!("the delayed message did not arrive: {report}"));
    assert_eq!(delayed["topic"], DELAY_TOPIC);
    assert_eq!(delayed["delivery_ms"], due_ms, "{delayed}");
    assert!(
        delayed["at_ms"].as_i64().unwrap() >= due_ms,
        "the delayed message arrived before its time {due_ms}: {delayed}"
    );

    // Every message acknowledged: nothing left to consume, nothing in flight.
    cluster.wait_group_drained(GROUP).await;

    finish_script(child).await;
}

/// Closes the script's standard input and checks that it then ends cleanly.
async fn finish_script(mut child: tokio::process::Child) {
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.shutdown().await.expect("closing the script's stdin");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the script ends when its stdin closes")
        .expect("the script's output");
    assert!(
        out.status.success(),
        "{}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lite_push_consumer_handles_each_lite_topic_in_order() {
    if !python_client_usable() {
        return;
    }
    const PARENT: &str = "py-chats";
    const GROUP: &str = "py-chats-g";
    const LITE_TOPICS: usize = 3;
    const PER_TOPIC: usize = 10;
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    // Made with the CLI, as an operator does.
    cluster
        .cli(&["topic", "create", PARENT, "--type", "lite"])
        .success();
    cluster
        .cli(&["group", "create", GROUP, "--lite-bind", PARENT])
        .success();

    let (report, child) = run_script(
        &cluster,
        "lite_push_consumer.py",
        &[
            "--topic",
            PARENT,
            "--group",
            GROUP,
            "--lite-topics",
            &LITE_TOPICS.to_string(),
            "--count",
            &PER_TOPIC.to_string(),
            "--timeout",
            "40",
        ],
    )
    .await;
    assert!(
        report["error"].is_null(),
        "{report}\nclient log:\n{}",
        client_log(&cluster)
    );
    let mut per_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in report["received"].as_array().expect("received") {
        assert_eq!(m["attempt"], 1, "{m}");
        per_topic
            .entry(m["lite_topic"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(m["body"].as_str().unwrap_or_default().to_string());
    }
    let expected: BTreeMap<String, Vec<String>> = (0..LITE_TOPICS)
        .map(|i| {
            let lite = format!("p-{i}");
            let bodies = (0..PER_TOPIC).map(|seq| format!("{lite}-{seq}")).collect();
            (lite, bodies)
        })
        .collect();
    assert_eq!(
        per_topic,
        expected,
        "every message of each lite topic handled once, in order\nclient log:\n{}",
        client_log(&cluster)
    );
    finish_script(child).await;
}

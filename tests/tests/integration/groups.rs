//! Consumer groups as configured objects: `apogee group create|update|list|describe|delete`
//! through the NameServer (tables and JSON; creating an existing group names `apogee group
//! update` or updates it with `--update-if-exists`), the lag and in-flight count a known workload
//! leaves, brokers that refuse unknown groups when `consume.auto_create_groups` is off, and
//! the Settings reply a consumer gets over raw Telemetry carrying its group's config.

use apogee_proto::time;
use apogee_proto::v2::{
    self, retry_policy::Strategy, settings::PubSub, telemetry_command::Command,
};
use apogee_tests::telemetry::RawSession;
use apogee_tests::{rpc, wait_until, BrokerSpec, CliOutput, Cluster};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn rows(out: &CliOutput) -> (String, Vec<String>) {
    let mut lines = out.stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table:\n{out}"))
        .to_string();
    (header, lines.map(str::to_string).collect())
}

fn listed(cluster: &Cluster) -> Vec<Value> {
    let out = cluster.cli(&["-o", "json", "group", "list"]).success();
    out.json().as_array().cloned().unwrap_or_default()
}

fn find<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items.iter().find(|g| g["group"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_updated_listed_and_deleted_through_the_nameserver() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .broker(BrokerSpec::new("broker-b"))
        .start()
        .await;

    // create: a table row, and a JSON object with the defaults filled in.
    let out = cluster
        .cli(&[
            "group",
            "create",
            "orders-g",
            "--max-attempts",
            "5",
            "--retry-exponential",
            "1s,30s,3",
            "--fifo",
            "true",
        ])
        .success();
    let (header, lines) = rows(&out);
    for column in ["GROUP", "MAX ATTEMPTS", "RETRY", "FIFO", "BROKERS"] {
        assert!(header.contains(column), "{out}");
    }
    assert!(
        lines[0].starts_with("orders-g") && lines[0].contains("exponential 1s..30s x3"),
        "{out}"
    );
    let out = cluster
        .cli(&["-o", "json", "group", "create", "audit-g"])
        .success();
    let created = out.json();
    assert_eq!(created["max_delivery_attempts"], 16, "{out}");
    assert_eq!(created["fifo"], false, "{out}");
    assert_eq!(created["retry"]["type"], "custom", "{out}");
    assert_eq!(
        created["brokers"],
        serde_json::json!(["broker-a", "broker-b"])
    );
    let again = cluster.cli(&["group", "create", "audit-g"]);
    assert_eq!(again.code, 1, "{again}");
    assert!(again.stderr.contains("already exists"), "{again}");
    // The hint names the command, not the RPC.
    assert!(
        again.stderr.contains("apogee group update audit-g")
            && !again.stderr.contains("UpdateGroup"),
        "{again}"
    );
    // Or create it again, changing the settings given (a bare --fifo is --fifo true).
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "group",
            "create",
            "audit-g",
            "--update-if-exists",
            "--fifo",
        ])
        .success();
    let recreated = out.json();
    assert_eq!(recreated["fifo"], true, "{out}");
    assert_eq!(recreated["max_delivery_attempts"], 16, "{out}");

    // list: both groups on both broker groups.
    let groups = wait_until(WAIT, "both groups listed", || async {
        let all = listed(&cluster);
        match (find(&all, "orders-g"), find(&all, "audit-g")) {
            (Some(_), Some(_)) => Ok(all),
            _ => Err(format!("{all:?}")),
        }
    })
    .await;
    let orders = find(&groups, "orders-g").unwrap();
    assert_eq!(orders["max_delivery_attempts"], 5);
    assert_eq!(orders["fifo"], true);
    assert_eq!(orders["retry"]["type"], "exponential");
    assert_eq!(orders["retry"]["initial_ms"], 1_000);
    assert_eq!(orders["retry"]["max_ms"], 30_000);
    assert_eq!(orders["retry"]["multiplier"], 3.0);
    assert_eq!(
        orders["brokers"],
        serde_json::json!(["broker-a", "broker-b"])
    );
    let out = cluster.cli(&["group", "list"]).success();
    let (_, lines) = rows(&out);
    assert!(lines.iter().any(|l| l.starts_with("audit-g")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("orders-g")), "{out}");

    // update: only what is given changes.
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "group",
            "update",
            "orders-g",
            "--max-attempts",
            "7",
        ])
        .success();
    let updated = out.json();
    assert_eq!(updated["max_delivery_attempts"], 7, "{out}");
    assert_eq!(updated["fifo"], true, "{out}");
    assert_eq!(updated["retry"]["type"], "exponential", "{out}");
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "group",
            "update",
            "orders-g",
            "--retry-custom",
            "1s,5s,1m",
            "--fifo",
            "false",
        ])
        .success();
    let updated = out.json();
    assert_eq!(
        updated["retry"]["steps_ms"],
        serde_json::json!([1_000, 5_000, 60_000]),
        "{out}"
    );
    assert_eq!(
        (
            updated["fifo"].clone(),
            updated["max_delivery_attempts"].clone()
        ),
        (Value::Bool(false), Value::from(7)),
        "{out}"
    );
    let nothing = cluster.cli(&["group", "update", "orders-g"]);
    assert_eq!(nothing.code, 2, "{nothing}");
    let missing = cluster.cli(&["group", "update", "nobody-g", "--fifo", "true"]);
    assert_eq!(missing.code, 1, "{missing}");
    let bad = cluster.cli(&["group", "create", "x-g", "--retry-exponential", "5s,1s"]);
    assert_eq!(bad.code, 2, "{bad}");

    // describe of a group nobody consumed: its config, no queues.
    let out = cluster
        .cli(&["-o", "json", "group", "describe", "audit-g"])
        .success();
    let d = out.json();
    assert_eq!(d["group"], "audit-g", "{out}");
    assert_eq!(d["lag"], 0, "{out}");
    assert_eq!(d["queues"], serde_json::json!([]), "{out}");

    // delete: gone from the list; describing it fails.
    let out = cluster
        .cli(&["-o", "json", "group", "delete", "audit-g"])
        .success();
    assert_eq!(
        out.json()["brokers"],
        serde_json::json!(["broker-a", "broker-b"])
    );
    wait_until(WAIT, "the deleted group to leave the list", || async {
        let all = listed(&cluster);
        match find(&all, "audit-g") {
            None => Ok(()),
            Some(_) => Err(format!("{all:?}")),
        }
    })
    .await;
    let gone = cluster.cli(&["group", "describe", "audit-g"]);
    assert_eq!(gone.code, 1, "{gone}");
    assert!(gone.stderr.starts_with("error:"), "{gone}");
    let gone = cluster.cli(&["group", "delete", "audit-g"]);
    assert_eq!(gone.code, 1, "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_lag_a_known_workload_leaves() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker("broker-a").addr.clone();
    cluster.create_topic("lag-topic", 1).await;

    // 50 sent, 20 received and acknowledged, 5 received and left unacknowledged.
    rpc::send_numbered(&addr, "lag-topic", 50).await;
    let first = rpc::receive_exactly(&addr, "lag-g", "lag-topic", 20).await;
    let entries: Vec<(String, String)> = first
        .iter()
        .map(|m| (rpc::id_of(m), rpc::handle_of(m)))
        .collect();
    let acked = rpc::ack(&mut rpc::messaging(&addr), "lag-g", "lag-topic", &entries).await;
    assert_eq!(
        rpc::code(acked.status.as_ref()),
        v2::Code::Ok as i32,
        "{acked:?}"
    );
    rpc::receive_exactly(&addr, "lag-g", "lag-topic", 5).await;
    let _session = RawSession::consumer(
        &addr,
        "lag-client-1",
        "lag-g",
        "lag-topic",
        v2::Language::Java,
    )
    .await;

    let described = wait_until(WAIT, "describe to show the workload", || async {
        let out = cluster.cli(&["-o", "json", "group", "describe", "lag-g"]);
        if out.code != 0 {
            return Err(out.to_string());
        }
        let d = out.json();
        let ready = d["lag"] == 30 && d["inflight"] == 5 && d["clients"][0].is_object();
        if ready {
            Ok(d)
        } else {
            Err(out.to_string())
        }
    })
    .await;
    let q = &described["queues"][0];
    assert_eq!(
        described["queues"].as_array().unwrap().len(),
        1,
        "{described:#}"
    );
    assert_eq!(q["topic"], "lag-topic");
    assert_eq!(q["broker"], "broker-a");
    assert_eq!(
        (
            q["broker_offset"].as_u64(),
            q["consumer_offset"].as_u64(),
            q["pop_offset"].as_u64(),
            q["lag"].as_u64(),
            q["inflight"].as_u64()
        ),
        (Some(50), Some(20), Some(25), Some(30), Some(5)),
        "{described:#}"
    );
    assert!(q["last_consume_ms"].as_i64().unwrap() > 0, "{described:#}");
    let client = &described["clients"][0];
    assert_eq!(client["client_id"], "lag-client-1");
    assert_eq!(client["language"], "JAVA");
    assert_eq!(client["connected_to"], serde_json::json!(["broker-a"]));
    // The group was created on first use, with the defaults.
    assert_eq!(described["max_delivery_attempts"], 16);

    let out = cluster.cli(&["group", "describe", "lag-g"]).success();
    for column in [
        "TOPIC",
        "BROKER OFFSET",
        "CONSUMER OFFSET",
        "LAG",
        "INFLIGHT",
        "CLIENT",
    ] {
        assert!(out.stdout.contains(column), "{out}");
    }
    let queue_row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("lag-topic"))
        .unwrap_or_else(|| panic!("no queue row:\n{out}"));
    let cells: Vec<&str> = queue_row.split_whitespace().collect();
    assert_eq!(
        &cells[..7],
        ["lag-topic", "0", "broker-a", "50", "20", "30", "5"],
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_groups_are_refused_without_auto_create() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("CONSUME__AUTO_CREATE_GROUPS", "false"))
        .start()
        .await;
    let addr = cluster.broker("broker-a").addr.clone();
    cluster.create_topic("strict-topic", 1).await;
    let mut client = rpc::messaging(&addr);
    let receive = |group: &'static str| {
        let mut client = rpc::messaging(&addr);
        async move {
            rpc::receive(
                &mut client,
                group,
                "strict-topic",
                1,
                Some(time::duration(Duration::from_secs(30))),
                Duration::from_secs(5),
            )
            .await
        }
    };

    let (messages, status) = receive("stranger-g").await;
    assert!(messages.is_empty());
    assert_eq!(
        rpc::code(status.as_ref()),
        v2::Code::ConsumerGroupNotFound as i32,
        "{status:?}"
    );
    let beat = client
        .heartbeat(v2::HeartbeatRequest {
            group: rpc::resource("stranger-g"),
            client_type: v2::ClientType::SimpleConsumer as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rpc::code(beat.status.as_ref()),
        v2::Code::ConsumerGroupNotFound as i32
    );
    let session = RawSession::consumer(
        &addr,
        "stranger-client",
        "stranger-g",
        "strict-topic",
        v2::Language::Java,
    )
    .await;
    assert_eq!(
        rpc::code(session.first.status.as_ref()),
        v2::Code::ConsumerGroupNotFound as i32
    );
    assert!(find(&listed(&cluster), "stranger-g").is_none());

    // Once created, the group consumes.
    cluster.cli(&["group", "create", "known-g"]).success();
    rpc::send_numbered(&addr, "strict-topic", 1).await;
    let (messages, status) = receive("known-g").await;
    assert_eq!(messages.len(), 1, "{status:?}");
}

/// The subscription and backoff policy of a Settings reply.
fn consumer_reply(session: &RawSession) -> (v2::Subscription, v2::RetryPolicy) {
    assert_eq!(
        rpc::code(session.first.status.as_ref()),
        v2::Code::Ok as i32
    );
    let Some(Command::Settings(s)) = &session.first.command else {
        panic!("settings expected: {:?}", session.first)
    };
    let Some(PubSub::Subscription(sub)) = &s.pub_sub else {
        panic!("subscription expected: {s:?}")
    };
    (
        sub.clone(),
        s.backoff_policy.clone().expect("backoff policy"),
    )
}

fn steps_ms(policy: &v2::RetryPolicy) -> Vec<i64> {
    match &policy.strategy {
        Some(Strategy::CustomizedBackoff(c)) => c.next.iter().map(time::duration_ms).collect(),
        other => panic!("customized backoff expected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_replies_carry_the_groups_config() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let addr = cluster.broker("broker-a").addr.clone();
    cluster.create_topic("fifo-topic", 1).await;
    cluster
        .cli(&[
            "group",
            "create",
            "fifo-g",
            "--fifo",
            "true",
            "--max-attempts",
            "4",
            "--retry-custom",
            "1500ms,5s",
        ])
        .success();

    // Java gets the group's own (customized) policy, Python whole seconds, Node exponential.
    let java =
        RawSession::consumer(&addr, "c-java", "fifo-g", "fifo-topic", v2::Language::Java).await;
    let (sub, policy) = consumer_reply(&java);
    assert_eq!(sub.fifo, Some(true));
    assert_eq!(policy.max_attempts, 4);
    assert_eq!(steps_ms(&policy), [1_500, 5_000]);
    let python =
        RawSession::consumer(&addr, "c-py", "fifo-g", "fifo-topic", v2::Language::Python).await;
    let (sub, policy) = consumer_reply(&python);
    assert_eq!((sub.fifo, policy.max_attempts), (Some(true), 4));
    assert_eq!(steps_ms(&policy), [2_000, 5_000]);
    let node = RawSession::consumer(
        &addr,
        "c-node",
        "fifo-g",
        "fifo-topic",
        v2::Language::NodeJs,
    )
    .await;
    let (_, policy) = consumer_reply(&node);
    assert!(
        matches!(policy.strategy, Some(Strategy::ExponentialBackoff(_))),
        "{policy:?}"
    );

    // The NameServer answers with the config the broker registered.
    let ns = RawSession::consumer(
        cluster.ns_addr(),
        "c-ns",
        "fifo-g",
        "fifo-topic",
        v2::Language::Java,
    )
    .await;
    let (sub, policy) = consumer_reply(&ns);
    assert_eq!((sub.fifo, policy.max_attempts), (Some(true), 4));

    // describe lists every session, with where it is open.
    let described = wait_until(WAIT, "four clients in the description", || async {
        let out = cluster.cli(&["-o", "json", "group", "describe", "fifo-g"]);
        let d = if out.code == 0 {
            out.json()
        } else {
            Value::Null
        };
        match d["clients"].as_array() {
            Some(c) if c.len() == 4 => Ok(d),
            _ => Err(out.to_string()),
        }
    })
    .await;
    let at = |id: &str| {
        described["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == id)
            .map(|c| c["connected_to"].clone())
    };
    assert_eq!(at("c-ns"), Some(serde_json::json!(["nameserver"])));
    assert_eq!(at("c-py"), Some(serde_json::json!(["broker-a"])));
}

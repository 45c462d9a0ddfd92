//! RocketMQ's official Go clients, unchanged, against Apogee: the program in `tests/go`
//! (one binary, built here with `go build` from Go's module cache) runs its scenarios at once
//! and prints `PASS name` or `FAIL name: reason` for each:
//!
//! - rocketmq-client-go/v2 over remoting, through the NameServer's address: sync sends to a
//!   clustering push consumer (bodies and tags intact), async sends, a transaction producer
//!   (commit, rollback, and two unknowns settled by the broker's check-back), a delay level
//!   arriving not before its delay;
//! - the 5.x Go client (apache/rocketmq-clients `golang/v5`) over gRPC: sends received and
//!   acked by a SimpleConsumer, FIFO message groups received in order, a transaction
//!   committed and one rolled back.
//!
//! The 5.x Go client always dials TLS (it has no plain-text option), so its scenarios run
//! against a cluster with TLS on; the v2 client's against one without, as most run it.
//! Without `go` the test prints SKIPPED, except under CI (`CI=true`), where it fails.

use apogee_proto::v2::MessageType;
use apogee_tests::{BrokerSpec, Cluster};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every scenario of the program, all run in CI.
const SCENARIOS: &[&str] = &[
    "remoting-sync-push",
    "remoting-async",
    "remoting-transaction",
    "remoting-delay-level",
    "grpc-normal-simple-consumer",
    "grpc-fifo",
    "grpc-transaction",
];

/// The SimpleConsumer groups whose every message the program acks.
const ACKED_GROUPS: &[&str] = &["go5-normal-g", "go5-fifo-g", "go5-txn-g"];

/// The Go module of the scenario program.
fn module_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Why Go cannot run here, or None when it can.
fn go_missing() -> Option<String> {
    match std::process::Command::new("go").arg("version").output() {
        Err(e) => Some(format!("go cannot be run ({e})")),
        Ok(out) if !out.status.success() => Some(format!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Whether Go can run here; prints why the test is skipped when not (and fails under CI,
/// which must run it).
fn go_usable() -> bool {
    apogee_tests::prerequisite::present(
        "the official Go clients",
        go_missing(),
        "install Go, then run deploy/dev-setup.sh",
    )
}

/// Builds the scenario program into `dir`; its path.
async fn build_program(dir: &Path) -> PathBuf {
    let binary = dir.join("go-clients");
    let out = tokio::process::Command::new("go")
        // The dependencies as go.sum names them, from the module cache (deploy/dev-setup.sh
        // fills it); no version control stamp (the checkout may be one git refuses to read).
        .args(["build", "-mod=readonly", "-buildvcs=false", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(module_dir())
        .output()
        .await
        .expect("running go build");
    assert!(
        out.status.success(),
        "go build in tests/go failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// A message type as the program names it.
fn message_type(name: &str) -> MessageType {
    match name {
        "normal" => MessageType::Normal,
        "fifo" => MessageType::Fifo,
        "delay" => MessageType::Delay,
        "transaction" => MessageType::Transaction,
        other => panic!("the program names an unknown message type {other:?}"),
    }
}

/// Creates on `cluster` the topics and groups the program lists (`go-clients resources`).
async fn create_resources(cluster: &Cluster, program: &Path) {
    let out = std::process::Command::new(program)
        .arg("resources")
        .output()
        .expect("running go-clients resources");
    assert!(out.status.success(), "go-clients resources: {out:?}");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["topic", name, queues, types] => {
                let types: Vec<MessageType> = types.split(',').map(message_type).collect();
                let queues = queues.parse().expect("a queue count");
                cluster.create_typed_topic(name, queues, &types).await;
            }
            ["group", name] => {
                cluster.cli(&["group", "create", name]).success();
            }
            ["fifo-group", name] => {
                cluster.cli(&["group", "create", name, "--fifo"]).success();
            }
            _ => panic!("go-clients resources printed {line:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_go_clients_pass_their_scenarios() {
    if !go_usable() {
        return;
    }
    // Check-backs within a second or two, not RocketMQ's default minute.
    let remoting_broker = BrokerSpec::new("go-remoting").fast_check_backs();
    let (remoting, grpc) = tokio::join!(
        Cluster::builder().broker(remoting_broker).start(),
        Cluster::builder()
            .tls()
            .broker(BrokerSpec::new("go-grpc"))
            .start(),
    );
    let program = build_program(remoting.dir()).await;
    tokio::join!(
        create_resources(&remoting, &program),
        create_resources(&grpc, &program)
    );

    let grpc_logs = grpc.dir().join("go-client-logs");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(&program)
            .args(["-namesrv", remoting.ns_addr(), "-endpoint", grpc.ns_addr()])
            .args(SCENARIOS)
            // The 5.x client logs under rocketmq.client.logRoot.
            .env("rocketmq.client.logRoot", &grpc_logs)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Go scenarios ended within 180 s")
    .expect("running go-clients");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let grpc_log = std::fs::read_to_string(grpc_logs.join("rocketmq_client_go.log"));
    let shown = format!(
        "{}\nstdout:\n{stdout}\nstderr (end):\n{}\nthe 5.x client's log (end):\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr), 40),
        tail(&grpc_log.unwrap_or_default(), 40)
    );
    for scenario in SCENARIOS {
        assert!(
            stdout.lines().any(|l| l == format!("PASS {scenario}")),
            "{scenario} did not pass: {shown}"
        );
    }
    assert!(out.status.success(), "{shown}");

    // The SimpleConsumers acked everything they received: nothing left, nothing in flight.
    for group in ACKED_GROUPS {
        grpc.wait_group_drained(group).await;
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

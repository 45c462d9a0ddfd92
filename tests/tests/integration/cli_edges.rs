//! The `apogee` CLI's rough edges, run as a user runs it against real servers: a send a
//! SYNC_MASTER stored without its slave exits 3 and is stored once; `consume --nack` redelivers
//! until the dead-letter topic; the body limit is the cluster's; a plain-text CLI against TLS
//! says so; Ctrl-C leaves complete JSON; a closed pipe is no panic in any binary; durations
//! with units everywhere; refused delivery times as dates; user properties in `message get`;
//! `topic create --update-if-exists`; brokers by name; `cluster list` says "forbidden".

use apogee_proto::auth::Credentials;
use apogee_tests::access::cli_as;
use apogee_tests::{bins, cli, rpc, wait_until, BrokerSpec, CliOutput, Cluster};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn array(out: &CliOutput) -> Vec<Value> {
    out.json()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("expected a JSON array:\n{out}"))
}

/// One broker; `env` is set for the broker and the NameServer alike.
async fn standalone(env: &[(&str, &str)]) -> Cluster {
    let mut spec = BrokerSpec::new("broker-a");
    let mut builder = Cluster::builder();
    for (k, v) in env {
        spec = spec.env(k, *v);
        builder = builder.nameserver_env(k, *v);
    }
    builder.broker(spec).start().await
}

/// Whether the master at `addr` counts a slave in sync.
async fn slave_in_sync(addr: &str) -> Result<(), String> {
    let status = tokio::time::timeout(
        Duration::from_secs(3),
        rpc::admin(addr).get_broker_status(apogee_proto::cluster::GetBrokerStatusRequest {}),
    )
    .await
    .map_err(|_| "no answer".to_string())?
    .map_err(|e| e.to_string())?
    .into_inner()
    .status
    .ok_or("no status")?;
    status
        .slaves
        .iter()
        .any(|s| s.in_sync)
        .then_some(())
        .ok_or(format!("slaves: {:?}", status.slaves))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_stored_but_not_replicated_exits_3_and_is_stored_once() {
    let mut cluster = Cluster::builder()
        .broker(BrokerSpec::member("rg", 0).role("sync_master"))
        .broker(BrokerSpec::member("rg", 1).role("slave"))
        .start()
        .await;
    cluster.create_topic("replicated", 1).await;
    let master = cluster.broker("rg-0").addr.clone();
    wait_until(Duration::from_secs(60), "the slave to be in sync", || {
        slave_in_sync(&master)
    })
    .await;
    cluster.kill_broker("rg-1");
    wait_until(
        Duration::from_secs(30),
        "the slave to drop out of sync",
        || {
            let master = master.clone();
            async move {
                match slave_in_sync(&master).await {
                    Ok(()) => Err("still in sync".to_string()),
                    Err(_) => Ok(()),
                }
            }
        },
    )
    .await;

    let out = cluster.cli(&["send", "--topic", "replicated", "--body", "once"]);
    assert_eq!(out.code, 3, "a distinct exit code:\n{out}");
    assert!(
        out.stderr.contains("not replicated")
            && out.stderr.contains("stored on the master")
            && out.stderr.contains("Do not send it again"),
        "{out}"
    );
    let id = out
        .stderr
        .split("message ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no message id in the error:\n{out}"))
        .to_string();
    // Stored exactly once: the client did not resend it.
    let copies = array(
        &cluster
            .cli(&["-o", "json", "message", "get", &id])
            .success(),
    );
    assert_eq!(copies.len(), 1, "{copies:#?}");
    let queue = array(
        &cluster
            .cli(&[
                "-o",
                "json",
                "message",
                "print",
                "--topic",
                "replicated",
                "--queue",
                "0",
            ])
            .success(),
    );
    assert_eq!(queue.len(), 1, "one record in the queue: {queue:#?}");
    assert_eq!(queue[0]["message_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_nack_redelivers_with_rising_attempts_until_the_dead_letter_topic() {
    let cluster = standalone(&[]).await;
    cluster.create_topic("payments", 1).await;
    cluster
        .cli(&["group", "create", "billing", "--max-attempts", "3"])
        .success();
    cluster
        .cli(&["send", "--topic", "payments", "--body", "charge"])
        .success();
    let consume = |max: &str| {
        cluster.cli(&[
            "-o",
            "json",
            "consume",
            "--topic",
            "payments",
            "--group",
            "billing",
            "--nack",
            "--invisible",
            "1s",
            "--wait",
            "8s",
            "--max",
            max,
        ])
    };
    let rows = array(&consume("3").success());
    let attempts: Vec<i64> = rows
        .iter()
        .map(|r| r["delivery_attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3], "{rows:#?}");
    // Its third attempt used up, it goes to %DLQ%billing instead of coming back.
    let dead = wait_until(Duration::from_secs(60), "the dead letter", || async {
        let list = array(
            &cluster
                .cli(&["-o", "json", "dlq", "list", "--group", "billing"])
                .success(),
        );
        (!list.is_empty())
            .then_some(list)
            .ok_or("none yet".to_string())
    })
    .await;
    assert_eq!(dead[0]["message_id"], rows[0]["message_id"], "{dead:#?}");
    assert!(array(&consume("1").success()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_takes_the_body_limit_of_the_cluster_and_names_the_setting() {
    let cluster = standalone(&[("MAX_BODY_BYTES", "6291456")]).await;
    cluster.create_topic("big", 1).await;
    let file = cluster.dir().join("five-mib.bin");
    std::fs::write(&file, vec![b'x'; 5 << 20]).unwrap();
    let file = file.display().to_string();
    // Above the default 4 MiB, within the cluster's 6 MiB.
    cluster
        .cli(&["send", "--topic", "big", "--body-file", &file])
        .success();
    let file = cluster.dir().join("seven-mib.bin");
    std::fs::write(&file, vec![b'x'; 7 << 20]).unwrap();
    let out = cluster.cli(&[
        "send",
        "--topic",
        "big",
        "--body-file",
        &file.display().to_string(),
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("limit of 6291456 bytes") && out.stderr.contains("max_body_bytes"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_text_cli_against_a_tls_server_is_told_to_use_tls() {
    let cluster = Cluster::builder()
        .tls()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let out = cli::run(&["--nameserver", cluster.ns_addr(), "topic", "list"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("speaks TLS: use --tls") && !out.stderr.contains("h2 protocol"),
        "{out}"
    );
    let broker = cluster.broker("broker-a").addr.clone();
    let out = cli::run(&[
        "--nameserver",
        cluster.ns_addr(),
        "broker",
        "status",
        &broker,
    ]);
    assert!(out.stderr.contains("speaks TLS: use --tls"), "{out}");
}

/// Runs `apogee <args>` with stdout in a file; sends SIGINT once the file holds `ready`
/// lines; returns (exit code, stdout).
fn interrupt_after(args: &[&str], ready: usize) -> (Option<i32>, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(bins::bin(bins::CLI))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(out.path()).unwrap().lines().count() < ready {
        assert!(Instant::now() < deadline, "the consumer printed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    (status.code(), std::fs::read_to_string(out.path()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_interrupted_by_ctrl_c_leaves_complete_json_and_jsonl() {
    let cluster = standalone(&[]).await;
    cluster.create_topic("orders", 1).await;
    cluster
        .cli(&["send", "--topic", "orders", "--body", "o", "--count", "2"])
        .success();
    let ns = cluster.ns_addr().to_string();
    let consume = |format: &'static str, group: &'static str| {
        let ns = ns.clone();
        move || {
            interrupt_after(
                &[
                    "--nameserver",
                    &ns,
                    "-o",
                    format,
                    "consume",
                    "--topic",
                    "orders",
                    "--group",
                    group,
                    "--wait",
                    "1m",
                ],
                // "[" then two objects; JSON lines: the two objects.
                if format == "json" { 3 } else { 2 },
            )
        }
    };
    let (code, stdout) = tokio::task::spawn_blocking(consume("json", "g-json"))
        .await
        .unwrap();
    assert_eq!(code, Some(130), "{stdout}");
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON after SIGINT ({e}):\n{stdout}"));
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{stdout}");

    let (code, stdout) = tokio::task::spawn_blocking(consume("jsonl", "g-jsonl"))
        .await
        .unwrap();
    assert_eq!(code, Some(130), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["topic"], "orders");
    // Every list command speaks JSON lines.
    let out = cluster.cli(&["-o", "jsonl", "topic", "list"]).success();
    let topics: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(topics.iter().any(|t| t["topic"] == "orders"), "{out}");
}

/// Runs `bin args` with its stdout a pipe whose reader is already closed; returns the exit
/// code and stderr.
fn into_closed_pipe(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bins::bin(bin))
        .args(args)
        .env_remove("APOGEE_NAMESERVER")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_binary_ends_quietly_when_its_reader_closes_early() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    for (bin, args) in [
        (bins::CLI, vec!["completions", "bash"]),
        (bins::BROKER, vec!["--check-config", "--data-dir", &data]),
        (bins::NAMESERVER, vec!["--check-config"]),
    ] {
        let (code, stderr) = into_closed_pipe(bin, &args);
        assert!(!stderr.contains("panicked"), "{bin} {args:?}: {stderr}");
        assert_eq!(code, Some(0), "{bin} {args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_take_units_everywhere_and_refused_times_are_dates() {
    let cluster = standalone(&[]).await;
    cluster
        .create_typed_topic("reminders", 1, &[apogee_proto::v2::MessageType::Delay])
        .await;
    // A bare number is seconds; a unit works where seconds were wanted.
    let before = apogee_proto::time::now_ms();
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "send",
            "--topic",
            "reminders",
            "--body",
            "r",
            "--delay",
            "30",
        ])
        .success();
    let sent = &array(&out)[0];
    let due = sent["deliver_at_ms"].as_i64().unwrap();
    let after = apogee_proto::time::now_ms();
    assert!(
        (before + 30_000..=after + 30_000).contains(&due),
        "--delay 30 is 30 s after the send: due {due}, sent between {before} and {after}"
    );
    cluster
        .cli(&[
            "--timeout",
            "5s",
            "consume",
            "--topic",
            "reminders",
            "--group",
            "g",
            "--wait",
            "2s",
            "--invisible",
            "1m",
        ])
        .success();
    // Past the 7-day limit: dates and the limit, not epoch milliseconds.
    let out = cluster.cli(&[
        "send",
        "--topic",
        "reminders",
        "--body",
        "late",
        "--delay",
        "30d",
    ]);
    assert_eq!(out.code, 1, "{out}");
    let date = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT")
            .to_string()
    };
    let asked = [
        date(before + 30 * 86_400_000),
        date(after + 30 * 86_400_000),
    ];
    assert!(
        out.stderr
            .contains("(in 30d) is past the limit: at most 7d ahead")
            && asked.iter().any(|d| out.stderr.contains(d.as_str()))
            && out.stderr.contains("schedule.max_delay_ms"),
        "{out}"
    );
    assert!(
        !out.stderr
            .split(|c: char| !c.is_ascii_digit())
            .any(|digits| digits.len() >= 13),
        "no epoch milliseconds: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_get_topics_and_broker_names_as_an_operator_expects() {
    let cluster = standalone(&[]).await;
    cluster.create_topic("orders", 2).await;
    // message get shows user properties in its table.
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "send",
            "--topic",
            "orders",
            "--body",
            "b",
            "--property",
            "region=eu",
        ])
        .success();
    let id = array(&out)[0]["message_id"].as_str().unwrap().to_string();
    let out = cluster.cli(&["message", "get", &id]).success();
    assert!(
        out.stdout.lines().next().unwrap().contains("PROPERTIES")
            && out.stdout.contains("region=eu"),
        "{out}"
    );

    // topic create --update-if-exists creates, then updates; without it the error says how.
    let out = cluster.cli(&["topic", "create", "orders", "--queues", "4"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("--update-if-exists"), "{out}");
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "topic",
            "create",
            "orders",
            "--queues",
            "4",
            "--update-if-exists",
        ])
        .success();
    assert_eq!(out.json()["queues"], 4, "{out}");
    let out = cluster
        .cli(&["-o", "json", "updateTopic", "fresh", "--queues", "3"])
        .success();
    assert_eq!(out.json()["queues"], 3, "{out}");
    let out = cluster.cli(&["topic", "update", "absent", "--queues", "2"]);
    assert!(out.stderr.contains("--update-if-exists"), "{out}");
    let routes = array(&cluster.cli(&["-o", "json", "topic", "list"]).success());
    let orders = routes.iter().find(|t| t["topic"] == "orders").unwrap();
    assert_eq!(orders["queues"], 4, "{routes:#?}");

    // broker config get takes the broker's name.
    let rows = array(
        &cluster
            .cli(&["-o", "json", "broker", "config", "get", "broker-a"])
            .success(),
    );
    assert!(
        rows.iter().any(|r| r["key"] == "store.retention_hours"),
        "{rows:#?}"
    );
    let out = cluster.cli(&["broker", "config", "get", "broker-x"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("registered: broker-a"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_list_as_a_non_admin_says_forbidden_not_unreachable() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let user = Credentials::new("viewer", "viewer-secret-1").unwrap();
    let secret = cluster.dir().join("viewer.secret");
    std::fs::write(&secret, format!("{}\n", user.secret_key())).unwrap();
    cluster
        .cli(&[
            "user",
            "create",
            "viewer",
            "--secret-file",
            &secret.display().to_string(),
        ])
        .success();
    let out = wait_until(Duration::from_secs(30), "cluster list as viewer", || {
        let out = cli_as(cluster.ns_addr(), &user, &["cluster", "list"]);
        async move {
            (out.code == 0)
                .then_some(out.clone())
                .ok_or(out.to_string())
        }
    })
    .await;
    let row = out.stdout.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        row.contains("forbidden") && !row.contains("unreachable"),
        "{out}"
    );
    let rows: Vec<Value> = cli_as(cluster.ns_addr(), &user, &["-o", "json", "cluster", "list"])
        .json()
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(rows[0]["cause"], "forbidden", "{rows:#?}");
}

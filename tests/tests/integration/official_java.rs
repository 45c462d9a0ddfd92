//! RocketMQ's official Java clients, unchanged, against one Apogee cluster: the scenarios of
//! `tests/java` (a Maven project depending on `org.apache.rocketmq:rocketmq-client-java`, the
//! 5.x gRPC client, and `org.apache.rocketmq:rocketmq-client`, the 4.x-style remoting client),
//! run in one JVM that prints `PASS name` or `FAIL name: reason` for each.
//!
//! - 5.x gRPC client (`grpc-*`): normal sends received and acked by a SimpleConsumer (tags,
//!   keys, properties), FIFO order per message group, a delivery timestamp, transactions ended
//!   by commit, rollback and the broker's check-back, a PushConsumer with a retry, a recalled
//!   delay message, a backlog of priorities received highest first, a LitePushConsumer's lite
//!   topics.
//! - 4.x remoting client (`remoting-*`): sync, async and oneway sends; orderly sends through a
//!   MessageQueueSelector consumed by a MessageListenerOrderly; clustering and broadcasting
//!   push consumers; DefaultLitePullConsumer; TransactionMQProducer with check-back; a delay
//!   level; RECONSUME_LATER up to maxReconsumeTimes, then the message in `%DLQ%<group>`;
//!   message trace on for a producer and a push consumer, their Pub and SubAfter records
//!   then read from `RMQ_SYS_TRACE_TOPIC`.
//!
//! With authentication on, the 5.x client signing with the cluster's credentials (`grpc-auth`)
//! and the 4.x client signing with `AclClientRPCHook` (`remoting-auth`) send and receive, and
//! with a wrong secret cannot send.
//!
//! A Spring Boot application (`tests/java-spring`, Apache's `rocketmq-spring-boot-starter`
//! unchanged) sends with RocketMQTemplate (sync with a JSON payload and a tag, async, orderly
//! by hash key, delayed, in transactions settled by a `@RocketMQTransactionListener` and its
//! check-back) and receives with `@RocketMQMessageListener` beans (tag-filtered, ORDERLY), in
//! one JVM started once (`spring-*`).
//!
//! Scenario `NAME` works on the topic `j-NAME` and the group `j-NAME-g` (and `j-NAME-g2`),
//! made here first. The projects are built with Maven, offline when `deploy/dev-setup.sh` has
//! resolved their dependencies. Without java and mvn the tests print SKIPPED, except under CI
//! (`CI=true`), where they fail.

use super::java_tools::{self, java_usable, tail};
use apogee_proto::v2::MessageType;
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One scenario of the Java program and what it needs made first.
struct JavaScenario {
    name: &'static str,
    /// The message type its topic accepts.
    topic_type: MessageType,
    /// Its topic's queues.
    queues: i32,
    /// Options of `apogee group create` for its group.
    group_options: &'static [&'static str],
    /// Whether it also uses the group `j-NAME-g2`.
    second_group: bool,
}

const fn scenario(name: &'static str, topic_type: MessageType) -> JavaScenario {
    JavaScenario {
        name,
        topic_type,
        queues: 4,
        group_options: &[],
        second_group: false,
    }
}

/// Every scenario CI runs against a cluster without authentication, in the order the program
/// reports them.
const SCENARIOS: &[JavaScenario] = &[
    scenario("grpc-normal", MessageType::Normal),
    JavaScenario {
        group_options: &["--fifo"],
        ..scenario("grpc-fifo", MessageType::Fifo)
    },
    scenario("grpc-delay", MessageType::Delay),
    scenario("grpc-transaction", MessageType::Transaction),
    JavaScenario {
        // The failed message's second delivery a second later.
        group_options: &["--retry-custom", "1s"],
        ..scenario("grpc-push", MessageType::Normal)
    },
    scenario("grpc-recall", MessageType::Delay),
    JavaScenario {
        // One queue per priority.
        queues: 10,
        ..scenario("grpc-priority", MessageType::Priority)
    },
    JavaScenario {
        queues: 1,
        group_options: &["--lite-bind", "j-grpc-lite"],
        ..scenario("grpc-lite", MessageType::Lite)
    },
    scenario("remoting-send", MessageType::Normal),
    scenario("remoting-orderly", MessageType::Normal),
    scenario("remoting-clustering", MessageType::Normal),
    scenario("remoting-broadcast", MessageType::Normal),
    scenario("remoting-lite-pull", MessageType::Normal),
    scenario("remoting-transaction", MessageType::Transaction),
    scenario("remoting-delay", MessageType::Delay),
    JavaScenario {
        second_group: true,
        ..scenario("remoting-retry-dlq", MessageType::Normal)
    },
    JavaScenario {
        // Its trace records read from RMQ_SYS_TRACE_TOPIC by the second group.
        second_group: true,
        ..scenario("remoting-trace", MessageType::Normal)
    },
];

/// The scenarios jar of `tests/java`.
async fn scenarios_jar() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    java_tools::built(&BUILT, "java")
        .await
        .join("apogee-java-scenarios.jar")
}

/// Makes each scenario's topic `j-NAME` and group `j-NAME-g` (and `j-NAME-g2`).
async fn make_topics_and_groups(cluster: &Cluster, scenarios: &[JavaScenario]) {
    for s in scenarios {
        let topic = format!("j-{}", s.name);
        cluster
            .create_typed_topic(&topic, s.queues, &[s.topic_type])
            .await;
        let group = format!("{topic}-g");
        let mut args = vec!["group", "create", group.as_str()];
        args.extend(s.group_options);
        cluster.cli(&args).success();
        if s.second_group {
            cluster
                .cli(&["group", "create", &format!("{topic}-g2")])
                .success();
        }
    }
}

/// Makes the scenarios' topics and groups, runs them in one JVM with `extra_args`, and
/// checks that each passed; returns the program's report.
async fn run_scenarios(
    cluster: &Cluster,
    scenarios: &[JavaScenario],
    extra_args: &[&str],
) -> String {
    let jar = scenarios_jar().await;
    make_topics_and_groups(cluster, scenarios).await;
    let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
    let mut args = vec!["--endpoint", cluster.ns_addr(), "--parallel", "4"];
    args.extend(["--timeout-secs", "150"]);
    args.extend(extra_args);
    args.extend(&names);
    run_jar(cluster, &[], &jar, &args, &names).await
}

/// Runs `jar` with `args` in one JVM (with the options `jvm_options`) and checks that it
/// printed `PASS NAME` for each of `names` and exited with success; returns what it printed.
/// The program must end within its own timeout (at most 150 s), its clients logging under the
/// cluster's directory.
async fn run_jar(
    cluster: &Cluster,
    jvm_options: &[&str],
    jar: &Path,
    args: &[&str],
    names: &[&str],
) -> String {
    let run = tokio::process::Command::new("java")
        // The clients log under the home directory (~/logs) and a broadcasting consumer keeps
        // its offsets there (~/.rocketmq_offsets): the cluster's directory.
        .arg(format!("-Duser.home={}", cluster.dir().display()))
        .args(jvm_options)
        .arg("-jar")
        .arg(jar)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(200), run)
        .await
        .expect("the Java program ran past its own timeout")
        .expect("running java");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = || {
        let client_log = |path: &str| {
            tail(
                &std::fs::read_to_string(cluster.dir().join(path)).unwrap_or_default(),
                30,
            )
        };
        format!(
            "{stdout}\nstderr (end):\n{}\nthe 5.x client's log (end):\n{}\nthe 4.x client's log (end):\n{}",
            tail(&String::from_utf8_lossy(&out.stderr), 40),
            client_log("logs/rocketmq/rocketmq-client.log"),
            client_log("logs/rocketmqlogs/rocketmq_client.log"),
        )
    };
    for name in names {
        let passed = stdout
            .lines()
            .any(|l| l.strip_prefix("PASS ").and_then(|r| r.split(' ').next()) == Some(name));
        assert!(passed, "scenario {name} did not pass:\n{}", report());
    }
    assert!(out.status.success(), "{}: {}", out.status, report());
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_clients_pass_every_scenario() {
    if !java_usable("the official Java clients") {
        return;
    }
    let cluster = Cluster::builder()
        .broker(
            // Unknown transactions checked back within a second or two.
            BrokerSpec::new("broker-a").fast_check_backs(),
        )
        .start()
        .await;
    let started = Instant::now();
    let report = run_scenarios(&cluster, SCENARIOS, &[]).await;
    println!(
        "{} Java scenarios passed in {:.1} s:\n{report}",
        SCENARIOS.len(),
        started.elapsed().as_secs_f64()
    );
    // The traced message's records are found by its id as a key of the trace topic, as
    // RocketMQ's tools look a trace up.
    let traced = report
        .lines()
        .find_map(|l| l.strip_prefix("TRACED "))
        .expect("remoting-trace names the traced message");
    let found = cluster
        .cli(&[
            "message",
            "find",
            "--topic",
            apogee_proto::names::TRACE_TOPIC,
            "--key",
            traced.trim(),
            "-o",
            "json",
        ])
        .success()
        .json();
    let records = found.as_array().expect("a list of records");
    assert!(
        records.len() >= 2,
        "the producer's and the consumer's trace records of {traced}: {found:#}"
    );
    // And RocketMQ's own tool shows the send and the consume.
    let shown =
        super::official_mqadmin::mqadmin(&cluster, &["queryMsgTraceById", "-i", traced.trim()])
            .await;
    let starts = |kind: &str| shown.lines().any(|l| l.trim_start().starts_with(kind));
    assert!(
        starts("Pub") && starts("Sub"),
        "mqadmin queryMsgTraceById:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_client_signs_its_calls_where_authentication_is_on() {
    if !java_usable("the official Java clients") {
        return;
    }
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let auth = [
        scenario("grpc-auth", MessageType::Normal),
        scenario("remoting-auth", MessageType::Normal),
    ];
    let report = run_scenarios(
        &cluster,
        &auth,
        &[
            "--access-key",
            rpc::ADMIN_ACCESS_KEY,
            "--secret-key",
            rpc::ADMIN_SECRET_KEY,
        ],
    )
    .await;
    println!("{report}");
}

/// The Spring Boot application's scenarios (`tests/java-spring`): the topics and groups its
/// `@RocketMQMessageListener` beans name, which must exist before it starts.
const SPRING_SCENARIOS: &[JavaScenario] = &[
    JavaScenario {
        // A listener per tag.
        second_group: true,
        ..scenario("spring-send", MessageType::Normal)
    },
    scenario("spring-orderly", MessageType::Normal),
    scenario("spring-delay", MessageType::Delay),
    scenario("spring-transaction", MessageType::Transaction),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_boot_starter_application_sends_and_listens() {
    if !java_usable("the official Java clients") {
        return;
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let jar = java_tools::built(&BUILT, "java-spring")
        .await
        .join("apogee-spring-scenarios.jar");
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").fast_check_backs())
        .start()
        .await;
    let started = Instant::now();
    make_topics_and_groups(&cluster, SPRING_SCENARIOS).await;
    let name_server = format!("--rocketmq.name-server={}", cluster.ns_addr());
    let names: Vec<&str> = SPRING_SCENARIOS.iter().map(|s| s.name).collect();
    let report = run_jar(
        &cluster,
        // Spring's start is mostly compiling: the quick compiler alone halves it.
        &["-XX:TieredStopAtLevel=1"],
        &jar,
        &[&name_server, "--apogee.timeout-secs=90"],
        &names,
    )
    .await;
    println!(
        "the Spring Boot application passed in {:.1} s:\n{report}",
        started.elapsed().as_secs_f64()
    );
}

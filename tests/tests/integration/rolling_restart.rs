//! `apogee cluster rolling-restart` against a controller and a group of two under a send
//! load: the real CLI restarts each member through a restart command this test serves. The
//! command writes its member into a request file of a scratch directory and waits for an
//! answer file; the test sees the request, SIGTERMs that broker, starts it again with the
//! harness and answers. The slave goes first, the master last after a planned switch, each
//! once; nothing acknowledged is lost. The failed sends and the longest pause between
//! acknowledgements are reported, not asserted. A failing restart command stops the run at
//! the first member, named.

use apogee_tests::failover::{
    assert_all_logged, controller_group, member_name, start_group_of_two, Load, OnFailure,
};
use apogee_tests::restart_requests::{RestartRequest, RestartRequests};
use apogee_tests::Cluster;
use std::time::{Duration, Instant};

const GROUP: &str = "rr";
const TOPIC: &str = "rolling";
const QUEUES: i32 = 4;

/// The longest the whole run may take (two members, each a restart and a rejoin).
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The longest a SIGTERMed broker may take to exit (a member that handed its role over may
/// drain first).
const EXIT_LIMIT: Duration = Duration::from_secs(90);

/// SIGTERMs broker `name`, waits for its exit and starts it again (until it serves and is
/// registered).
async fn restart(cluster: &mut Cluster, name: &str) {
    let process = cluster.broker_mut(name).process();
    process.terminate();
    let exited = tokio::task::block_in_place(|| process.wait_exit(EXIT_LIMIT));
    assert!(
        exited.is_some(),
        "{name} still runs {EXIT_LIMIT:?} after SIGTERM"
    );
    cluster.restart_broker(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_restarts_each_member_once_slave_first_and_loses_nothing() {
    let started = start_group_of_two(GROUP, TOPIC, QUEUES).await;
    let mut cluster = started.cluster;
    let first = controller_group(&cluster, GROUP).await.unwrap();
    let (master_id, slave_id) = (first.master, if first.master == 1 { 2 } else { 1 });
    let requests = RestartRequests::new(cluster.dir().join("restart-requests"));

    // The plan, without running anything.
    let plan = cluster
        .cli(&[
            "-o",
            "json",
            "cluster",
            "rolling-restart",
            "--dry-run",
            "--restart-command",
            "false",
        ])
        .success()
        .json();
    let planned: Vec<(u64, &str)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["member"].as_u64().unwrap(), s["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        planned,
        vec![(slave_id, "restart"), (master_id, "switch_then_restart")],
        "{plan}"
    );
    assert!(requests.take().is_none(), "a dry run ran the command");
    // A failing restart command stops the run at the first member, named.
    let failed = cluster.cli(&["cluster", "rolling-restart", "--restart-command", "exit 3"]);
    let named = format!("rolling restart stopped at {GROUP} member {slave_id} (");
    assert!(
        failed.code == 1
            && failed.stderr.contains(&named)
            && failed.stderr.contains("the restart command failed"),
        "{failed}"
    );

    let load_started = Instant::now();
    let load = Load::start(
        cluster.broker_addr(&started.master),
        TOPIC,
        QUEUES,
        2,
        "rolling",
        OnFailure::Retry,
    );
    load.wait_acked_after(
        load_started,
        100,
        Duration::from_secs(30),
        "sends before the restart",
    )
    .await;

    let command = requests.command();
    let mut cli = cluster.cli_spawn(&[
        "-o",
        "json",
        "cluster",
        "rolling-restart",
        "--restart-command",
        &command,
        "--timeout-per-member",
        "150",
    ]);
    let mut restarted = Vec::new();
    let deadline = Instant::now() + RUN_LIMIT;
    while !cli.exited() {
        assert!(
            Instant::now() < deadline,
            "the rolling restart still runs after {RUN_LIMIT:?}"
        );
        if let Some(RestartRequest {
            member,
            group,
            endpoint,
        }) = requests.take()
        {
            let name = member_name(&group, member);
            assert_eq!(group, GROUP);
            assert_eq!(
                endpoint,
                cluster.broker_addr(&name),
                "the endpoint of {name}"
            );
            restart(&mut cluster, &name).await;
            restarted.push(member);
            requests.answer();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = Instant::now();
    let out = cli.wait(Duration::from_secs(5)).success();
    assert_eq!(
        restarted,
        vec![slave_id, master_id],
        "slave first, each once:\n{out}"
    );
    let turns = out.json();
    let turns = turns.as_array().unwrap();
    assert_eq!(turns.len(), 2, "{out}");
    assert_eq!(
        (turns[1]["member"].as_u64(), turns[1]["new_master"].as_u64()),
        (Some(master_id), Some(slave_id)),
        "the master's turn switched to the other member:\n{out}"
    );
    assert!(
        out.stderr.contains("back in the in-sync set"),
        "progress lines:\n{out}"
    );

    // Sends go on after the run; the controller has the other member as master with both
    // in sync.
    load.wait_acked_after(
        ended,
        50,
        Duration::from_secs(30),
        "sends after the restart",
    )
    .await;
    let gap = load.longest_gap();
    let (acked, failures) = load.stop().await;
    let last = controller_group(&cluster, GROUP).await.unwrap();
    assert_eq!(
        (last.master, last.in_sync.len()),
        (slave_id, 2),
        "the other member leads, both in sync: {last:?}"
    );
    let new_master = member_name(GROUP, slave_id);
    assert_all_logged(
        &acked,
        &cluster.broker(&new_master).data_dir,
        "the new master",
    );
    eprintln!(
        "rolling restart of 2 members: {} sends acknowledged, 0 lost; {} failed (e.g. {:?}); \
         acknowledgements paused at most {} ms; turns: {}\nthe CLI's progress:\n{}",
        acked.len(),
        failures.len(),
        failures.first(),
        gap.as_millis(),
        out.stdout.split_whitespace().collect::<String>(),
        out.stderr
    );
}

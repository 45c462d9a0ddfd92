//! NameServer lists, as processes: the admin CLI given a list whose first NameServer is down
//! (a port nothing listens on) works through the next one, with `;` or `,` between them, and
//! an answer (NOT_FOUND) is not taken for an unreachable NameServer; a broker given
//! `APOGEE_BROKER_NAMESERVERS='a;b'` registers with both; `--check-config` refuses a bad
//! address, naming it.

use apogee_proto::cluster::GetClusterInfoRequest;
use apogee_tests::cli::{run, CliOutput};
use apogee_tests::process::{free_port, ManagedProcess};
use apogee_tests::{bins, rpc, wait_until, BrokerSpec, Cluster};
use std::process::Command;
use std::time::Duration;

/// Generous for a loaded CI machine; nothing is timed against it.
const SETTLE: Duration = Duration::from_secs(60);

/// An address nothing listens on (the harness hands each port out once).
fn dead_nameserver() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn cli(nameservers: &str, args: &[&str]) -> CliOutput {
    let mut full = vec!["--nameserver", nameservers, "--timeout", "5"];
    full.extend_from_slice(args);
    run(&full)
}

#[tokio::test]
async fn admin_commands_fall_back_to_the_next_nameserver() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-ns"))
        .start()
        .await;
    let live = cluster.ns_addr().to_string();
    let dead = dead_nameserver();
    for (i, sep) in [";", ","].into_iter().enumerate() {
        let list = format!("{dead}{sep}{live}");
        let topic = format!("fallback-{i}");
        let group = format!("fallback-group-{i}");
        cli(&list, &["topic", "create", &topic, "--queues", "2"]).success();
        let topics = cli(&list, &["-o", "json", "topic", "list"])
            .success()
            .json();
        let names: Vec<&str> = topics
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["topic"].as_str())
            .collect();
        assert!(names.contains(&topic.as_str()), "{list}: {topics}");
        cli(&list, &["group", "create", &group]).success();
        let groups = cli(&list, &["group", "list"]).success();
        assert!(groups.stdout.contains(&group), "{list}: {groups}");
        let brokers = cli(&list, &["cluster", "list"]).success();
        assert!(brokers.stdout.contains("broker-ns"), "{list}: {brokers}");
    }

    // An answer is the answer: NOT_FOUND from the first is not retried on the (dead) next.
    let out = cli(
        &format!("{live};{dead}"),
        &["topic", "route", "no-such-topic"],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("topic not found: no-such-topic") && !out.stderr.contains(&dead),
        "{out}"
    );

    // None reachable: each one is named.
    let other_dead = dead_nameserver();
    let out = cli(&format!("{dead};{other_dead}"), &["topic", "list"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("cannot reach any nameserver")
            && out.stderr.contains(&dead)
            && out.stderr.contains(&other_dead),
        "{out}"
    );
}

/// `apogee-broker` with `env` on top of an environment without `APOGEE_BROKER_*` variables.
fn broker_command(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(bins::bin(bins::BROKER));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("APOGEE_BROKER_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c
}

#[tokio::test]
async fn a_broker_registers_with_semicolon_separated_nameservers() {
    let cluster = Cluster::builder().nameservers(2).start().await;
    let ns = cluster.ns_addrs();
    let list = format!("{};{}", ns[0], ns[1]);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // The variable alone names the NameServers (no --nameserver flag).
    let env = vec![
        ("APOGEE_BROKER_NAMESERVERS".to_string(), list.clone()),
        ("APOGEE_BROKER_LISTEN".into(), addr.clone()),
        ("APOGEE_BROKER_HTTP_LISTEN".into(), String::new()),
        ("APOGEE_BROKER_BROKER_NAME".into(), "broker-semi".into()),
        (
            "APOGEE_BROKER_DATA_DIR".into(),
            dir.path().join("data").display().to_string(),
        ),
    ];
    let check = broker_command(&[])
        .envs(env.clone())
        .arg("--check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Two entries, not one holding the ';'.
    for ns in &ns {
        assert!(stdout.contains(&format!("\"{ns}\"")), "{stdout}");
    }
    assert!(!stdout.contains(&list), "{stdout}");

    let mut broker = ManagedProcess::spawn(
        "broker-semi",
        bins::bin(bins::BROKER),
        Vec::new(),
        env,
        dir.path().join("broker.log"),
    );
    for ns in &ns {
        wait_until(SETTLE, &format!("broker-semi registered with {ns}"), || {
            let ns = ns.clone();
            let addr = addr.clone();
            async move {
                let info = rpc::registry(&ns)
                    .get_cluster_info(rpc::signed(GetClusterInfoRequest {}))
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                let registered = info.groups.iter().any(|g| {
                    g.broker_name == "broker-semi" && g.members.iter().any(|m| m.endpoint == addr)
                });
                registered.then_some(()).ok_or_else(|| format!("{info:?}"))
            }
        })
        .await;
    }
    broker.assert_running();
    broker.terminate();
}

#[test]
fn check_config_refuses_a_bad_nameserver_address_naming_it() {
    for (list, bad) in [
        ("127.0.0.1:9876;ns2:99999", "\"ns2:99999\""),
        ("127.0.0.1:9876,ns2", "\"ns2\""),
        ("127.0.0.1:9876;ns2:port", "\"ns2:port\""),
    ] {
        let out = broker_command(&[("APOGEE_BROKER_NAMESERVERS", list)])
            .arg("--check-config")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{list}: accepted");
        assert!(
            stderr.contains("nameservers") && stderr.contains(bad),
            "{list}: {stderr}"
        );
    }
    // The --nameserver flag takes a list too, and is checked the same way.
    let out = broker_command(&[])
        .args(["--check-config", "--nameserver", "a:9876;b:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("\"b:0\""),
        "{stderr}"
    );
}

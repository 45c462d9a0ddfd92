//! The deploy kit in `deploy/`: `local-cluster.sh` starts two NameServers and two broker
//! groups (master + slave each), serves a send and a receive through each group and stops
//! cleanly; the systemd units pass `systemd-analyze verify`; the compose file and the Helm
//! chart pass `docker compose config` and `helm lint` where those tools are installed (the
//! test says SKIPPED where they are not).

use apogee_tests::{bins, cli, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

fn tool_present(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A first port such that it and the next 121 are free: the script's ports are offsets of it.
/// Drawn below the ephemeral range, where the harness's free ports never are.
fn free_base_port() -> u16 {
    let offsets = [0, 1, 10, 11, 20, 21];
    for attempt in 0..200u16 {
        let base = 20_000 + (std::process::id() as u16 % 50) * 200 + attempt * 13 % 9_000;
        let free = offsets
            .iter()
            .chain(&[100, 101, 110, 111, 120, 121])
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free block of ports for the local cluster");
}

struct LocalCluster {
    dir: tempfile::TempDir,
    base: u16,
}

impl LocalCluster {
    fn run(&self, verb: &str) -> Output {
        Command::new(repo().join("deploy/local-cluster.sh"))
            .arg(verb)
            .env("APOGEE_CLUSTER_DIR", self.dir.path())
            .env("APOGEE_CLUSTER_BASE_PORT", self.base.to_string())
            .env("APOGEE_BIN_DIR", bins::bin_dir())
            .output()
            .expect("running deploy/local-cluster.sh")
    }

    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let pid_file = entry.unwrap().path().join("pid");
            if let Ok(pid) = std::fs::read_to_string(pid_file) {
                pids.push(pid.trim().parse().unwrap());
            }
        }
        pids
    }

    fn nameservers(&self) -> String {
        format!("127.0.0.1:{};127.0.0.1:{}", self.base, self.base + 1)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// Whether a process runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_script_starts_serves_each_group_and_stops_cleanly() {
    let lc = LocalCluster {
        dir: tempfile::tempdir().unwrap(),
        base: free_base_port(),
    };
    let started = lc.run("start");
    assert!(started.status.success(), "{}", text(&started));
    let out = String::from_utf8_lossy(&started.stdout).into_owned();
    assert!(
        out.contains(&format!("export APOGEE_NAMESERVER='{}'", lc.nameservers())),
        "{out}"
    );
    let status = lc.run("status");
    assert!(status.status.success(), "{}", text(&status));
    let again = lc.run("start");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nameserver-0 already runs"),
        "{}",
        text(&again)
    );

    // Both groups registered with a master and an in-sync slave.
    let ns = lc.nameservers();
    let cli = |args: &[&str]| {
        let mut full = vec!["--nameserver", ns.as_str()];
        full.extend_from_slice(args);
        cli::run(&full)
    };
    wait_until(Duration::from_secs(30), "both groups to register", || {
        let listed = cli(&["-o", "json", "cluster", "list"]);
        async move {
            let rows = serde_json::from_str::<Value>(&listed.stdout).map_err(|e| e.to_string())?;
            let members: Vec<(String, String)> = rows
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r["broker"].to_string(), r["role"].to_string()))
                .collect();
            if members.len() == 4
                && members.iter().filter(|(_, r)| r.contains("slave")).count() == 2
            {
                Ok(())
            } else {
                Err(listed.to_string())
            }
        }
    })
    .await;

    // A send and a receive through each group.
    cli(&["topic", "create", "kit-t", "--queues", "2"]).success();
    let sent = cli(&[
        "-o", "json", "send", "--topic", "kit-t", "--body", "hi", "--count", "8",
    ])
    .success();
    let sent = sent.json();
    let groups_sent: std::collections::BTreeSet<String> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["broker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(groups_sent.len(), 2, "{sent}");
    let got = cli(&[
        "-o", "json", "consume", "--topic", "kit-t", "--group", "kit-g", "--max", "8", "--wait",
        "10",
    ])
    .success();
    let got = got.json();
    let rows = got.as_array().unwrap();
    assert_eq!(rows.len(), 8, "{got}");
    let groups_got: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| r["broker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(groups_got, groups_sent, "{got}");

    // Stop: every process gone, unregistered first, status says stopped.
    let pids = lc.pids();
    assert_eq!(pids.len(), 6, "{pids:?}");
    let stopped = lc.run("stop");
    assert!(stopped.status.success(), "{}", text(&stopped));
    assert!(pids.iter().all(|p| !alive(*p)), "still running: {pids:?}");
    let status = lc.run("status");
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    let a0 = std::fs::read_to_string(lc.dir.path().join("broker-a-0/log")).unwrap();
    assert!(a0.contains("broker stopped"), "{a0}");
    assert!(!a0.contains("unregister failed"), "{a0}");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !tool_present("systemd-analyze", &["--version"]) {
        println!("SKIPPED: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = bins::bin_dir();
    for (unit, as_name) in [
        ("apogee-nameserver.service", "apogee-nameserver.service"),
        ("apogee-broker@.service", "apogee-broker@broker-a.service"),
    ] {
        let text_of = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
        // The units name the installed binaries; verify them against the built ones.
        let local = text_of.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
        let path = dir.path().join(as_name);
        std::fs::write(&path, local).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{unit}: {}", text(&out));
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            !warnings.contains(as_name),
            "{unit}: systemd-analyze warns: {warnings}"
        );
    }
}

#[test]
fn compose_file_and_helm_chart_are_valid_where_the_tools_exist() {
    let compose = repo().join("deploy/docker/compose.yaml");
    // Compose v2 (the docker plugin) or v1 (docker-compose).
    let checker: Option<(&str, &[&str])> = if tool_present("docker", &["compose", "version"]) {
        Some(("docker", &["compose"]))
    } else if tool_present("docker-compose", &["version"]) {
        Some(("docker-compose", &[]))
    } else {
        None
    };
    match checker {
        Some((program, sub)) => {
            let out = Command::new(program)
                .args(sub)
                .arg("-f")
                .arg(&compose)
                .args(["config", "--quiet"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{program} config: {}", text(&out));
        }
        None => println!("SKIPPED: docker compose not installed"),
    }
    if tool_present("helm", &["version"]) {
        let out = Command::new("helm")
            .arg("lint")
            .arg(repo().join("deploy/helm/apogee"))
            .output()
            .unwrap();
        assert!(out.status.success(), "helm lint: {}", text(&out));
    } else {
        println!("SKIPPED: helm not installed");
    }
}

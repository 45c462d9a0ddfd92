//! The deploy kit in `deploy/`: `local-cluster.sh` starts three NameServers running the
//! controller of automatic failover and two broker groups of two members each in controller
//! mode, the controller makes a master of each group, a send and a receive go through each
//! group, and the script stops everything; a second start on the same data forms the same
//! groups again, and `apogee cluster rolling-restart` restarts every member through the
//! script's `restart`; a folder of the earlier static layout is refused. The systemd units pass
//! `systemd-analyze verify`; the compose file and the Helm chart pass `docker compose config`
//! and `helm lint` where those tools are installed (the test prints SKIPPED where they are
//! not).

use apogee_tests::failover::DRAIN_MS;
use apogee_tests::{bins, cli, http, wait_until, CliOutput};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The script's processes: name and gRPC port (as an offset of the base port).
const PROCESSES: [(&str, u16); 7] = [
    ("nameserver-0", 0),
    ("nameserver-1", 1),
    ("nameserver-2", 2),
    ("broker-a-1", 10),
    ("broker-a-2", 11),
    ("broker-b-1", 20),
    ("broker-b-2", 21),
];

/// The broker groups, each with its members' ids (the script names a member
/// `<group>-<member id>`).
const GROUPS: [&str; 2] = ["broker-a", "broker-b"];
const MEMBER_IDS: [u64; 2] = [1, 2];

/// What the script adds to a gRPC port for the process's HTTP port.
const HTTP_OFFSET: u16 = 100;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

/// Whether `program args` runs and exits 0.
fn tool_works(program: &str, args: &[&str]) -> bool {
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

/// A base port for the script such that all fourteen of its ports (gRPC and HTTP) are free
/// now. Bases are drawn from 20000..30000, below Linux's ephemeral range (32768 and up) and
/// above the ports the harness hands the other tests' servers (`process::TEST_PORTS`), so no
/// cluster of another test can take them meanwhile. The blocks are 140 ports apart (a block
/// spans 122), and where the search starts comes from the process id, so two runs at once
/// most likely try different blocks first.
fn free_base_port() -> u16 {
    const BLOCKS: u16 = 70;
    let start = (std::process::id() % u32::from(BLOCKS)) as u16;
    for i in 0..BLOCKS {
        let base = 20_000 + (start + i) % BLOCKS * 140;
        let all_free = PROCESSES.iter().all(|(_, offset)| {
            [base + offset, base + offset + HTTP_OFFSET]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if all_free {
            return base;
        }
    }
    panic!("no block of free ports in 20000..30000 for deploy/local-cluster.sh");
}

/// A cluster started by `deploy/local-cluster.sh` in a temporary folder; stopped by the
/// script on drop, also when the test fails.
struct LocalCluster {
    dir: tempfile::TempDir,
    base: u16,
}

impl LocalCluster {
    fn new() -> Self {
        LocalCluster {
            dir: tempfile::tempdir().unwrap(),
            base: free_base_port(),
        }
    }

    /// Runs the script's `verb`; the brokers it starts drain [`DRAIN_MS`] after a handover
    /// at SIGTERM, not the default's 35 s.
    fn run(&self, verb: &str) -> Output {
        Command::new(repo().join("deploy/local-cluster.sh"))
            .arg(verb)
            .env("APOGEE_CLUSTER_DIR", self.dir.path())
            .env("APOGEE_CLUSTER_BASE_PORT", self.base.to_string())
            .env("APOGEE_BIN_DIR", bins::bin_dir())
            .env("APOGEE_BROKER_FAILOVER__DRAIN_MS", DRAIN_MS.to_string())
            .output()
            .expect("running deploy/local-cluster.sh")
    }

    /// The pids in the script's pid files.
    fn pids(&self) -> Vec<u32> {
        PROCESSES
            .iter()
            .filter_map(|(name, _)| {
                std::fs::read_to_string(self.dir.path().join(name).join("pid")).ok()
            })
            .map(|pid| pid.trim().parse().expect("a pid file holds a number"))
            .collect()
    }

    fn nameservers(&self) -> String {
        format!(
            "127.0.0.1:{};127.0.0.1:{};127.0.0.1:{}",
            self.base,
            self.base + 1,
            self.base + 2
        )
    }

    /// The gRPC address of a group's member.
    fn member_address(&self, group: &str, member: u64) -> String {
        let name = format!("{group}-{member}");
        let (_, offset) = PROCESSES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        format!("127.0.0.1:{}", self.base + offset)
    }

    fn cli(&self, args: &[&str]) -> CliOutput {
        let ns = self.nameservers();
        let mut full = vec!["--nameserver", ns.as_str()];
        full.extend_from_slice(args);
        cli::run(&full)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name).join("log")).unwrap_or_default()
    }

    /// Waits until the controller (as `apogee controller status` tells, confirmed by its
    /// leader) has made a master of each group and holds both members of each in its
    /// in-sync set; returns each group's master.
    async fn wait_for_masters(&self) -> BTreeMap<String, u64> {
        wait_until(
            Duration::from_secs(30),
            "the controller to make a master of each group, both members in sync",
            || {
                let out = self.cli(&["-o", "json", "controller", "status"]);
                async move { masters(&out) }
            },
        )
        .await
    }

    /// Waits until `cluster list` shows each group's master (as `masters` names them) as
    /// broker id 0 under its member id and the other member under its own id, in sync, each
    /// on the script's port.
    async fn wait_for_listing(&self, masters: &BTreeMap<String, u64>) {
        let want: Listed = masters
            .iter()
            .map(|(group, master)| {
                let members = MEMBER_IDS
                    .iter()
                    .map(|&member| {
                        let presented = if member == *master { 0 } else { member as i64 };
                        let role = if member == *master {
                            "sync-master"
                        } else {
                            "slave"
                        };
                        (
                            presented,
                            member as i64,
                            role.to_string(),
                            self.member_address(group, member),
                        )
                    })
                    .collect();
                (group.clone(), members)
            })
            .collect();
        wait_until(
            Duration::from_secs(30),
            "each group listed with its master and the other member in sync",
            || {
                let out = self.cli(&["-o", "json", "cluster", "list"]);
                let want = want.clone();
                async move {
                    let got = listed(&out)?;
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("{got:?}"))
                    }
                }
            },
        )
        .await;
    }

    /// `apogee cluster rolling-restart` with the script's `restart` as its restart command:
    /// every member restarted once, group after group, the slave first and the master last
    /// after a switch to the other member. Returns each group's master afterwards.
    fn rolling_restart(&self, masters: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let command = format!(
            "APOGEE_CLUSTER_DIR='{}' APOGEE_CLUSTER_BASE_PORT={} APOGEE_BIN_DIR='{}' \
             APOGEE_BROKER_FAILOVER__DRAIN_MS={DRAIN_MS} '{}' restart \"$APOGEE_GROUP-$APOGEE_MEMBER\"",
            self.dir.path().display(),
            self.base,
            bins::bin_dir().display(),
            repo().join("deploy/local-cluster.sh").display()
        );
        let ns = self.nameservers();
        let args = [
            "--nameserver",
            &ns,
            "-o",
            "json",
            "cluster",
            "rolling-restart",
        ];
        let run = [&args[..], &["--restart-command", &command]].concat();
        let out = cli::spawn(&run).wait(Duration::from_secs(300)).success();
        let other = |master: u64| if master == 1 { 2 } else { 1 };
        let turns: Vec<(String, u64, Option<u64>)> = out
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["group"].as_str().unwrap().into(),
                    t["member"].as_u64().unwrap(),
                    t["new_master"].as_u64(),
                )
            })
            .collect();
        let want: Vec<(String, u64, Option<u64>)> = masters
            .iter()
            .flat_map(|(g, &m)| [(g.clone(), other(m), None), (g.clone(), m, Some(other(m)))])
            .collect();
        assert_eq!(turns, want, "{out}");
        masters
            .iter()
            .map(|(g, &m)| (g.clone(), other(m)))
            .collect()
    }

    /// Stops the cluster and checks that nothing of it runs any more: exit 0, every process
    /// gone, no pid file left, status exits 3, and a second stop finds nothing to stop.
    fn stop_and_check(&self, pids: &[u32]) {
        let stopped = self.run("stop");
        assert!(stopped.status.success(), "{}", text(&stopped));
        let running: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        assert!(running.is_empty(), "still running after stop: {running:?}");
        assert!(self.pids().is_empty(), "pid files left: {:?}", self.pids());
        let status = self.run("status");
        assert_eq!(status.status.code(), Some(3), "{}", text(&status));
        let again = self.run("stop");
        assert!(again.status.success(), "{}", text(&again));
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("nothing runs"),
            "{}",
            text(&again)
        );
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// Whether a process runs (a zombie, exited but not yet reaped, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Each group's master from `controller status -o json`; an error until the leader
/// confirms a state where both groups have a master and both members in sync.
fn masters(status: &CliOutput) -> Result<BTreeMap<String, u64>, String> {
    if status.code != 0 {
        return Err(status.to_string());
    }
    let json: Value = serde_json::from_str(&status.stdout).map_err(|e| format!("{e}: {status}"))?;
    if json["stale"] != false {
        return Err(format!("not confirmed by the leader: {json}"));
    }
    let mut masters = BTreeMap::new();
    for group in json["groups"].as_array().into_iter().flatten() {
        let name = group["broker"].as_str().unwrap_or_default().to_string();
        let master = group["master"]
            .as_u64()
            .ok_or_else(|| format!("{name} has no master yet: {json}"))?;
        let in_sync: BTreeSet<u64> = group["in_sync"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        if in_sync != BTreeSet::from(MEMBER_IDS) {
            return Err(format!("{name}'s in-sync set is {in_sync:?}: {json}"));
        }
        masters.insert(name, master);
    }
    if masters.keys().map(String::as_str).collect::<Vec<_>>() != GROUPS {
        return Err(format!("groups {:?}: {json}", masters.keys()));
    }
    Ok(masters)
}

/// A group's members as `cluster list -o json` shows them: (presented id, member id, role,
/// endpoint); an error while a member is not in sync.
type Listed = BTreeMap<String, BTreeSet<(i64, i64, String, String)>>;

fn listed(out: &CliOutput) -> Result<Listed, String> {
    let rows: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {out}"))?;
    let mut groups = Listed::new();
    for r in rows.as_array().ok_or_else(|| out.to_string())? {
        // A slave counts once it has caught up with its master.
        if r["id"] != 0 && r["in_sync"] != true {
            return Err(format!("a slave not in sync yet: {r}"));
        }
        groups
            .entry(r["broker"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert((
                r["id"].as_i64().unwrap_or(-1),
                r["member_id"].as_i64().unwrap_or(-1),
                r["role"].as_str().unwrap_or_default().to_string(),
                r["endpoint"].as_str().unwrap_or_default().to_string(),
            ));
    }
    Ok(groups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_script_runs_the_controller_serves_each_group_and_stops_cleanly() {
    let lc = LocalCluster::new();
    let started = lc.run("start");
    assert!(started.status.success(), "{}", text(&started));
    let out = String::from_utf8_lossy(&started.stdout).into_owned();
    assert!(
        out.contains(&format!("export APOGEE_NAMESERVER='{}'", lc.nameservers())),
        "{out}"
    );
    for group in GROUPS {
        for member in MEMBER_IDS {
            let line = format!("member {member} of {group}");
            assert!(out.contains(&line), "{line:?} not printed: {out}");
        }
    }
    let status = lc.run("status");
    assert!(status.status.success(), "{}", text(&status));
    let again = lc.run("start");
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already runs"),
        "{}",
        text(&again)
    );
    let pids = lc.pids();
    assert_eq!(pids.len(), PROCESSES.len(), "{pids:?}");

    // Every process serves its HTTP endpoint at its gRPC port + 100, as the script prints.
    for (name, offset) in PROCESSES {
        let addr = format!("127.0.0.1:{}", lc.base + offset + HTTP_OFFSET);
        assert!(out.contains(&addr), "{name}'s {addr} not printed: {out}");
        // A slave is ready once the controller counts it in its group's in-sync set: soon
        // after the start, not necessarily by the time the script returns.
        wait_until(
            Duration::from_secs(30),
            &format!("{name} /readyz"),
            || async {
                let (code, body) = http::get(&addr, "/readyz").await;
                (code == 200).then_some(()).ok_or(body)
            },
        )
        .await;
        let (code, _) = http::get(&addr, "/metrics").await;
        assert_eq!(code, 200, "{name} /metrics");
    }

    // The controller made a master of each group; the script printed that one (it waits for
    // the masters since the CLI is beside the servers), and so does status.
    let masters = lc.wait_for_masters().await;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    for (group, master) in &masters {
        let line = format!(
            "{group} member {master} {}",
            lc.member_address(group, *master)
        );
        assert!(out.contains(&line), "{line:?} not printed by start: {out}");
        assert!(
            status.contains(&line),
            "{line:?} not printed by status: {status}"
        );
    }
    // Each NameServer keeps its Raft data in its folder.
    for ns in ["nameserver-0", "nameserver-1", "nameserver-2"] {
        let raft = lc.dir.path().join(ns).join("controller");
        let entries = std::fs::read_dir(&raft).map(|d| d.count()).unwrap_or(0);
        assert!(entries > 0, "no Raft data in {}", raft.display());
    }

    // The NameServers present each group's master as broker id 0 (under its member id) and
    // the other member under its own id, in sync, on the script's ports.
    lc.wait_for_listing(&masters).await;

    // A topic on both groups, a send and a receive through each.
    let created = lc
        .cli(&["-o", "json", "topic", "create", "kit-t", "--queues", "2"])
        .success();
    for group in GROUPS {
        assert!(created.stdout.contains(group), "{created}");
    }
    let sent = lc
        .cli(&[
            "-o", "json", "send", "--topic", "kit-t", "--body", "hi", "--count", "8",
        ])
        .success()
        .json();
    let sent_by_group: BTreeMap<String, usize> =
        sent.as_array()
            .unwrap()
            .iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r["broker"].as_str().unwrap().to_string())
                    .or_default() += 1;
                m
            });
    assert_eq!(sent_by_group.keys().collect::<Vec<_>>(), GROUPS, "{sent}");
    let got = lc
        .cli(&[
            "-o", "json", "consume", "--topic", "kit-t", "--group", "kit-g", "--max", "8",
            "--wait", "10",
        ])
        .success()
        .json();
    let rows = got.as_array().unwrap();
    assert!(rows.iter().all(|r| r["body"] == "hi"), "{got}");
    let got_by_group: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["broker"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    assert_eq!(got_by_group, sent_by_group, "{got}");

    // Stop: members first (they unregister), then the NameServers; nothing left running.
    lc.stop_and_check(&pids);
    for group in GROUPS {
        for member in MEMBER_IDS {
            let name = format!("{group}-{member}");
            let log = lc.log(&name);
            assert!(log.contains("broker stopped"), "{name}: {log}");
            assert!(!log.contains("unregister failed"), "{name}: {log}");
        }
    }

    // A second start on the same data: the NameServers' Raft group comes back from its
    // data with the groups it knew, each group's master serves again (registered as broker
    // id 0, the other member in sync), and stop again leaves nothing running.
    let restarted = lc.run("start");
    assert!(restarted.status.success(), "{}", text(&restarted));
    assert!(
        !String::from_utf8_lossy(&restarted.stdout).contains("already runs"),
        "{}",
        text(&restarted)
    );
    let again = lc.wait_for_masters().await;
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        masters.keys().collect::<Vec<_>>()
    );
    lc.wait_for_listing(&again).await;
    // A rolling restart of every member through the script: each group's other member
    // leads afterwards, and the routes say so.
    let switched = lc.rolling_restart(&again);
    lc.wait_for_listing(&switched).await;
    let pids = lc.pids();
    assert_eq!(pids.len(), PROCESSES.len(), "{pids:?}");
    lc.stop_and_check(&pids);
}

/// A folder of the earlier layout (static roles: a master of broker id 0 in broker-a-0)
/// holds stores that are not members of a controller-run group: start refuses it and starts
/// nothing.
#[test]
fn local_cluster_script_refuses_a_folder_of_the_static_layout() {
    let lc = LocalCluster::new();
    std::fs::create_dir_all(lc.dir.path().join("broker-a-0/data")).unwrap();
    let out = lc.run("start");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds a cluster of static roles"),
        "{}",
        text(&out)
    );
    assert!(lc.pids().is_empty(), "started: {:?}", lc.pids());
    assert!(
        !lc.dir.path().join("nameserver-0").exists(),
        "{}",
        text(&out)
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !tool_works("systemd-analyze", &["--version"]) {
        println!("SKIPPED: systemd-analyze not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = bins::bin_dir();
    for (unit, as_name) in [
        ("apogee-nameserver.service", "apogee-nameserver.service"),
        ("apogee-broker@.service", "apogee-broker@broker-a.service"),
    ] {
        let unit_text = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
        // The units name the installed binaries; verify them against the built ones.
        let local = unit_text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
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

/// The `APOGEE_*` environment of each service in `docker compose config`'s output (anchors
/// resolved): service name to variable to value, quotes removed.
fn compose_environments(config: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut services = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_services = false;
    for line in config.lines() {
        if !line.starts_with(' ') {
            in_services = line == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 2 {
            let name = line.trim().trim_end_matches(':').to_string();
            services.insert(name.clone(), BTreeMap::new());
            current = Some(name);
        } else if let (Some(service), Some((key, value))) =
            (current.as_ref(), line.trim().split_once(": "))
        {
            if key.starts_with("APOGEE_") {
                let value = value.trim_matches(|c| c == '\'' || c == '"').to_string();
                services
                    .get_mut(service)
                    .unwrap()
                    .insert(key.to_string(), value);
            }
        }
    }
    services
}

/// The compose file's services are the script's processes, and run the same layout: the
/// NameServers voters of one controller group (node ids 1..3, every one listing all three),
/// each group's members in controller mode under their member ids.
fn check_compose_layout(program: &str, sub: &[&str]) {
    let compose = repo().join("deploy/docker/compose.yaml");
    let out = Command::new(program)
        .args(sub)
        .arg("-f")
        .arg(&compose)
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} config: {}", text(&out));
    let config = String::from_utf8_lossy(&out.stdout);
    let env = compose_environments(&config);
    let want: BTreeSet<&str> = PROCESSES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        env.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        want,
        "{config}"
    );
    let voters = "1=nameserver-0:9876,2=nameserver-1:9876,3=nameserver-2:9876";
    for i in 0..3 {
        let e = &env[&format!("nameserver-{i}")];
        let get = |k: &str| {
            e.get(&format!("APOGEE_NAMESERVER_CONTROLLER__{k}"))
                .cloned()
        };
        assert_eq!(get("ENABLED").as_deref(), Some("true"), "{e:?}");
        assert_eq!(get("NODE_ID"), Some((i + 1).to_string()), "{e:?}");
        assert_eq!(get("PEERS").as_deref(), Some(voters), "{e:?}");
        let data = get("DATA_DIR").unwrap_or_default();
        assert!(data.starts_with("/var/lib/apogee/"), "{e:?}");
        assert!(
            config.contains(&format!("- nameserver-{i}:/var/lib/apogee")),
            "nameserver-{i}'s Raft data on no volume: {config}"
        );
    }
    for group in GROUPS {
        for member in MEMBER_IDS {
            let name = format!("{group}-{member}");
            let e = &env[&name];
            let get = |k: &str| e.get(&format!("APOGEE_BROKER_{k}")).cloned();
            assert_eq!(
                get("FAILOVER__CONTROLLER_MODE").as_deref(),
                Some("true"),
                "{name}: {e:?}"
            );
            assert_eq!(get("BROKER_ID"), Some(member.to_string()), "{name}: {e:?}");
            assert_eq!(get("BROKER_NAME").as_deref(), Some(group), "{name}: {e:?}");
            assert_eq!(
                get("NAMESERVERS").as_deref(),
                Some("nameserver-0:9876,nameserver-1:9876,nameserver-2:9876"),
                "{name}: {e:?}"
            );
            assert_eq!(get("ROLE"), None, "{name}: {e:?}");
        }
    }
}

#[test]
fn compose_file_and_helm_chart_are_valid_where_the_tools_exist() {
    // Compose v2 (the docker plugin), else v1 (docker-compose).
    let checker: Option<(&str, &[&str])> = if tool_works("docker", &["compose", "version"]) {
        Some(("docker", &["compose"]))
    } else if tool_works("docker-compose", &["version"]) {
        Some(("docker-compose", &[]))
    } else {
        None
    };
    match checker {
        Some((program, sub)) => check_compose_layout(program, sub),
        None if tool_works("docker", &["--version"]) => {
            println!("SKIPPED: docker compose not installed (docker has no compose plugin)")
        }
        None => println!("SKIPPED: docker not installed"),
    }

    if tool_works("helm", &["version"]) {
        let chart = repo().join("deploy/helm/apogee");
        let out = Command::new("helm")
            .arg("lint")
            .arg(&chart)
            .output()
            .unwrap();
        assert!(out.status.success(), "helm lint: {}", text(&out));
        let render = |extra: &[&str]| {
            let out = Command::new("helm")
                .args(["template", "t"])
                .arg(&chart)
                .args(extra)
                .output()
                .unwrap();
            assert!(out.status.success(), "helm template: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let kinds = |rendered: &str, kind: &str| {
            rendered
                .lines()
                .filter(|l| *l == format!("kind: {kind}"))
                .count()
        };
        // The NameServers and each broker group a StatefulSet with a PodDisruptionBudget;
        // the controller on, the members in controller mode, spread over nodes.
        let rendered = render(&[]);
        assert_eq!(kinds(&rendered, "Deployment"), 0, "{rendered}");
        assert_eq!(kinds(&rendered, "StatefulSet"), 3, "{rendered}");
        assert_eq!(kinds(&rendered, "PodDisruptionBudget"), 3, "{rendered}");
        assert_eq!(kinds(&rendered, "ServiceMonitor"), 0, "{rendered}");
        assert_eq!(
            rendered.matches("maxUnavailable: 1").count(),
            3,
            "{rendered}"
        );
        assert_eq!(
            rendered
                .matches("APOGEE_BROKER_FAILOVER__CONTROLLER_MODE, value: \"true\"")
                .count(),
            2,
            "{rendered}"
        );
        assert_eq!(
            rendered
                .matches("APOGEE_NAMESERVER_CONTROLLER__ENABLED, value: \"true\"")
                .count(),
            1,
            "{rendered}"
        );
        assert_eq!(
            rendered
                .matches("requiredDuringSchedulingIgnoredDuringExecution")
                .count(),
            3,
            "{rendered}"
        );
        let rendered = render(&[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "broker.antiAffinity=preferred",
        ]);
        assert_eq!(kinds(&rendered, "ServiceMonitor"), 1, "{rendered}");
        assert_eq!(
            rendered
                .matches("preferredDuringSchedulingIgnoredDuringExecution")
                .count(),
            2,
            "{rendered}"
        );
    } else {
        println!("SKIPPED: helm not installed");
    }
}

/// Release binaries (what `cargo build --release`, the Dockerfile and the systemd guide
/// install) carry neither debug info nor a symbol table; the `profiling` profile is the same
/// build with symbols and line tables for `perf`.
#[test]
fn release_binaries_ship_stripped_and_the_profiling_profile_keeps_symbols() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("Cargo.toml parses");
    let profile = |name: &str| {
        manifest["profile"]
            .get(name)
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| panic!("no [profile.{name}]"))
            .clone()
    };
    let release = profile("release");
    let strip = release.get("strip").map(toml::Value::to_string);
    assert!(
        matches!(strip.as_deref(), Some("true") | Some("\"symbols\"")),
        "[profile.release] strip = {strip:?}"
    );
    let no_debug = |p: &toml::Table| {
        p.get("debug").is_none_or(|d| {
            d.as_integer() == Some(0) || d.as_bool() == Some(false) || d.as_str() == Some("none")
        })
    };
    assert!(no_debug(&release), "[profile.release] keeps debug info");
    let profiling = profile("profiling");
    assert_eq!(
        profiling.get("inherits").and_then(toml::Value::as_str),
        Some("release")
    );
    assert!(
        !no_debug(&profiling),
        "[profile.profiling] has no debug info"
    );
    assert_eq!(
        profiling.get("strip").and_then(toml::Value::as_bool),
        Some(false)
    );
}

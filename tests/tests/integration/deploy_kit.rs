//! The deploy kit in `deploy/`: `local-cluster.sh` starts two NameServers and two broker
//! groups (a master and a slave each), serves a send and a receive through each group and
//! stops cleanly; the systemd units pass `systemd-analyze verify`; the compose file and the
//! Helm chart pass `docker compose config` and `helm lint` where those tools are installed
//! (the test prints SKIPPED where they are not).

use apogee_tests::{bins, cli, http, wait_until, CliOutput};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The script's processes: name and gRPC port (as an offset of the base port).
const PROCESSES: [(&str, u16); 6] = [
    ("nameserver-0", 0),
    ("nameserver-1", 1),
    ("broker-a-0", 10),
    ("broker-a-1", 11),
    ("broker-b-0", 20),
    ("broker-b-1", 21),
];

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

/// A base port for the script such that all twelve of its ports (gRPC and HTTP) are free
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

    fn run(&self, verb: &str) -> Output {
        Command::new(repo().join("deploy/local-cluster.sh"))
            .arg(verb)
            .env("APOGEE_CLUSTER_DIR", self.dir.path())
            .env("APOGEE_CLUSTER_BASE_PORT", self.base.to_string())
            .env("APOGEE_BIN_DIR", bins::bin_dir())
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
        format!("127.0.0.1:{};127.0.0.1:{}", self.base, self.base + 1)
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

/// Broker groups by name, each with its members' (id, role, endpoint).
type Groups = BTreeMap<String, BTreeSet<(i64, String, String)>>;

/// The broker groups `cluster list -o json` printed; an error while a slave is not in sync.
fn members(listed: &CliOutput) -> Result<Groups, String> {
    let rows: Value = serde_json::from_str(&listed.stdout).map_err(|e| format!("{e}: {listed}"))?;
    let mut groups = Groups::new();
    for r in rows.as_array().ok_or_else(|| listed.to_string())? {
        // A slave counts once it has caught up with its master.
        if r["role"] == "slave" && r["in_sync"] != true {
            return Err(format!("a slave not in sync yet: {r}"));
        }
        groups
            .entry(r["broker"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert((
                r["id"].as_i64().unwrap_or(-1),
                r["role"].as_str().unwrap_or_default().to_string(),
                r["endpoint"].as_str().unwrap_or_default().to_string(),
            ));
    }
    Ok(groups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_script_starts_serves_each_group_and_stops_cleanly() {
    let lc = LocalCluster::new();
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
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already runs"),
        "{}",
        text(&again)
    );
    let pids = lc.pids();
    assert_eq!(pids.len(), 6, "{pids:?}");

    // Every process serves its HTTP endpoint at its gRPC port + 100, as the script prints.
    for (name, offset) in PROCESSES {
        let addr = format!("127.0.0.1:{}", lc.base + offset + HTTP_OFFSET);
        assert!(out.contains(&addr), "{name}'s {addr} not printed: {out}");
        let (code, body) = http::get(&addr, "/readyz").await;
        assert_eq!(code, 200, "{name} /readyz: {body}");
        let (code, _) = http::get(&addr, "/metrics").await;
        assert_eq!(code, 200, "{name} /metrics");
    }

    // Each group: its master (id 0) and its slave (id 1) on the script's ports, the slave in sync.
    let want: Groups = ["broker-a", "broker-b"]
        .iter()
        .map(|group| {
            let port = |id: u16| {
                let (_, offset) = PROCESSES
                    .iter()
                    .find(|(n, _)| *n == format!("{group}-{id}"))
                    .unwrap();
                format!("127.0.0.1:{}", lc.base + offset)
            };
            let group_members = BTreeSet::from([
                (0, "async-master".to_string(), port(0)),
                (1, "slave".to_string(), port(1)),
            ]);
            (group.to_string(), group_members)
        })
        .collect();
    wait_until(
        Duration::from_secs(30),
        "each group listed with its master and its slave in sync",
        || {
            let listed = lc.cli(&["-o", "json", "cluster", "list"]);
            let want = want.clone();
            async move {
                let got = members(&listed)?;
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        },
    )
    .await;

    // A topic on both groups, a send and a receive through each.
    let created = lc
        .cli(&["-o", "json", "topic", "create", "kit-t", "--queues", "2"])
        .success();
    for group in ["broker-a", "broker-b"] {
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
    assert_eq!(
        sent_by_group.keys().collect::<Vec<_>>(),
        ["broker-a", "broker-b"],
        "{sent}"
    );
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

    // Stop: exit 0, every process gone (brokers unregistered first), status exits 3, and a
    // second stop finds nothing to stop.
    let stopped = lc.run("stop");
    assert!(stopped.status.success(), "{}", text(&stopped));
    let running: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(running.is_empty(), "still running after stop: {running:?}");
    assert!(lc.pids().is_empty(), "pid files left: {:?}", lc.pids());
    let status = lc.run("status");
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    let again = lc.run("stop");
    assert!(again.status.success(), "{}", text(&again));
    for name in ["broker-a-0", "broker-a-1", "broker-b-0", "broker-b-1"] {
        let log = lc.log(name);
        assert!(log.contains("broker stopped"), "{name}: {log}");
        assert!(!log.contains("unregister failed"), "{name}: {log}");
    }
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

#[test]
fn compose_file_and_helm_chart_are_valid_where_the_tools_exist() {
    let compose = repo().join("deploy/docker/compose.yaml");
    // Compose v2 (the docker plugin), else v1 (docker-compose).
    let checker: Option<(&str, &[&str])> = if tool_works("docker", &["compose", "version"]) {
        Some(("docker", &["compose"]))
    } else if tool_works("docker-compose", &["version"]) {
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
                .args(["config", "--services"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{program} config: {}", text(&out));
            let services: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            let want: BTreeSet<String> = PROCESSES.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(services, want, "{}", text(&out));
        }
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
        let out = Command::new("helm")
            .args(["template", "t"])
            .arg(&chart)
            .output()
            .unwrap();
        assert!(out.status.success(), "helm template: {}", text(&out));
        let rendered = String::from_utf8_lossy(&out.stdout);
        // Two NameServers as Deployments, the two broker groups as StatefulSets.
        assert_eq!(
            rendered.matches("kind: Deployment").count(),
            2,
            "{rendered}"
        );
        assert_eq!(
            rendered.matches("kind: StatefulSet").count(),
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

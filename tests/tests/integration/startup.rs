//! `apogee-broker` start-up failures: one clear line on stderr that names the problem and
//! the data dir, no backtrace even with RUST_BACKTRACE set, exit status 1.

use apogee_tests::{bins, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn broker(data_dir: &std::path::Path) -> Command {
    broker_on(data_dir, "127.0.0.1:0")
}

fn broker_on(data_dir: &std::path::Path, listen: &str) -> Command {
    let mut c = Command::new(bins::bin(bins::BROKER));
    c.env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .env("APOGEE_BROKER_HTTP_LISTEN", "127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        // Any free port; no NameServer is needed to start (registration retries).
        .args(["--listen", listen, "--nameserver", "127.0.0.1:1"]);
    c
}

/// Spawns `broker` logging to `log` and waits until its store is open.
async fn started(mut broker: Command, log: &std::path::Path) -> Running {
    let file = std::fs::File::create(log).unwrap();
    let running = Running(
        broker
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap(),
    );
    wait_until(
        Duration::from_secs(60),
        "the broker's store to open",
        || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            async move {
                if text.contains("message store opened") {
                    Ok(())
                } else {
                    Err(text)
                }
            }
        },
    )
    .await;
    running
}

/// Kills a broker when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_data_dir_in_use_by_another_broker_is_refused_in_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The first broker holds the data dir once its store is open.
    let _first = started(broker(&data), &dir.path().join("first.log")).await;

    let out = broker(&data).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains("in use by another broker")
            && last.contains(&data.display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("acktrace"), "{stderr}");
}

/// A NameServer on port 0 of `listen_ip`, with the environment given.
fn nameserver(listen_ip: &str) -> Command {
    let mut c = Command::new(bins::bin(bins::NAMESERVER));
    c.env_remove("RUST_LOG")
        .env("APOGEE_NAMESERVER_HTTP_LISTEN", "127.0.0.1:0")
        .args(["--listen", &format!("{listen_ip}:0")]);
    c
}

#[tokio::test]
async fn a_non_loopback_listen_without_authentication_refuses_to_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    // The broker: refused before anything is bound or opened, saying how to fix it.
    let out = broker_on(&dir.path().join("data"), "0.0.0.0:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reachable from other hosts"), "{stderr}");
    assert!(
        stderr.contains("security.allow_anonymous = true"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");
    // Allowed: it starts (and is stopped here once its store is open).
    let mut allowed = broker_on(&dir.path().join("data"), "0.0.0.0:0");
    allowed.env("APOGEE_BROKER_SECURITY__ALLOW_ANONYMOUS", "true");
    let _allowed = started(allowed, &dir.path().join("allowed.log")).await;

    // The NameServer the same way.
    let out = nameserver("0.0.0.0").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("APOGEE_NAMESERVER_SECURITY__ALLOW_ANONYMOUS"),
        "{stderr}"
    );
    let out = nameserver("0.0.0.0")
        .env("APOGEE_NAMESERVER_SECURITY__ALLOW_ANONYMOUS", "true")
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn authentication_allows_a_non_loopback_listen_and_needs_its_admin_and_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.secret");
    std::fs::write(&admin, "an-admin-secret\n").unwrap();
    let cluster = dir.path().join("cluster.secret");
    std::fs::write(&cluster, "a-cluster-secret-of-16-bytes-or-more").unwrap();
    let with_auth = |admin_file: &std::path::Path| {
        let mut c = nameserver("0.0.0.0");
        c.env("APOGEE_NAMESERVER_SECURITY__AUTHENTICATION", "true")
            .env("APOGEE_NAMESERVER_SECURITY__ADMIN_ACCESS_KEY", "root")
            .env("APOGEE_NAMESERVER_SECURITY__ADMIN_SECRET_FILE", admin_file)
            .env("APOGEE_NAMESERVER_SECURITY__CLUSTER_SECRET_FILE", &cluster)
            .arg("--check-config");
        c
    };
    // The refusal names authentication as a fix.
    let out = nameserver("0.0.0.0").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("security.authentication"), "{stderr}");
    // With authentication, no allow_anonymous is needed.
    let out = with_auth(&admin).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("an-admin-secret"),
        "the printed config never shows the secret: {stdout}"
    );
    // Its admin's secret file must exist; the error names it.
    let missing = dir.path().join("no-such.secret");
    let out = with_auth(&missing).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such.secret"), "{stderr}");
}

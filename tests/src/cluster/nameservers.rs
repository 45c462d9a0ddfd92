//! The cluster's NameServer processes: starting them, waiting until they
//! answer, SIGKILLing and restarting them on the same port, and the
//! addresses clients, brokers and admin calls use.

use super::{wait_for_port, Cluster, START_TIMEOUT};
use crate::bins;
use crate::process::{free_port, ManagedProcess};
use crate::rpc;
use apogee_proto::cluster::GetClusterInfoRequest;
use std::path::Path;
use std::time::{Duration, Instant};

/// One NameServer process.
pub(crate) struct NameServer {
    pub(crate) addr: String,
    /// Its HTTP endpoint (metrics, health).
    pub(crate) http_addr: String,
    pub(crate) process: ManagedProcess,
    /// Whether it was killed (and not restarted since).
    pub(crate) down: bool,
    /// TLS trusting the cluster's CA (none: plain text).
    pub(crate) tls: Option<apogee_client::ClientTls>,
}

impl NameServer {
    /// Spawns NameServer number `i` of `n` on a free port, logging to
    /// `nameserver.log` (the first) or `nameserver-<i>.log`.
    pub(crate) fn spawn(
        dir: &Path,
        i: usize,
        env: &[(String, String)],
        tls: Option<apogee_client::ClientTls>,
    ) -> NameServer {
        Self::spawn_at(dir, i, format!("127.0.0.1:{}", free_port()), env, tls)
    }

    /// [`NameServer::spawn`] on `addr` (chosen beforehand: the controller's voters name
    /// each other).
    pub(crate) fn spawn_at(
        dir: &Path,
        i: usize,
        addr: String,
        env: &[(String, String)],
        tls: Option<apogee_client::ClientTls>,
    ) -> NameServer {
        let (label, log) = if i == 0 {
            ("nameserver".to_string(), dir.join("nameserver.log"))
        } else {
            (
                format!("nameserver {i}"),
                dir.join(format!("nameserver-{i}.log")),
            )
        };
        let http_addr = format!("127.0.0.1:{}", free_port());
        let mut env = env.to_vec();
        env.insert(
            0,
            (
                "APOGEE_NAMESERVER_HTTP_LISTEN".to_string(),
                http_addr.clone(),
            ),
        );
        let process = ManagedProcess::spawn(
            label,
            bins::bin(bins::NAMESERVER),
            vec!["--listen".into(), addr.clone()],
            env,
            log,
        );
        NameServer {
            addr,
            http_addr,
            process,
            down: false,
            tls,
        }
    }

    /// Waits until it accepts connections and answers GetClusterInfo.
    pub(crate) async fn wait_ready(&mut self) {
        wait_for_port(&mut self.process, &self.addr).await;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut registry = rpc::registry_with(&self.addr, self.tls.as_ref());
        loop {
            self.process.assert_running();
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                registry.get_cluster_info(rpc::signed(GetClusterInfoRequest {})),
            )
            .await;
            if matches!(r, Ok(Ok(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never answered GetClusterInfo: {r:?}",
                self.process.label()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Cluster {
    /// The first NameServer's `127.0.0.1:port`.
    pub fn ns_addr(&self) -> &str {
        &self.nameservers[0].addr
    }

    /// Every NameServer's `127.0.0.1:port`, running or not, in start order.
    pub fn ns_addrs(&self) -> Vec<String> {
        self.nameservers.iter().map(|n| n.addr.clone()).collect()
    }

    /// The NameServers not killed, in start order.
    pub fn live_ns_addrs(&self) -> Vec<String> {
        self.nameservers
            .iter()
            .filter(|n| !n.down)
            .map(|n| n.addr.clone())
            .collect()
    }

    /// The NameServer admin calls and the CLI go to: the first one running.
    pub(crate) fn admin_ns(&self) -> &str {
        self.nameservers
            .iter()
            .find(|n| !n.down)
            .map(|n| n.addr.as_str())
            .expect("every NameServer of the cluster is down")
    }

    /// An apogee-client configuration with every NameServer as an access point.
    pub fn client_config(&self) -> apogee_client::ClientConfig {
        let mut config = apogee_client::ClientConfig::new(self.ns_addrs().join(","));
        config.tls = self.client_tls();
        if self.authenticates() {
            config = config.with_credentials(rpc::admin_credentials());
        }
        config
    }

    /// Everything NameServer `i` logged so far (across restarts).
    /// `127.0.0.1:port` of NameServer `i`'s HTTP endpoint (metrics, health).
    pub fn nameserver_http_addr(&self, i: usize) -> &str {
        &self.nameserver(i).http_addr
    }

    pub fn nameserver_log(&self, i: usize) -> String {
        self.nameserver(i).process.log_text()
    }

    fn nameserver(&self, i: usize) -> &NameServer {
        self.nameservers
            .get(i)
            .unwrap_or_else(|| panic!("no NameServer #{i}"))
    }

    fn nameserver_mut(&mut self, i: usize) -> &mut NameServer {
        self.nameservers
            .get_mut(i)
            .unwrap_or_else(|| panic!("no NameServer #{i}"))
    }

    /// SIGHUPs NameServer `i` (with TLS, it reloads its certificate).
    #[cfg(unix)]
    pub fn hangup_nameserver(&mut self, i: usize) {
        self.nameserver_mut(i).process.hangup();
    }

    /// SIGKILLs NameServer `i` (it forgets every registration).
    pub fn kill_nameserver(&mut self, i: usize) {
        let ns = self.nameserver_mut(i);
        ns.process.kill();
        ns.down = true;
    }

    /// Starts a killed NameServer again on the same port and waits until it answers
    /// (it knows no broker until they register again).
    pub async fn restart_nameserver(&mut self, i: usize) {
        let ns = self.nameserver_mut(i);
        assert!(ns.down, "NameServer #{i} is running");
        ns.process.start();
        ns.wait_ready().await;
        ns.down = false;
    }
}

impl Cluster {
    /// Starts one more NameServer (plain text, without the cluster's security settings)
    /// and waits until it answers; returns its address. The brokers running now do not
    /// know it (they keep the NameServers they started with); brokers started later are
    /// given it.
    pub async fn add_nameserver(&mut self) -> String {
        assert!(
            self.tls.certs.is_none() && !self.authenticates(),
            "add_nameserver serves plain clusters only"
        );
        let mut ns = NameServer::spawn(self.root.path(), self.nameservers.len(), &[], None);
        ns.wait_ready().await;
        let addr = ns.addr.clone();
        self.nameservers.push(ns);
        addr
    }
}

//! NameServers and broker groups as real processes on free loopback ports.
//!
//! ```no_run
//! # async fn demo() {
//! use apogee_tests::{BrokerSpec, Cluster};
//! let mut cluster = Cluster::builder()
//!     .nameservers(2)
//!     .broker(BrokerSpec::new("broker-a").env("STORE__FLUSH", "sync"))
//!     .broker(BrokerSpec::member("group-b", 0).role("sync_master"))
//!     .broker(BrokerSpec::member("group-b", 1))
//!     .start()
//!     .await;
//! cluster.create_topic("orders", 4).await;
//! cluster.kill_broker("broker-a");
//! cluster.restart_broker("broker-a").await;
//! cluster.pause_broker("group-b-1");
//! cluster.resume_broker("group-b-1");
//! cluster.kill_nameserver(0);
//! cluster.restart_nameserver(0).await;
//! # }
//! ```
//!
//! Everything lives in one temporary directory: `nameserver.log` (and
//! `nameserver-<i>.log` for the others), and per broker `<name>/data` and
//! `<name>/broker.log` (a broker started with its own data dir logs to
//! `<name>-<n>.log`). Brokers are given every NameServer. A broker counts as
//! started once its port accepts connections, it answers a Heartbeat, and
//! every running NameServer's cluster info shows it registered since it was
//! (re)started; none of that is master-only, so slaves start the same way.
//!
//! - [`spec`]: how to start a broker and the handle of a started one.
//! - [`nameservers`]: the NameServer processes, killed and restarted.
//! - [`topics`]: topics created through the Admin service; the CLI.
//!
//! With [`ClusterBuilder::tls`] every server serves TLS with a certificate of a test CA
//! ([`crate::certs`], made in `<dir>/certs`) and connects to the others with it; the
//! harness's own clients (readiness checks, topic creation, the CLI, [`Cluster::client_config`])
//! use it too. [`ClusterBuilder::cluster_mtls`] adds mutual TLS for cluster-internal calls.
//!
//! With [`ClusterBuilder::authentication`] every server checks credentials, with a cluster
//! secret and the harness's admin ([`rpc::ADMIN_ACCESS_KEY`]); the harness signs its own
//! calls (they always are: servers without authentication ignore the header), and
//! [`Cluster::client_config`] and [`Cluster::cli`] carry the admin's credentials.

mod controllers;
mod groups;
mod nameservers;
mod spec;
mod topics;

pub use controllers::CONTROLLER_BIN;
pub(crate) use nameservers::NameServer;
pub use spec::{Broker, BrokerSpec};
pub(crate) use topics::{create_and_wait, TopicSpec};

use crate::bins;
use crate::certs::TestCerts;
use crate::process::{free_port, ManagedProcess};
use crate::rpc;
use apogee_client::ClientTls;
use apogee_proto::cluster::GetClusterInfoRequest;
use apogee_proto::time::now_ms;
use apogee_proto::v2;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to come up (debug builds, cold RocksDB).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Collects the NameServer count and broker specs, then starts everything.
pub struct ClusterBuilder {
    nameservers: usize,
    nameserver_env: Vec<(String, String)>,
    brokers: Vec<BrokerSpec>,
    tls: TlsSetup,
    authentication: bool,
    controller: bool,
    /// Controllers run as their own processes (0: none).
    controller_processes: usize,
}

/// Whether the servers serve TLS, and check client certificates on cluster calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsSetup {
    Off,
    On,
    ClusterMtls,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            nameservers: 1,
            nameserver_env: Vec::new(),
            brokers: Vec::new(),
            tls: TlsSetup::Off,
            authentication: false,
            controller: false,
            controller_processes: 0,
        }
    }
}

impl ClusterBuilder {
    /// Runs `n` NameServers (default 1; at least 1).
    pub fn nameservers(mut self, n: usize) -> Self {
        assert!(n >= 1, "a cluster needs at least one NameServer");
        self.nameservers = n;
        self
    }

    /// Sets `APOGEE_NAMESERVER_<key>` on every NameServer.
    pub fn nameserver_env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.nameserver_env
            .push((format!("APOGEE_NAMESERVER_{key}"), value.into()));
        self
    }

    pub fn broker(mut self, spec: BrokerSpec) -> Self {
        self.brokers.push(spec);
        self
    }

    /// Every server serves TLS (and connects to the others with it).
    pub fn tls(mut self) -> Self {
        self.tls = TlsSetup::On;
        self
    }

    /// TLS, and cluster-internal calls only from callers with a client certificate of the
    /// test CA (`tls.cluster_mtls`); the brokers present the server certificate.
    pub fn cluster_mtls(mut self) -> Self {
        self.tls = TlsSetup::ClusterMtls;
        self
    }

    /// Every server checks the credentials of every call (`security.authentication`, with a
    /// cluster secret and the harness's admin as the bootstrap admin).
    pub fn authentication(mut self) -> Self {
        self.authentication = true;
        self
    }

    /// Every NameServer runs the embedded controller (`[controller] enabled`), the
    /// NameServers its voters (node ids 1..=n), each with its Raft data in
    /// `<cluster dir>/controller-<i>`. Brokers made with [`BrokerSpec::controlled`] take
    /// their roles from it.
    pub fn controller(mut self) -> Self {
        self.controller = true;
        self
    }

    /// Runs `n` controllers as their own processes (`apogee-controller`, voters 1..=n, see
    /// [`controllers`]) and gives every NameServer their addresses (`[controller]
    /// endpoints`) instead of an embedded controller. Not with [`ClusterBuilder::controller`].
    pub fn controller_processes(mut self, n: usize) -> Self {
        assert!(n >= 1, "a controller group needs at least one voter");
        self.controller_processes = n;
        self
    }

    /// Starts the NameServers, then every broker in order, and waits until all are up.
    pub async fn start(self) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("apogee-test-")
            .tempdir()
            .expect("creating a temp dir");
        let certs =
            (self.tls != TlsSetup::Off).then(|| TestCerts::create(&root.path().join("certs")));
        let tls = TlsEnv {
            certs,
            cluster_mtls: self.tls == TlsSetup::ClusterMtls,
        };
        let security = if self.authentication {
            let secret = root.path().join("cluster.secret");
            std::fs::write(&secret, "a-cluster-secret-of-the-harness").expect("cluster secret");
            rpc::admin_security_env(root.path(), &secret.display().to_string())
        } else {
            Vec::new()
        };
        let prefixed = |server: &'static str| {
            security
                .iter()
                .map(move |(k, v)| (format!("APOGEE_{server}_{k}"), v.clone()))
        };
        assert!(
            !(self.controller && self.controller_processes > 0),
            "the controller is embedded or run as its own processes, not both"
        );
        let controller_addrs = controllers::controller_addresses(self.controller_processes);
        let mut controllers = Vec::new();
        let secret_file = root.path().join("cluster.secret");
        for i in 0..self.controller_processes {
            let secret = self.authentication.then_some(secret_file.as_path());
            controllers.push(
                controllers::spawn_controller(root.path(), i, &controller_addrs, &tls, secret)
                    .await,
            );
        }
        let mut ns_env = tls.env("NAMESERVER");
        ns_env.extend(prefixed("NAMESERVER"));
        if !controller_addrs.is_empty() {
            ns_env.push((
                "APOGEE_NAMESERVER_CONTROLLER__ENDPOINTS".into(),
                format!("{controller_addrs:?}"),
            ));
        }
        ns_env.extend(self.nameserver_env);
        let addrs: Vec<String> = (0..self.nameservers)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let voters = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nameservers: Vec<NameServer> = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| {
                let mut env = ns_env.clone();
                if self.controller {
                    let dir = root.path().join(format!("controller-{i}"));
                    env.extend(
                        [
                            ("ENABLED", "true".to_string()),
                            ("NODE_ID", (i + 1).to_string()),
                            ("PEERS", voters.clone()),
                            ("DATA_DIR", dir.display().to_string()),
                        ]
                        .map(|(k, v)| (format!("APOGEE_NAMESERVER_CONTROLLER__{k}"), v)),
                    );
                }
                NameServer::spawn_at(root.path(), i, addr, &env, tls.client())
            })
            .collect();
        for ns in &mut nameservers {
            ns.wait_ready().await;
        }
        let broker_security = prefixed("BROKER").collect();
        let mut cluster = Cluster {
            brokers: Vec::new(),
            nameservers,
            controllers,
            removed: Vec::new(),
            started: 0,
            tls,
            broker_security,
            root,
        };
        for spec in self.brokers {
            cluster.add_broker(spec).await;
        }
        cluster
    }
}

/// The running cluster; everything is killed and deleted on drop.
pub struct Cluster {
    // Field order is drop order: processes die before their directory goes.
    brokers: Vec<Broker>,
    nameservers: Vec<NameServer>,
    /// Controllers run as their own processes (node id = index + 1).
    controllers: Vec<controllers::ControllerProcess>,
    /// (broker name, broker id, address) of removed brokers.
    removed: Vec<(String, i64, String)>,
    started: u32,
    tls: TlsEnv,
    /// The brokers' `[security]` overrides of an authenticating cluster (else empty).
    broker_security: Vec<(String, String)>,
    root: TempDir,
}

/// The cluster's TLS: the test certificates, and whether cluster calls need one.
struct TlsEnv {
    certs: Option<TestCerts>,
    cluster_mtls: bool,
}

impl TlsEnv {
    /// The `[tls]` overrides of a server (`APOGEE_<server>_TLS__*`).
    fn env(&self, server: &str) -> Vec<(String, String)> {
        let Some(certs) = &self.certs else {
            return Vec::new();
        };
        let path = |p: &Path| p.display().to_string();
        let mut env = vec![
            ("CERT_FILE", path(&certs.server.cert)),
            ("KEY_FILE", path(&certs.server.key)),
            ("CA_FILE", path(&certs.ca_file)),
        ];
        if self.cluster_mtls {
            env.push(("CLIENT_CA_FILE", path(&certs.ca_file)));
            env.push(("CLUSTER_MTLS", "true".into()));
        }
        env.into_iter()
            .map(|(k, v)| (format!("APOGEE_{server}_TLS__{k}"), v))
            .collect()
    }

    /// TLS trusting the test CA (none: plain text).
    fn client(&self) -> Option<ClientTls> {
        self.certs.as_ref().map(TestCerts::client_tls)
    }
}

pub(crate) async fn wait_for_port(p: &mut ManagedProcess, addr: &str) {
    let sock: SocketAddr = addr.parse().expect("ip:port");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        p.assert_running();
        let attempt = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(sock),
        )
        .await;
        if matches!(attempt, Ok(Ok(_))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not accept connections on {addr} within {START_TIMEOUT:?}; its log:\n{}",
            p.label(),
            p.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `broker` serves (its port accepts connections and it answers a Heartbeat;
/// the port is bound before the store opens) and is registered with every NameServer of
/// `nameservers` since `since_ms`, failing early with its log if it exits.
pub(crate) async fn wait_broker_ready(
    broker: &mut Broker,
    nameservers: &[String],
    tls: Option<&ClientTls>,
    since_ms: i64,
) {
    let name = broker.name.clone();
    let addr = broker.addr.clone();
    let group = broker.broker_name.clone();
    wait_for_port(&mut broker.process, &addr).await;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut client = rpc::messaging_with(&addr, tls);
    loop {
        broker.process.assert_running();
        let req = v2::HeartbeatRequest {
            group: None,
            client_type: v2::ClientType::Producer as i32,
        };
        let r =
            tokio::time::timeout(Duration::from_secs(5), client.heartbeat(rpc::signed(req))).await;
        if matches!(&r, Ok(Ok(resp)) if rpc::code(resp.get_ref().status.as_ref()) == v2::Code::Ok as i32)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {name} never answered a Heartbeat: {r:?}\n{}",
            broker.process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for ns in nameservers {
        let mut registry = rpc::registry_with(ns, tls);
        loop {
            broker.process.assert_running();
            let info = tokio::time::timeout(
                Duration::from_secs(5),
                registry.get_cluster_info(rpc::signed(GetClusterInfoRequest {})),
            )
            .await;
            let registered = matches!(&info, Ok(Ok(info)) if info.get_ref().groups.iter().any(|g| {
                g.broker_name == group
                    && g.members
                        .iter()
                        .any(|m| m.endpoint == addr && m.last_seen_ms >= since_ms)
            }));
            if registered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broker {name} never registered with the nameserver {ns}: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The teardown: every process is frozen before any is killed (the fields' drop kills them
/// in order and prints their logs when the test failed), so no log shows a member's
/// reaction to another's kill.
impl Drop for Cluster {
    fn drop(&mut self) {
        #[cfg(unix)]
        self.freeze_all();
    }
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The cluster's temporary directory (for test scratch files too).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// The test certificates of a TLS cluster.
    pub fn certs(&self) -> Option<&TestCerts> {
        self.tls.certs.as_ref()
    }

    /// Whether the servers check credentials ([`ClusterBuilder::authentication`]).
    pub fn authenticates(&self) -> bool {
        !self.broker_security.is_empty()
    }

    /// TLS trusting the cluster's CA, for clients of a TLS cluster (none: plain text).
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.tls.client()
    }

    pub fn broker(&self, name: &str) -> &Broker {
        self.brokers
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker named {name}"))
    }

    /// A broker's `127.0.0.1:port`.
    /// `127.0.0.1:port` of a broker's HTTP endpoint (metrics, health).
    pub fn broker_http_addr(&self, name: &str) -> &str {
        &self.broker(name).http_addr
    }

    pub fn broker_addr(&self, name: &str) -> &str {
        &self.broker(name).addr
    }

    /// Everything a broker logged so far (across restarts).
    pub fn broker_log(&self, name: &str) -> String {
        self.broker(name).log()
    }

    /// The broker named `name`, to change how its process starts next
    /// ([`ManagedProcess::args_mut`]).
    pub fn broker_mut(&mut self, name: &str) -> &mut Broker {
        self.brokers
            .iter_mut()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker named {name}"))
    }

    /// Starts a broker and waits until it serves and is registered.
    pub async fn add_broker(&mut self, spec: BrokerSpec) -> &Broker {
        assert!(
            self.brokers.iter().all(|b| b.name != spec.name),
            "a broker named {} is already part of the cluster",
            spec.name
        );
        let since = now_ms();
        let (process, addr, data_dir, http_addr) = self.spawn_broker(&spec);
        self.brokers.push(Broker {
            name: spec.name.clone(),
            broker_name: spec.broker_name.clone(),
            broker_id: spec.broker_id.unwrap_or(0),
            addr,
            http_addr,
            data_dir,
            process,
        });
        self.wait_broker(&spec.name, since).await;
        self.broker(&spec.name)
    }

    /// Starts a broker that must refuse to start: waits for it to exit and
    /// returns its exit status and log. Panics if it keeps running.
    pub async fn broker_start_failure(
        &mut self,
        spec: BrokerSpec,
    ) -> (std::process::ExitStatus, String) {
        let (mut process, _, _, _) = self.spawn_broker(&spec);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.wait_exit(Duration::ZERO) {
                return (status, process.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "broker {} kept running; it should have refused to start. Its log:\n{}",
                spec.name,
                process.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The address of a killed or removed broker with this identity: the same broker
    /// starting again gets it back, so the NameServers see it restart rather than a
    /// second process claiming a live broker id (which they refuse).
    fn address_of_stopped(&mut self, broker_name: &str, broker_id: i64) -> Option<String> {
        let stopped = self.brokers.iter_mut().find_map(|b| {
            (b.broker_name == broker_name && b.broker_id == broker_id && !b.process.is_running())
                .then(|| b.addr.clone())
        });
        stopped.or_else(|| {
            self.removed
                .iter()
                .rev()
                .find(|(name, id, _)| name == broker_name && *id == broker_id)
                .map(|(_, _, addr)| addr.clone())
        })
    }

    /// Spawns a broker process for `spec` with every NameServer (`--nameserver`
    /// repeated) and its HTTP endpoint on a free port; returns it with its address,
    /// data dir and HTTP address.
    fn spawn_broker(&mut self, spec: &BrokerSpec) -> (ManagedProcess, String, PathBuf, String) {
        self.started += 1;
        let (data_dir, log) = match &spec.data_dir {
            Some(d) => (
                d.clone(),
                self.root
                    .path()
                    .join(format!("{}-{}.log", spec.name, self.started)),
            ),
            None => {
                let dir = self.root.path().join(&spec.name);
                (dir.join("data"), dir.join("broker.log"))
            }
        };
        std::fs::create_dir_all(&data_dir).expect("creating the broker data dir");
        let addr = match spec.port {
            Some(port) => format!("127.0.0.1:{port}"),
            None => self
                .address_of_stopped(&spec.broker_name, spec.broker_id.unwrap_or(0))
                .unwrap_or_else(|| format!("127.0.0.1:{}", free_port())),
        };
        let mut args = vec!["--listen".into(), addr.clone()];
        for ns in self.ns_addrs() {
            args.push("--nameserver".into());
            args.push(ns);
        }
        args.extend([
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--broker-name".into(),
            spec.broker_name.clone(),
        ]);
        let http_addr = format!("127.0.0.1:{}", free_port());
        let mut env = vec![("APOGEE_BROKER_HTTP_LISTEN".to_string(), http_addr.clone())];
        env.extend(self.tls.env("BROKER"));
        env.extend(self.broker_security.iter().cloned());
        env.extend(spec.process_env());
        let process = ManagedProcess::spawn(
            format!("broker {}", spec.name),
            bins::bin(bins::BROKER),
            args,
            env,
            log,
        );
        (process, addr, data_dir, http_addr)
    }

    async fn wait_broker(&mut self, name: &str, since_ms: i64) {
        let nameservers = self.live_ns_addrs();
        let tls = self.client_tls();
        wait_broker_ready(self.broker_mut(name), &nameservers, tls.as_ref(), since_ms).await;
    }

    /// SIGKILLs a broker (no shutdown, no unregister).
    pub fn kill_broker(&mut self, name: &str) {
        self.broker_mut(name).process.kill();
    }

    /// SIGTERMs a broker and waits (at most 30 s) for it to exit; returns its exit status.
    #[cfg(unix)]
    pub fn terminate_broker(&mut self, name: &str) -> std::process::ExitStatus {
        let process = &mut self.broker_mut(name).process;
        process.terminate();
        process
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("broker {name} still runs 30 s after SIGTERM"))
    }

    /// Starts a killed broker again on the same port and data dir.
    pub async fn restart_broker(&mut self, name: &str) {
        let since = now_ms();
        self.broker_mut(name).process.start();
        self.wait_broker(name, since).await;
    }

    /// SIGSTOPs a broker: it keeps its port and registration entry but answers
    /// nothing (requests to it hang) until [`Cluster::resume_broker`].
    #[cfg(unix)]
    pub fn pause_broker(&mut self, name: &str) {
        self.broker_mut(name).process.pause();
    }

    /// SIGSTOPs every process of the cluster and marks its log, as the teardown does
    /// before it kills any ([`ManagedProcess::freeze_for_teardown`]).
    #[cfg(unix)]
    pub fn freeze_all(&mut self) {
        let brokers = self.brokers.iter_mut().map(|b| &mut b.process);
        let nameservers = self.nameservers.iter_mut().map(|n| &mut n.process);
        let controllers = self.controllers.iter_mut().map(|c| &mut c.process);
        for process in brokers.chain(nameservers).chain(controllers) {
            process.freeze_for_teardown();
        }
    }

    /// SIGCONTs a broker stopped by [`Cluster::pause_broker`].
    #[cfg(unix)]
    pub fn resume_broker(&mut self, name: &str) {
        self.broker_mut(name).process.resume();
    }

    /// Kills a broker and forgets it (its directory stays until the end). A broker
    /// added later with the same broker name and id (and no port of its own) gets
    /// its address.
    pub fn remove_broker(&mut self, name: &str) {
        let i = self
            .brokers
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker named {name}"));
        let b = self.brokers.remove(i);
        self.removed
            .push((b.broker_name.clone(), b.broker_id, b.addr.clone()));
    }
}

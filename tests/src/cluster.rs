//! A NameServer and broker groups as real processes on free loopback ports.
//!
//! ```no_run
//! # async fn demo() {
//! use apogee_tests::{BrokerSpec, Cluster};
//! let mut cluster = Cluster::builder()
//!     .broker(BrokerSpec::new("broker-a").env("STORE__FLUSH", "sync"))
//!     .broker(BrokerSpec::new("broker-b"))
//!     .start()
//!     .await;
//! cluster.create_topic("orders", 4).await;
//! cluster.kill_broker("broker-a");
//! cluster.restart_broker("broker-a").await;
//! # }
//! ```
//!
//! Everything lives in one temporary directory: `nameserver.log`, and per
//! broker `<name>/data` and `<name>/broker.log` (a broker started with its
//! own data dir logs to `<name>-<n>.log`). A broker counts as started once
//! its port accepts connections, it answers a Heartbeat, and the NameServer's
//! cluster info shows it registered since it was (re)started.

use crate::bins;
use crate::cli::{self, CliOutput};
use crate::process::{free_port, ManagedProcess};
use crate::rpc;
use apogee_proto::cluster::{
    CreateTopicRequest, GetClusterInfoRequest, GetRouteRequest, TopicConfig,
};
use apogee_proto::time::now_ms;
use apogee_proto::v2;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to come up (debug builds, cold RocksDB).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start one broker.
#[derive(Clone, Debug)]
pub struct BrokerSpec {
    pub name: String,
    /// Extra `APOGEE_BROKER_<KEY>` variables, given without the prefix.
    pub env: Vec<(String, String)>,
    /// Data directory; default `<cluster dir>/<name>/data`.
    pub data_dir: Option<PathBuf>,
    /// Port; default a free one.
    pub port: Option<u16>,
}

impl BrokerSpec {
    pub fn new(name: impl Into<String>) -> Self {
        BrokerSpec {
            name: name.into(),
            env: Vec::new(),
            data_dir: None,
            port: None,
        }
    }

    /// Sets `APOGEE_BROKER_<key>` (e.g. `env("STORE__FLUSH", "sync")`).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env
            .push((format!("APOGEE_BROKER_{key}"), value.into()));
        self
    }

    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// A running (or killed) broker process.
pub struct Broker {
    pub name: String,
    /// `127.0.0.1:port`, as registered with the NameServer.
    pub addr: String,
    pub data_dir: PathBuf,
    process: ManagedProcess,
}

impl Broker {
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// Collects broker specs, then starts everything.
#[derive(Default)]
pub struct ClusterBuilder {
    brokers: Vec<BrokerSpec>,
}

impl ClusterBuilder {
    pub fn broker(mut self, spec: BrokerSpec) -> Self {
        self.brokers.push(spec);
        self
    }

    /// Starts the NameServer, then every broker, and waits until all are up.
    pub async fn start(self) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("apogee-test-")
            .tempdir()
            .expect("creating a temp dir");
        let ns_port = free_port();
        let ns_addr = format!("127.0.0.1:{ns_port}");
        let mut nameserver = ManagedProcess::spawn(
            "nameserver",
            bins::bin(bins::NAMESERVER),
            vec!["--listen".into(), ns_addr.clone()],
            vec![],
            root.path().join("nameserver.log"),
        );
        wait_for_port(&mut nameserver, &ns_addr).await;
        let mut cluster = Cluster {
            brokers: Vec::new(),
            nameserver,
            ns_addr,
            started: 0,
            root,
        };
        cluster.wait_nameserver().await;
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
    nameserver: ManagedProcess,
    ns_addr: String,
    started: u32,
    root: TempDir,
}

async fn wait_for_port(p: &mut ManagedProcess, addr: &str) {
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

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The NameServer's `127.0.0.1:port`.
    pub fn ns_addr(&self) -> &str {
        &self.ns_addr
    }

    /// The cluster's temporary directory (for test scratch files too).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// An apogee-client configuration pointing at the NameServer.
    pub fn client_config(&self) -> apogee_client::ClientConfig {
        apogee_client::ClientConfig::new(&self.ns_addr)
    }

    pub fn broker(&self, name: &str) -> &Broker {
        self.brokers
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker named {name}"))
    }

    fn broker_mut(&mut self, name: &str) -> &mut Broker {
        self.brokers
            .iter_mut()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker named {name}"))
    }

    async fn wait_nameserver(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut registry = rpc::registry(&self.ns_addr);
        loop {
            self.nameserver.assert_running();
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                registry.get_cluster_info(GetClusterInfoRequest {}),
            )
            .await;
            if matches!(r, Ok(Ok(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nameserver never answered GetClusterInfo: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a broker and waits until it serves and is registered.
    pub async fn add_broker(&mut self, spec: BrokerSpec) -> &Broker {
        assert!(
            self.brokers.iter().all(|b| b.name != spec.name),
            "a broker named {} is already part of the cluster",
            spec.name
        );
        let since = now_ms();
        let (process, addr, data_dir) = self.spawn_broker(&spec);
        self.brokers.push(Broker {
            name: spec.name.clone(),
            addr,
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
        let (mut process, _, _) = self.spawn_broker(&spec);
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

    /// Spawns a broker process for `spec`; returns it with its address and data dir.
    fn spawn_broker(&mut self, spec: &BrokerSpec) -> (ManagedProcess, String, PathBuf) {
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
        let addr = format!("127.0.0.1:{}", spec.port.unwrap_or_else(free_port));
        let args = vec![
            "--listen".into(),
            addr.clone(),
            "--nameserver".into(),
            self.ns_addr.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--broker-name".into(),
            spec.name.clone(),
        ];
        let process = ManagedProcess::spawn(
            format!("broker {}", spec.name),
            bins::bin(bins::BROKER),
            args,
            spec.env.clone(),
            log,
        );
        (process, addr, data_dir)
    }

    async fn wait_broker(&mut self, name: &str, since_ms: i64) {
        let ns = self.ns_addr.clone();
        let broker = self.broker_mut(name);
        let addr = broker.addr.clone();
        wait_for_port(&mut broker.process, &addr).await;
        let deadline = Instant::now() + START_TIMEOUT;
        // Serving: a Heartbeat is answered (the port is bound before the store opens).
        let mut client = rpc::messaging(&addr);
        loop {
            broker.process.assert_running();
            let req = v2::HeartbeatRequest {
                group: None,
                client_type: v2::ClientType::Producer as i32,
            };
            let r = tokio::time::timeout(Duration::from_secs(5), client.heartbeat(req)).await;
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
        // Registered with the NameServer since this start.
        let mut registry = rpc::registry(&ns);
        loop {
            broker.process.assert_running();
            let info = registry
                .get_cluster_info(GetClusterInfoRequest {})
                .await
                .expect("GetClusterInfo")
                .into_inner();
            let registered = info.groups.iter().any(|g| {
                g.broker_name == name
                    && g.members
                        .iter()
                        .any(|m| m.endpoint == addr && m.last_seen_ms >= since_ms)
            });
            if registered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker {name} never registered with the nameserver: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs a broker (no shutdown, no unregister).
    pub fn kill_broker(&mut self, name: &str) {
        self.broker_mut(name).process.kill();
    }

    /// Starts a killed broker again on the same port and data dir.
    pub async fn restart_broker(&mut self, name: &str) {
        let since = now_ms();
        self.broker_mut(name).process.start();
        self.wait_broker(name, since).await;
    }

    /// Kills a broker and forgets it (its directory stays until the end).
    pub fn remove_broker(&mut self, name: &str) {
        let i = self
            .brokers
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("no broker named {name}"));
        self.brokers.remove(i);
    }

    /// Creates a topic on every broker group through the NameServer's Admin
    /// service and waits until its route lists every group's queues.
    pub async fn create_topic(&self, topic: &str, queues: i32) -> Vec<String> {
        self.create_topic_on(topic, queues, &[]).await
    }

    /// Like [`Cluster::create_topic`], restricted to some broker groups.
    pub async fn create_topic_on(&self, topic: &str, queues: i32, brokers: &[&str]) -> Vec<String> {
        self.create_typed_topic_on(topic, queues, &[], brokers)
            .await
    }

    /// Creates a topic accepting `types` (empty: NORMAL) on every broker group.
    pub async fn create_typed_topic(
        &self,
        topic: &str,
        queues: i32,
        types: &[v2::MessageType],
    ) -> Vec<String> {
        self.create_typed_topic_on(topic, queues, types, &[]).await
    }

    async fn create_typed_topic_on(
        &self,
        topic: &str,
        queues: i32,
        types: &[v2::MessageType],
        brokers: &[&str],
    ) -> Vec<String> {
        let req = CreateTopicRequest {
            topic: Some(TopicConfig {
                name: topic.into(),
                queue_count: queues,
                permission: 0,
                message_types: types.iter().map(|&t| t as i32).collect(),
            }),
            broker_names: brokers.iter().map(|b| b.to_string()).collect(),
        };
        let created = rpc::admin(&self.ns_addr)
            .create_topic(req)
            .await
            .unwrap_or_else(|e| panic!("CreateTopic {topic}: {e}"))
            .into_inner()
            .broker_names;
        assert!(
            !created.is_empty(),
            "CreateTopic {topic} placed it on no broker group"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut registry = rpc::registry(&self.ns_addr);
        loop {
            let route = registry
                .get_route(GetRouteRequest {
                    topic: topic.into(),
                })
                .await
                .map(|r| r.into_inner());
            let ready = route.as_ref().is_ok_and(|r| {
                created.iter().all(|b| {
                    r.placements.iter().any(|p| {
                        p.group.as_ref().is_some_and(|g| &g.broker_name == b)
                            && p.config.as_ref().is_some_and(|c| c.queue_count == queues)
                    })
                })
            });
            if ready {
                return created;
            }
            assert!(
                Instant::now() < deadline,
                "route of {topic} never listed {created:?}: {route:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the `apogee` CLI against this cluster's NameServer.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let mut full = vec!["--nameserver", self.ns_addr.as_str()];
        full.extend_from_slice(args);
        cli::run(&full)
    }
}

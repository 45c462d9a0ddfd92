//! NameServers and brokers as real processes, each in its own namespace of a [`Network`],
//! with the faults a fault test injects.
//!
//! Every member serves on fixed ports of its own address (a namespace has its own ports):
//! a NameServer on `<ip>:9876` (HTTP `:9877`), a broker on `<ip>:10911` (HTTP `:10912`).
//! Processes are [`ManagedProcess`]es (`ip netns exec <ns> <binary> ...`, logs in the
//! cluster's temporary directory, printed when the test fails), brokers are described by
//! [`BrokerSpec`] and counted as started the way [`crate::Cluster`] counts them.

use super::disk::SmallDisk;
use super::network::Network;
use crate::bins;
use crate::cluster::{create_and_wait, wait_broker_ready, NameServer, TopicSpec};
use crate::process::ManagedProcess;
use crate::{Broker, BrokerSpec};
use apogee_proto::cluster::{CreateGroupRequest, GroupConfig};
use apogee_proto::time::now_ms;
use apogee_proto::v2::MessageType;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

const NAMESERVER_PORT: u16 = 9876;
const NAMESERVER_HTTP_PORT: u16 = 9877;
const BROKER_PORT: u16 = 10911;
const BROKER_HTTP_PORT: u16 = 10912;
/// Servers listen on non-loopback addresses without credentials: on a test network only
/// the test process and the other members reach them, so they are told to accept that.
const ANONYMOUS: &str = "true";

/// What to start.
#[derive(Default)]
pub struct NetClusterBuilder {
    nameservers: usize,
    nameserver_env: Vec<(String, String)>,
    brokers: Vec<BrokerSpec>,
    small_disks: Vec<(String, u64)>,
    controller: bool,
}

impl NetClusterBuilder {
    /// Runs `n` NameServers (default 1).
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

    /// Every NameServer runs the embedded controller (`[controller] enabled`), the
    /// NameServers its Raft voters (node ids 1..=n in start order, Raft data in
    /// `<cluster dir>/controller-<i>`, kept across restarts). Brokers made with
    /// [`BrokerSpec::controlled`] take their roles from it.
    pub fn controller(mut self) -> Self {
        self.controller = true;
        self
    }

    /// Adds a broker (its `port` is ignored: every broker serves on its own address).
    pub fn broker(mut self, spec: BrokerSpec) -> Self {
        self.brokers.push(spec);
        self
    }

    /// Gives broker `name` a data dir on a tmpfs of `bytes`, for
    /// [`NetCluster::fill_disk`].
    pub fn small_disk(mut self, name: &str, bytes: u64) -> Self {
        self.small_disks.push((name.to_string(), bytes));
        self
    }

    /// Makes the network, starts the NameServers, then every broker in order, and waits
    /// until all are up.
    pub async fn start(self) -> NetCluster {
        let root = tempfile::Builder::new()
            .prefix("apogee-netns-")
            .tempdir()
            .expect("creating a temp dir");
        let mut cluster = NetCluster {
            brokers: Vec::new(),
            nameservers: Vec::new(),
            disks: Vec::new(),
            network: Network::create(),
            root,
        };
        let count = self.nameservers.max(1);
        // Every NameServer's address first: the controller's voters know each other's.
        let voters: Vec<String> = (0..count)
            .map(|i| {
                let ip = cluster.network.add_member(&format!("ns-{i}")).ip;
                format!("{}={ip}:{NAMESERVER_PORT}", i + 1)
            })
            .collect();
        for i in 0..count {
            let mut env = self.nameserver_env.clone();
            if self.controller {
                let dir = cluster.root.path().join(format!("controller-{i}"));
                env.extend(
                    [
                        ("ENABLED", "true".to_string()),
                        ("NODE_ID", (i + 1).to_string()),
                        ("PEERS", voters.join(",")),
                        ("DATA_DIR", dir.display().to_string()),
                    ]
                    .map(|(k, v)| (format!("APOGEE_NAMESERVER_CONTROLLER__{k}"), v)),
                );
            }
            cluster.spawn_nameserver(i, &env);
        }
        for ns in &mut cluster.nameservers {
            ns.wait_ready().await;
        }
        for (name, bytes) in &self.small_disks {
            let mount = cluster.root.path().join(name).join("disk");
            cluster
                .disks
                .push((name.clone(), SmallDisk::mount(&mount, *bytes)));
        }
        for spec in self.brokers {
            cluster.add_broker(spec).await;
        }
        cluster
    }
}

/// The running processes on their network; on drop the processes are killed, then small
/// disks unmounted, the network deleted and the directory removed.
pub struct NetCluster {
    // Field order is drop order.
    brokers: Vec<Broker>,
    nameservers: Vec<NameServer>,
    disks: Vec<(String, SmallDisk)>,
    network: Network,
    root: TempDir,
}

impl NetCluster {
    pub fn builder() -> NetClusterBuilder {
        NetClusterBuilder::default()
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The cluster's temporary directory (logs, data dirs).
    pub fn dir(&self) -> &std::path::Path {
        self.root.path()
    }

    fn spawn_nameserver(&mut self, i: usize, env: &[(String, String)]) {
        let name = format!("ns-{i}");
        let ip = self.network.member(&name).ip;
        let addr = format!("{ip}:{NAMESERVER_PORT}");
        let http_addr = format!("{ip}:{NAMESERVER_HTTP_PORT}");
        let mut env = env.to_vec();
        env.splice(
            0..0,
            [
                ("APOGEE_NAMESERVER_HTTP_LISTEN".into(), http_addr.clone()),
                (
                    "APOGEE_NAMESERVER_SECURITY__ALLOW_ANONYMOUS".into(),
                    ANONYMOUS.into(),
                ),
            ],
        );
        let (program, args) = self.network.exec_in(
            &name,
            &bins::bin(bins::NAMESERVER),
            vec!["--listen".into(), addr.clone()],
        );
        let log = self.root.path().join(format!("{name}.log"));
        let process = ManagedProcess::spawn(format!("nameserver {name}"), program, args, env, log);
        self.nameservers.push(NameServer {
            addr,
            http_addr,
            process,
            down: false,
            tls: None,
        });
    }

    /// Starts a broker in a new namespace and waits until it serves and is registered
    /// with every running NameServer.
    pub async fn add_broker(&mut self, spec: BrokerSpec) -> &Broker {
        assert!(
            self.brokers.iter().all(|b| b.name != spec.name),
            "a broker named {} is already part of the cluster",
            spec.name
        );
        let since = now_ms();
        let ip = self.network.add_member(&spec.name).ip;
        let addr = format!("{ip}:{BROKER_PORT}");
        let http_addr = format!("{ip}:{BROKER_HTTP_PORT}");
        let dir = self.root.path().join(&spec.name);
        let small_disk = self.disks.iter().find(|(n, _)| *n == spec.name);
        let data_dir: PathBuf = match (&spec.data_dir, small_disk) {
            (Some(d), _) => d.clone(),
            (None, Some((_, disk))) => disk.data_dir(),
            (None, None) => dir.join("data"),
        };
        std::fs::create_dir_all(&data_dir).expect("creating the broker data dir");
        let mut args = vec!["--listen".to_string(), addr.clone()];
        for ns in &self.nameservers {
            args.push("--nameserver".into());
            args.push(ns.addr.clone());
        }
        args.extend([
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--broker-name".into(),
            spec.broker_name.clone(),
        ]);
        let mut env = vec![
            ("APOGEE_BROKER_HTTP_LISTEN".to_string(), http_addr.clone()),
            (
                "APOGEE_BROKER_SECURITY__ALLOW_ANONYMOUS".into(),
                ANONYMOUS.into(),
            ),
        ];
        env.extend(spec.process_env());
        let (program, args) = self
            .network
            .exec_in(&spec.name, &bins::bin(bins::BROKER), args);
        let process = ManagedProcess::spawn(
            format!("broker {}", spec.name),
            program,
            args,
            env,
            self.root.path().join(format!("{}.log", spec.name)),
        );
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

    async fn wait_broker(&mut self, name: &str, since_ms: i64) {
        let nameservers = self.live_ns_addrs();
        let broker = self.broker_mut(name);
        wait_broker_ready(broker, &nameservers, None, since_ms).await;
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

    /// The broker group of member `name` (`None` for a NameServer).
    pub fn broker_group(&self, name: &str) -> Option<&str> {
        self.brokers
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.broker_name.as_str())
    }

    /// Every NameServer's `ip:port`, running or not.
    pub fn ns_addrs(&self) -> Vec<String> {
        self.nameservers.iter().map(|n| n.addr.clone()).collect()
    }

    /// Whether NameServer `ns-<i>` was killed and not started again.
    pub fn nameserver_down(&self, i: usize) -> bool {
        self.nameservers[i].down
    }

    /// The `ip:port` of every NameServer running.
    pub fn live_ns_addrs(&self) -> Vec<String> {
        self.nameservers
            .iter()
            .filter(|n| !n.down)
            .map(|n| n.addr.clone())
            .collect()
    }

    /// An apogee-client configuration with every NameServer.
    pub fn client_config(&self) -> apogee_client::ClientConfig {
        apogee_client::ClientConfig::new(self.ns_addrs().join(","))
    }

    /// The process names of every member of the network (NameServers and brokers) but
    /// `name`: whom [`NetCluster::cut_off`] cuts `name` off from to isolate it from the
    /// cluster while clients (the test process) still reach it.
    pub fn everyone_but(&self, name: &str) -> Vec<String> {
        self.network
            .members()
            .iter()
            .map(|m| m.name.clone())
            .filter(|m| m != name)
            .collect()
    }

    /// The process of member `name` (a broker, or a NameServer `ns-<i>`).
    fn process_mut(&mut self, name: &str) -> &mut ManagedProcess {
        if let Some(i) = self.nameserver_index(name) {
            return &mut self.nameservers[i].process;
        }
        &mut self.broker_mut(name).process
    }

    fn nameserver_index(&self, name: &str) -> Option<usize> {
        name.strip_prefix("ns-")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| i < self.nameservers.len())
    }

    /// Everything member `name` logged so far (across restarts).
    pub fn log(&mut self, name: &str) -> String {
        self.process_mut(name).log_text()
    }

    /// SIGKILLs member `name`.
    pub fn kill(&mut self, name: &str) {
        self.process_mut(name).kill();
        if let Some(i) = self.nameserver_index(name) {
            self.nameservers[i].down = true;
        }
    }

    /// Starts a killed member again (same address and data dir) and waits until it is up.
    pub async fn restart(&mut self, name: &str) {
        let since = now_ms();
        self.process_mut(name).start();
        if let Some(i) = self.nameserver_index(name) {
            self.nameservers[i].wait_ready().await;
            self.nameservers[i].down = false;
        } else {
            self.wait_broker(name, since).await;
        }
    }

    /// SIGKILLs every NameServer, then starts them all again and waits until they answer
    /// (they know no broker until the brokers' next heartbeat).
    pub async fn restart_nameservers(&mut self) {
        for ns in &mut self.nameservers {
            ns.process.kill();
            ns.down = true;
        }
        for ns in &mut self.nameservers {
            ns.process.start();
        }
        for ns in &mut self.nameservers {
            ns.wait_ready().await;
            ns.down = false;
        }
    }

    /// SIGTERMs member `name` (a graceful stop); [`NetCluster::wait_stopped`] waits for its
    /// end, [`NetCluster::restart`] starts it again.
    pub fn terminate(&mut self, name: &str) {
        self.process_mut(name).terminate();
    }

    /// Waits up to `timeout` for member `name` to exit (without blocking the runtime's
    /// thread); whether it did.
    pub async fn wait_stopped(&mut self, name: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.is_running(name) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// SIGSTOPs member `name` (its connections stay open and hang).
    pub fn pause(&mut self, name: &str) {
        self.process_mut(name).pause();
    }

    /// SIGCONTs a member stopped by [`NetCluster::pause`].
    pub fn resume(&mut self, name: &str) {
        self.process_mut(name).resume();
    }

    /// Cuts member `name` off from everyone ([`Network::links_down`]).
    pub fn links_down(&self, name: &str) {
        self.network.links_down(name);
    }

    pub fn links_up(&self, name: &str) {
        self.network.links_up(name);
    }

    /// Cuts member `name` off from `peers` only ([`Network::cut_off`]).
    pub fn cut_off(&self, name: &str, peers: &[&str]) {
        self.network.cut_off(name, peers);
    }

    /// Removes member `name`'s cuts.
    pub fn reconnect(&self, name: &str) {
        self.network.reconnect(name);
    }

    fn disk(&self, name: &str) -> &SmallDisk {
        self.disks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("broker {name} has no small disk"))
    }

    /// Fills broker `name`'s small disk; returns the bytes the filler took.
    pub fn fill_disk(&self, name: &str) -> u64 {
        self.disk(name).fill()
    }

    /// Frees broker `name`'s small disk again.
    pub fn free_disk(&self, name: &str) {
        self.disk(name).free();
    }

    /// Waits up to `timeout` for member `name` to exit by itself; its exit status.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process_mut(name).wait_exit(timeout)
    }

    /// Whether member `name`'s process is running.
    pub fn is_running(&mut self, name: &str) -> bool {
        self.process_mut(name).is_running()
    }

    /// Empties a killed broker's data dir: everything it stored is gone behind the
    /// cluster's back.
    pub fn wipe_data(&mut self, name: &str) {
        let broker = self.broker_mut(name);
        assert!(!broker.process.is_running(), "broker {name} is running");
        std::fs::remove_dir_all(&broker.data_dir).expect("removing the data dir");
        std::fs::create_dir_all(&broker.data_dir).expect("creating the data dir");
    }

    /// Creates a topic on `groups` (every group when empty) through the first running
    /// NameServer and waits until every running NameServer routes it.
    pub async fn create_topic_on(&self, topic: &str, queues: i32, groups: &[&str]) {
        self.create_topic_of(topic, queues, &[], groups).await;
    }

    /// Creates a FIFO topic on every group and FIFO consumer group `consumer_group`, through
    /// the first running NameServer, and waits until every running NameServer routes the
    /// topic.
    pub async fn create_fifo_topic(&self, topic: &str, queues: i32, consumer_group: &str) {
        let live = self.live_ns_addrs();
        let admin_ns = live.first().expect("every NameServer is down");
        let group = GroupConfig {
            name: consumer_group.into(),
            fifo: true,
            ..GroupConfig::default()
        };
        let created = crate::rpc::admin(admin_ns)
            .create_group(crate::rpc::signed(CreateGroupRequest {
                group: Some(group),
            }))
            .await
            .unwrap_or_else(|e| panic!("CreateGroup {consumer_group}: {e}"))
            .into_inner();
        assert!(
            !created.broker_names.is_empty(),
            "CreateGroup {consumer_group} placed it on no broker group"
        );
        self.create_topic_of(topic, queues, &[MessageType::Fifo], &[])
            .await;
    }

    async fn create_topic_of(
        &self,
        topic: &str,
        queues: i32,
        types: &[MessageType],
        groups: &[&str],
    ) {
        let live = self.live_ns_addrs();
        let admin_ns = live.first().expect("every NameServer is down");
        let spec = TopicSpec {
            topic,
            queues,
            types,
            brokers: groups,
        };
        create_and_wait(admin_ns, &live, None, spec).await;
    }
}

//! Controllers run as their own processes (`apogee-controller`,
//! [`super::ClusterBuilder::controller_processes`]): voters 1..=n on free loopback ports,
//! each with its Raft data in `<cluster dir>/controller-process-<i>` and its log in
//! `controller-<i>.log`; the NameServers name them in `[controller] endpoints`. They take
//! the cluster's TLS and, with authentication, its cluster secret (their only credential).

use super::{wait_for_port, Cluster, TlsEnv};
use crate::bins;
use crate::process::{free_port, ManagedProcess};
use std::path::Path;

/// The controller binary.
pub const CONTROLLER_BIN: &str = "apogee-controller";

/// One controller process.
pub(crate) struct ControllerProcess {
    pub(crate) addr: String,
    pub(crate) process: ManagedProcess,
    /// Whether it was killed (and not restarted since).
    pub(crate) down: bool,
}

/// The listen addresses of `n` controllers, chosen before any starts (they name each other).
pub(crate) fn controller_addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect()
}

/// Starts controller `i` of the voters at `addrs` (node id `i + 1`) and waits until it
/// accepts connections.
pub(crate) async fn spawn_controller(
    dir: &Path,
    i: usize,
    addrs: &[String],
    tls: &TlsEnv,
    cluster_secret: Option<&Path>,
) -> ControllerProcess {
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(j, addr)| format!("{}={addr}", j + 1))
        .collect::<Vec<_>>()
        .join(",");
    let data_dir = dir.join(format!("controller-process-{i}"));
    let mut env: Vec<(String, String)> = [
        ("NODE_ID", (i + 1).to_string()),
        ("PEERS", peers),
        ("DATA_DIR", data_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("APOGEE_CONTROLLER_CONTROLLER__{k}"), v))
    .collect();
    env.extend(tls.env("CONTROLLER"));
    if let Some(secret) = cluster_secret {
        env.push((
            "APOGEE_CONTROLLER_SECURITY__CLUSTER_SECRET_FILE".into(),
            secret.display().to_string(),
        ));
    }
    let addr = addrs[i].clone();
    let mut process = ManagedProcess::spawn(
        format!("controller {}", i + 1),
        bins::bin(CONTROLLER_BIN),
        vec!["--listen".into(), addr.clone()],
        env,
        dir.join(format!("controller-{i}.log")),
    );
    wait_for_port(&mut process, &addr).await;
    ControllerProcess {
        addr,
        process,
        down: false,
    }
}

impl Cluster {
    /// Every controller process's `127.0.0.1:port` (node id = index + 1), running or not.
    pub fn controller_addrs(&self) -> Vec<String> {
        self.controllers.iter().map(|c| c.addr.clone()).collect()
    }

    /// SIGKILLs the controller process of node id `node_id`.
    pub fn kill_controller(&mut self, node_id: u64) {
        let controller = self.controller_process(node_id);
        controller.process.kill();
        controller.down = true;
    }

    /// Starts the controller process of node id `node_id` again, on its port and data dir.
    pub async fn restart_controller(&mut self, node_id: u64) {
        let controller = self.controller_process(node_id);
        controller.process.start();
        let addr = controller.addr.clone();
        wait_for_port(&mut controller.process, &addr).await;
        controller.down = false;
    }

    /// The log of the controller process of node id `node_id`.
    pub fn controller_log(&mut self, node_id: u64) -> String {
        self.controller_process(node_id).process.log_text()
    }

    fn controller_process(&mut self, node_id: u64) -> &mut ControllerProcess {
        let index = (node_id as usize).checked_sub(1);
        index
            .and_then(|i| self.controllers.get_mut(i))
            .unwrap_or_else(|| panic!("no controller process of node id {node_id}"))
    }
}

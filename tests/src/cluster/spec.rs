//! How to start one broker ([`BrokerSpec`]) and the handle of a started one
//! ([`Broker`]): its process name, broker group and id, role, extra
//! `APOGEE_BROKER_*` variables, data dir and port.

use crate::process::ManagedProcess;
use std::path::PathBuf;

/// How to start one broker.
#[derive(Clone, Debug)]
pub struct BrokerSpec {
    /// The process's name in the cluster (how tests refer to it).
    pub name: String,
    /// The broker group it belongs to (`broker_name`); the process name unless
    /// made with [`BrokerSpec::member`].
    pub broker_name: String,
    /// Its id in the group (0 is the master); the broker's default when `None`.
    pub broker_id: Option<i64>,
    /// Its role (`async_master`, `sync_master`, `slave`); when `None`, a member
    /// with an id above 0 is a `slave` and anything else gets the broker's default.
    pub role: Option<String>,
    /// Extra `APOGEE_BROKER_<KEY>` variables, given without the prefix.
    pub env: Vec<(String, String)>,
    /// Data directory; default `<cluster dir>/<name>/data`.
    pub data_dir: Option<PathBuf>,
    /// Port; default the one of a killed or removed broker of the same group and
    /// id (the same broker starting again), else a free one.
    pub port: Option<u16>,
}

impl BrokerSpec {
    /// A broker alone in its group, the group named like the process.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        BrokerSpec {
            broker_name: name.clone(),
            name,
            broker_id: None,
            role: None,
            env: Vec::new(),
            data_dir: None,
            port: None,
        }
    }

    /// Member `id` of broker group `group` (0: the master, a slave otherwise
    /// unless [`BrokerSpec::role`] says else), named `<group>-<id>`.
    pub fn member(group: &str, id: i64) -> Self {
        BrokerSpec {
            broker_name: group.to_string(),
            broker_id: Some(id),
            ..BrokerSpec::new(format!("{group}-{id}"))
        }
    }

    /// Member `id` (>= 1, for life) of broker group `group` in controller mode
    /// (`failover.controller_mode`): its role comes from the controller of a cluster built
    /// with [`crate::ClusterBuilder::controller`]. Named `<group>-<id>`.
    pub fn controlled(group: &str, id: i64) -> Self {
        assert!(id >= 1, "member ids start at 1");
        BrokerSpec::member(group, id).env("FAILOVER__CONTROLLER_MODE", "true")
    }

    /// Sets the role: `async_master`, `sync_master` or `slave`.
    pub fn role(mut self, role: &str) -> Self {
        self.role = Some(role.to_string());
        self
    }

    /// Transaction check-backs within a second or two instead of RocketMQ's default minute:
    /// the first after 1 s, then every second, the unsettled scanned every 100 ms.
    pub fn fast_check_backs(self) -> Self {
        self.env("TRANSACTION__CHECK_DELAY_MS", "1000")
            .env("TRANSACTION__CHECK_INTERVAL_MS", "1000")
            .env("TRANSACTION__SCAN_INTERVAL_MS", "100")
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

    /// The process environment: group, id and role first, then the extra variables
    /// (which win when they set the same key).
    pub(crate) fn process_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "APOGEE_BROKER_BROKER_NAME".to_string(),
                self.broker_name.clone(),
            ),
            // Whatever the machine's disk holds, tests never lose segments to the disk
            // ratio or get sends refused by it; the retention tests set their own.
            ("APOGEE_BROKER_STORE__DISK_CLEAN_RATIO".into(), "1.0".into()),
            (
                "APOGEE_BROKER_STORE__DISK_REFUSE_RATIO".into(),
                "1.0".into(),
            ),
        ];
        if let Some(id) = self.broker_id {
            env.push(("APOGEE_BROKER_BROKER_ID".into(), id.to_string()));
        }
        let role = match (&self.role, self.broker_id) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(id)) if id > 0 => Some("slave".into()),
            _ => None,
        };
        if let Some(role) = role {
            env.push(("APOGEE_BROKER_ROLE".into(), role));
        }
        env.extend(self.env.iter().cloned());
        env
    }
}

/// A running (or killed, or paused) broker process.
pub struct Broker {
    /// The process's name in the cluster.
    pub name: String,
    /// Its broker group.
    pub broker_name: String,
    /// Its id in the group (as [`BrokerSpec::member`] set it; 0 otherwise).
    pub broker_id: i64,
    /// `127.0.0.1:port`, as registered with the NameServers.
    pub addr: String,
    /// `127.0.0.1:port` of its HTTP endpoint (metrics, health).
    pub http_addr: String,
    pub data_dir: PathBuf,
    pub(crate) process: ManagedProcess,
}

impl Broker {
    /// The process id of the running broker.
    pub fn pid(&self) -> u32 {
        self.process.pid().expect("the broker is running")
    }
}

impl Broker {
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Everything the broker logged so far (across restarts).
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}

//! The controller of automatic failover run as its own process (`apogee-controller`), as
//! RocketMQ runs its controller either inside the NameServer or standalone.
//!
//! Its config ([`ControllerProcessConfig`], every key in `deploy/controller.toml`) is the
//! NameServer's `[controller]` section (node id, peers, data dir, lease, margin, member
//! timeout, unclean election; `enabled` is not read and `endpoints` is refused) with the
//! process's own listener, `[tls]` and `[security]` (the cluster secret), taken the way the
//! embedded controller takes them: its Raft calls to the other controllers carry the cluster
//! proof, over TLS verified against `tls.ca_file` when `[tls]` is set. One listener serves
//! the Raft service between the controllers and the `ControllerService` the NameServers
//! with `[controller] endpoints` call ([`apogee_controller::control_service`]), plus gRPC
//! health. Empty `peers`: a single voter at the listener's address.
//!
//! The controller process admits callers by the cluster proof alone: `security.
//! authentication` (users, ACLs) is refused, and a listener reachable from other hosts
//! needs a cluster secret (or `security.allow_anonymous = true`).

use crate::config::ControllerSection;
use apogee_controller::service::RaftService;
use apogee_proto::controller::controller_service_server::ControllerServiceServer;
use apogee_proto::controller::raft_server::RaftServer;
use apogee_server::auth::guard::AuthLayer;
use apogee_server::bootstrap::{layer_stack, Bootstrap};
use apogee_server::config_file::{self, ConfigError};
use apogee_server::logging::LogFormat;
use apogee_server::net::Listener;
use apogee_server::security::SecuritySection;
use apogee_server::shared_config::check_listen;
use apogee_server::tls_config::TlsSection;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::Path;

/// Environment prefix of the controller process's overrides (`APOGEE_CONTROLLER_<KEY>`).
pub const ENV_PREFIX: &str = "CONTROLLER";

/// The controller process's default port.
pub const DEFAULT_CONTROLLER_PORT: u16 = 9870;

/// Everything an `apogee-controller` process can be configured with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerProcessConfig {
    /// host:port of the gRPC listener: the Raft calls of the other controllers and the
    /// NameServers' calls. The voters name each other at these addresses (`peers`).
    pub listen: String,
    /// Log filter used when RUST_LOG is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    /// `cluster_secret_file` (and `allow_anonymous`) are read; `authentication` is refused.
    pub security: SecuritySection,
    pub tls: TlsSection,
    /// The controller's own settings: the NameServer's `[controller]` section.
    pub controller: ControllerSection,
}

impl Default for ControllerProcessConfig {
    fn default() -> Self {
        ControllerProcessConfig {
            listen: format!("127.0.0.1:{DEFAULT_CONTROLLER_PORT}"),
            log_level: None,
            log_format: LogFormat::Text,
            security: SecuritySection::default(),
            tls: TlsSection::default(),
            controller: ControllerSection {
                data_dir: "controller-data".into(),
                ..ControllerSection::default()
            },
        }
    }
}

impl ControllerProcessConfig {
    /// Loads the config from an optional file plus `APOGEE_CONTROLLER_*` environment
    /// overrides, and validates it.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config: ControllerProcessConfig = config_file::load(path, ENV_PREFIX)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(ConfigError::Invalid)
    }

    fn check(&self) -> Result<(), String> {
        check_listen("listen", &self.listen)?;
        if let Some(level) = &self.log_level {
            apogee_server::logging::filter(Some(level))?;
        }
        if !self.controller.endpoints.is_empty() {
            return Err(
                "controller.endpoints is a NameServer's setting (the controllers it \
                 uses); a controller process names its voters in controller.peers"
                    .into(),
            );
        }
        if self.security.authentication {
            return Err(
                "security.authentication is not taken by a controller process: it \
                 admits NameServers and the other controllers by the cluster proof \
                 (security.cluster_secret_file)"
                    .into(),
            );
        }
        if self.security.cluster_secret_file.is_empty() {
            self.security.check_exposure(
                "listen",
                &self.listen,
                &format!(
                    "{}SECURITY__ALLOW_ANONYMOUS",
                    config_file::env_var_prefix(ENV_PREFIX)
                ),
            )?;
        }
        self.tls.validate()?;
        self.controller.controller_config(&self.listen).map(|_| ())
    }

    /// The effective config as TOML (`--check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

/// Why the controller process could not run: the NameServer's reasons (a config, metrics
/// or controller start error).
pub type ControllerProcessError = crate::NameServerError;

/// Runs the controller on `listener` until `shutdown` completes, then stops it (its Raft
/// and its storage). The config's `listen` is not used: the caller binds.
pub async fn serve(
    config: ControllerProcessConfig,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerProcessError> {
    config.validate()?;
    let own_address = listener
        .local_addr()
        .map_or_else(|_| config.listen.clone(), |a| a.to_string());
    let invalid = ConfigError::Invalid;
    let secret = config.security.cluster_secret().map_err(invalid)?;
    let server_tls = config.tls.server_tls().map_err(invalid)?;
    let client_tls = config.tls.client_tls().map_err(invalid)?;
    let controller_config = config
        .controller
        .controller_config(&own_address)
        .map_err(invalid)?;
    tracing::info!(
        node = controller_config.node_id,
        peers = ?controller_config.peers,
        data_dir = %controller_config.data_dir.display(),
        "starting the controller"
    );
    let trust = apogee_controller::PeerTrust {
        secret,
        tls: client_tls,
    };
    let controller = apogee_controller::Controller::start(controller_config, trust).await?;
    let bootstrap = Bootstrap::start(None, server_tls.as_ref(), config.tls.reload_interval());
    bootstrap.set_serving::<RaftServer<RaftService>>().await;
    bootstrap
        .set_serving::<ControllerServiceServer<apogee_controller::control_service::ControlService>>(
        )
        .await;
    let routes = bootstrap
        .routes()
        .add_service(controller.grpc_service())
        .add_service(controller.control_service())
        .prepare();
    // The calls' latencies are not exported (the process has no HTTP endpoint); the layer
    // stack is the servers' one, for its client-certificate check (`tls.cluster_mtls`).
    let rpc_latency = apogee_server::ops::rpc_latency(&prometheus::Registry::new())?;
    let service = layer_stack(
        rpc_latency,
        config.tls.cluster_mtls,
        &AuthLayer::off(),
        routes,
    );
    bootstrap
        .serve(
            service,
            listener.with_tls(server_tls),
            shutdown,
            || tracing::info!("controller shutting down"),
            async move { controller.shutdown().await },
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl FnOnce(&mut ControllerProcessConfig)) -> Result<(), String> {
        let mut config = ControllerProcessConfig::default();
        edit(&mut config);
        config.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_a_single_voter_on_loopback() {
        let config = ControllerProcessConfig::default();
        assert!(config.validate().is_ok());
        let controller = config.controller.controller_config(&config.listen).unwrap();
        assert_eq!(controller.own_address(), Some("127.0.0.1:9870"));
    }

    #[test]
    fn the_nameservers_controller_section_is_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9871\"\n[controller]\nnode_id = 2\n\
             peers = [\"1=127.0.0.1:9870\", \"2=127.0.0.1:9871\", \"3=127.0.0.1:9872\"]\n\
             data_dir = \"d\"\nlease_ms = 3000\nunclean_election = true\n",
        )
        .unwrap();
        let config: ControllerProcessConfig =
            config_file::load_with_env(Some(&path), ENV_PREFIX, Vec::new()).unwrap();
        config.validate().unwrap();
        let controller = config.controller.controller_config(&config.listen).unwrap();
        assert_eq!(controller.own_address(), Some("127.0.0.1:9871"));
        assert_eq!(
            (controller.lease_ms, controller.unclean_election),
            (3000, true)
        );
    }

    #[test]
    fn what_a_controller_process_cannot_take_is_refused_by_name() {
        for (edit, expected) in [
            (
                Box::new(|c: &mut ControllerProcessConfig| {
                    c.controller.endpoints = vec!["c1:9870".into()]
                }) as Box<dyn FnOnce(&mut ControllerProcessConfig)>,
                "controller.endpoints is a NameServer's setting",
            ),
            (
                Box::new(|c: &mut ControllerProcessConfig| c.security.authentication = true),
                "security.authentication is not taken",
            ),
            (
                Box::new(|c: &mut ControllerProcessConfig| c.listen = "0.0.0.0:9870".into()),
                "APOGEE_CONTROLLER_SECURITY__ALLOW_ANONYMOUS",
            ),
            (
                Box::new(|c: &mut ControllerProcessConfig| c.listen = "nowhere".into()),
                "listen",
            ),
            (
                Box::new(|c: &mut ControllerProcessConfig| {
                    c.controller.peers = vec!["2=127.0.0.1:9871".into()]
                }),
                "node_id 1 is not one of",
            ),
            (
                Box::new(|c: &mut ControllerProcessConfig| c.controller.lease_ms = 0),
                "lease_ms must be above 0",
            ),
        ] {
            let error = with(edit).unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        // allow_anonymous admits a listener open to other hosts without a cluster secret.
        assert!(with(|c| {
            c.listen = "0.0.0.0:9870".into();
            c.security.allow_anonymous = true;
        })
        .is_ok());
    }

    #[test]
    fn the_deploy_file_documents_every_key_with_its_default() {
        let text = include_str!("../../deploy/controller.toml");
        let from_file: ControllerProcessConfig = toml::from_str(text).unwrap();
        assert_eq!(from_file, ControllerProcessConfig::default());
        let rendered: toml::Table =
            toml::from_str(&ControllerProcessConfig::default().to_toml()).unwrap();
        for (key, value) in &rendered {
            let keys: Vec<String> = match value.as_table() {
                Some(section) => section.keys().map(|k| format!("\n{k} =")).collect(),
                None => vec![format!("\n{key} =")],
            };
            for k in keys {
                assert!(
                    text.contains(&k),
                    "deploy/controller.toml does not document {k:?}"
                );
            }
        }
        assert!(text.contains("# log_level = "));
    }
}

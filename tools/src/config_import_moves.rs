//! What `apogee config import` says about moving off a RocketMQ broker beyond its settings:
//! the data directory (Apogee refuses to open RocketMQ's store, so the imported config names
//! a fresh directory beside it, and the steps say how the store's state moves: `apogee
//! config import-state`), and the NameServers' config that goes with the broker's (the
//! [security] section every NameServer needs, and a listener on every address when the
//! broker has one), part of [`super`].

use super::{ImportError, SecurityToml};
use serde::Serialize;

/// Where the NameServers' TOML is in `config import -o json`.
pub(super) const NAMESERVER_JSON_KEY: &str = "\"nameserver_toml\" in -o json";

/// Apogee's default `store.disk_refuse_ratio`.
pub(super) const DEFAULT_REFUSE_RATIO: f64 = 0.90;

/// The fresh data directory for a broker whose RocketMQ store was `store`: beside it, named
/// after it (one per store, so brokers sharing a parent directory do not share it).
pub(super) fn fresh_data_dir(store: &str) -> String {
    format!("{}-apogee", store.trim_end_matches('/'))
}

/// The steps that move what RocketMQ's store at `store` holds.
pub(super) fn store_steps(store: &str) -> Vec<String> {
    let config = format!("{}/config", store.trim_end_matches('/'));
    vec![
        format!(
            "# Data: storePathRootDir {store} holds RocketMQ's store, which Apogee does not \
             open; data_dir is the fresh directory {} (create it, or change it).",
            fresh_data_dir(store)
        ),
        "# The store's topics, groups, consumer offsets and ACL accounts move once the \
         Apogee cluster runs: the plan first, then the same with --apply:"
            .to_string(),
        format!(
            "apogee config import-state {}",
            super::plain_acl::shell_word(&config)
        ),
        "# Its messages stay in RocketMQ's commit log: let RocketMQ's consumers drain it \
         while producers already send to Apogee (docs/COMPATIBILITY.md)."
            .to_string(),
    ]
}

#[derive(Serialize)]
struct NameServerToml<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<&'a SecurityToml>,
}

/// The NameServers' TOML for a broker imported from `source`: on every address at the port of
/// broker.conf's first NameServer (9876 without one) when the broker listens on every
/// address, and the broker's [security] section.
pub(super) fn nameserver_toml(
    source: &str,
    listens_everywhere: bool,
    nameservers: &[String],
    security: Option<&SecurityToml>,
) -> Result<String, ImportError> {
    let port = nameservers
        .first()
        .and_then(|ns| apogee_proto::names::parse_host_port(ns).ok())
        .map(|(_, port)| port)
        .unwrap_or(apogee_proto::names::DEFAULT_NAMESERVER_PORT);
    let ns = NameServerToml {
        listen: listens_everywhere.then(|| format!("0.0.0.0:{port}")),
        security,
    };
    let body = toml::to_string(&ns).map_err(|e| ImportError {
        line: 0,
        key: String::new(),
        value: String::new(),
        message: format!("cannot write the NameServers' TOML: {e}"),
    })?;
    let mut header = format!(
        "# The NameServers' config for the broker imported by `apogee config import` from \
         {source}:\n# every NameServer of the cluster takes it (apogee-nameserver --config FILE).\n"
    );
    if body.trim().is_empty() {
        header.push_str("# Nothing differs from the defaults (see deploy/nameserver.toml).\n");
    }
    Ok(format!("{header}\n{body}"))
}

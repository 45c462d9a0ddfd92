//! The web console this NameServer serves: its `[console]` settings and where it is mounted:
//! at `/console` on the operations listener (`http_listen`), or on a listener of its own
//! (`console.listen`). The console itself (apogee-console) is not a dependency of this
//! library: the executable passes its routes ([`ConsoleRoutes`]). The console operates the
//! cluster through this NameServer's own gRPC listener, as the `apogee` CLI would, signed as
//! the user signed in to it; with authentication off it needs no sign-in and says so on
//! every page.

use apogee_server::ops::{OpsListener, OpsServer, OpsSlot};
use apogee_server::security::SecuritySection;
use apogee_server::web_console::{ConsoleRoutes, ConsoleSite};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long one call the console makes to the cluster may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `[console]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSection {
    /// Serve the web console at `/console`.
    pub enabled: bool,
    /// host:port of a listener of the console's own; "" serves it on `http_listen`.
    pub listen: String,
    /// Host names (`name` or `name:port`) a browser may reach the console by, besides the
    /// listener's own address (and `localhost`/`127.0.0.1`/`[::1]` when it listens on
    /// loopback or on every address). Any other Host header is refused.
    pub allowed_hosts: Vec<String>,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            enabled: true,
            listen: String::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl ConsoleSection {
    /// Checks the section; `http_listen` is where it is served without a listener of its own.
    pub fn validate(&self, http_listen: &str, security: &SecuritySection) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.listen.is_empty() && http_listen.is_empty() {
            return Err(
                "console.enabled needs a listener: set http_listen or console.listen \
                        (or console.enabled = false)"
                    .into(),
            );
        }
        if !self.listen.is_empty() {
            self.listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("console.listen = {:?} is not host:port: {e}", self.listen))?;
            security.check_exposure(
                "console.listen",
                &self.listen,
                "APOGEE_NAMESERVER_SECURITY_ALLOW_ANONYMOUS",
            )?;
        }
        for host in &self.allowed_hosts {
            let plain = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
            if !plain {
                return Err(format!(
                    "console.allowed_hosts: {host:?} is not a host name (`name` or `name:port`)"
                ));
            }
        }
        Ok(())
    }
}

/// The names a browser may use for a console listening on `addr`, with `extra`.
pub fn allowed_hosts(addr: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = addr.port();
    let mut hosts = Vec::new();
    if !addr.ip().is_unspecified() {
        hosts.push(addr.to_string());
    }
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        hosts.extend([
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]);
    }
    hosts.extend(extra.iter().cloned());
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Where a NameServer listening on `addr` is reached from the same machine.
fn local_address(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr.to_string()
}

/// What the NameServer needs to mount its console.
pub struct Mount<'a> {
    pub section: &'a ConsoleSection,
    /// The console's routes for a site (none: no console, whatever the section says).
    pub routes: Option<ConsoleRoutes>,
    /// The NameServer's gRPC listener.
    pub grpc: SocketAddr,
    pub authentication: bool,
    /// The listeners' TLS (the console is served with it, when on).
    pub server_tls: Option<Arc<apogee_server::tls::ServerTls>>,
    /// TLS towards the NameServer's own gRPC listener.
    pub client_tls: Option<apogee_proto::tls::ClientTls>,
}

/// Mounts the console on `ops`, or starts it on a listener of its own (returned, to be
/// stopped with the NameServer). Returns the operations listener to serve.
pub async fn mount(
    m: Mount<'_>,
    ops: Option<OpsListener>,
) -> std::io::Result<(Option<OpsListener>, Option<OpsServer>)> {
    let (true, Some(console_routes)) = (m.section.enabled, m.routes) else {
        return Ok((ops, None));
    };
    let own = if m.section.listen.is_empty() {
        None
    } else {
        Some(OpsListener::bind(&m.section.listen).await?)
    };
    let Some(at) = own
        .as_ref()
        .or(ops.as_ref())
        .and_then(|l| l.local_addr().ok())
    else {
        return Ok((ops, None));
    };
    let site = ConsoleSite {
        nameserver: local_address(m.grpc),
        nameserver_tls: m.client_tls,
        authentication: m.authentication,
        https: m.server_tls.is_some(),
        allowed_hosts: allowed_hosts(at, &m.section.allowed_hosts),
        call_timeout: CALL_TIMEOUT,
    };
    let routes = console_routes(site).map_err(std::io::Error::other)?;
    tracing::info!(
        "web console on {}://{at}/console",
        if m.server_tls.is_some() {
            "https"
        } else {
            "http"
        }
    );
    match own {
        Some(listener) => {
            let listener = listener.with_tls(m.server_tls).routes_only(routes);
            Ok((
                ops,
                Some(OpsServer::start(Some(listener), OpsSlot::default())),
            ))
        }
        None => Ok((ops.map(|o| o.with_routes(routes)), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_console_answers_to_the_loopback_names_and_the_configured_ones() {
        let hosts = allowed_hosts("127.0.0.1:5556".parse().unwrap(), &["ops.example".into()]);
        assert_eq!(
            hosts,
            [
                "127.0.0.1:5556",
                "[::1]:5556",
                "localhost:5556",
                "ops.example"
            ]
        );
        let any = allowed_hosts("0.0.0.0:80".parse().unwrap(), &[]);
        assert!(any.contains(&"localhost:80".to_string()));
        assert!(!any.iter().any(|h| h.starts_with("0.0.0.0")));
        let one = allowed_hosts("198.18.0.5:80".parse().unwrap(), &[]);
        assert_eq!(one, ["198.18.0.5:80"]);
        assert_eq!(
            local_address("0.0.0.0:9876".parse().unwrap()),
            "127.0.0.1:9876"
        );
    }

    #[test]
    fn the_section_is_checked() {
        let security = SecuritySection::default();
        let on = ConsoleSection::default();
        assert!(on.validate("127.0.0.1:5556", &security).is_ok());
        assert!(on
            .validate("", &security)
            .unwrap_err()
            .contains("needs a listener"));
        let off = ConsoleSection {
            enabled: false,
            ..ConsoleSection::default()
        };
        assert!(off.validate("", &security).is_ok());
        let exposed = ConsoleSection {
            listen: "0.0.0.0:8080".into(),
            ..ConsoleSection::default()
        };
        assert!(exposed
            .validate("", &security)
            .unwrap_err()
            .contains("console.listen"));
        let bad_host = ConsoleSection {
            allowed_hosts: vec!["http://x/".into()],
            ..ConsoleSection::default()
        };
        assert!(bad_host.validate("127.0.0.1:1", &security).is_err());
    }
}

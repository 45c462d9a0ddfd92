//! The `[security]` section both servers have: whether a listener reachable from other hosts
//! may serve without credentials, the cluster secret, client authentication (the bootstrap
//! admin, the allowed clock skew), their checks, and the guard built from them
//! ([`crate::auth::guard`]).

use crate::auth::guard::AuthLayer;
use apogee_proto::auth::{secret_from_file, Credentials, Directory};
use apogee_proto::cluster_auth::ClusterSecret;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The `[security]` section every server has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySection {
    /// Serve non-loopback addresses without authentication. Off: a server that would be
    /// reachable from other hosts refuses to start.
    pub allow_anonymous: bool,
    /// A file holding the cluster's shared secret ("": none). With it, a NameServer takes
    /// registrations and a master opens replication streams only from brokers proving it,
    /// and a broker proves it on its own registrations and replication.
    pub cluster_secret_file: String,
    /// Check the credentials of every call (`MQv2-HMAC-SHA1`, what the official clients send
    /// when given an access key); see [`crate::auth`].
    pub authentication: bool,
    /// The bootstrap admin's access key (required with `authentication`).
    pub admin_access_key: String,
    /// A file holding the bootstrap admin's secret key (required with `authentication`).
    pub admin_secret_file: String,
    /// How far a request's `x-mq-date-time` may be from this server's clock.
    pub auth_max_skew_secs: u64,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            allow_anonymous: false,
            cluster_secret_file: String::new(),
            authentication: false,
            admin_access_key: String::new(),
            admin_secret_file: String::new(),
            auth_max_skew_secs: 900,
        }
    }
}

impl SecuritySection {
    /// The cluster secret, when a file is configured; errors name the file.
    pub fn cluster_secret(
        &self,
    ) -> Result<Option<apogee_proto::cluster_auth::ClusterSecret>, String> {
        if self.cluster_secret_file.is_empty() {
            return Ok(None);
        }
        apogee_proto::cluster_auth::ClusterSecret::from_file(std::path::Path::new(
            &self.cluster_secret_file,
        ))
        .map(Some)
    }

    /// Refuses a listen address reachable from other hosts unless anonymous access is
    /// allowed; `key` names the setting and `env` the variable that allows it.
    pub fn check_exposure(&self, key: &str, addr: &str, env: &str) -> Result<(), String> {
        if self.allow_anonymous || self.authentication || addr.is_empty() || is_loopback(addr) {
            return Ok(());
        }
        Err(format!(
            "{key} = {addr:?} is reachable from other hosts, and this server checks no \
             credentials: anyone who can reach it could send, read and delete messages and \
             change topics. Turn on `security.authentication` (see docs/SECURITY.md), listen on \
             127.0.0.1, or accept this with `security.allow_anonymous = true` (or {env}=true)"
        ))
    }
}

/// Whether a host:port listens on loopback only.
pub fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// The longest clock skew accepted (a day: time-zone offsets of clients that write local
/// time with a `Z` fit).
const MAX_SKEW_SECS: u64 = 86_400;

impl SecuritySection {
    /// The bootstrap admin's credentials, read from `admin_secret_file`.
    pub fn admin_credentials(&self) -> Result<Credentials, String> {
        if self.admin_access_key.is_empty() || self.admin_secret_file.is_empty() {
            return Err("security.authentication needs the bootstrap admin: set \
                 security.admin_access_key and security.admin_secret_file"
                .into());
        }
        let secret = secret_from_file(Path::new(&self.admin_secret_file))?;
        Credentials::new(self.admin_access_key.clone(), secret)
            .map_err(|e| format!("security.admin_access_key: {e}"))
    }

    /// Checks the authentication keys (nothing to check when authentication is off).
    pub fn check_authentication(&self) -> Result<(), String> {
        if !(1..=MAX_SKEW_SECS).contains(&self.auth_max_skew_secs) {
            return Err(format!(
                "security.auth_max_skew_secs = {} must be between 1 and {MAX_SKEW_SECS}",
                self.auth_max_skew_secs
            ));
        }
        if !self.authentication {
            return Ok(());
        }
        if self.cluster_secret_file.is_empty() {
            return Err(
                "security.authentication needs security.cluster_secret_file: the \
                        servers of the cluster prove themselves to each other with it"
                    .into(),
            );
        }
        self.admin_credentials().map(|_| ())
    }

    /// The guard for this server's gRPC services (one that admits everything when
    /// authentication is off).
    pub fn auth_layer(&self, cluster: Option<ClusterSecret>) -> Result<AuthLayer, String> {
        if !self.authentication {
            return Ok(AuthLayer::off());
        }
        let admin = self.admin_credentials()?;
        tracing::info!(
            admin = admin.access_key(),
            max_skew_secs = self.auth_max_skew_secs,
            "authentication on: every call needs credentials or the cluster proof"
        );
        Ok(AuthLayer::new(
            Directory::with_admin(&admin),
            cluster,
            Duration::from_secs(self.auth_max_skew_secs),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_files(dir: &Path) -> SecuritySection {
        let admin = dir.join("admin.secret");
        std::fs::write(&admin, "admin-secret\n").unwrap();
        let cluster = dir.join("cluster.secret");
        std::fs::write(&cluster, "0123456789abcdef-cluster").unwrap();
        SecuritySection {
            authentication: true,
            admin_access_key: "root".into(),
            admin_secret_file: admin.display().to_string(),
            cluster_secret_file: cluster.display().to_string(),
            ..SecuritySection::default()
        }
    }

    #[test]
    fn authentication_needs_the_admin_and_the_cluster_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ok = with_files(dir.path());
        ok.check_authentication().unwrap();
        assert_eq!(ok.admin_credentials().unwrap().secret_key(), "admin-secret");
        let no_admin = SecuritySection {
            admin_access_key: String::new(),
            ..ok.clone()
        };
        let err = no_admin.check_authentication().unwrap_err();
        assert!(err.contains("admin_access_key"), "{err}");
        let no_cluster = SecuritySection {
            cluster_secret_file: String::new(),
            ..ok.clone()
        };
        let err = no_cluster.check_authentication().unwrap_err();
        assert!(err.contains("cluster_secret_file"), "{err}");
        let missing_file = SecuritySection {
            admin_secret_file: dir.path().join("nope").display().to_string(),
            ..ok.clone()
        };
        assert!(missing_file.check_authentication().is_err());
        let no_skew = SecuritySection {
            auth_max_skew_secs: 0,
            ..ok
        };
        assert!(no_skew.check_authentication().is_err());
        // Off: nothing else is needed.
        SecuritySection::default().check_authentication().unwrap();
    }

    #[test]
    fn authentication_replaces_allow_anonymous_for_an_open_listen() {
        let dir = tempfile::tempdir().unwrap();
        let on = with_files(dir.path());
        assert!(on.check_exposure("listen", "0.0.0.0:9876", "ENV").is_ok());
        let off = SecuritySection::default();
        let err = off
            .check_exposure("listen", "0.0.0.0:9876", "ENV")
            .unwrap_err();
        assert!(err.contains("security.authentication"), "{err}");
    }
}

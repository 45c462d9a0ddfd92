//! Authentication of client calls, shared by the NameServer and the broker (and the signing
//! side used by apogee-client and the CLI).
//!
//! - [`signature`]: the `MQv2-HMAC-SHA1` authorization header the RocketMQ 5 clients send:
//!   making it and checking it.
//! - [`Directory`]: who may call: the access keys a server knows, with their secret and role,
//!   and the ACL entries of its users ([`acl`]: the model, merging, sealing secrets).
//! - [`cluster_calls`]: channels whose calls carry the cluster proof (a NameServer's calls to
//!   brokers).
//! - The guard in front of every gRPC service of a server, which admits a call (user
//!   credentials or a cluster proof) or refuses it, is apogee-server's (`auth::guard`).
//!
//! What a call was admitted as travels to the handlers as an [`Identity`] request extension.

pub mod acl;
pub mod cluster_calls;
pub mod signature;

pub use signature::Credentials;

use std::sync::Arc;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything, the Admin services included.
    Admin,
    /// Messaging only (no Admin RPC).
    User,
}

/// Who a server admitted a call as (a request extension set by the guard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A user with valid credentials.
    User { access_key: String, role: Role },
    /// Another server of the cluster, proven with the cluster secret.
    Cluster,
}

impl Identity {
    /// Whether this identity may call the Admin services.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Identity::Cluster
                | Identity::User {
                    role: Role::Admin,
                    ..
                }
        )
    }
}

/// The access keys a server accepts, shared by its guard and whatever keeps its users: the
/// bootstrap admin from its config (always present, never replaced) and the users and ACL
/// entries of [`acl::Grants`], swapped whole on every change (a call reads one snapshot).
#[derive(Clone)]
pub struct Directory {
    admin_key: Arc<str>,
    admin_secret: Arc<[u8]>,
    grants: Arc<parking_lot::RwLock<Arc<acl::Grants>>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let grants = self.grants.read().clone();
        let mut keys: Vec<&str> = grants.accounts.keys().map(String::as_str).collect();
        keys.push(&self.admin_key);
        keys.sort();
        write!(f, "Directory({keys:?})")
    }
}

impl Directory {
    /// A directory holding only the bootstrap admin.
    pub fn with_admin(admin: &Credentials) -> Directory {
        Directory {
            admin_key: admin.access_key().into(),
            admin_secret: admin.secret_key().as_bytes().into(),
            grants: Arc::default(),
        }
    }

    /// The bootstrap admin's access key.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// The secret key and role of `access_key`, when known.
    pub fn lookup(&self, access_key: &str) -> Option<(Arc<[u8]>, Role)> {
        if access_key == &*self.admin_key {
            return Some((self.admin_secret.clone(), Role::Admin));
        }
        self.grants.read().accounts.get(access_key).cloned()
    }

    /// The ACL entries calls are checked against now.
    pub fn acls(&self) -> Arc<acl::AclSet> {
        self.grants.read().acls.clone()
    }

    /// Serves `grants` from now on (the bootstrap admin stays whatever they say).
    pub fn replace(&self, grants: acl::Grants) {
        *self.grants.write() = Arc::new(grants);
    }
}

/// Reads a secret key from a file (surrounding whitespace ignored); errors name the file.
pub fn secret_from_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("secret file {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_knows_its_admin_and_hides_secrets() {
        let admin = Credentials::new("root", "root-secret").unwrap();
        let d = Directory::with_admin(&admin);
        let (secret, role) = d.lookup("root").unwrap();
        assert_eq!((&secret[..], role), (&b"root-secret"[..], Role::Admin));
        assert_eq!(d.lookup("nobody"), None);
        assert!(!format!("{d:?}").contains("root-secret"));
        assert!(Identity::Cluster.is_admin());
        let user = Identity::User {
            access_key: "u".into(),
            role: Role::User,
        };
        assert!(!user.is_admin());
    }

    #[test]
    fn secret_files_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.secret");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(secret_from_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(secret_from_file(&path).unwrap_err().contains("empty"));
        assert!(secret_from_file(&dir.path().join("nope"))
            .unwrap_err()
            .contains("nope"));
    }
}

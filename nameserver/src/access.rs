//! The users and ACL entries a NameServer knows: merged from every broker's registration
//! (newest change of each user and entry wins, deletions kept as tombstones) and from the
//! changes its own Admin service makes, so a restarted NameServer learns them again as
//! brokers register. Its guard's directory follows every change; the bootstrap admin of the
//! config is not part of it and cannot be replaced. A master that registers without what this
//! NameServer knows (a broker group added later, a master that was down during a change) is
//! sent what it lacks (see `grpc::registry`).

use apogee_proto::auth::acl::{AccessState, SecretSeal};
use apogee_proto::auth::Directory;
use apogee_proto::cluster::{AccessUser, AclEntry};
use parking_lot::RwLock;

#[derive(Default)]
pub struct AccessBook {
    state: RwLock<AccessState>,
    /// Seals and opens secrets (none without a cluster secret: no users then).
    seal: Option<SecretSeal>,
    /// The guard's directory (none without authentication).
    directory: Option<Directory>,
}

impl AccessBook {
    pub fn new(seal: Option<SecretSeal>, directory: Option<Directory>) -> AccessBook {
        AccessBook {
            state: RwLock::default(),
            seal,
            directory,
        }
    }

    /// Merges users and entries; the directory follows when anything changed.
    pub fn merge(&self, users: Vec<AccessUser>, acls: Vec<AclEntry>) {
        if users.is_empty() && acls.is_empty() {
            return;
        }
        let changed = self.state.write().merge(users, acls);
        if changed {
            self.refresh_directory();
        }
    }

    fn refresh_directory(&self) {
        if let (Some(directory), Some(seal)) = (&self.directory, &self.seal) {
            directory.replace(self.state.read().grants(seal));
        }
    }

    /// What a broker registering `users` and `acls` lacks of what this NameServer knows (or
    /// holds an older change of): what to send it so it catches up.
    pub fn missing_from(
        &self,
        users: &[AccessUser],
        acls: &[AclEntry],
    ) -> (Vec<AccessUser>, Vec<AclEntry>) {
        let mut theirs = AccessState::default();
        theirs.merge(users.iter().cloned(), acls.iter().cloned());
        self.state.read().newer_than(&theirs)
    }

    /// Everything known, tombstones included.
    pub fn snapshot(&self) -> AccessState {
        self.state.read().clone()
    }

    /// What seals secrets for the brokers (none without a cluster secret).
    pub fn seal(&self) -> Option<&SecretSeal> {
        self.seal.as_ref()
    }

    /// The bootstrap admin's access key (none without authentication).
    pub fn bootstrap_admin(&self) -> Option<&str> {
        self.directory.as_ref().map(Directory::admin_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::auth::{Credentials, Role};
    use apogee_proto::cluster::AccessRole;
    use apogee_proto::cluster_auth::ClusterSecret;

    #[test]
    fn registrations_merge_and_the_directory_follows() {
        let secret = ClusterSecret::new(b"0123456789abcdef-cluster").unwrap();
        let admin = Credentials::new("root", "root-secret").unwrap();
        let directory = Directory::with_admin(&admin);
        let book = AccessBook::new(Some(SecretSeal::new(&secret)), Some(directory.clone()));
        let seal = SecretSeal::new(&secret);
        let user = |ms: i64, deleted: bool| AccessUser {
            access_key: "app".into(),
            sealed_secret: seal.seal("app", "app-secret"),
            role: AccessRole::User as i32,
            updated_ms: ms,
            deleted,
        };
        book.merge(vec![user(10, false)], vec![]);
        let (key, role) = directory.lookup("app").unwrap();
        assert_eq!((&key[..], role), (&b"app-secret"[..], Role::User));
        // One broker still registers the old user, another its deletion: the deletion wins.
        book.merge(vec![user(20, true)], vec![]);
        book.merge(vec![user(10, false)], vec![]);
        assert!(directory.lookup("app").is_none());
        assert_eq!(book.bootstrap_admin(), Some("root"));
        assert!(directory.lookup("root").is_some());
        // A broker that never heard of the user gets its deletion.
        let (users, acls) = book.missing_from(&[], &[]);
        assert_eq!((users.len(), acls.len()), (1, 0));
        assert!(users[0].deleted);
        assert_eq!(book.missing_from(&users, &[]), (vec![], vec![]));
    }
}

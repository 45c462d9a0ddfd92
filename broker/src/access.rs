//! The users and ACL entries this broker group keeps (issue 12 authorization), persisted in
//! the index database's `meta` space so slaves get them through state replication:
//! [`MetaKey::AccessUser`] and [`MetaKey::AccessAcl`] rows (keys in `crate::store::keys`), each
//! value a version byte, then the `cluster.v1.AccessUser` / `cluster.v1.AclEntry` protobuf (a
//! user's secret only sealed, see `apogee_proto::auth::acl::SecretSeal`), and the table's data
//! version at [`MetaKey::AccessDataVersion`]. Deletions stay as tombstones so a merge elsewhere (the
//! NameServer's) cannot bring a deleted user back.
//!
//! Changes arrive from a NameServer (Admin `ApplyAccess`) and are merged newest change
//! first; every change bumps the data version, wakes the registration task (the NameServers
//! learn the table from registrations) and updates the guard's directory, so the broker
//! checks calls against its own table.

use crate::store::keys::{self, MetaKey};
use crate::store::{Cf, KvBatch, KvStore};
use apogee_proto::auth::acl::{AccessState, SecretSeal};
use apogee_proto::auth::Directory;
use apogee_proto::cluster::{AccessUser, AclEntry};
use apogee_proto::ApogeeError;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

const DATA_VERSION_KEY: &[u8] = MetaKey::AccessDataVersion.key();
/// The first byte of every value: the layout that follows.
const VALUE_V1: u8 = 1;

pub struct AccessTable {
    kv: Arc<dyn KvStore>,
    state: RwLock<AccessState>,
    data_version: AtomicI64,
    changed: Notify,
    /// Opens the secrets for the guard (none without a cluster secret: no users then).
    seal: Option<SecretSeal>,
    /// The guard's directory, following the table (none without authentication).
    directory: Option<Directory>,
}

fn user_key(u: &AccessUser) -> Vec<u8> {
    keys::user_key(&u.access_key)
}

fn acl_key(e: &AclEntry) -> Vec<u8> {
    keys::acl_key(&e.access_key, e.kind, &e.pattern)
}

fn encode(message: &impl prost::Message) -> Vec<u8> {
    let mut v = vec![VALUE_V1];
    v.extend(message.encode_to_vec());
    v
}

fn decode<M: prost::Message + Default>(key: &[u8], value: &[u8]) -> Result<M, ApogeeError> {
    let bad = |why: String| {
        ApogeeError::Internal(format!(
            "access entry {}: {why}",
            String::from_utf8_lossy(key)
        ))
    };
    match value.split_first() {
        Some((&VALUE_V1, rest)) => M::decode(rest).map_err(|e| bad(e.to_string())),
        Some((v, _)) => Err(bad(format!("unknown value version {v}"))),
        None => Err(bad("empty value".into())),
    }
}

fn internal(e: crate::store::StoreError) -> ApogeeError {
    ApogeeError::internal(e)
}

fn read_state(kv: &dyn KvStore) -> Result<(AccessState, i64), ApogeeError> {
    let mut state = AccessState::default();
    let (from, to) = MetaKey::AccessUser.range();
    for (key, value) in kv
        .scan(Cf::Meta, &from, &to, usize::MAX)
        .map_err(internal)?
    {
        state.merge_user(decode(&key, &value)?);
    }
    let (from, to) = MetaKey::AccessAcl.range();
    for (key, value) in kv
        .scan(Cf::Meta, &from, &to, usize::MAX)
        .map_err(internal)?
    {
        state.merge_acl(decode(&key, &value)?);
    }
    let version =
        crate::topics::decode_data_version(kv.get(Cf::Meta, DATA_VERSION_KEY).map_err(internal)?)?;
    Ok((state, version))
}

impl AccessTable {
    /// Loads the persisted table; `seal` opens the secrets for `directory` (the guard's).
    pub fn load(
        kv: Arc<dyn KvStore>,
        seal: Option<SecretSeal>,
        directory: Option<Directory>,
    ) -> Result<Self, ApogeeError> {
        let (state, version) = read_state(kv.as_ref())?;
        let table = AccessTable {
            kv,
            state: RwLock::new(state),
            data_version: AtomicI64::new(version),
            changed: Notify::new(),
            seal,
            directory,
        };
        table.refresh_directory();
        Ok(table)
    }

    /// Re-reads the table from the index (a slave after replicated changes).
    pub fn reload(&self) -> Result<(), ApogeeError> {
        let (state, version) = read_state(self.kv.as_ref())?;
        *self.state.write() = state;
        self.data_version.store(version, Ordering::SeqCst);
        self.refresh_directory();
        self.changed.notify_waiters();
        Ok(())
    }

    fn refresh_directory(&self) {
        if let (Some(directory), Some(seal)) = (&self.directory, &self.seal) {
            directory.replace(self.state.read().grants(seal));
        }
    }

    /// Bumped by every change (persisted, so it only grows across restarts).
    pub fn data_version(&self) -> i64 {
        self.data_version.load(Ordering::SeqCst)
    }

    /// Woken after every change.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// The whole table, tombstones included (what registrations carry).
    pub fn snapshot(&self) -> AccessState {
        self.state.read().clone()
    }

    /// Merges users and entries (newest change wins) and persists what changed; returns how
    /// many changed. Users need the cluster secret (their secrets are sealed with it).
    pub fn apply(&self, users: Vec<AccessUser>, acls: Vec<AclEntry>) -> Result<usize, ApogeeError> {
        if !users.is_empty() && self.seal.is_none() {
            return Err(ApogeeError::PreconditionFailed(
                "users need security.cluster_secret_file on every server (their secrets are \
                 sealed with it)"
                    .into(),
            ));
        }
        let names = users
            .iter()
            .map(|u| keys::check_access_names(&u.access_key, None))
            .chain(
                acls.iter()
                    .map(|e| keys::check_access_names(&e.access_key, Some(&e.pattern))),
            );
        for checked in names {
            checked.map_err(ApogeeError::BadRequest)?;
        }
        let mut state = self.state.write();
        let mut next = state.clone();
        let mut batch = KvBatch::new();
        let mut changes = 0;
        for u in users {
            if next.merge_user(u.clone()) {
                batch.put(Cf::Meta, user_key(&u), encode(&u));
                changes += 1;
            }
        }
        for e in acls {
            if next.merge_acl(e.clone()) {
                batch.put(Cf::Meta, acl_key(&e), encode(&e));
                changes += 1;
            }
        }
        if changes == 0 {
            return Ok(0);
        }
        let version = self.data_version.load(Ordering::SeqCst) + 1;
        batch.put(
            Cf::Meta,
            DATA_VERSION_KEY,
            crate::topics::encode_data_version(version),
        );
        self.kv
            .write(batch)
            .map_err(|e| ApogeeError::internal_in("persisting users and ACLs", e))?;
        *state = next;
        self.data_version.store(version, Ordering::SeqCst);
        drop(state);
        self.refresh_directory();
        self.changed.notify_waiters();
        tracing::info!(
            changes,
            data_version = version,
            "users and ACL entries changed"
        );
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemKv;
    use apogee_proto::auth::{Credentials, Role};
    use apogee_proto::cluster::{AccessRole, AclResourceKind};
    use apogee_proto::cluster_auth::ClusterSecret;

    fn seal() -> SecretSeal {
        SecretSeal::new(&ClusterSecret::new(b"0123456789abcdef-cluster").unwrap())
    }

    fn user(ms: i64, deleted: bool) -> AccessUser {
        AccessUser {
            access_key: "app".into(),
            sealed_secret: seal().seal("app", "app-secret-1234"),
            role: AccessRole::User as i32,
            updated_ms: ms,
            deleted,
        }
    }

    fn entry(ms: i64) -> AclEntry {
        AclEntry {
            access_key: "app".into(),
            kind: AclResourceKind::Topic as i32,
            pattern: "orders*".into(),
            publish: true,
            updated_ms: ms,
            ..Default::default()
        }
    }

    #[test]
    fn users_persist_sealed_and_the_directory_follows() {
        let kv: Arc<dyn KvStore> = Arc::new(MemKv::default());
        let admin = Credentials::new("root", "root-secret").unwrap();
        let directory = Directory::with_admin(&admin);
        let t = AccessTable::load(kv.clone(), Some(seal()), Some(directory.clone())).unwrap();
        assert_eq!(t.apply(vec![user(10, false)], vec![entry(10)]).unwrap(), 2);
        assert_eq!(t.data_version(), 1);
        // Nothing newer: no change, no version bump.
        assert_eq!(t.apply(vec![user(5, false)], vec![entry(10)]).unwrap(), 0);
        assert_eq!(t.data_version(), 1);
        let (secret, role) = directory.lookup("app").unwrap();
        assert_eq!((&secret[..], role), (&b"app-secret-1234"[..], Role::User));

        // Every stored value starts with the version byte, none holds the secret.
        let users = MetaKey::AccessUser.range();
        let rows = kv
            .scan(
                Cf::Meta,
                &users.0,
                &MetaKey::AccessAcl.range().1,
                usize::MAX,
            )
            .unwrap();
        assert_eq!(rows.len(), 2, "the user and the ACL entry");
        for (key, value) in &rows {
            assert_eq!(value[0], VALUE_V1, "{key:?}");
            assert!(!value.windows(15).any(|w| w == b"app-secret-1234"));
        }

        // A reload (or restart) reads the same table.
        let again = AccessTable::load(kv.clone(), Some(seal()), None).unwrap();
        assert_eq!(again.snapshot(), t.snapshot());
        assert_eq!(again.data_version(), 1);

        // A deletion stays as a tombstone and the directory forgets the user.
        t.apply(vec![user(20, true)], vec![]).unwrap();
        assert!(directory.lookup("app").is_none());
        t.reload().unwrap();
        assert_eq!(t.snapshot().all_users().count(), 1);
        assert!(t.snapshot().user("app").is_none());
        assert_eq!(t.data_version(), 2);
    }

    #[test]
    fn users_need_the_cluster_secret() {
        let kv: Arc<dyn KvStore> = Arc::new(MemKv::default());
        let t = AccessTable::load(kv, None, None).unwrap();
        assert!(matches!(
            t.apply(vec![user(1, false)], vec![]),
            Err(ApogeeError::PreconditionFailed(_))
        ));
        assert_eq!(t.apply(vec![], vec![entry(1)]).unwrap(), 1);
    }
}

//! Authorization: the users of a cluster (beyond the bootstrap admin), their access-control
//! entries, and the one decision every messaging handler asks for.
//!
//! - A user is an access key, a secret key and a [`Role`]; an admin may do everything.
//! - An ACL entry gives one user's actions (publish, subscribe) on a topic or group pattern
//!   (an exact name, or a prefix written `name*`), allowed or denied. [`AclSet::permits`]
//!   decides: the cluster and admins may do everything; for a user a matching deny entry wins
//!   over everything, then a matching allow entry admits; anything else is refused.
//! - [`AccessState`] is the mergeable set of users and entries as the servers keep and
//!   exchange it (`cluster.v1.AccessUser`, `cluster.v1.AclEntry`): every change carries its
//!   time, deletions stay as tombstones, and a merge keeps the newest change of each.
//! - [`SecretSeal`] seals secret keys (ChaCha20-Poly1305 under a key derived from the cluster
//!   secret, a random nonce per value, the access key as associated data): they rest and travel
//!   between servers only sealed.
//! - [`authorize`] is what a handler calls with its request: no [`Identity`] (authentication
//!   off) admits everything as before.
//! - [`ListingScope`]: what a listing shows a user who is not an admin (the topics and groups
//!   their entries grant, their own entries).

use super::{Identity, Role};
use crate::cluster::{AccessRole, AccessUser, AclEntry, AclResourceKind};
use crate::cluster_auth::ClusterSecret;
use crate::error::ApogeeError;
use crate::limits;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a client does with a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send (and end or recall transactional / delayed) messages.
    Pub,
    /// Receive, pull, acknowledge; read and commit offsets.
    Sub,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Pub => "pub",
            Action::Sub => "sub",
        }
    }
}

/// What an ACL entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Topic,
    Group,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Topic => "topic",
            ResourceKind::Group => "group",
        }
    }

    pub fn from_wire(kind: i32) -> Option<ResourceKind> {
        match AclResourceKind::try_from(kind).ok()? {
            AclResourceKind::Topic => Some(ResourceKind::Topic),
            AclResourceKind::Group => Some(ResourceKind::Group),
            AclResourceKind::Unspecified => None,
        }
    }

    pub fn to_wire(self) -> AclResourceKind {
        match self {
            ResourceKind::Topic => AclResourceKind::Topic,
            ResourceKind::Group => AclResourceKind::Group,
        }
    }
}

/// The role a wire role names (unspecified: none).
pub fn role_from_wire(role: i32) -> Option<Role> {
    match AccessRole::try_from(role).ok()? {
        AccessRole::Admin => Some(Role::Admin),
        AccessRole::User => Some(Role::User),
        AccessRole::Unspecified => None,
    }
}

pub fn role_to_wire(role: Role) -> AccessRole {
    match role {
        Role::Admin => AccessRole::Admin,
        Role::User => AccessRole::User,
    }
}

/// Whether `name` matches `pattern` (an exact name, or a prefix ending in `*`).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Checks a resource pattern: `*`, or a name (or prefix before a final `*`) following the
/// topic or group name rules.
pub fn validate_pattern(kind: ResourceKind, pattern: &str) -> Result<(), ApogeeError> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    if name.is_empty() && pattern == "*" {
        return Ok(());
    }
    let checked = match kind {
        ResourceKind::Topic => limits::validate_topic(name),
        ResourceKind::Group => limits::validate_group(name),
    };
    checked.map_err(|e| {
        ApogeeError::BadRequest(format!(
            "{} pattern {pattern:?}: {e} (a prefix is written name*)",
            kind.name()
        ))
    })
}

/// Checks an entry as a Grant carries it: a valid access key, a resource kind and pattern,
/// and at least one action.
pub fn validate_entry(entry: &AclEntry) -> Result<ResourceKind, ApogeeError> {
    if !super::signature::valid_access_key(&entry.access_key) {
        return Err(ApogeeError::BadRequest(format!(
            "access key {:?} must be 1 to 128 printable ASCII characters without ',' or '='",
            entry.access_key
        )));
    }
    let kind = ResourceKind::from_wire(entry.kind)
        .ok_or_else(|| ApogeeError::BadRequest("an ACL entry needs a topic or a group".into()))?;
    validate_pattern(kind, &entry.pattern)?;
    if !entry.publish && !entry.subscribe {
        return Err(ApogeeError::BadRequest(
            "an ACL entry needs at least one action (pub, sub)".into(),
        ));
    }
    Ok(kind)
}

/// One user's entry, as checked.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    kind: ResourceKind,
    pattern: String,
    publish: bool,
    subscribe: bool,
    deny: bool,
}

impl Rule {
    fn covers(&self, kind: ResourceKind, name: &str, action: Action) -> bool {
        let acts = match action {
            Action::Pub => self.publish,
            Action::Sub => self.subscribe,
        };
        acts && self.kind == kind && pattern_matches(&self.pattern, name)
    }
}

/// The live ACL entries, by user: what [`AclSet::permits`] decides with.
#[derive(Clone, Debug, Default)]
pub struct AclSet {
    rules: HashMap<String, Vec<Rule>>,
}

impl AclSet {
    /// The set of the live (not deleted) entries among `entries`.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a AclEntry>) -> AclSet {
        let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
        for e in entries.into_iter().filter(|e| !e.deleted) {
            let Some(kind) = ResourceKind::from_wire(e.kind) else {
                continue;
            };
            rules.entry(e.access_key.clone()).or_default().push(Rule {
                kind,
                pattern: e.pattern.clone(),
                publish: e.publish,
                subscribe: e.subscribe,
                deny: e.deny,
            });
        }
        AclSet { rules }
    }

    /// Whether `identity` may do `action` on the resource: the cluster and admins may do
    /// everything; a user's matching deny entry refuses, then a matching allow entry admits,
    /// and anything else is refused (FORBIDDEN, naming user, action and resource).
    pub fn permits(
        &self,
        identity: &Identity,
        kind: ResourceKind,
        name: &str,
        action: Action,
    ) -> Result<(), ApogeeError> {
        let access_key = match identity {
            Identity::Cluster => return Ok(()),
            Identity::User {
                role: Role::Admin, ..
            } => return Ok(()),
            Identity::User { access_key, .. } => access_key,
        };
        let matching: Vec<&Rule> = self
            .rules
            .get(access_key)
            .map(|rules| {
                rules
                    .iter()
                    .filter(|r| r.covers(kind, name, action))
                    .collect()
            })
            .unwrap_or_default();
        let refused = |why: &str| {
            Err(ApogeeError::Forbidden(format!(
                "user {access_key} may not {} {} {name}: {why}",
                action.name(),
                kind.name()
            )))
        };
        if let Some(deny) = matching.iter().find(|r| r.deny) {
            return refused(&format!("denied by the entry for {}", deny.pattern));
        }
        if matching.is_empty() {
            return refused("no ACL entry allows it");
        }
        Ok(())
    }
}

/// The check a handler makes: `action` on each resource, for the caller of `request`. Without
/// an [`Identity`] (authentication off) everything is allowed. With the `server` feature only
/// (the caller's address it logs is a server's to know).
#[cfg(feature = "server")]
pub fn authorize<T>(
    request: &tonic::Request<T>,
    resources: &[(ResourceKind, &str)],
    action: Action,
) -> Result<(), ApogeeError> {
    let Some(identity) = request.extensions().get::<Identity>() else {
        return Ok(());
    };
    // The guard sets both; without entries a user may do nothing.
    let acls = request
        .extensions()
        .get::<Arc<AclSet>>()
        .cloned()
        .unwrap_or_default();
    for (kind, name) in resources {
        if let Err(e) = acls.permits(identity, *kind, name, action) {
            let client_id = request
                .metadata()
                .get("x-mq-client-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let peer = request
                .remote_addr()
                .map_or_else(|| "-".to_string(), |a| a.to_string());
            let user = match identity {
                Identity::User { access_key, .. } => access_key.as_str(),
                Identity::Cluster => "-",
            };
            tracing::warn!(
                client_id,
                %peer,
                user,
                resource = %format!("{} {name}", kind.name()),
                action = action.name(),
                "refused: {e}"
            );
            return Err(e);
        }
    }
    Ok(())
}

/// Whom a listing (the NameServer's ListTopics, ListGroups, ListAcls) is for: a user who is
/// not an admin sees only the topics and groups an ACL entry of theirs lets them publish to or
/// subscribe to (deny entries applied as [`AclSet::permits`] applies them), and only their own
/// entries.
pub struct ListingScope {
    identity: Identity,
    access_key: String,
    acls: Arc<AclSet>,
}

impl ListingScope {
    /// The scope of `request`'s caller; None when they see everything (authentication off,
    /// the cluster, an admin).
    pub fn of<T>(request: &tonic::Request<T>) -> Option<ListingScope> {
        let identity = request.extensions().get::<Identity>()?;
        let access_key = match identity {
            Identity::User {
                access_key,
                role: Role::User,
            } => access_key.clone(),
            _ => return None,
        };
        let acls = request
            .extensions()
            .get::<Arc<AclSet>>()
            .cloned()
            .unwrap_or_default();
        Some(ListingScope {
            identity: identity.clone(),
            access_key,
            acls,
        })
    }

    /// Whether the user may publish to or subscribe to the resource.
    pub fn shows(&self, kind: ResourceKind, name: &str) -> bool {
        [Action::Pub, Action::Sub].into_iter().any(|action| {
            self.acls
                .permits(&self.identity, kind, name, action)
                .is_ok()
        })
    }

    /// The user's access key (whose entries they may list).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }
}

/// Seals and opens users' secret keys with a key derived from the cluster secret.
pub struct SecretSeal {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSeal(..)")
    }
}

/// The label the sealing key is derived under.
const SEAL_LABEL: &str = "apogee user secret seal v1";

impl SecretSeal {
    pub fn new(cluster: &ClusterSecret) -> SecretSeal {
        let key = cluster.derive_key(SEAL_LABEL);
        SecretSeal {
            key: LessSafeKey::new(
                UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key"),
            ),
        }
    }

    /// `secret` sealed for `access_key`: a random nonce, then the ciphertext and tag.
    pub fn seal(&self, access_key: &str, secret: &str) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(access_key.as_bytes()),
                &mut sealed,
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        out
    }

    /// The secret sealed for `access_key` (refused when tampered with, sealed for another
    /// user, or under another cluster secret).
    pub fn open(&self, access_key: &str, sealed: &[u8]) -> Result<String, ApogeeError> {
        let bad = || {
            ApogeeError::Internal(format!(
                "the sealed secret of {access_key} does not open with this cluster secret"
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(access_key.as_bytes()), &mut buffer)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| bad())
    }
}

/// The key of an ACL entry: one per user and resource pattern.
pub type AclKey = (String, i32, String);

pub fn acl_key(entry: &AclEntry) -> AclKey {
    (entry.access_key.clone(), entry.kind, entry.pattern.clone())
}

/// Whether a change made at `incoming_ms` (a deletion or not) replaces one made at
/// `existing_ms`: the newer wins; at the same time a deletion wins.
fn replaces(existing_ms: i64, existing_deleted: bool, incoming_ms: i64, deleted: bool) -> bool {
    incoming_ms > existing_ms || (incoming_ms == existing_ms && deleted && !existing_deleted)
}

/// Users and ACL entries with their tombstones, merged newest change first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessState {
    users: BTreeMap<String, AccessUser>,
    acls: BTreeMap<AclKey, AclEntry>,
}

impl AccessState {
    /// Takes `user` if it is newer than what is known of it; returns whether it did.
    pub fn merge_user(&mut self, user: AccessUser) -> bool {
        if let Some(known) = self.users.get(&user.access_key) {
            if !replaces(
                known.updated_ms,
                known.deleted,
                user.updated_ms,
                user.deleted,
            ) {
                return false;
            }
        }
        self.users.insert(user.access_key.clone(), user);
        true
    }

    /// Takes `entry` if it is newer than what is known of it; returns whether it did.
    pub fn merge_acl(&mut self, entry: AclEntry) -> bool {
        let key = acl_key(&entry);
        if let Some(known) = self.acls.get(&key) {
            if !replaces(
                known.updated_ms,
                known.deleted,
                entry.updated_ms,
                entry.deleted,
            ) {
                return false;
            }
        }
        self.acls.insert(key, entry);
        true
    }

    /// Merges everything of `users` and `acls`; returns whether anything changed.
    pub fn merge(
        &mut self,
        users: impl IntoIterator<Item = AccessUser>,
        acls: impl IntoIterator<Item = AclEntry>,
    ) -> bool {
        let mut changed = false;
        for u in users {
            changed |= self.merge_user(u);
        }
        for e in acls {
            changed |= self.merge_acl(e);
        }
        changed
    }

    /// The users and entries of this state that `other` lacks or holds an older change of
    /// (tombstones included): what brings `other` up to date.
    pub fn newer_than(&self, other: &AccessState) -> (Vec<AccessUser>, Vec<AclEntry>) {
        let users = self
            .users
            .values()
            .filter(|u| match other.users.get(&u.access_key) {
                Some(o) => replaces(o.updated_ms, o.deleted, u.updated_ms, u.deleted),
                None => true,
            })
            .cloned()
            .collect();
        let acls = self
            .acls
            .iter()
            .filter(|(key, e)| match other.acls.get(*key) {
                Some(o) => replaces(o.updated_ms, o.deleted, e.updated_ms, e.deleted),
                None => true,
            })
            .map(|(_, e)| e.clone())
            .collect();
        (users, acls)
    }

    /// A live user.
    pub fn user(&self, access_key: &str) -> Option<&AccessUser> {
        self.users.get(access_key).filter(|u| !u.deleted)
    }

    /// A live entry.
    pub fn acl(&self, key: &AclKey) -> Option<&AclEntry> {
        self.acls.get(key).filter(|e| !e.deleted)
    }

    /// Live users, by access key.
    pub fn users(&self) -> impl Iterator<Item = &AccessUser> {
        self.users.values().filter(|u| !u.deleted)
    }

    /// Live entries, by user and resource.
    pub fn acls(&self) -> impl Iterator<Item = &AclEntry> {
        self.acls.values().filter(|e| !e.deleted)
    }

    /// Every user, tombstones included (what is persisted and registered).
    pub fn all_users(&self) -> impl Iterator<Item = &AccessUser> {
        self.users.values()
    }

    /// Every entry, tombstones included.
    pub fn all_acls(&self) -> impl Iterator<Item = &AclEntry> {
        self.acls.values()
    }

    /// What a guard checks calls against: each live user's secret (opened with `seal`; a user
    /// whose secret does not open is left out, logged) and role, and the live entries.
    pub fn grants(&self, seal: &SecretSeal) -> Grants {
        let mut accounts = HashMap::new();
        for u in self.users() {
            let Some(role) = role_from_wire(u.role) else {
                continue;
            };
            match seal.open(&u.access_key, &u.sealed_secret) {
                Ok(secret) => {
                    accounts.insert(u.access_key.clone(), (Arc::from(secret.as_bytes()), role));
                }
                Err(e) => tracing::warn!(user = %u.access_key, "user left out: {e}"),
            }
        }
        Grants {
            accounts,
            acls: Arc::new(AclSet::of(self.acls())),
        }
    }
}

/// The users (secret key, role) and ACL entries a [`super::Directory`] serves.
#[derive(Clone, Default)]
pub struct Grants {
    pub(super) accounts: HashMap<String, (Arc<[u8]>, Role)>,
    pub(super) acls: Arc<AclSet>,
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;

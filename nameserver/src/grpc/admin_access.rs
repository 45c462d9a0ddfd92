//! Users and ACL entries on a NameServer's Admin service. A change is validated here,
//! stamped with its time (newest change wins everywhere), sent to every broker group's live
//! master as `ApplyAccess` (which keeps and replicates it, and registers it back), and merged
//! into this NameServer's [`AccessBook`] so its guard follows at once. Failures name each
//! broker group that did not apply it. Listings never return secrets.

use super::brokers::BrokerChannels;
use super::fan_out::{broker_names, every_master, fan_out};
use crate::access::AccessBook;
use crate::registry::Registry;
use apogee_proto::auth::acl::{
    acl_key, role_from_wire, role_to_wire, validate_entry, validate_pattern, ResourceKind,
    SecretSeal,
};
use apogee_proto::auth::{Credentials, Role};
use apogee_proto::cluster::{
    AccessChangeResponse, AccessRole, AccessUser, AclEntry, ApplyAccessRequest, CreateUserRequest,
    DeleteUserRequest, GrantRequest, ListAclsRequest, ListAclsResponse, ListUsersResponse,
    RevokeRequest, UpdateUserRequest, UserSummary,
};
use tonic::Status;

/// What the changes go through.
pub struct AccessAdmin<'a> {
    pub registry: &'a Registry,
    pub channels: &'a BrokerChannels,
    pub book: &'a AccessBook,
}

/// The time of a change to something last changed at `previous_ms`: now, and always after it
/// (so the change wins even against a clock that was ahead).
fn stamp(previous_ms: i64) -> i64 {
    apogee_proto::time::now_ms().max(previous_ms + 1)
}

impl AccessAdmin<'_> {
    fn seal(&self) -> Result<&SecretSeal, Status> {
        self.book.seal().ok_or_else(|| {
            Status::failed_precondition(
                "users need security.cluster_secret_file (their secrets are sealed with it)",
            )
        })
    }

    fn not_bootstrap(&self, access_key: &str) -> Result<(), Status> {
        if self.book.bootstrap_admin() == Some(access_key) {
            return Err(Status::failed_precondition(format!(
                "{access_key} is the bootstrap admin of the servers' config; it cannot be \
                 created, changed or deleted here"
            )));
        }
        Ok(())
    }

    /// Sends the change to every master; merges it here when any applied it.
    async fn apply(
        &self,
        what: &str,
        users: Vec<AccessUser>,
        acls: Vec<AclEntry>,
    ) -> Result<AccessChangeResponse, Status> {
        let request = ApplyAccessRequest {
            users: users.clone(),
            acls: acls.clone(),
        };
        let targets = every_master(self.registry);
        let answers = fan_out(self.channels, targets, what, |mut c| {
            let r = request.clone();
            async move { c.apply_access(r).await }
        })
        .await;
        if answers.is_empty() {
            return Err(Status::unavailable("no broker group has a live master"));
        }
        let (applied, error) = answers.applied();
        if !applied.is_empty() {
            self.book.merge(users, acls);
        }
        if let Some(e) = error {
            return Err(e);
        }
        Ok(AccessChangeResponse {
            broker_names: broker_names(&applied),
        })
    }

    pub async fn create_user(
        &self,
        req: CreateUserRequest,
    ) -> Result<AccessChangeResponse, Status> {
        let credentials =
            Credentials::new(req.access_key, req.secret_key).map_err(Status::invalid_argument)?;
        let access_key = credentials.access_key().to_string();
        self.not_bootstrap(&access_key)?;
        let role = match req.role {
            0 => Role::User,
            r => role_from_wire(r).ok_or_else(|| Status::invalid_argument("unknown role"))?,
        };
        let seal = self.seal()?;
        let state = self.book.snapshot();
        if state.user(&access_key).is_some() {
            return Err(Status::already_exists(format!(
                "user {access_key} exists; change it with `apogee user update {access_key}`"
            )));
        }
        let previous = state
            .all_users()
            .find(|u| u.access_key == access_key)
            .map_or(0, |u| u.updated_ms);
        let user = AccessUser {
            sealed_secret: seal.seal(&access_key, credentials.secret_key()),
            access_key: access_key.clone(),
            role: role_to_wire(role) as i32,
            updated_ms: stamp(previous),
            deleted: false,
        };
        self.apply(&format!("CreateUser of {access_key}"), vec![user], vec![])
            .await
    }

    pub async fn update_user(
        &self,
        req: UpdateUserRequest,
    ) -> Result<AccessChangeResponse, Status> {
        self.not_bootstrap(&req.access_key)?;
        let mut user = self
            .book
            .snapshot()
            .user(&req.access_key)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("user {}", req.access_key)))?;
        if req.secret_key.is_empty() && req.role == AccessRole::Unspecified as i32 {
            return Err(Status::invalid_argument(
                "nothing to change: give a new secret key and/or role",
            ));
        }
        if !req.secret_key.is_empty() {
            user.sealed_secret = self.seal()?.seal(&req.access_key, &req.secret_key);
        }
        if req.role != AccessRole::Unspecified as i32 {
            let role =
                role_from_wire(req.role).ok_or_else(|| Status::invalid_argument("unknown role"))?;
            user.role = role_to_wire(role) as i32;
        }
        user.updated_ms = stamp(user.updated_ms);
        self.apply(
            &format!("UpdateUser of {}", req.access_key),
            vec![user],
            vec![],
        )
        .await
    }

    /// Deletes the user and its ACL entries (as tombstones).
    pub async fn delete_user(
        &self,
        req: DeleteUserRequest,
    ) -> Result<AccessChangeResponse, Status> {
        self.not_bootstrap(&req.access_key)?;
        let state = self.book.snapshot();
        let mut user = state
            .user(&req.access_key)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("user {}", req.access_key)))?;
        user.updated_ms = stamp(user.updated_ms);
        user.deleted = true;
        user.sealed_secret.clear();
        let acls = state
            .acls()
            .filter(|e| e.access_key == req.access_key)
            .map(|e| AclEntry {
                updated_ms: stamp(e.updated_ms),
                deleted: true,
                ..e.clone()
            })
            .collect();
        self.apply(
            &format!("DeleteUser of {}", req.access_key),
            vec![user],
            acls,
        )
        .await
    }

    pub fn list_users(&self) -> ListUsersResponse {
        let mut users: Vec<UserSummary> = self
            .book
            .bootstrap_admin()
            .map(|admin| UserSummary {
                access_key: admin.to_string(),
                role: AccessRole::Admin as i32,
                updated_ms: 0,
                bootstrap: true,
            })
            .into_iter()
            .collect();
        users.extend(self.book.snapshot().users().map(|u| UserSummary {
            access_key: u.access_key.clone(),
            role: u.role,
            updated_ms: u.updated_ms,
            bootstrap: false,
        }));
        ListUsersResponse { users }
    }

    pub async fn grant(&self, req: GrantRequest) -> Result<AccessChangeResponse, Status> {
        let mut entry = req
            .entry
            .ok_or_else(|| Status::invalid_argument("entry is required"))?;
        let kind = validate_entry(&entry)?;
        let state = self.book.snapshot();
        if state.user(&entry.access_key).is_none() {
            return Err(Status::not_found(format!(
                "user {} (create it first; admins need no ACL entries)",
                entry.access_key
            )));
        }
        let previous = state
            .all_acls()
            .find(|e| acl_key(e) == acl_key(&entry))
            .map_or(0, |e| e.updated_ms);
        entry.updated_ms = stamp(previous);
        entry.deleted = false;
        let what = format!(
            "Grant to {} on {} {}",
            entry.access_key,
            kind.name(),
            entry.pattern
        );
        self.apply(&what, vec![], vec![entry]).await
    }

    pub async fn revoke(&self, req: RevokeRequest) -> Result<AccessChangeResponse, Status> {
        let kind = ResourceKind::from_wire(req.kind)
            .ok_or_else(|| Status::invalid_argument("a topic or a group is required"))?;
        validate_pattern(kind, &req.pattern)?;
        let key = (req.access_key.clone(), req.kind, req.pattern.clone());
        let mut entry = self.book.snapshot().acl(&key).cloned().ok_or_else(|| {
            Status::not_found(format!(
                "no ACL entry of {} on {} {}",
                req.access_key,
                kind.name(),
                req.pattern
            ))
        })?;
        entry.updated_ms = stamp(entry.updated_ms);
        entry.deleted = true;
        let what = format!(
            "Revoke from {} on {} {}",
            req.access_key,
            kind.name(),
            req.pattern
        );
        self.apply(&what, vec![], vec![entry]).await
    }

    pub fn list_acls(&self, req: &ListAclsRequest) -> ListAclsResponse {
        ListAclsResponse {
            entries: self
                .book
                .snapshot()
                .acls()
                .filter(|e| req.access_key.is_empty() || e.access_key == req.access_key)
                .cloned()
                .collect(),
        }
    }
}

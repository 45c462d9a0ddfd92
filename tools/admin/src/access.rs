//! The admin library behind `apogee user create|update|delete|list` and
//! `apogee acl grant|revoke|list`: the cluster's users (access key, secret key, role) and
//! their ACL entries (actions on a topic or group, an exact name or a `prefix*`, allowed or
//! denied), managed through a NameServer, which applies them on every broker group's master.
//! Listings never show secrets.

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use crate::spelling::Spelled;
use apogee_proto::auth::acl::{validate_pattern, ResourceKind};
use apogee_proto::auth::signature::valid_access_key;
use apogee_proto::cluster::{self, AccessRole};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    /// Everything, the Admin service included.
    Admin,
    /// Messaging as the user's ACL entries allow.
    User,
}

impl Spelled for RoleArg {
    const SPELLINGS: &'static [(RoleArg, &'static str, &'static str)] = &[
        (
            RoleArg::Admin,
            "admin",
            "Everything, the Admin service included",
        ),
        (
            RoleArg::User,
            "user",
            "Messaging as the user's ACL entries allow",
        ),
    ];
}

impl RoleArg {
    /// A role by name as a form sends it: `admin` or `user`.
    pub fn parse(name: &str) -> ToolResult<RoleArg> {
        match name.trim() {
            "admin" => Ok(RoleArg::Admin),
            "user" => Ok(RoleArg::User),
            other => Err(ToolError::Usage(format!(
                "unknown role {other:?}: use admin or user"
            ))),
        }
    }

    fn to_proto(self) -> AccessRole {
        match self {
            RoleArg::Admin => AccessRole::Admin,
            RoleArg::User => AccessRole::User,
        }
    }
}

/// `pub`, `sub` or `pub,sub` as (publish, subscribe).
pub fn parse_actions(s: &str) -> Result<(bool, bool), String> {
    let (mut publish, mut subscribe) = (false, false);
    for part in s.split(',').map(str::trim) {
        match part {
            "pub" => publish = true,
            "sub" => subscribe = true,
            other => return Err(format!("unknown action {other:?}: use pub, sub or pub,sub")),
        }
    }
    Ok((publish, subscribe))
}

fn check_user(name: &str) -> ToolResult<()> {
    if valid_access_key(name) {
        return Ok(());
    }
    Err(ToolError::Usage(format!(
        "access key {name:?} must be 1 to 128 printable ASCII characters without ',' or '='"
    )))
}

/// What a change was applied to.
#[derive(Debug, Serialize)]
pub struct ChangeRow {
    pub change: String,
    pub brokers: Vec<String>,
}

impl TableRow for ChangeRow {
    fn headers() -> Vec<&'static str> {
        vec!["CHANGE", "BROKERS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.change.clone(), self.brokers.join(",")]
    }
}

#[derive(Debug, Serialize)]
pub struct UserRow {
    pub user: String,
    pub role: String,
    /// From the servers' config, not changeable here.
    pub bootstrap: bool,
}

impl TableRow for UserRow {
    fn headers() -> Vec<&'static str> {
        vec!["USER", "ROLE", "BOOTSTRAP"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.user.clone(),
            self.role.clone(),
            self.bootstrap.to_string(),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct AclRow {
    pub user: String,
    pub kind: String,
    pub resource: String,
    pub actions: String,
    pub decision: String,
}

impl TableRow for AclRow {
    fn headers() -> Vec<&'static str> {
        vec!["USER", "KIND", "RESOURCE", "ACTIONS", "DECISION"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.user.clone(),
            self.kind.clone(),
            self.resource.clone(),
            self.actions.clone(),
            self.decision.clone(),
        ]
    }
}

fn role_name(role: i32) -> String {
    match AccessRole::try_from(role) {
        Ok(AccessRole::Admin) => "admin".into(),
        Ok(AccessRole::User) => "user".into(),
        _ => "-".into(),
    }
}

fn acl_row(e: &cluster::AclEntry) -> AclRow {
    let actions: Vec<&str> = [(e.publish, "pub"), (e.subscribe, "sub")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    AclRow {
        user: e.access_key.clone(),
        kind: ResourceKind::from_wire(e.kind)
            .map_or("-", |k| k.name())
            .into(),
        resource: e.pattern.clone(),
        actions: actions.join(","),
        decision: if e.deny { "deny" } else { "allow" }.into(),
    }
}

fn change_row(change: String, resp: cluster::AccessChangeResponse) -> ChangeRow {
    ChangeRow {
        change,
        brokers: resp.broker_names,
    }
}

/// One ACL entry to grant: a user's actions on a topic or group (an exact name or a
/// `prefix*`), allowed or, with `deny`, refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclGrant {
    pub user: String,
    pub kind: ResourceKind,
    pub pattern: String,
    pub publish: bool,
    pub subscribe: bool,
    pub deny: bool,
}

/// A resource kind by name as a form sends it: `topic` or `group`.
pub fn parse_kind(name: &str) -> ToolResult<ResourceKind> {
    [ResourceKind::Topic, ResourceKind::Group]
        .into_iter()
        .find(|k| k.name() == name.trim())
        .ok_or_else(|| {
            ToolError::Usage(format!(
                "unknown resource kind {name:?}: use topic or group"
            ))
        })
}

/// Checks a resource pattern: an exact name of its kind or a `prefix*`.
pub fn check_pattern(kind: ResourceKind, pattern: &str) -> ToolResult<()> {
    validate_pattern(kind, pattern).map_err(|e| ToolError::Usage(e.to_string()))
}

/// The users and ACL entries of the cluster, typed (admins only may call them); the CLI's
/// `user` and `acl` commands and the web console both go through these.
impl Admin {
    /// Every user (admins only may ask).
    pub async fn list_users(&self) -> ToolResult<Vec<UserRow>> {
        let resp = self
            .admin
            .clone()
            .list_users(self.req(cluster::ListUsersRequest {}))
            .await;
        Ok(resp
            .map_err(self.err(None))?
            .into_inner()
            .users
            .into_iter()
            .map(|u| UserRow {
                user: u.access_key,
                role: role_name(u.role),
                bootstrap: u.bootstrap,
            })
            .collect())
    }

    /// Creates user `name` with `secret_key` and `role` on every broker group.
    pub async fn create_user(
        &self,
        name: &str,
        secret_key: &str,
        role: RoleArg,
    ) -> ToolResult<ChangeRow> {
        check_user(name)?;
        if secret_key.is_empty() {
            return Err(ToolError::Usage("the user's secret key is empty".into()));
        }
        let req = cluster::CreateUserRequest {
            access_key: name.to_string(),
            secret_key: secret_key.to_string(),
            role: role.to_proto() as i32,
        };
        let resp = self.admin.clone().create_user(self.req(req)).await;
        let resp = resp.map_err(self.err(None))?.into_inner();
        Ok(change_row(format!("created user {name}"), resp))
    }

    /// Changes user `name`'s secret key and/or role (at least one of them).
    pub async fn update_user(
        &self,
        name: &str,
        secret_key: Option<String>,
        role: Option<RoleArg>,
    ) -> ToolResult<ChangeRow> {
        check_user(name)?;
        let secret_key = secret_key.unwrap_or_default();
        if secret_key.is_empty() && role.is_none() {
            return Err(ToolError::Usage(
                "nothing to change: give --secret-file, --user-secret or --role".into(),
            ));
        }
        let req = cluster::UpdateUserRequest {
            access_key: name.to_string(),
            secret_key,
            role: role.map_or(AccessRole::Unspecified, RoleArg::to_proto) as i32,
        };
        let resp = self.admin.clone().update_user(self.req(req)).await;
        let resp = resp.map_err(self.err(None))?.into_inner();
        Ok(change_row(format!("updated user {name}"), resp))
    }

    /// Deletes user `name` and its ACL entries.
    pub async fn delete_user(&self, name: &str) -> ToolResult<ChangeRow> {
        check_user(name)?;
        let req = cluster::DeleteUserRequest {
            access_key: name.to_string(),
        };
        let resp = self.admin.clone().delete_user(self.req(req)).await;
        let resp = resp.map_err(self.err(None))?.into_inner();
        Ok(change_row(format!("deleted user {name}"), resp))
    }

    /// Every ACL entry, or only `user`'s.
    pub async fn list_acls(&self, user: Option<&str>) -> ToolResult<Vec<AclRow>> {
        let req = cluster::ListAclsRequest {
            access_key: user.unwrap_or_default().to_string(),
        };
        let resp = self.admin.clone().list_acls(self.req(req)).await;
        Ok(resp
            .map_err(self.err(None))?
            .into_inner()
            .entries
            .iter()
            .map(acl_row)
            .collect())
    }

    /// Grants an entry; it replaces the user's entry for the same resource.
    pub async fn grant(&self, grant: &AclGrant) -> ToolResult<ChangeRow> {
        check_user(&grant.user)?;
        check_pattern(grant.kind, &grant.pattern)?;
        let entry = cluster::AclEntry {
            access_key: grant.user.clone(),
            kind: grant.kind.to_wire() as i32,
            pattern: grant.pattern.clone(),
            publish: grant.publish,
            subscribe: grant.subscribe,
            deny: grant.deny,
            ..Default::default()
        };
        let row = acl_row(&entry);
        let req = cluster::GrantRequest { entry: Some(entry) };
        let resp = self.admin.clone().grant(self.req(req)).await;
        let resp = resp.map_err(self.err(None))?.into_inner();
        let change = format!(
            "{} {} {} on {} {}",
            row.decision,
            grant.user,
            row.actions,
            grant.kind.name(),
            grant.pattern
        );
        Ok(change_row(change, resp))
    }

    /// Removes `user`'s entry for the `kind` resource `pattern`.
    pub async fn revoke(
        &self,
        user: &str,
        kind: ResourceKind,
        pattern: &str,
    ) -> ToolResult<ChangeRow> {
        check_user(user)?;
        check_pattern(kind, pattern)?;
        let req = cluster::RevokeRequest {
            access_key: user.to_string(),
            kind: kind.to_wire() as i32,
            pattern: pattern.to_string(),
        };
        let resp = self.admin.clone().revoke(self.req(req)).await;
        let resp = resp.map_err(self.err(None))?.into_inner();
        let change = format!("revoked {user}'s entry on {} {pattern}", kind.name());
        Ok(change_row(change, resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::cluster::AclResourceKind;

    #[test]
    fn actions_parse() {
        assert_eq!(parse_actions("pub"), Ok((true, false)));
        assert_eq!(parse_actions("sub"), Ok((false, true)));
        assert_eq!(parse_actions("pub,sub"), Ok((true, true)));
        assert!(parse_actions("write").is_err());
    }

    #[test]
    fn roles_and_kinds_parse_by_name() {
        assert_eq!(RoleArg::parse("admin").unwrap(), RoleArg::Admin);
        assert_eq!(RoleArg::parse(" user ").unwrap(), RoleArg::User);
        assert!(matches!(RoleArg::parse("root"), Err(ToolError::Usage(_))));
        assert_eq!(parse_kind("topic").unwrap(), ResourceKind::Topic);
        assert_eq!(parse_kind("group").unwrap(), ResourceKind::Group);
        assert!(matches!(parse_kind("queue"), Err(ToolError::Usage(_))));
    }

    #[test]
    fn entries_render_as_rows() {
        let e = cluster::AclEntry {
            access_key: "app".into(),
            kind: AclResourceKind::Topic as i32,
            pattern: "orders*".into(),
            publish: true,
            subscribe: true,
            deny: true,
            ..Default::default()
        };
        assert_eq!(
            acl_row(&e).cells(),
            vec!["app", "topic", "orders*", "pub,sub", "deny"]
        );
    }
}

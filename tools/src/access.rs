//! The admin library behind `apogee user create|update|delete|list` and
//! `apogee acl grant|revoke|list`: the cluster's users (access key, secret key, role) and
//! their ACL entries (actions on a topic or group, an exact name or a `prefix*`, allowed or
//! denied), managed through a NameServer, which applies them on every broker group's master.
//! A user's secret is read from `--secret-file` or `--user-secret` (not the global
//! `--secret-key`, which signs the CLI's own requests); listings never show secrets.

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::output::{render_list, render_one, Format, TableRow};
use apogee_proto::auth::acl::{validate_pattern, ResourceKind};
use apogee_proto::auth::{secret_from_file, signature::valid_access_key};
use apogee_proto::cluster::{self, AccessRole};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Everything, the Admin service included.
    Admin,
    /// Messaging as the user's ACL entries allow.
    User,
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

/// A new secret key: from a file or the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecretArgs {
    /// A file holding the user's secret key (surrounding whitespace ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "user_secret")]
    pub secret_file: Option<PathBuf>,
    /// The user's secret key (prefer --secret-file: a command line is visible to others).
    #[arg(long, value_name = "SECRET")]
    pub user_secret: Option<String>,
}

impl SecretArgs {
    fn secret(&self) -> ToolResult<Option<String>> {
        match (&self.secret_file, &self.user_secret) {
            (Some(path), _) => secret_from_file(path).map(Some).map_err(ToolError::Usage),
            (None, Some(s)) if s.is_empty() => {
                Err(ToolError::Usage("--user-secret is empty".into()))
            }
            (None, s) => Ok(s.clone()),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user on every broker group (role user unless --role admin).
    Create {
        /// The user's access key.
        name: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// The user's role: admin (every admin command, every resource) or user (what its
        /// ACL entries allow).
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
    },
    /// Change a user's secret key and/or role.
    Update {
        /// The user's access key.
        name: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// The user's new role (admin or user).
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
    },
    /// Delete a user and its ACL entries.
    Delete {
        /// The user's access key.
        name: String,
    },
    /// List the users (never their secrets).
    List,
}

/// A resource: `--topic` or `--group`, each an exact name or a `prefix*`.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ResourceArgs {
    /// A topic name, or a prefix written NAME* (`*`: every topic).
    #[arg(long, value_name = "NAME|PREFIX*")]
    pub topic: Option<String>,
    /// A consumer group name, or a prefix written NAME*.
    #[arg(long, value_name = "NAME|PREFIX*")]
    pub group: Option<String>,
}

impl ResourceArgs {
    fn resolve(&self) -> ToolResult<(ResourceKind, String)> {
        let (kind, pattern) = match (&self.topic, &self.group) {
            (Some(t), _) => (ResourceKind::Topic, t.clone()),
            (None, Some(g)) => (ResourceKind::Group, g.clone()),
            (None, None) => return Err(ToolError::Usage("give --topic or --group".into())),
        };
        check_pattern(kind, &pattern)?;
        Ok((kind, pattern))
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum AclCommand {
    /// Allow (or with --deny, refuse) a user's actions on a topic or group; replaces the
    /// user's entry for the same resource.
    Grant {
        /// The user's access key.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        resource: ResourceArgs,
        /// pub, sub or pub,sub.
        #[arg(long, value_name = "pub|sub|pub,sub", value_parser = parse_actions)]
        actions: (bool, bool),
        /// A deny entry: wins over every allow entry that matches.
        #[arg(long)]
        deny: bool,
    },
    /// Remove a user's entry for a topic or group.
    Revoke {
        /// The user's access key.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        resource: ResourceArgs,
    },
    /// List ACL entries (all, or one user's).
    List {
        /// Only this user's entries (its access key).
        #[arg(long)]
        user: Option<String>,
    },
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

pub async fn run_user(admin: &Admin, cmd: &UserCommand, f: Format) -> ToolResult<String> {
    let change = match cmd {
        UserCommand::Create { name, secret, role } => {
            let secret_key = secret.secret()?.ok_or_else(|| {
                ToolError::Usage(
                    "give the user's secret with --secret-file or --user-secret".into(),
                )
            })?;
            admin.create_user(name, &secret_key, *role).await?
        }
        UserCommand::Update { name, secret, role } => {
            admin.update_user(name, secret.secret()?, *role).await?
        }
        UserCommand::Delete { name } => admin.delete_user(name).await?,
        UserCommand::List => return Ok(render_list(&admin.list_users().await?, f)),
    };
    Ok(render_one(&change, f))
}

pub async fn run_acl(admin: &Admin, cmd: &AclCommand, f: Format) -> ToolResult<String> {
    let change = match cmd {
        AclCommand::Grant {
            user,
            resource,
            actions: (publish, subscribe),
            deny,
        } => {
            let (kind, pattern) = resource.resolve()?;
            let grant = AclGrant {
                user: user.clone(),
                kind,
                pattern,
                publish: *publish,
                subscribe: *subscribe,
                deny: *deny,
            };
            admin.grant(&grant).await?
        }
        AclCommand::Revoke { user, resource } => {
            let (kind, pattern) = resource.resolve()?;
            admin.revoke(user, kind, &pattern).await?
        }
        AclCommand::List { user } => {
            return Ok(render_list(&admin.list_acls(user.as_deref()).await?, f))
        }
    };
    Ok(render_one(&change, f))
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

fn check_pattern(kind: ResourceKind, pattern: &str) -> ToolResult<()> {
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
    fn user_flags_do_not_clash_with_the_signing_flags() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "apogee",
            "--access-key",
            "root",
            "--secret-key",
            "root-secret",
            "user",
            "create",
            "app",
            "--user-secret",
            "app-secret",
            "--role",
            "admin",
        ])
        .unwrap();
        assert_eq!(cli.credentials.secret_key.as_deref(), Some("root-secret"));
        let Command::User(UserCommand::Create { name, secret, role }) = cli.command else {
            panic!("not user create");
        };
        assert_eq!((name.as_str(), role), ("app", RoleArg::Admin));
        assert_eq!(secret.secret().unwrap().as_deref(), Some("app-secret"));
        let cli = Cli::try_parse_from([
            "apogee",
            "acl",
            "grant",
            "--user",
            "app",
            "--group",
            "g*",
            "--actions",
            "sub",
            "--deny",
        ])
        .unwrap();
        let Command::Acl(AclCommand::Grant {
            resource,
            actions,
            deny,
            ..
        }) = cli.command
        else {
            panic!("not acl grant");
        };
        assert_eq!(
            resource.resolve().unwrap(),
            (ResourceKind::Group, "g*".into())
        );
        assert_eq!((actions, deny), ((false, true), true));
        // One resource, exactly.
        assert!(Cli::try_parse_from([
            "apogee", "acl", "revoke", "--user", "app", "--topic", "t", "--group", "g",
        ])
        .is_err());
        assert!(Cli::try_parse_from(["apogee", "acl", "revoke", "--user", "app"]).is_err());
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

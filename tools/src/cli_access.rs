//! `apogee user create|update|delete|list` and `apogee acl grant|revoke|list`: their
//! arguments (a user's secret from `--secret-file` or `--user-secret`, not the global
//! `--secret-key`, which signs the CLI's own requests) and what they print, over the admin
//! library's users and ACL entries ([`apogee_admin::access`]).

use crate::spelled_arg::spelled;
use apogee_admin::access::{check_pattern, parse_actions, AclGrant, RoleArg};
use apogee_admin::admin::Admin;
use apogee_admin::error::{ToolError, ToolResult};
use apogee_admin::output::{render_list, render_one, Format};
use apogee_proto::auth::acl::ResourceKind;
use apogee_proto::auth::secret_from_file;
use std::path::PathBuf;

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
    /// The secret given, if any.
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
        #[arg(long, value_parser = spelled::<RoleArg>(), default_value = "user")]
        role: RoleArg,
    },
    /// Change a user's secret key and/or role.
    Update {
        /// The user's access key.
        name: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// The user's new role (admin or user).
        #[arg(long, value_parser = spelled::<RoleArg>())]
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
    /// The resource named: its kind and pattern, checked.
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

/// Runs a `user` command; returns what to print.
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

/// Runs an `acl` command; returns what to print.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

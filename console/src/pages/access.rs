//! The users and ACLs page (admins only: the Admin service refuses anyone else, and the
//! page answers 403 with its reason): the cluster's users (`apogee user list`) and ACL
//! entries (`apogee acl list`), a form creating a user, one granting an entry, and per row a
//! form deleting the user or revoking the entry (each asking for a confirmation first). Every
//! change goes through the admin library as `apogee user|acl ...` does and comes back to the
//! page saying what was done. A user's secret is sent once, in the creating form, and never
//! shown back or logged.

use crate::page::{render, Chrome, Failure, Page, PageResult};
use crate::pages::row_actions::{confirm_page, confirmed, ActionTable, Outcome, RowForm};
use crate::pages::Table;
use crate::Console;
use apogee_admin::access::{parse_actions, parse_kind, AclGrant, AclRow, RoleArg, UserRow};
use askama::Template;
use axum::extract::{Form, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

const SECTION: &str = "access";
const PAGE: &str = "/console/access";
const DELETE_USER: &str = "/console/access/users/delete";
const REVOKE: &str = "/console/access/revoke";

/// What a change's redirect may say.
const VERBS: &[&str] = &["created user", "deleted user", "granted", "revoked"];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/access", get(show))
        .route("/access/users", post(create_user))
        .route("/access/users/delete", post(delete_user))
        .route("/access/grant", post(grant))
        .route("/access/revoke", post(revoke))
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage<'a> {
    chrome: &'a Chrome,
    users: ActionTable,
    acls: ActionTable,
    outcome: Option<Outcome>,
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
    what: Option<String>,
}

async fn show(page: Page, Query(q): Query<DoneQuery>) -> PageResult {
    let admin = page.admin();
    let users = admin
        .list_users()
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let acls = admin
        .list_acls(None)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let chrome = page.chrome(SECTION);
    let html = render(&AccessPage {
        chrome: &chrome,
        users: users_table(&users),
        acls: acls_table(&acls),
        outcome: Outcome::of(q.done.as_deref(), q.what.as_deref(), VERBS),
    })?;
    Ok(html.into_response())
}

fn users_table(users: &[UserRow]) -> ActionTable {
    let table = Table::of("users", users, "No user.", |u| {
        Some(("user", u.user.clone()))
    });
    // A bootstrap user comes from the servers' config: it is changed there.
    ActionTable::new(table, |i| {
        let u = &users[i];
        if u.bootstrap {
            Vec::new()
        } else {
            vec![delete_user_form(&u.user)]
        }
    })
}

fn delete_user_form(name: &str) -> RowForm {
    RowForm::new("delete-user", "Delete", DELETE_USER)
        .field("name", name)
        .titled(format!("Delete user {name}"))
        .danger()
}

fn acls_table(acls: &[AclRow]) -> ActionTable {
    let table = Table::of("acls", acls, "No ACL entry.", |a| {
        Some(("acl", format!("{} {} {}", a.user, a.kind, a.resource)))
    });
    ActionTable::new(table, |i| {
        let a = &acls[i];
        vec![revoke_form(&a.user, &a.kind, &a.resource)]
    })
}

fn revoke_form(user: &str, kind: &str, pattern: &str) -> RowForm {
    RowForm::new("revoke", "Revoke", REVOKE)
        .field("user", user)
        .field("kind", kind)
        .field("pattern", pattern)
        .titled(format!("Revoke {user}'s entry on {kind} {pattern}"))
        .danger()
}

/// Back to the page, saying `verb` was done to `what`.
fn done(verb: &str, what: &str) -> PageResult {
    let to = format!("{PAGE}?{}", Outcome::query(verb, what));
    Ok(Redirect::to(&to).into_response())
}

/// The creating form. Fields default to empty so that a missing one is this page's 400,
/// not the extractor's.
#[derive(Deserialize)]
struct CreateUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    role: String,
}

async fn create_user(page: Page, Form(f): Form<CreateUserForm>) -> PageResult {
    let name = f.name.trim();
    let role = RoleArg::parse(&f.role).map_err(|e| page.fail(SECTION, e))?;
    page.admin()
        .create_user(name, &f.secret, role)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        created = name,
        role = f.role.trim(),
        user = ?page.chrome(SECTION).user,
        "console: created a user"
    );
    done(VERBS[0], name)
}

#[derive(Deserialize)]
struct DeleteUserForm {
    #[serde(default)]
    name: String,
    confirm: Option<String>,
}

async fn delete_user(page: Page, Form(f): Form<DeleteUserForm>) -> PageResult {
    let name = f.name.trim();
    if !confirmed(f.confirm.as_deref()) {
        let question =
            format!("Delete user {name} and its ACL entries? Its clients are refused from now on.");
        return confirm_page(&page, SECTION, &question, delete_user_form(name), PAGE);
    }
    page.admin()
        .delete_user(name)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        deleted = name,
        user = ?page.chrome(SECTION).user,
        "console: deleted a user"
    );
    done(VERBS[1], name)
}

#[derive(Deserialize)]
struct GrantForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    pattern: String,
    /// `pub`, `sub` or `pub,sub`.
    #[serde(default)]
    actions: String,
    /// `allow` or `deny`.
    #[serde(default)]
    decision: String,
}

impl GrantForm {
    fn grant(&self) -> Result<AclGrant, Failure> {
        let (publish, subscribe) =
            parse_actions(self.actions.trim()).map_err(Failure::bad_request)?;
        let deny = match self.decision.trim() {
            "allow" | "" => false,
            "deny" => true,
            other => {
                return Err(Failure::bad_request(format!(
                    "unknown decision {other:?}: use allow or deny"
                )))
            }
        };
        Ok(AclGrant {
            user: self.user.trim().to_string(),
            kind: parse_kind(&self.kind)?,
            pattern: self.pattern.trim().to_string(),
            publish,
            subscribe,
            deny,
        })
    }
}

async fn grant(page: Page, Form(f): Form<GrantForm>) -> PageResult {
    let grant = f.grant().map_err(|e| page.fail(SECTION, e))?;
    let change = page
        .admin()
        .grant(&grant)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        change = %change.change,
        user = ?page.chrome(SECTION).user,
        "console: granted"
    );
    done(
        VERBS[2],
        &format!("{} on {} {}", grant.user, grant.kind.name(), grant.pattern),
    )
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    pattern: String,
    confirm: Option<String>,
}

async fn revoke(page: Page, Form(f): Form<RevokeForm>) -> PageResult {
    let (user, pattern) = (f.user.trim(), f.pattern.trim());
    let kind = parse_kind(&f.kind).map_err(|e| page.fail(SECTION, e))?;
    let what = format!("{user} on {} {pattern}", kind.name());
    if !confirmed(f.confirm.as_deref()) {
        let question = format!("Revoke the entry of {what}?");
        let form = revoke_form(user, kind.name(), pattern);
        return confirm_page(&page, SECTION, &question, form, PAGE);
    }
    let change = page
        .admin()
        .revoke(user, kind, pattern)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        change = %change.change,
        user = ?page.chrome(SECTION).user,
        "console: revoked"
    );
    done(VERBS[3], &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::auth::acl::ResourceKind;
    use axum::http::StatusCode;

    fn form(actions: &str, decision: &str, kind: &str) -> GrantForm {
        GrantForm {
            user: " app ".into(),
            kind: kind.into(),
            pattern: "orders*".into(),
            actions: actions.into(),
            decision: decision.into(),
        }
    }

    #[test]
    fn a_grant_form_becomes_the_entry_it_names() {
        let g = form("pub,sub", "deny", "topic").grant().unwrap();
        assert_eq!(
            g,
            AclGrant {
                user: "app".into(),
                kind: ResourceKind::Topic,
                pattern: "orders*".into(),
                publish: true,
                subscribe: true,
                deny: true,
            }
        );
        let g = form("sub", "allow", "group").grant().unwrap();
        assert_eq!(
            (g.kind, g.publish, g.subscribe, g.deny),
            (ResourceKind::Group, false, true, false)
        );
        for bad in [
            form("write", "allow", "topic"),
            form("pub", "maybe", "topic"),
            form("pub", "allow", "queue"),
        ] {
            assert_eq!(bad.grant().unwrap_err().status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn bootstrap_users_have_no_delete_form() {
        let users = vec![
            UserRow {
                user: "root".into(),
                role: "admin".into(),
                bootstrap: true,
            },
            UserRow {
                user: "app".into(),
                role: "user".into(),
                bootstrap: false,
            },
        ];
        let table = users_table(&users);
        let forms: Vec<usize> = table.rows().map(|(_, f)| f.len()).collect();
        assert_eq!(forms, vec![0, 1]);
        assert_eq!(table.forms[1][0].fields, vec![("name", "app".to_string())]);
    }
}

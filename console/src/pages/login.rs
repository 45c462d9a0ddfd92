//! Signing in and out. A sign-in is checked by asking the NameServer for the cluster with the
//! given credentials (any user may ask; a wrong key or secret is refused as UNAUTHENTICATED),
//! and whether the user is an admin by asking for the user list (only admins may). The
//! session is then replaced by a new one (new id, new CSRF token) holding the credentials.

use crate::guard::set_cookie;
use crate::page::{self, render, Chrome, Failure, PageResult, Visitor};
use crate::session::SignedIn;
use crate::Console;
use apogee_proto::auth::Credentials;
use askama::Template;
use axum::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/login", get(show).post(sign_in))
        .route("/logout", post(sign_out))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    chrome: &'a Chrome,
    next: &'a str,
    access_key: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a console path, never another site.
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => format!("{}/cluster", crate::BASE),
    }
}

async fn show(v: Visitor, Query(q): Query<Next>) -> PageResult {
    if !v.console.settings().authentication || v.session.user.is_some() {
        return Ok(Redirect::to(&next_path(q.next.as_deref())).into_response());
    }
    let chrome = page::chrome(&v.console, &v.session, "login");
    let next = next_path(q.next.as_deref());
    let page = LoginPage {
        chrome: &chrome,
        next: &next,
        access_key: "",
        error: None,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
struct SignInForm {
    access_key: String,
    secret_key: String,
    next: Option<String>,
}

async fn sign_in(v: Visitor, Form(f): Form<SignInForm>) -> PageResult {
    let next = next_path(f.next.as_deref());
    let refuse = |status: StatusCode, why: String| -> PageResult {
        let chrome = page::chrome(&v.console, &v.session, "login");
        let page = LoginPage {
            chrome: &chrome,
            next: &next,
            access_key: &f.access_key,
            error: Some(&why),
        };
        Ok((status, render(&page)?).into_response())
    };
    if !v.console.settings().authentication {
        return Ok(Redirect::to(&next).into_response());
    }
    let credentials = match Credentials::new(f.access_key.trim(), f.secret_key.as_str()) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let admin = v.console.admin_as(Some(credentials.clone()));
    if let Err(e) = admin.get_cluster_info().await {
        let failure = Failure::from(e);
        let why = if failure.status == StatusCode::UNAUTHORIZED {
            "wrong access key or secret key".to_string()
        } else {
            failure.message
        };
        tracing::info!(
            access_key = credentials.access_key(),
            "console: sign-in refused"
        );
        return refuse(failure.status, why);
    }
    let is_admin = admin.list_users().await.is_ok();
    let user = SignedIn {
        credentials,
        admin: is_admin,
    };
    let Ok(session) = v.console.sessions().sign_in(&v.session.id, user) else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the console has as many signed-in sessions as it keeps; try again later".into(),
        );
    };
    tracing::info!(
        access_key = f.access_key.trim(),
        admin = is_admin,
        "console: signed in"
    );
    let mut response = Redirect::to(&next).into_response();
    set_cookie(response.headers_mut(), &session, v.console.settings().https);
    Ok(response)
}

async fn sign_out(v: Visitor) -> PageResult {
    v.console.sessions().end(&v.session.id);
    Ok(Redirect::to(&format!("{}/login", crate::BASE)).into_response())
}

#[cfg(test)]
mod tests {
    use super::next_path;

    #[test]
    fn after_signing_in_only_console_paths_are_followed() {
        assert_eq!(
            next_path(Some("/console/topics?page=2")),
            "/console/topics?page=2"
        );
        assert_eq!(next_path(Some("https://evil.example/")), "/console/cluster");
        assert_eq!(
            next_path(Some("//evil.example/console")),
            "/console/cluster"
        );
        assert_eq!(next_path(None), "/console/cluster");
    }
}

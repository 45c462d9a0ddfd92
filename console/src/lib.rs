//! apogee-console: the web console every NameServer (and `apogee-broker --standalone`)
//! serves at `/console`, on its operations listener or a listener of its own
//! (`[console]` in the NameServer's config).
//!
//! Pages are HTML rendered on the server from askama templates (`templates/`), with our own
//! stylesheet and a little of our own JavaScript (`static/`); nothing is built outside cargo
//! and nothing third-party is served. Every operation goes through the admin library the
//! `apogee` CLI also calls (apogee-admin) to this NameServer's gRPC listener, signed with the signed-in
//! user's credentials, so roles and ACLs apply exactly as they do to the CLI; the console
//! has no identity of its own.
//!
//! - [`guard`]: what every request passes first: the Host allow-list, the session cookie,
//!   and for a state-changing request the Origin check and the CSRF token; the security
//!   headers on every answer.
//! - [`session`]: sessions, their limits and the CSRF tokens.
//! - [`page`]: what a handler gets ([`page::Page`]: the user's admin connection and the
//!   page chrome) and answers with when an operation fails ([`page::Failure`]).
//! - [`pages`]: one module per section of the console.
//! - [`assets`]: the stylesheet and script.

pub mod assets;
pub mod guard;
pub mod page;
pub mod pages;
pub mod session;

use apogee_admin::admin::Admin;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// Where the console is mounted.
pub const BASE: &str = "/console";

/// What a console is set up with (the NameServer derives it from its config).
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    /// The gRPC address of the NameServer the console operates through (its own).
    pub nameserver: String,
    /// TLS towards that address, when the NameServer's listener has TLS.
    pub nameserver_tls: Option<apogee_client::ClientTls>,
    /// Whether the cluster checks credentials: then every page needs a signed-in user.
    pub authentication: bool,
    /// Whether the console is served over TLS (its cookie is `Secure`, origins `https`).
    pub https: bool,
    /// The names (`host` or `host:port`) a request's Host header may carry; an entry without
    /// a port admits any port.
    pub allowed_hosts: Vec<String>,
    /// How long one call to the cluster may take.
    pub call_timeout: Duration,
}

/// A console: its settings, its sessions and the connection its calls share.
pub struct Console {
    settings: ConsoleSettings,
    sessions: session::Sessions,
    /// Unsigned; every request signs a clone with its user's credentials.
    admin: Admin,
}

impl Console {
    pub fn new(settings: ConsoleSettings) -> Result<Arc<Console>, String> {
        let admin = Admin::connect(
            &settings.nameserver,
            settings.call_timeout,
            settings.nameserver_tls.clone(),
        )
        .map_err(|e| format!("console: {e}"))?;
        Ok(Arc::new(Console {
            settings,
            sessions: session::Sessions::default(),
            admin,
        }))
    }

    pub fn settings(&self) -> &ConsoleSettings {
        &self.settings
    }

    pub fn sessions(&self) -> &session::Sessions {
        &self.sessions
    }

    /// The admin connection signed with `credentials` (none: unsigned).
    pub fn admin_as(&self, credentials: Option<apogee_proto::auth::Credentials>) -> Admin {
        self.admin.clone().with_credentials(credentials)
    }
}

/// The console's routes, under [`BASE`], behind its [`guard`].
pub fn router(console: Arc<Console>) -> Router {
    let routes = pages::routes()
        .merge(assets::routes())
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            guard::guard,
        ))
        .with_state(console);
    Router::new().nest(BASE, routes)
}

#[cfg(test)]
mod tests;

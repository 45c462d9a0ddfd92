//! apogee-console: the web console every NameServer (and `apogee-broker --standalone`)
//! serves at `/console`, on its operations listener or a listener of its own
//! (`[console]` in the NameServer's config).
//!
//! Pages are HTML rendered on the server from askama templates (`templates/`), with our own
//! stylesheet and a little of our own JavaScript (`static/`); nothing is built outside cargo
//! and nothing third-party is served. Every operation goes through the admin library the
//! `apogee` CLI also calls (apogee-admin) to this NameServer's gRPC listener, signed with the
//! signed-in user's credentials, so roles and ACLs apply exactly as they do to the CLI; the
//! console has no identity of its own. The NameServer library does not depend on this crate:
//! the executables hand it [`routes`].
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

/// Where the console is mounted.
pub const BASE: &str = "/console";

/// What a console is set up with: the site the NameServer describes (from its config and
/// listeners).
pub use apogee_server::web_console::ConsoleSite as ConsoleSettings;

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

/// The routes of a new console for `settings`: what a NameServer is given to mount (an
/// [`apogee_server::web_console::ConsoleRoutes`]).
pub fn routes(settings: ConsoleSettings) -> Result<Router, String> {
    Ok(router(Console::new(settings)?))
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

//! The meeting point of a NameServer and the web console it serves, so that neither library
//! depends on the other: the NameServer fills in a [`ConsoleSite`] from its config and
//! listeners and asks a [`ConsoleRoutes`] for the routes to mount; the executables that
//! compose the two (nameserver/cmd, broker/cmd's `--standalone`) pass apogee-console's.

use std::time::Duration;

/// Where a console runs and how it reaches the cluster.
#[derive(Clone, Debug)]
pub struct ConsoleSite {
    /// The gRPC address of the NameServer the console operates through (its own).
    pub nameserver: String,
    /// TLS towards that address, when the NameServer's listener has TLS.
    pub nameserver_tls: Option<apogee_proto::tls::ClientTls>,
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

/// Builds a console's routes (under its own base path) for a site; an error says why the
/// console cannot start.
pub type ConsoleRoutes = fn(ConsoleSite) -> Result<axum::Router, String>;

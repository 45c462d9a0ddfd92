//! Client configuration: where the NameServers are, how long a request may
//! take, how often a send is attempted, the namespace and the client id that
//! identifies this process to the servers (`x-mq-client-id`), TLS, and the
//! transport a producer's sends take ([`SendTransport`]).

use std::time::Duration;

/// Settings shared by [`crate::Producer`] and [`crate::SimpleConsumer`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// NameServer addresses as `host:port`; asked in turn for routes, the one
    /// that answered last first and one that could not be reached last (for a
    /// few seconds). While none answers, routes already fetched stay in use.
    pub nameservers: Vec<String>,
    /// Deadline of one unary request (a long-polling receive gets this on
    /// top of its polling time).
    pub request_timeout: Duration,
    /// Attempts for one send, the first one included.
    pub max_attempts: u32,
    /// Resource namespace put on every topic and group.
    pub namespace: String,
    /// Identifies this client to the servers; generated as
    /// `hostname-pid-uuid` by default.
    pub client_id: String,
    /// Access key and secret key every request is signed with (`MQv2-HMAC-SHA1`, as the
    /// official clients do); `None`: unsigned requests.
    pub credentials: Option<apogee_proto::auth::Credentials>,
    /// TLS to every server (the CA trusted, the client certificate presented, if any);
    /// `None`: plain text.
    pub tls: Option<apogee_proto::tls::ClientTls>,
    /// What a producer's sends travel over (everything else is gRPC).
    pub send_transport: SendTransport,
}

/// The transport a [`crate::Producer`] sends messages over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendTransport {
    /// The RocketMQ 5 gRPC protocol, as every other call.
    #[default]
    Grpc,
    /// RocketMQ's remoting frames over plain TCP (the protocol of RocketMQ 4.x clients,
    /// which every Apogee server also serves): a lighter path per message than HTTP/2.
    /// Routes for these sends come from the NameServers over remoting too. FIFO, lite and
    /// priority messages, which remoting cannot express, and transactions still go over
    /// gRPC. Not with TLS (this client's remoting connections are plain TCP).
    Remoting,
}

impl std::str::FromStr for SendTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "grpc" => Ok(SendTransport::Grpc),
            "remoting" => Ok(SendTransport::Remoting),
            other => Err(format!("unknown transport {other:?} (grpc or remoting)")),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            nameservers: vec![format!(
                "127.0.0.1:{}",
                apogee_proto::names::DEFAULT_NAMESERVER_PORT
            )],
            request_timeout: Duration::from_secs(5),
            max_attempts: 3,
            namespace: String::new(),
            client_id: generate_client_id(),
            credentials: None,
            tls: None,
            send_transport: SendTransport::Grpc,
        }
    }
}

impl ClientConfig {
    /// A default configuration pointing at the given NameServer(s)
    /// (`host:port`, several separated by `;` or `,`).
    pub fn new(nameservers: impl AsRef<str>) -> Self {
        ClientConfig::default().with_nameservers(nameservers)
    }

    /// Replaces the NameServer list (`host:port`, separated by `;` or `,`).
    pub fn with_nameservers(mut self, nameservers: impl AsRef<str>) -> Self {
        self.nameservers = apogee_proto::names::split_address_list(nameservers.as_ref());
        self
    }

    /// Sets the per-request deadline.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how many attempts a send makes (at least one).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the resource namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Overrides the generated client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Signs every request with these credentials.
    pub fn with_credentials(mut self, credentials: apogee_proto::auth::Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Talks TLS to every server, trusting and presenting what `tls` says (see
    /// [`apogee_proto::tls::ClientTls`]: a CA file or the system's roots, and an optional
    /// client certificate).
    pub fn with_tls(mut self, tls: apogee_proto::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends over `transport` ([`SendTransport`]).
    pub fn with_send_transport(mut self, transport: SendTransport) -> Self {
        self.send_transport = transport;
        self
    }

    /// Checks the configuration before any connection is made.
    pub fn validate(&self) -> Result<(), crate::ClientError> {
        use crate::ClientError::Config;
        if self.nameservers.is_empty() {
            return Err(Config("no nameserver address configured".into()));
        }
        for ns in &self.nameservers {
            crate::transport::parse_host_port(ns)?;
        }
        if self.request_timeout.is_zero() {
            return Err(Config("request timeout must be positive".into()));
        }
        if self.max_attempts == 0 {
            return Err(Config("max attempts must be at least 1".into()));
        }
        if self.client_id.is_empty() || !self.client_id.is_ascii() {
            return Err(Config("client id must be non-empty ASCII".into()));
        }
        if self.send_transport == SendTransport::Remoting && self.tls.is_some() {
            return Err(Config(
                "sends over remoting are plain TCP: use the gRPC transport with TLS".into(),
            ));
        }
        Ok(())
    }
}

/// The local host name, best effort (`localhost` when unknown).
pub(crate) fn hostname() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h.is_ascii())
            .unwrap_or_else(|| "localhost".to_string())
    })
    .clone()
}

/// A fresh `hostname-pid-uuid` client id.
pub fn generate_client_id() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = ClientConfig::default();
        assert_eq!(c.nameservers, vec!["127.0.0.1:9876".to_string()]);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_attempts, 3);
        assert!(c.namespace.is_empty());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn client_ids_are_unique_and_carry_the_pid() {
        let a = generate_client_id();
        let b = generate_client_id();
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }

    #[test]
    fn nameserver_lists_are_split_and_validated() {
        let c = ClientConfig::new("a:1; b:2,c:3");
        assert_eq!(c.nameservers, vec!["a:1", "b:2", "c:3"]);
        assert!(ClientConfig::new("").validate().is_err());
        assert!(ClientConfig::new("nohostport").validate().is_err());
        assert!(ClientConfig::default()
            .with_max_attempts(0)
            .validate()
            .is_err());
    }
}

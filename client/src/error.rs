//! The client's error type: a status from a server, a transport failure, a
//! timeout, a missing route or a bad configuration / argument.

use apogee_proto::{v2, ApogeeError};

/// Result of every client operation.
pub type Result<T> = std::result::Result<T, ClientError>;

/// What went wrong with a client call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-OK status (or the request failed the
    /// same validation locally).
    #[error("{}", server_message(.0))]
    Server(ApogeeError),
    /// The connection failed or the server broke the protocol.
    #[error("transport error: {0}")]
    Transport(String),
    /// No answer within the deadline.
    #[error("request timed out")]
    Timeout,
    /// The topic has no usable queue (none writable, none readable).
    #[error("no route: {0}")]
    NoRoute(String),
    /// The configuration or an argument is invalid.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The protocol code when the error is a server status.
    pub fn code(&self) -> Option<v2::Code> {
        match self {
            ClientError::Server(e) => Some(e.code()),
            _ => None,
        }
    }

    /// Whether another attempt (on another queue or broker) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Server(e) => e.is_retryable(),
            ClientError::Transport(_) | ClientError::Timeout => true,
            ClientError::NoRoute(_) | ClientError::Config(_) => false,
        }
    }

    /// Whether the route that led to this failure may be out of date, so the next call
    /// should fetch it again: a retryable failure (a member that cannot be reached, a slave
    /// whose master is away, a master without a lease after a failover) or FORBIDDEN (among
    /// others the answer of a member whose store became a slave's copy: not the master any
    /// more). Costs one route query per such failure.
    pub fn may_mean_stale_route(&self) -> bool {
        self.is_retryable() || self.code() == Some(v2::Code::Forbidden)
    }

    /// Turns a `v2` status into `Ok(())` or a server error.
    pub fn check(status: Option<&v2::Status>) -> Result<()> {
        match status {
            None => Err(ClientError::Transport("response carries no status".into())),
            Some(s) => match ApogeeError::from_status(s) {
                None => Ok(()),
                Some(e) => Err(ClientError::Server(e)),
            },
        }
    }
}

impl From<ApogeeError> for ClientError {
    fn from(e: ApogeeError) -> Self {
        ClientError::Server(e)
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::DeadlineExceeded => ClientError::Timeout,
            tonic::Code::Unimplemented => {
                ClientError::Server(ApogeeError::NotImplemented(s.message().to_string()))
            }
            code => ClientError::Transport(if s.message().is_empty() {
                format!("{code:?}")
            } else {
                format!("{code:?}: {}", s.message())
            }),
        }
    }
}

impl From<tokio::time::error::Elapsed> for ClientError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        ClientError::Timeout
    }
}

/// Servers put the whole error text in the status message, which the error
/// variant prefixes again ("topic not found: topic not found: T"); show it once.
fn server_message(e: &ApogeeError) -> String {
    let text = e.to_string();
    if let Some((head, rest)) = text.split_once(": ") {
        if rest.starts_with(&format!("{head}:")) || rest == head {
            return rest.to_string();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_show_the_server_text_once() {
        let status = ApogeeError::TopicNotFound("T".into()).to_status();
        let e = ClientError::check(Some(&status)).unwrap_err();
        assert_eq!(e.to_string(), "topic not found: T");
        assert_eq!(e.code(), Some(v2::Code::TopicNotFound));
        let plain = ClientError::Server(ApogeeError::TopicNotFound("T".into()));
        assert_eq!(plain.to_string(), "topic not found: T");
    }

    #[test]
    fn retry_classification() {
        assert!(ClientError::Timeout.is_retryable());
        assert!(ClientError::Transport("x".into()).is_retryable());
        assert!(ClientError::Server(ApogeeError::TooManyRequests("x".into())).is_retryable());
        assert!(!ClientError::Server(ApogeeError::IllegalTopic("x".into())).is_retryable());
        assert!(!ClientError::Server(ApogeeError::MessageBodyEmpty).is_retryable());
        assert!(!ClientError::Config("x".into()).is_retryable());
    }

    #[test]
    fn failures_that_may_come_from_a_stale_route_refresh_it() {
        let server = |e: ApogeeError| ClientError::Server(e);
        assert!(ClientError::Transport("connection refused".into()).may_mean_stale_route());
        assert!(ClientError::Timeout.may_mean_stale_route());
        // A slave whose master is away, a master without its lease (HA_NOT_AVAILABLE).
        assert!(server(ApogeeError::Unavailable("no lease".into())).may_mean_stale_route());
        // A demoted master's store refuses appends: FORBIDDEN, not retryable, but the route
        // that named it the master is out of date.
        let copy = server(ApogeeError::Forbidden("the store is a replica".into()));
        assert!(!copy.is_retryable() && copy.may_mean_stale_route());
        assert!(!server(ApogeeError::IllegalTopic("x".into())).may_mean_stale_route());
        assert!(!server(ApogeeError::MessageBodyEmpty).may_mean_stale_route());
        assert!(!ClientError::Config("x".into()).may_mean_stale_route());
    }

    #[test]
    fn grpc_statuses_map_to_client_errors() {
        assert!(matches!(
            ClientError::from(tonic::Status::deadline_exceeded("slow")),
            ClientError::Timeout
        ));
        assert!(matches!(
            ClientError::from(tonic::Status::unavailable("down")),
            ClientError::Transport(_)
        ));
        assert!(ClientError::check(Some(&apogee_proto::error::ok_status())).is_ok());
        assert!(ClientError::check(None).is_err());
    }
}

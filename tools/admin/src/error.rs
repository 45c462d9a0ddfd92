//! The tool's error type and how each kind maps to an exit code: 1 for
//! server, transport and input-file errors, 2 for usage errors, 3 when a send
//! was stored on a SYNC_MASTER but not replicated (do not resend it), 130 when
//! interrupted (SIGINT).

use apogee_client::ClientError;

/// Exit code of a send stored on the master but not replicated: the message is stored and
/// will be delivered, so a script must not send it again.
pub const EXIT_STORED_NOT_REPLICATED: u8 = 3;
/// Exit code after Ctrl-C (SIGINT), as shells report a process that SIGINT ended.
pub const EXIT_INTERRUPTED: u8 = 130;

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// From the client library (servers, transport, local validation).
    #[error("{}", client_text(.0))]
    Client(#[from] ClientError),
    /// A cluster-protocol call failed; the text is already user-facing.
    #[error("{0}")]
    Server(String),
    /// A cluster service refused a call with `code`; the text is already user-facing (what
    /// the web console answers with depends on the code).
    #[error("{text}")]
    Refused { code: tonic::Code, text: String },
    /// The arguments are inconsistent (beyond what argument parsing checks).
    #[error("{0}")]
    Usage(String),
    /// A local input (a file the command reads or writes) is unusable; the text names it.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    /// Stopped by Ctrl-C (SIGINT); what was printed is complete (a JSON array is closed).
    #[error("interrupted")]
    Interrupted,
}

/// A client error as the CLI says it: a send stored but not replicated says what that means.
fn client_text(e: &ClientError) -> String {
    if e.is_stored_not_replicated() {
        format!(
            "{e}. The message is stored on the master and will be delivered; only the copy \
             on a slave is missing. Do not send it again: that would store a second copy \
             (exit code {EXIT_STORED_NOT_REPLICATED})"
        )
    } else {
        e.to_string()
    }
}

impl ToolError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ToolError::Usage(_) => 2,
            ToolError::Client(e) if e.is_stored_not_replicated() => EXIT_STORED_NOT_REPLICATED,
            ToolError::Interrupted => EXIT_INTERRUPTED,
            _ => 1,
        }
    }

    /// Maps a gRPC status from a cluster service to a user-facing error;
    /// `topic` names the topic when NOT_FOUND should read "topic not found".
    pub fn from_status(status: tonic::Status, nameserver: &str, topic: Option<&str>) -> Self {
        use tonic::Code;
        let msg = status.message();
        let text = match status.code() {
            Code::NotFound => match topic {
                Some(t) => format!("topic not found: {t}"),
                None if msg.is_empty() => "not found".to_string(),
                None => msg.to_string(),
            },
            Code::Unavailable => format!("cannot reach nameserver {nameserver}: {msg}"),
            Code::DeadlineExceeded => format!("nameserver {nameserver} did not answer in time"),
            // A broker serves no registry: the usual cause is --nameserver naming a broker.
            Code::Unimplemented if msg.is_empty() => format!(
                "{nameserver} does not serve this operation: is it a broker? --nameserver takes \
                 a NameServer's address (default 127.0.0.1:9876)"
            ),
            Code::Unimplemented => {
                format!("nameserver {nameserver} does not support this operation: {msg}")
            }
            code if msg.is_empty() => format!("request failed: {code:?}"),
            _ => msg.to_string(),
        };
        ToolError::Refused {
            code: status.code(),
            text,
        }
    }

    /// The gRPC code a cluster service refused the call with, when it was one.
    pub fn refused_code(&self) -> Option<tonic::Code> {
        match self {
            ToolError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Result of a command.
pub type ToolResult<T> = Result<T, ToolError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_readable_errors() {
        let e = ToolError::from_status(tonic::Status::not_found("x"), "ns:1", Some("T"));
        assert_eq!(e.to_string(), "topic not found: T");
        assert_eq!(e.exit_code(), 1);
        let e = ToolError::from_status(tonic::Status::unavailable("refused"), "ns:1", None);
        assert_eq!(e.to_string(), "cannot reach nameserver ns:1: refused");
        let e = ToolError::from_status(tonic::Status::invalid_argument("bad queues"), "ns:1", None);
        assert_eq!(e.to_string(), "bad queues");
        assert_eq!(ToolError::Usage("x".into()).exit_code(), 2);
        let e = ToolError::from_status(tonic::Status::unimplemented(""), "b:10911", None);
        assert!(e
            .to_string()
            .starts_with("b:10911 does not serve this operation: is it a broker?"));
    }

    #[test]
    fn stored_but_not_replicated_has_its_own_exit_code_and_says_do_not_resend() {
        let e = ToolError::Client(ClientError::Server(
            apogee_proto::ApogeeError::NotReplicated(
                "message M (queue 0, offset 3) on broker rg: no slave is in sync".into(),
            ),
        ));
        assert_eq!(e.exit_code(), EXIT_STORED_NOT_REPLICATED);
        let text = e.to_string();
        assert!(
            text.starts_with("stored on the master, not replicated: message M")
                && text.contains("will be delivered")
                && text.contains("Do not send it again"),
            "{text}"
        );
        let plain = ToolError::Client(ClientError::Server(apogee_proto::ApogeeError::Unavailable(
            "x".into(),
        )));
        assert_eq!(plain.exit_code(), 1);
        assert_eq!(ToolError::Interrupted.exit_code(), 130);
    }
}

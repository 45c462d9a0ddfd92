//! Logging set-up shared by every Apogee server binary: the level from
//! `RUST_LOG` when set, else from the config's `log_level` (default "info");
//! plain text (colours only on a terminal) or one JSON object per line.
//!
//! The Raft library's line for each failed call to a peer is left out ([`RaftPeerCalls`]):
//! with a peer down it logs one at ERROR for every replication attempt and every lease's
//! leadership check (about 7 a second), where the controller's network logs the peer's loss
//! once, as a warning, and its return (`apogee_controller::network`).

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, span).
    Json,
}

/// The filter: `RUST_LOG` first, then `level`, then "info". A bad filter is an error
/// naming where it came from. Unless the setting names it, the Raft library of the embedded
/// controller logs warnings and errors only (at info it logs every election step and
/// membership detail); the controller's own lines say what an operator needs.
pub fn filter(level: Option<&str>) -> Result<EnvFilter, String> {
    if let Ok(env) = std::env::var("RUST_LOG") {
        return EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG={env:?}: {e}"));
    }
    let level = level.unwrap_or("info");
    let directives = if level.contains("openraft") {
        level.to_string()
    } else {
        format!("{level},openraft=warn")
    };
    EnvFilter::try_new(&directives).map_err(|e| format!("log_level {level:?}: {e}"))
}

/// Installs the global subscriber for a server process.
pub fn init(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .finish()
            .with(RaftPeerCalls)
            .init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .finish()
            .with(RaftPeerCalls)
            .init(),
    }
    Ok(())
}

/// openraft's messages about one failed call to a peer (openraft 0.9: replication, the
/// leadership check of a read or lease, a vote request). Its other errors (storage, a fatal
/// stop of its core) are kept.
const RAFT_PEER_CALL_MESSAGES: [&str; 5] = [
    "RPCError",
    "error replication to target=",
    "timeout while confirming leadership for read request",
    "while requesting vote",
    "timeout",
];

/// Leaves out openraft's line for each failed call to a peer (see the module's docs).
pub struct RaftPeerCalls;

impl RaftPeerCalls {
    /// Whether `event` is one of openraft's lines about a failed call to a peer.
    pub fn is_peer_call_failure(event: &Event<'_>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("openraft") || *meta.level() > Level::WARN {
            return false;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let text = message.0.as_str();
        RAFT_PEER_CALL_MESSAGES.iter().any(|m| match *m {
            // Its warning (one per failed replication attempt) names the target after the
            // prefix; at ERROR the same words report a storage error, which stays.
            "error replication to target=" => *meta.level() == Level::WARN && text.starts_with(m),
            _ => *meta.level() == Level::ERROR && text == *m,
        })
    }
}

impl<S: Subscriber> Layer<S> for RaftPeerCalls {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        !Self::is_peer_call_failure(event)
    }
}

/// An event's `message` field as text.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_level_names_the_setting() {
        if std::env::var("RUST_LOG").is_ok() {
            return; // RUST_LOG wins over the setting; nothing to check here.
        }
        let err = filter(Some("apogee=[")).unwrap_err();
        assert!(err.starts_with("log_level \"apogee=[\""), "{err}");
        assert!(filter(Some("debug")).is_ok());
        assert!(filter(None).is_ok());
    }

    #[test]
    fn the_raft_library_logs_warnings_only_unless_the_setting_names_it() {
        if std::env::var("RUST_LOG").is_ok() {
            return; // RUST_LOG wins over the setting; nothing to check here.
        }
        let quiet = filter(Some("info")).unwrap().to_string();
        assert!(quiet.contains("openraft=warn"), "{quiet}");
        let chosen = filter(Some("info,openraft=debug")).unwrap().to_string();
        assert!(
            chosen.contains("openraft=debug") && !chosen.contains("openraft=warn"),
            "{chosen}"
        );
    }

    #[test]
    fn formats_are_named_in_snake_case() {
        #[derive(Deserialize)]
        struct C {
            f: LogFormat,
        }
        let c: C = toml::from_str("f = \"json\"").unwrap();
        assert_eq!(c.f, LogFormat::Json);
        assert!(toml::from_str::<C>("f = \"xml\"").is_err());
    }
}

//! Logging set-up shared by every Apogee server binary: the level from
//! `RUST_LOG` when set, else from the config's `log_level` (default "info");
//! plain text (colours only on a terminal) or one JSON object per line.

use serde::{Deserialize, Serialize};
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
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
    Ok(())
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

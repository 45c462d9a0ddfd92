//! The CLI's credentials: `--access-key` with `--secret-key` (or `APOGEE_ACCESS_KEY` and
//! `APOGEE_SECRET_KEY`), or `--credentials-file`, a TOML file with `access_key` and
//! `secret_key`. With them every request is signed as the official clients sign theirs.

use apogee_proto::auth::Credentials;
use clap::Args;
use serde::Deserialize;
use std::path::Path;

/// The global credential flags.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = crate::cli::GLOBAL_OPTIONS)]
pub struct CredentialArgs {
    /// Access key to sign requests with (needs --secret-key).
    #[arg(
        long,
        global = true,
        env = "APOGEE_ACCESS_KEY",
        value_name = "KEY",
        requires = "secret_key",
        conflicts_with = "credentials_file"
    )]
    pub access_key: Option<String>,

    /// Secret key of --access-key.
    #[arg(
        long,
        global = true,
        env = "APOGEE_SECRET_KEY",
        value_name = "SECRET",
        hide_env_values = true,
        requires = "access_key"
    )]
    pub secret_key: Option<String>,

    /// A TOML file with `access_key` and `secret_key` (keeps the secret off the command line).
    #[arg(long, global = true, value_name = "FILE", value_parser = credentials_file)]
    pub credentials_file: Option<Credentials>,
}

impl CredentialArgs {
    /// The credentials given, if any; a malformed key is a usage error.
    pub fn resolve(&self) -> Result<Option<Credentials>, String> {
        if let Some(c) = &self.credentials_file {
            return Ok(Some(c.clone()));
        }
        match (&self.access_key, &self.secret_key) {
            (Some(key), Some(secret)) => Credentials::new(key.clone(), secret.clone()).map(Some),
            (None, None) => Ok(None),
            _ => Err("--access-key and --secret-key go together".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key: String,
    secret_key: String,
}

/// Reads a credentials file (for clap: errors name the file).
fn credentials_file(path: &str) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|e| format!("credentials file {path}: {e}"))?;
    let file: CredentialsFile =
        toml::from_str(&text).map_err(|e| format!("credentials file {path}: {e}"))?;
    Credentials::new(file.access_key, file.secret_key)
        .map_err(|e| format!("credentials file {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_flags_or_a_file() {
        let flags = CredentialArgs {
            access_key: Some("ops".into()),
            secret_key: Some("ops-secret".into()),
            credentials_file: None,
        };
        let c = flags.resolve().unwrap().unwrap();
        assert_eq!((c.access_key(), c.secret_key()), ("ops", "ops-secret"));
        assert!(CredentialArgs::default().resolve().unwrap().is_none());
        let half = CredentialArgs {
            secret_key: None,
            ..flags
        };
        assert!(half.resolve().is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.toml");
        std::fs::write(&path, "access_key = \"ops\"\nsecret_key = \"from-file\"\n").unwrap();
        let c = credentials_file(path.to_str().unwrap()).unwrap();
        assert_eq!(c.secret_key(), "from-file");
        std::fs::write(&path, "access_key = \"ops\"\n").unwrap();
        assert!(credentials_file(path.to_str().unwrap()).is_err());
        assert!(credentials_file("no-such-file")
            .unwrap_err()
            .contains("no-such-file"));
    }
}

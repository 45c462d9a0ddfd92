//! The generic config loader shared by every Apogee process (NameServer and
//! broker): a TOML file, then `APOGEE_<PREFIX>_<KEY>` environment overrides,
//! then serde deserialization with unknown keys rejected.
//!
//! Environment overrides: `APOGEE_<PREFIX>_<KEY>` where `<KEY>` is the config
//! key in upper case and nested keys are joined by `__`, for example
//! `APOGEE_NAMESERVER_BROKER_EXPIRY_SECS=30` or
//! `APOGEE_BROKER_STORE__FLUSH_MODE=sync`. The value is parsed as a TOML value
//! (`30`, `true`, `[1, 2]`, `"quoted"`) and falls back to a plain string when it
//! is not one (`sync`, `0.0.0.0:9876`). Quote a value (`'"123"'`) to force a
//! string that looks like a number.
//!
//! Errors name where the problem is: the file (with line and column) or the
//! environment variable that introduced it.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file given could not be read (missing, unreadable).
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the config's keys/types.
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    /// An environment override is malformed or does not match the config.
    #[error("invalid environment override {var}: {message}")]
    Env { var: String, message: String },
    /// The config deserialized but a value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Loads a `T` from an optional TOML file plus the process environment.
///
/// `path = None` starts from an empty table (so `T` gets its serde defaults);
/// a path that cannot be read is an error. `env_prefix` is the process name,
/// e.g. `"NAMESERVER"` or `"BROKER"` (an `APOGEE_` prefix is added unless it
/// is already there). Unknown keys, in the file or in the environment, are
/// rejected if `T` uses `#[serde(deny_unknown_fields)]`.
pub fn load<T: DeserializeOwned>(path: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError> {
    load_with_env(path, env_prefix, std::env::vars())
}

/// Like [`load`], with the environment given explicitly (for tests and
/// embedding, where the process environment is shared).
pub fn load_with_env<T, I>(path: Option<&Path>, env_prefix: &str, env: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = match path {
        None => Table::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let file_err = |e: toml::de::Error| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            };
            // Deserialize the text itself first so errors carry line and column.
            toml::from_str::<T>(&text).map_err(file_err)?;
            toml::from_str::<Table>(&text).map_err(file_err)?
        }
    };

    let mut overrides = env_overrides(env_prefix, env)?;
    overrides.sort_by(|a, b| a.var.cmp(&b.var));
    for o in overrides {
        let env_err = |message| ConfigError::Env {
            var: o.var.clone(),
            message,
        };
        let as_list = list_of(&o.value);
        insert(&mut table, &o.path, o.value).map_err(env_err)?;
        // Check after every override so an error names the variable at fault.
        if let Err(message) = deserialize::<T>(&table) {
            // A plain `a,b,c` for a list key: the same value as a list of strings.
            let Some(list) = as_list else {
                return Err(env_err(message));
            };
            insert(&mut table, &o.path, list).map_err(env_err)?;
            deserialize::<T>(&table).map_err(|_| env_err(message))?;
        }
    }
    deserialize(&table).map_err(ConfigError::Invalid)
}

/// The full environment prefix for a process name: `BROKER` -> `APOGEE_BROKER_`.
pub fn env_var_prefix(env_prefix: &str) -> String {
    let p = env_prefix.trim_end_matches('_').to_ascii_uppercase();
    if p.starts_with("APOGEE_") {
        format!("{p}_")
    } else {
        format!("APOGEE_{p}_")
    }
}

struct Override {
    var: String,
    path: Vec<String>,
    value: Value,
}

fn env_overrides<I>(env_prefix: &str, env: I) -> Result<Vec<Override>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let prefix = env_var_prefix(env_prefix);
    let mut out = Vec::new();
    for (var, raw) in env {
        let Some(key) = var.strip_prefix(&prefix) else {
            continue;
        };
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty key segment (nested keys are joined by a double underscore)".into(),
            });
        }
        out.push(Override {
            path,
            value: parse_value(&raw),
            var,
        });
    }
    Ok(out)
}

/// A string value as a list of its comma-separated, trimmed, non-empty parts.
fn list_of(value: &Value) -> Option<Value> {
    let Value::String(raw) = value else {
        return None;
    };
    let parts = raw
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Value::String(p.to_string()))
        .collect();
    Some(Value::Array(parts))
}

/// A TOML value if `raw` is one, otherwise the string itself.
fn parse_value(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

fn insert(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for (i, seg) in parents.iter().enumerate() {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "`{}` is not a table, so it has no key `{}`",
                    path[..=i].join("."),
                    path[i + 1..].join(".")
                ))
            }
        };
    }
    cur.insert(last.clone(), value);
    Ok(())
}

fn deserialize<T: DeserializeOwned>(table: &Table) -> Result<T, String> {
    Value::Table(table.clone()).try_into::<T>().map_err(|e| {
        e.to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Store {
        flush_mode: String,
        segment_bytes: u64,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        listen: String,
        expiry_secs: u64,
        enabled: bool,
        store: Store,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn no_file_and_no_env_gives_defaults() {
        let c: Cfg = load_with_env(None, "TEST", env(&[])).unwrap();
        assert_eq!(c, Cfg::default());
    }

    #[test]
    fn file_values_are_read() {
        let f = file("listen = \"1.2.3.4:5\"\n[store]\nflush_mode = \"async\"\n");
        let c: Cfg = load_with_env(Some(f.path()), "TEST", env(&[])).unwrap();
        assert_eq!(c.listen, "1.2.3.4:5");
        assert_eq!(c.store.flush_mode, "async");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load_with_env::<Cfg, _>(Some(Path::new("/nonexistent/x.toml")), "TEST", env(&[]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn env_overrides_file_and_nests_with_double_underscore() {
        let f = file("expiry_secs = 5\n[store]\nflush_mode = \"async\"\n");
        let c: Cfg = load_with_env(
            Some(f.path()),
            "TEST",
            env(&[
                ("APOGEE_TEST_EXPIRY_SECS", "30"),
                ("APOGEE_TEST_ENABLED", "true"),
                ("APOGEE_TEST_STORE__FLUSH_MODE", "sync"),
                ("APOGEE_TEST_STORE__SEGMENT_BYTES", "1024"),
                ("APOGEE_TEST_LISTEN", "0.0.0.0:9876"),
                ("APOGEE_OTHER_EXPIRY_SECS", "99"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.expiry_secs, 30);
        assert!(c.enabled);
        assert_eq!(c.listen, "0.0.0.0:9876");
        assert_eq!(
            c.store,
            Store {
                flush_mode: "sync".into(),
                segment_bytes: 1024
            }
        );
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Lists {
        nameservers: Vec<String>,
        port: u16,
    }

    #[test]
    fn a_plain_comma_separated_value_sets_a_list() {
        let load = |v: &str| {
            load_with_env::<Lists, _>(None, "TEST", env(&[("APOGEE_TEST_NAMESERVERS", v)]))
        };
        assert_eq!(
            load("ns1:9876, ns2:9876").unwrap().nameservers,
            vec!["ns1:9876", "ns2:9876"]
        );
        assert_eq!(load("ns1:9876").unwrap().nameservers, vec!["ns1:9876"]);
        assert_eq!(
            load("[\"a:1\", \"b:2\"]").unwrap().nameservers,
            vec!["a:1", "b:2"]
        );
        // Not a list key: the error names the variable, as before.
        let err = load_with_env::<Lists, _>(None, "TEST", env(&[("APOGEE_TEST_PORT", "a,b")]))
            .unwrap_err();
        assert!(err.to_string().contains("APOGEE_TEST_PORT"), "{err}");
    }

    #[test]
    fn quoted_env_value_forces_a_string() {
        let c: Cfg =
            load_with_env(None, "TEST", env(&[("APOGEE_TEST_LISTEN", "\"123\"")])).unwrap();
        assert_eq!(c.listen, "123");
    }

    #[test]
    fn unknown_key_in_file_is_rejected_with_its_name() {
        let f = file("listen = \"a:1\"\nbogus_key = 3\n");
        let err = load_with_env::<Cfg, _>(Some(f.path()), "TEST", env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::File { .. }), "{msg}");
        assert!(msg.contains("bogus_key"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unknown_nested_key_in_file_is_rejected() {
        let f = file("[store]\nflush_mod = \"sync\"\n");
        let msg = load_with_env::<Cfg, _>(Some(f.path()), "TEST", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("flush_mod"), "{msg}");
    }

    #[test]
    fn unknown_key_in_env_names_the_variable() {
        let err = load_with_env::<Cfg, _>(
            None,
            "TEST",
            env(&[
                ("APOGEE_TEST_EXPIRY_SECS", "3"),
                ("APOGEE_TEST_STORE__NOPE", "1"),
            ]),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ConfigError::Env { ref var, .. } if var == "APOGEE_TEST_STORE__NOPE"),
            "{msg}"
        );
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn wrong_type_in_env_names_the_variable() {
        let err =
            load_with_env::<Cfg, _>(None, "TEST", env(&[("APOGEE_TEST_EXPIRY_SECS", "soon")]))
                .unwrap_err();
        assert!(
            matches!(err, ConfigError::Env { ref var, .. } if var == "APOGEE_TEST_EXPIRY_SECS"),
            "{err}"
        );
    }

    #[test]
    fn env_key_below_a_scalar_is_rejected() {
        let err = load_with_env::<Cfg, _>(None, "TEST", env(&[("APOGEE_TEST_LISTEN__X", "1")]))
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Env { ref var, .. } if var == "APOGEE_TEST_LISTEN__X"),
            "{err}"
        );
    }

    #[test]
    fn prefix_is_normalised() {
        assert_eq!(env_var_prefix("nameserver"), "APOGEE_NAMESERVER_");
        assert_eq!(env_var_prefix("APOGEE_BROKER_"), "APOGEE_BROKER_");
    }
}

//! `apogee config import <broker.conf>`: turns a RocketMQ `broker.conf` (Java
//! properties) into Apogee's broker TOML.
//!
//! It owns the properties reader ([`parse_properties`]: `key=value`, `key: value`
//! or `key value` lines, `#`/`!` comments, `\` line continuations and escapes),
//! the key mapping ([`import`]) and the command's output. Only the keys users edit
//! most are mapped; the TOML holds just those, so every other Apogee key keeps its
//! default (see `deploy/broker.toml`). Every other RocketMQ key is reported as
//! ignored with the reason, and a value Apogee cannot take is an error naming the
//! key and its line.

use crate::error::{ToolError, ToolResult};
use crate::output::{Format, Table};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

/// `apogee config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Convert a RocketMQ broker.conf into an Apogee broker TOML (printed, or written with
    /// --out); keys without an Apogee equivalent are listed on stderr.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The RocketMQ broker.conf (Java properties).
    #[arg(value_name = "BROKER_CONF")]
    pub file: PathBuf,
    /// Write the TOML to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// One `key = value` entry of a properties file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// 1-based line the entry starts on.
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// A RocketMQ key that was not carried over, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ignored {
    pub key: String,
    pub reason: String,
}

/// The result of an import.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Imported {
    /// The Apogee broker TOML, starting with a comment header.
    pub toml: String,
    /// The RocketMQ keys carried over, in file order.
    pub mapped: Vec<String>,
    /// The RocketMQ keys left out, in file order.
    pub ignored: Vec<Ignored>,
}

/// A value Apogee cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {key} = {value:?}: {message}")]
pub struct ImportError {
    pub line: usize,
    pub key: String,
    pub value: String,
    pub message: String,
}

const NO_DELETE_HOUR: &str =
    "no Apogee equivalent: expired segments are deleted by any retention pass, not at a set hour";
const NO_EQUIVALENT: &str = "no Apogee equivalent";

/// The mapped keys, serialized in `deploy/broker.toml` order; absent keys keep Apogee's
/// defaults.
#[derive(Debug, Default, Serialize)]
struct BrokerToml {
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_create_topics: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "StoreToml::is_empty")]
    store: StoreToml,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<SecurityToml>,
}

/// A RocketMQ broker listens on every address and, without ACLs, takes anyone: the imported
/// config says so explicitly (Apogee refuses that unless told).
#[derive(Debug, Serialize)]
struct SecurityToml {
    allow_anonymous: bool,
}

#[derive(Debug, Default, Serialize)]
struct StoreToml {
    #[serde(skip_serializing_if = "Option::is_none")]
    flush: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_hours: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_clean_ratio: Option<f64>,
}

impl StoreToml {
    fn is_empty(&self) -> bool {
        self.flush.is_none()
            && self.segment_bytes.is_none()
            && self.retention_hours.is_none()
            && self.disk_clean_ratio.is_none()
    }
}

/// Reads Java properties text into its entries, in order (a repeated key appears twice;
/// the last one wins when imported).
pub fn parse_properties(text: &str) -> Vec<Property> {
    let mut props = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let first = raw.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = first.to_string();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_entry(&logical);
        props.push(Property {
            line: i + 1,
            key: unescape(key),
            value: unescape(value),
        });
    }
    props
}

/// A line continues on the next one when it ends with an odd number of backslashes.
fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace; whitespace around
/// the separator is dropped.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = i;
            break;
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start();
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start();
    }
    (key, rest)
}

/// Resolves `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\<c>` (the character itself).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(u) if hex.len() == 4 => {
                        out.push(u);
                        chars.nth(3);
                    }
                    _ => out.push('u'),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Converts broker.conf text into Apogee's broker TOML; `source` names the file in the
/// header.
pub fn import(text: &str, source: &str) -> Result<Imported, ImportError> {
    let mut cfg = BrokerToml::default();
    let mut mapped: Vec<String> = Vec::new();
    let mut ignored: Vec<Ignored> = Vec::new();
    // Line of brokerId / brokerRole, for the consistency check.
    let (mut id_line, mut role_line) = (None, None);
    for p in parse_properties(text) {
        let v = p.value.trim();
        let bad = |message: String| ImportError {
            line: p.line,
            key: p.key.clone(),
            value: p.value.clone(),
            message,
        };
        match p.key.as_str() {
            "brokerClusterName" => cfg.cluster_name = Some(non_empty(v).map_err(bad)?),
            "brokerName" => cfg.broker_name = Some(non_empty(v).map_err(bad)?),
            "brokerId" => {
                let id = v
                    .parse::<i64>()
                    .ok()
                    .filter(|id| *id >= 0)
                    .ok_or_else(|| bad("expected an integer >= 0".into()))?;
                cfg.broker_id = Some(id);
                id_line = Some(p.line);
            }
            "brokerRole" => {
                cfg.role = Some(match v.to_ascii_uppercase().as_str() {
                    "ASYNC_MASTER" => "async_master",
                    "SYNC_MASTER" => "sync_master",
                    "SLAVE" => "slave",
                    _ => return Err(bad("expected ASYNC_MASTER, SYNC_MASTER or SLAVE".into())),
                });
                role_line = Some(p.line);
            }
            "flushDiskType" => {
                cfg.store.flush = Some(match v.to_ascii_uppercase().as_str() {
                    "ASYNC_FLUSH" => "async",
                    "SYNC_FLUSH" => "sync",
                    _ => return Err(bad("expected ASYNC_FLUSH or SYNC_FLUSH".into())),
                })
            }
            "listenPort" => {
                let port = v
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("expected a port number 1..=65535".into()))?;
                cfg.listen = Some(format!("0.0.0.0:{port}"));
                cfg.security = Some(SecurityToml {
                    allow_anonymous: true,
                });
            }
            "namesrvAddr" => cfg.nameservers = Some(nameservers(v).map_err(bad)?),
            "storePathRootDir" => cfg.data_dir = Some(non_empty(v).map_err(bad)?),
            "mappedFileSizeCommitLog" => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 65536)
                    .ok_or_else(|| bad("expected a size in bytes of at least 65536".into()))?;
                cfg.store.segment_bytes = Some(n);
            }
            "fileReservedTime" => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("expected a number of hours of at least 1".into()))?;
                cfg.store.retention_hours = Some(n);
            }
            "diskMaxUsedSpaceRatio" => {
                let pct = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| bad("expected a percentage within 1..=100".into()))?;
                cfg.store.disk_clean_ratio = Some(f64::from(pct) / 100.0);
            }
            "maxMessageSize" => {
                let max = apogee_proto::limits::MAX_BATCH_BYTES as u64;
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| bad(format!("expected a size in bytes within 1..={max}")))?;
                cfg.max_body_bytes = Some(n);
            }
            "autoCreateTopicEnable" => {
                cfg.auto_create_topics = Some(match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("expected true or false".into())),
                })
            }
            key => {
                let reason = match key {
                    "deleteWhen" => NO_DELETE_HOUR,
                    _ => NO_EQUIVALENT,
                };
                ignored.retain(|i| i.key != key);
                ignored.push(Ignored {
                    key: key.to_string(),
                    reason: reason.to_string(),
                });
                continue;
            }
        }
        mapped.retain(|k| *k != p.key);
        mapped.push(p.key);
    }
    check_role_and_id(&cfg, id_line, role_line)?;
    let body = toml::to_string(&cfg).map_err(|e| ImportError {
        line: 0,
        key: String::new(),
        value: String::new(),
        message: format!("cannot write the TOML: {e}"),
    })?;
    let mut header = format!("# Imported by `apogee config import` from {source}.\n");
    if mapped.is_empty() {
        header.push_str("# No key could be mapped; every key has its default.\n");
    } else {
        header.push_str(&format!("# Mapped keys: {}.\n", mapped.join(", ")));
        header.push_str("# Every other key has its default (see deploy/broker.toml).\n");
    }
    if cfg.security.is_some() {
        header.push_str(
            "# listenPort: listens on every address and, like a RocketMQ broker without ACLs,\n\
             # takes anyone (security.allow_anonymous); see docs/SECURITY.md before exposing it.\n",
        );
    }
    if !ignored.is_empty() {
        let keys: Vec<&str> = ignored.iter().map(|i| i.key.as_str()).collect();
        header.push_str(&format!("# Ignored keys: {}.\n", keys.join(", ")));
    }
    Ok(Imported {
        toml: format!("{header}\n{body}"),
        mapped,
        ignored,
    })
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(v.to_string())
    }
}

/// `a:9876;b:9876` into a list of host:port addresses.
fn nameservers(v: &str) -> Result<Vec<String>, String> {
    let addrs: Vec<String> = v
        .split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if addrs.is_empty() {
        return Err("expected host:port addresses separated by ';'".into());
    }
    for a in &addrs {
        let valid = a
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(format!("{a:?} is not a host:port address"));
        }
    }
    Ok(addrs)
}

/// A slave needs brokerId > 0 and a master brokerId 0 (RocketMQ's rule too).
fn check_role_and_id(
    cfg: &BrokerToml,
    id_line: Option<usize>,
    role_line: Option<usize>,
) -> Result<(), ImportError> {
    let id = cfg.broker_id.unwrap_or(0);
    let role = cfg.role.unwrap_or("async_master");
    if (id == 0) != (role == "slave") {
        return Ok(());
    }
    let (line, key, value) = match (role_line, id_line) {
        (Some(l), _) if role == "slave" => (l, "brokerRole", "SLAVE".to_string()),
        (_, Some(l)) => (l, "brokerId", id.to_string()),
        (Some(l), None) => (l, "brokerRole", role.to_ascii_uppercase()),
        (None, None) => return Ok(()),
    };
    Err(ImportError {
        line,
        key: key.into(),
        value,
        message: format!(
            "brokerRole {} with brokerId {id}: a master has brokerId 0, a slave brokerId > 0",
            role.to_ascii_uppercase()
        ),
    })
}

/// Runs `apogee config import`: the TOML to stdout or `--out`, ignored keys to stderr
/// (or everything as JSON with `-o json`).
pub fn run<W: Write>(cmd: &ConfigCommand, f: Format, out: &mut W) -> ToolResult<()> {
    let ConfigCommand::Import(args) = cmd;
    let path = &args.file;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ToolError::Input(format!("cannot read {}: {e}", path.display())))?;
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let imported =
        import(&text, &source).map_err(|e| ToolError::Input(format!("{}: {e}", path.display())))?;
    if let Some(dest) = &args.out {
        std::fs::write(dest, &imported.toml)
            .map_err(|e| ToolError::Input(format!("cannot write {}: {e}", dest.display())))?;
    }
    match f {
        Format::Json => {
            let json = serde_json::to_string_pretty(&imported)
                .map_err(|e| ToolError::Input(e.to_string()))?;
            writeln!(out, "{json}")?;
        }
        Format::Table => {
            if args.out.is_none() {
                out.write_all(imported.toml.as_bytes())?;
            }
            eprint!("{}", summary(&imported, args.out.as_ref()));
        }
    }
    out.flush()?;
    Ok(())
}

/// What the table form prints on stderr: the ignored keys and where the TOML went.
fn summary(imported: &Imported, dest: Option<&PathBuf>) -> String {
    let mut s = String::new();
    if !imported.ignored.is_empty() {
        let mut table = Table::new(["IGNORED KEY", "REASON"]);
        for i in &imported.ignored {
            table.push(vec![i.key.clone(), i.reason.clone()]);
        }
        s.push_str(&table.render());
    }
    if let Some(dest) = dest {
        s.push_str(&format!(
            "wrote {}: {} keys mapped, {} ignored\n",
            dest.display(),
            imported.mapped.len(),
            imported.ignored.len()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# RocketMQ broker config
! another comment style
brokerClusterName = ProdCluster
brokerName=broker-x
brokerId : 0
brokerRole=SYNC_MASTER
flushDiskType = SYNC_FLUSH
listenPort=30911
namesrvAddr=ns1:9876; ns2:9876
storePathRootDir=/data/rocketmq/store
mappedFileSizeCommitLog=1048576
maxMessageSize=1048576
autoCreateTopicEnable=true
deleteWhen=04
fileReservedTime=48
diskMaxUsedSpaceRatio=88
sendMessageThreadPoolNums=16
";

    fn toml_of(text: &str) -> toml::Table {
        let imported = import(text, "broker.conf").unwrap();
        toml::from_str(&imported.toml).unwrap()
    }

    fn err_of(text: &str) -> ImportError {
        import(text, "broker.conf").unwrap_err()
    }

    #[test]
    fn properties_separators_comments_and_whitespace() {
        let props =
            parse_properties("# c\n  ! c2\n\na=1\n b : 2 \nc 3\nd=x=y\ne:\nf = a:b\n\tg\t=\tv\n");
        let kv: Vec<(usize, &str, &str)> = props
            .iter()
            .map(|p| (p.line, p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            kv,
            vec![
                (4, "a", "1"),
                (5, "b", "2 "),
                (6, "c", "3"),
                (7, "d", "x=y"),
                (8, "e", ""),
                (9, "f", "a:b"),
                (10, "g", "v"),
            ]
        );
    }

    #[test]
    fn properties_continuations_and_escapes() {
        let props = parse_properties("a=one\\\n    two\nb\\:c=d\\te\\u0041\nc=x\\\\\n");
        let kv: Vec<(&str, &str)> = props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(kv, vec![("a", "onetwo"), ("b:c", "d\teA"), ("c", "x\\")]);
        assert_eq!(props[1].line, 3);
    }

    #[test]
    fn every_mapped_key_lands_in_its_apogee_key() {
        let t = toml_of(SAMPLE);
        assert_eq!(t["cluster_name"].as_str(), Some("ProdCluster"));
        assert_eq!(t["broker_name"].as_str(), Some("broker-x"));
        assert_eq!(t["broker_id"].as_integer(), Some(0));
        assert_eq!(t["role"].as_str(), Some("sync_master"));
        assert_eq!(t["listen"].as_str(), Some("0.0.0.0:30911"));
        assert_eq!(t["security"]["allow_anonymous"].as_bool(), Some(true));
        let ns: Vec<&str> = t["nameservers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(ns, vec!["ns1:9876", "ns2:9876"]);
        assert_eq!(t["data_dir"].as_str(), Some("/data/rocketmq/store"));
        assert_eq!(t["max_body_bytes"].as_integer(), Some(1048576));
        assert_eq!(t["auto_create_topics"].as_bool(), Some(true));
        let store = t["store"].as_table().unwrap();
        assert_eq!(store["flush"].as_str(), Some("sync"));
        assert_eq!(store["segment_bytes"].as_integer(), Some(1048576));
        assert_eq!(store["retention_hours"].as_integer(), Some(48));
        assert_eq!(store["disk_clean_ratio"].as_float(), Some(0.88));
        assert_eq!(store.len(), 4, "only mapped keys: {store:?}");
        // The mapped keys, and the security section listenPort brings.
        assert_eq!(t.len(), 11, "only mapped keys: {t:?}");
    }

    #[test]
    fn header_names_the_source_and_mapped_keys() {
        let imported = import(SAMPLE, "broker.conf").unwrap();
        let header: Vec<&str> = imported
            .toml
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect();
        assert!(header[0].contains("apogee config import") && header[0].contains("broker.conf"));
        assert!(
            header[1].contains("brokerClusterName") && header[1].contains("autoCreateTopicEnable")
        );
        assert_eq!(imported.mapped.len(), 13);
        assert_eq!(imported.mapped[0], "brokerClusterName");
    }

    #[test]
    fn other_roles_and_flush_types() {
        let t = toml_of("brokerRole=ASYNC_MASTER\nflushDiskType=ASYNC_FLUSH\n");
        assert_eq!(t["role"].as_str(), Some("async_master"));
        assert_eq!(t["store"]["flush"].as_str(), Some("async"));
        let t = toml_of("brokerRole=SLAVE\nbrokerId=2\nautoCreateTopicEnable=false\n");
        assert_eq!(t["role"].as_str(), Some("slave"));
        assert_eq!(t["broker_id"].as_integer(), Some(2));
        assert_eq!(t["auto_create_topics"].as_bool(), Some(false));
    }

    #[test]
    fn unknown_keys_are_ignored_with_reasons_and_retention_keys_mapped() {
        let imported = import(SAMPLE, "broker.conf").unwrap();
        let reasons: Vec<(&str, &str)> = imported
            .ignored
            .iter()
            .map(|i| (i.key.as_str(), i.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("deleteWhen", NO_DELETE_HOUR),
                ("sendMessageThreadPoolNums", NO_EQUIVALENT),
            ]
        );
        let t: toml::Table = toml::from_str(&imported.toml).unwrap();
        assert_eq!(t["store"]["retention_hours"].as_integer(), Some(48));
        assert_eq!(t["store"]["disk_clean_ratio"].as_float(), Some(0.88));
        assert!(!imported.toml.contains("sendMessageThreadPoolNums = "));
        assert!(t.get("sendMessageThreadPoolNums").is_none());
    }

    #[test]
    fn empty_input_gives_an_all_default_config() {
        let imported = import("# nothing\n", "b.conf").unwrap();
        assert!(imported.mapped.is_empty() && imported.ignored.is_empty());
        assert!(toml_of("").is_empty());
    }

    #[test]
    fn repeated_keys_take_the_last_value() {
        let imported = import("brokerName=a\nbrokerName=b\nx=1\nx=2\n", "b.conf").unwrap();
        assert_eq!(imported.mapped, vec!["brokerName"]);
        assert_eq!(imported.ignored.len(), 1);
        assert_eq!(
            toml_of("brokerName=a\nbrokerName=b\n")["broker_name"].as_str(),
            Some("b")
        );
    }

    #[test]
    fn invalid_values_name_the_key_and_line() {
        let e = err_of("brokerName=a\nbrokerRole=FOO\n");
        assert_eq!(
            (e.line, e.key.as_str(), e.value.as_str()),
            (2, "brokerRole", "FOO")
        );
        assert!(
            e.to_string().starts_with("line 2: brokerRole = \"FOO\""),
            "{e}"
        );
        let cases = [
            ("listenPort=abc", "listenPort"),
            ("listenPort=0", "listenPort"),
            ("listenPort=70000", "listenPort"),
            ("brokerId=-1", "brokerId"),
            ("brokerId=x", "brokerId"),
            ("flushDiskType=SOMETIMES", "flushDiskType"),
            ("autoCreateTopicEnable=yes", "autoCreateTopicEnable"),
            ("mappedFileSizeCommitLog=1024", "mappedFileSizeCommitLog"),
            ("maxMessageSize=0", "maxMessageSize"),
            ("maxMessageSize=big", "maxMessageSize"),
            ("namesrvAddr=;", "namesrvAddr"),
            ("namesrvAddr=ns1", "namesrvAddr"),
            ("namesrvAddr=ns1:9876;ns2:port", "namesrvAddr"),
            ("brokerName=", "brokerName"),
        ];
        for (text, key) in cases {
            let e = err_of(text);
            assert_eq!((e.line, e.key.as_str()), (1, key), "{text}: {e}");
        }
    }

    #[test]
    fn role_and_broker_id_must_agree() {
        let e = err_of("brokerRole=SLAVE\n");
        assert_eq!((e.line, e.key.as_str()), (1, "brokerRole"));
        let e = err_of("brokerRole=SYNC_MASTER\nbrokerId=3\n");
        assert_eq!((e.line, e.key.as_str()), (2, "brokerId"));
        let e = err_of("brokerId=1\n");
        assert_eq!((e.line, e.key.as_str()), (1, "brokerId"));
        assert!(e.message.contains("slave brokerId > 0"), "{e}");
    }

    #[test]
    fn table_summary_lists_ignored_keys() {
        let imported = import(SAMPLE, "broker.conf").unwrap();
        let s = summary(&imported, Some(&PathBuf::from("out.toml")));
        assert!(s.starts_with("IGNORED KEY"), "{s}");
        assert!(
            s.contains("sendMessageThreadPoolNums  no Apogee equivalent\n"),
            "{s}"
        );
        assert!(
            s.ends_with("wrote out.toml: 13 keys mapped, 2 ignored\n"),
            "{s}"
        );
    }
}

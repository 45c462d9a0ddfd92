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
//!
//! A broker with ACLs on (`aclEnable`, or RocketMQ 5's `authenticationEnabled` /
//! `authorizationEnabled`) becomes one with `security.authentication` on, never an open one.
//! RocketMQ kept its accounts in `plain_acl.yml`, not broker.conf: read from `--acl-file`
//! or beside the input ([`plain_acl`]), they become the `apogee user` / `apogee acl`
//! commands of the steps printed with the config ([`Imported::steps`]).

use crate::error::{ToolError, ToolResult};
use crate::output::{Format, Table};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "plain_acl.rs"]
pub mod plain_acl;

#[path = "config_import_moves.rs"]
mod moves;

/// `apogee config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Convert a RocketMQ broker.conf into an Apogee broker TOML (printed, or written with
    /// --out); keys without an Apogee equivalent are listed on stderr.
    Import(ImportArgs),
    /// Move a RocketMQ broker's state (topics.json, subscriptionGroup.json,
    /// consumerOffset.json, plain_acl.yml of its store's config/ directory) to this cluster:
    /// the plan first; --apply makes it through the admin API.
    ImportState(crate::rocketmq_state::ImportStateArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The RocketMQ broker.conf (Java properties).
    #[arg(value_name = "BROKER_CONF")]
    pub file: PathBuf,
    /// Write the TOML to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// RocketMQ's ACL accounts (plain_acl.yml), read when the input has ACLs on (default:
    /// plain_acl.yml beside BROKER_CONF, when there is one).
    #[arg(long, value_name = "FILE")]
    pub acl_file: Option<PathBuf>,
    /// Also write the NameServers' TOML (its listener and the [security] section every
    /// NameServer needs with this broker) to this file.
    #[arg(long, value_name = "FILE")]
    pub nameserver_out: Option<PathBuf>,
    /// Where the imported config expects its secret files (cluster.secret, admin.secret)
    /// when the input has ACLs on.
    #[arg(long, value_name = "DIR", default_value = "/etc/apogee")]
    pub secrets_dir: String,
}

/// What an import takes besides broker.conf itself.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// plain_acl.yml's text and its name, when one was found.
    pub acl_file: Option<(String, String)>,
    /// The directory the secret files are named in.
    pub secrets_dir: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            acl_file: None,
            secrets_dir: "/etc/apogee".into(),
        }
    }
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
    /// What the operator must do (shell commands, and `#` notes), also in the TOML's header;
    /// empty when nothing is needed.
    pub steps: Vec<String>,
    /// ACLs were on: the config turns authentication on.
    pub authentication: bool,
    /// The NameServers' TOML to go with the broker's: the same [security] section, and a
    /// listener on every address when the broker listens on every address.
    pub nameserver_toml: String,
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
    advertise: Option<String>,
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
    consume: Option<ConsumeToml>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security: Option<SecurityToml>,
}

#[derive(Debug, Serialize)]
struct ConsumeToml {
    auto_create_groups: bool,
}

/// A RocketMQ broker listens on every address. Without ACLs it takes anyone, and the imported
/// config says so explicitly (Apogee refuses that unless told); with ACLs on, authentication
/// is on.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum SecurityToml {
    Anonymous {
        allow_anonymous: bool,
    },
    Authenticated {
        authentication: bool,
        cluster_secret_file: String,
        admin_access_key: String,
        admin_secret_file: String,
    },
}

/// The bootstrap admin's access key when plain_acl.yml names no admin account.
const DEFAULT_ADMIN: &str = "admin";

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
    #[serde(skip_serializing_if = "Option::is_none")]
    disk_refuse_ratio: Option<f64>,
}

impl StoreToml {
    fn is_empty(&self) -> bool {
        self.flush.is_none()
            && self.segment_bytes.is_none()
            && self.retention_hours.is_none()
            && self.disk_clean_ratio.is_none()
            && self.disk_refuse_ratio.is_none()
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
/// header. No plain_acl.yml; secret files named in /etc/apogee.
pub fn import(text: &str, source: &str) -> Result<Imported, ImportError> {
    import_with(text, source, &ImportOptions::default())
}

/// [`import`] with plain_acl.yml and where the secret files go ([`ImportOptions`]).
pub fn import_with(
    text: &str,
    source: &str,
    opts: &ImportOptions,
) -> Result<Imported, ImportError> {
    let mut cfg = BrokerToml::default();
    let mut mapped: Vec<String> = Vec::new();
    let mut ignored: Vec<Ignored> = Vec::new();
    // Line of brokerId / brokerRole, for the consistency check.
    let (mut id_line, mut role_line) = (None, None);
    let (mut listen_port, mut broker_ip) = (None, None);
    // The ACL switches (aclEnable ...) as last set, in file order.
    let mut acl_switches: Vec<(String, bool)> = Vec::new();
    // RocketMQ's store directory (storePathRootDir), which Apogee does not open.
    let mut rocketmq_store: Option<String> = None;
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
                listen_port = Some(port);
            }
            "brokerIP1" => {
                let ip = v
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| bad("expected an IP address (clients dial it)".into()))?;
                broker_ip = Some(ip);
            }
            "aclEnable" | "authenticationEnabled" | "authorizationEnabled" => {
                let on = parse_bool(v).map_err(bad)?;
                acl_switches.retain(|(k, _)| *k != p.key);
                acl_switches.push((p.key.clone(), on));
            }
            "autoCreateSubscriptionGroup" => {
                cfg.consume = Some(ConsumeToml {
                    auto_create_groups: parse_bool(v).map_err(bad)?,
                })
            }
            "namesrvAddr" => cfg.nameservers = Some(nameservers(v).map_err(bad)?),
            "storePathRootDir" => {
                let store = non_empty(v).map_err(bad)?;
                cfg.data_dir = Some(moves::fresh_data_dir(&store));
                rocketmq_store = Some(store);
            }
            // RocketMQ 4 spelled it with one p; both are read.
            "mappedFileSizeCommitLog" | "mapedFileSizeCommitLog" => {
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
                let clean = f64::from(pct) / 100.0;
                cfg.store.disk_clean_ratio = Some(clean);
                // Sends are refused at or above disk_refuse_ratio (0.90): never below the
                // cleaning point (`--check-config` refuses that).
                cfg.store.disk_refuse_ratio =
                    (clean > moves::DEFAULT_REFUSE_RATIO).then_some(clean);
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
            "autoCreateTopicEnable" => cfg.auto_create_topics = Some(parse_bool(v).map_err(bad)?),
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
    if let Some(ip) = broker_ip {
        // RocketMQ publishes brokerIP1 with listenPort (10911 unless set) and listens on
        // every address.
        let port = listen_port.unwrap_or(apogee_proto::names::DEFAULT_BROKER_PORT);
        cfg.advertise = Some(std::net::SocketAddr::new(ip, port).to_string());
        if cfg.listen.is_none() {
            let any = if ip.is_ipv6() { "[::]" } else { "0.0.0.0" };
            cfg.listen = Some(format!("{any}:{port}"));
        }
    }
    let acl_key = acl_switches
        .iter()
        .find(|(_, on)| *on)
        .map(|(k, _)| k.as_str());
    let mut steps = Vec::new();
    if let Some(acl_key) = acl_key {
        let acl = read_acl_file(opts, source);
        let admin = acl
            .as_ref()
            .ok()
            .and_then(|f| f.accounts.iter().find(|a| a.admin))
            .map(|a| a.access_key.clone());
        let secret_path = |name: &str| {
            Path::new(&opts.secrets_dir)
                .join(name)
                .display()
                .to_string()
        };
        cfg.security = Some(SecurityToml::Authenticated {
            authentication: true,
            cluster_secret_file: secret_path("cluster.secret"),
            admin_access_key: admin.clone().unwrap_or_else(|| DEFAULT_ADMIN.into()),
            admin_secret_file: secret_path("admin.secret"),
        });
        steps = authentication_steps(acl_key, &acl, admin.as_deref(), &secret_path);
    } else if cfg.listen.is_some() {
        cfg.security = Some(SecurityToml::Anonymous {
            allow_anonymous: true,
        });
    }
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
    if let Some(store) = &rocketmq_store {
        steps.extend(moves::store_steps(store));
    }
    match (&cfg.security, acl_key) {
        (Some(SecurityToml::Anonymous { .. }), _) => header.push_str(
            "# Listens on every address and, like a RocketMQ broker without ACLs, takes\n\
             # anyone (security.allow_anonymous); see docs/SECURITY.md before exposing it.\n",
        ),
        (_, Some(key)) => header.push_str(&format!(
            "# {key}: authentication is on (security.authentication).\n"
        )),
        _ => {}
    }
    if !steps.is_empty() {
        header.push_str("# Steps:\n");
        for step in &steps {
            let indent = if step.starts_with('#') { "" } else { "#   " };
            header.push_str(&format!("{indent}{step}\n"));
        }
    }
    if !ignored.is_empty() {
        let keys: Vec<&str> = ignored.iter().map(|i| i.key.as_str()).collect();
        header.push_str(&format!("# Ignored keys: {}.\n", keys.join(", ")));
    }
    let nameserver_toml = moves::nameserver_toml(
        source,
        cfg.listen.is_some(),
        cfg.nameservers.as_deref().unwrap_or_default(),
        cfg.security.as_ref(),
    )?;
    Ok(Imported {
        toml: format!("{header}\n{body}"),
        mapped,
        ignored,
        steps,
        authentication: acl_key.is_some(),
        nameserver_toml,
    })
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// plain_acl.yml's accounts, or why there are none to read (no file, or one that could not
/// be read).
fn read_acl_file(opts: &ImportOptions, source: &str) -> Result<plain_acl::AclFile, String> {
    let Some((text, name)) = &opts.acl_file else {
        return Err(format!(
            "no plain_acl.yml was found beside {source} (give it with --acl-file)"
        ));
    };
    plain_acl::parse(text).map_err(|e| format!("{name} could not be read ({e})"))
}

/// What an operator does before a broker imported with ACLs on starts: the two secret
/// files, the NameServers' settings, the users and ACL entries.
fn authentication_steps(
    acl_key: &str,
    acl: &Result<plain_acl::AclFile, String>,
    admin: Option<&str>,
    secret_path: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let cluster = plain_acl::shell_word(&secret_path("cluster.secret"));
    let admin_file = plain_acl::shell_word(&secret_path("admin.secret"));
    let mut steps = vec![
        "# 1. The cluster secret: the same file on every NameServer and broker.".to_string(),
        format!("head -c 32 /dev/urandom | base64 > {cluster}"),
    ];
    match admin {
        Some(ak) => steps.push(format!(
            "# 2. The bootstrap admin is plain_acl.yml's admin {ak}: put its secretKey in \
             {admin_file} (only the service user may read it)."
        )),
        None => steps.extend([
            format!("# 2. The bootstrap admin ({DEFAULT_ADMIN}) and its secret key:"),
            format!("head -c 24 /dev/urandom | base64 > {admin_file}"),
        ]),
    }
    steps.push(format!(
        "# 3. Every NameServer gets the same [security] section: the NameServer config \
             `--nameserver-out FILE` writes ({}; docs/SECURITY.md, \"Authentication\").",
        moves::NAMESERVER_JSON_KEY
    ));
    let admin_ak = admin.unwrap_or(DEFAULT_ADMIN);
    match acl {
        Ok(file) => {
            steps.push(format!(
                "# 4. Then the accounts of plain_acl.yml, as the admin (--access-key {admin_ak} \
                 --secret-key ...), each user's secretKey in its .secret file:"
            ));
            steps.extend(plain_acl::commands(file, admin));
            if file.global_address_list || file.accounts.iter().any(|a| a.address_list) {
                steps.push(
                    "# plain_acl.yml's address allow-lists (globalWhiteRemoteAddresses, \
                     whiteRemoteAddress) have no Apogee equivalent: let only those addresses \
                     reach the ports (a firewall)."
                        .to_string(),
                );
            }
        }
        Err(why) => steps.extend([
            format!(
                "# 4. RocketMQ kept its ACL accounts ({acl_key}) in plain_acl.yml: {why}. \
                 Recreate each account as the admin ({admin_ak}):"
            ),
            "#   apogee user create <accessKey> --secret-file <file> [--role admin]".to_string(),
            "#   apogee acl grant --user <accessKey> --topic <name|prefix*|'*'> \
             --actions pub|sub|pub,sub [--deny]"
                .to_string(),
            "#   apogee acl grant --user <accessKey> --group <name|prefix*|'*'> --actions sub"
                .to_string(),
        ]),
    }
    steps
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
    apogee_proto::names::parse_address_list(v)
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
pub fn run<W: Write>(args: &ImportArgs, f: Format, out: &mut W) -> ToolResult<()> {
    let path = &args.file;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ToolError::Input(format!("cannot read {}: {e}", path.display())))?;
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let opts = ImportOptions {
        acl_file: acl_file(args)?,
        secrets_dir: args.secrets_dir.clone(),
    };
    let imported = import_with(&text, &source, &opts)
        .map_err(|e| ToolError::Input(format!("{}: {e}", path.display())))?;
    let write = |dest: &PathBuf, text: &str| {
        std::fs::write(dest, text)
            .map_err(|e| ToolError::Input(format!("cannot write {}: {e}", dest.display())))
    };
    if let Some(dest) = &args.out {
        write(dest, &imported.toml)?;
    }
    if let Some(dest) = &args.nameserver_out {
        write(dest, &imported.nameserver_toml)?;
    }
    match f {
        Format::Json | Format::Jsonl => {
            let json = serde_json::to_string_pretty(&imported)
                .map_err(|e| ToolError::Input(e.to_string()))?;
            writeln!(out, "{json}")?;
        }
        Format::Table => {
            if args.out.is_none() {
                out.write_all(imported.toml.as_bytes())?;
            }
            eprint!("{}", summary(&imported, args.out.as_ref()));
            if let Some(dest) = &args.nameserver_out {
                eprintln!("wrote {}: the NameServers' config", dest.display());
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// plain_acl.yml's text and path: `--acl-file` (which must be readable), else the one
/// beside the input, if any.
fn acl_file(args: &ImportArgs) -> ToolResult<Option<(String, String)>> {
    let read = |p: &Path| std::fs::read_to_string(p).map(|t| (t, p.display().to_string()));
    if let Some(p) = &args.acl_file {
        return read(p)
            .map(Some)
            .map_err(|e| ToolError::Input(format!("cannot read {}: {e}", p.display())));
    }
    let beside = args
        .file
        .parent()
        .unwrap_or(Path::new("."))
        .join("plain_acl.yml");
    Ok(read(&beside).ok())
}

/// What the table form prints on stderr: the ignored keys, the steps before the broker
/// starts and where the TOML went.
fn summary(imported: &Imported, dest: Option<&PathBuf>) -> String {
    let mut s = String::new();
    if !imported.ignored.is_empty() {
        let mut table = Table::new(["IGNORED KEY", "REASON"]);
        for i in &imported.ignored {
            table.push(vec![i.key.clone(), i.reason.clone()]);
        }
        s.push_str(&table.render());
    }
    if imported.authentication {
        s.push_str("\nACLs were on: authentication is on.\n");
    }
    if !imported.steps.is_empty() {
        s.push_str("\nSteps:\n");
        for step in &imported.steps {
            s.push_str(step);
            s.push('\n');
        }
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
#[path = "config_import_tests.rs"]
mod tests;

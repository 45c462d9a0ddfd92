//! What RocketMQ's tools ask of a broker about itself, admin only when authentication is on:
//!
//! - GET_BROKER_RUNTIME_INFO (`mqadmin clusterList`, `mqadmin brokerStatus`, the
//!   dashboard's cluster page): RocketMQ's `KVTable` (`{"table":{...}}`, every value a
//!   string) with the keys those tools read, from [`Broker::runtime_figures`]. Keys whose
//!   figure Apogee does not have are answered as RocketMQ answers "none" (see
//!   [`runtime_table`]).
//! - GET_BROKER_CONFIG (`mqadmin getBrokerConfig`): the effective config
//!   ([`Broker::effective_config`], the file's values with the runtime settings now) as Java
//!   `Properties` text, one dotted key per value (`store.retention_hours=72`), with the
//!   RocketMQ names of the few values that have one (`brokerName`, `autoCreateTopicEnable`
//!   ...). Paths to key material and the admin's access key are left out ([`WITHHELD`]).
//! - UPDATE_BROKER_CONFIG (`mqadmin updateBrokerConfig -k KEY -v VALUE`): one runtime
//!   setting changed ([`Broker::change_runtime_setting`]: the allow-list of
//!   `crate::runtime_config`, by its key or RocketMQ name; a slave refuses, naming its
//!   master). Any other key is refused with the list of those that can be changed.

use crate::actions::admin::RuntimeFigures;
use crate::services::Broker;
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::ApogeeError;
use apogee_server::remoting::Caller;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The refusal of an admin request to a caller that is not an admin; None for an admin
/// (or anyone, without authentication).
fn refused_unless_admin(
    caller: &Caller,
    request: &RemotingCommand,
    what: &str,
) -> Option<RemotingCommand> {
    if caller.is_admin() {
        return None;
    }
    let who = match &caller.identity {
        Some(apogee_proto::auth::Identity::User { access_key, .. }) => access_key.as_str(),
        _ => "the caller",
    };
    Some(RemotingCommand::refusal(
        request,
        &ApogeeError::Forbidden(format!(
            "access key {who} is not an admin, and {what} needs one"
        )),
    ))
}

/// Answers GET_BROKER_RUNTIME_INFO.
pub fn runtime_info(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refusal) = refused_unless_admin(caller, request, "the broker's runtime info") {
        return refusal;
    }
    let figures = broker.runtime_figures();
    let table = runtime_table(&figures, apogee_proto::time::now_ms());
    RemotingCommand::success(request).with_body(kv_table_body(&table))
}

/// RocketMQ's `KVTable` JSON of `table`.
fn kv_table_body(table: &BTreeMap<&'static str, String>) -> String {
    serde_json::json!({ "table": table }).to_string()
}

/// The runtime info's keys, read at `now_ms`. Numbers are written the way RocketMQ's tools
/// parse them (`Long.parseLong`, `Double.parseDouble`). What Apogee has no figure for is
/// answered as RocketMQ answers "none":
///
/// - thread-pool queues (`sendThreadPoolQueueSize`, `pullThreadPoolQueueSize`,
///   `ackThreadPoolQueueSize` and their `...HeadWaitTimeMills`): 0, Apogee runs each request
///   as a task with no pool queue in front of it;
/// - `pageCacheLockTimeMills`: 0, there is no put lock whose hold time Apogee measures;
/// - the timer wheel (`timerReadBehind`, `timerOffsetBehind`, `timerCongestNum`: 0,
///   `timerEnqueueTps`, `timerDequeueTps`: 0.0), as RocketMQ without its timer wheel:
///   Apogee's scheduled messages wait in a due index (`apogee schedule stats`);
/// - `earliestMessageTimeStamp`: -1 for an empty log; `commitLogDiskRatio` and
///   `consumeQueueDiskRatio`: -1.0 when the disk could not be measured.
fn runtime_table(f: &RuntimeFigures, now_ms: i64) -> BTreeMap<&'static str, String> {
    let mut t = BTreeMap::new();
    let rates = |r: &[f64]| {
        r.iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    t.insert("brokerVersionDesc", format!("Apogee {}", f.version));
    t.insert("brokerActive", f.active.to_string());
    t.insert("bootTimestamp", f.started_at_ms.to_string());
    t.insert("runtime", uptime(now_ms.saturating_sub(f.started_at_ms)));
    t.insert("putTps", rates(&f.traffic.in_per_sec));
    t.insert("getTransferredTps", rates(&f.traffic.out_per_sec));
    let (put, get) = (f.traffic.in_totals, f.traffic.out_totals);
    t.insert("msgPutTotalTodayNow", put.now.to_string());
    t.insert("msgPutTotalTodayMorning", put.today_start.to_string());
    t.insert(
        "msgPutTotalYesterdayMorning",
        put.yesterday_start.to_string(),
    );
    t.insert("msgGetTotalTodayNow", get.now.to_string());
    t.insert("msgGetTotalTodayMorning", get.today_start.to_string());
    t.insert(
        "msgGetTotalYesterdayMorning",
        get.yesterday_start.to_string(),
    );
    t.insert("commitLogMinOffset", f.log.start.to_string());
    t.insert("commitLogMaxOffset", f.log.end.to_string());
    t.insert(
        "remainHowManyDataToFlush",
        human_bytes(f.log.end.saturating_sub(f.log.flushed)),
    );
    t.insert(
        "earliestMessageTimeStamp",
        f.earliest_store_ms.unwrap_or(-1).to_string(),
    );
    let ratio = f.disk.map_or(-1.0, |d| {
        let total = d.used.saturating_add(d.available);
        // Percent rounded up, as `df` and RocketMQ show it.
        if total == 0 {
            0.0
        } else {
            (u128::from(d.used) * 100).div_ceil(u128::from(total)) as f64 / 100.0
        }
    });
    t.insert("commitLogDiskRatio", format!("{ratio:?}"));
    t.insert("consumeQueueDiskRatio", format!("{ratio:?}"));
    if let Some(d) = f.disk {
        t.insert(
            "commitLogDirCapacity",
            format!(
                "Total : {}, Free : {}.",
                human_bytes(d.used.saturating_add(d.available)),
                human_bytes(d.available)
            ),
        );
    }
    for key in [
        "sendThreadPoolQueueSize",
        "sendThreadPoolQueueHeadWaitTimeMills",
        "pullThreadPoolQueueSize",
        "pullThreadPoolQueueHeadWaitTimeMills",
        "ackThreadPoolQueueSize",
        "ackThreadPoolQueueHeadWaitTimeMills",
    ] {
        t.insert(key, "0".into());
    }
    t.insert("pageCacheLockTimeMills", "0".into());
    for key in ["timerReadBehind", "timerOffsetBehind", "timerCongestNum"] {
        t.insert(key, "0".into());
    }
    for key in ["timerEnqueueTps", "timerDequeueTps"] {
        t.insert(key, "0.0".into());
    }
    t
}

/// `ms` as RocketMQ writes a broker's uptime: `[ 1 days, 2 hours, 3 minutes, 4 seconds ]`.
fn uptime(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        s / 86_400,
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `bytes` in binary units as RocketMQ's tools write sizes: `512 B`, `1.5 KiB`, `3.0 GiB`.
fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let exp = ((bytes as f64).ln() / 1024f64.ln()).floor() as i32;
    let exp = exp.clamp(1, 6);
    let unit = "KMGTPE".as_bytes()[(exp - 1) as usize] as char;
    format!("{:.1} {unit}iB", bytes as f64 / 1024f64.powi(exp))
}

/// Config values never written into GET_BROKER_CONFIG's answer: where key material lies and
/// the bootstrap admin's access key (half of its credentials). `apogee broker config get`
/// shows them to an admin over the admin protocol.
pub const WITHHELD: [&str; 6] = [
    "security.admin_access_key",
    "security.admin_secret_file",
    "security.cluster_secret_file",
    "tls.key_file",
    "tier.credentials_file",
    "tier.credentials_profile",
];

/// Answers GET_BROKER_CONFIG.
pub fn broker_config(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refusal) = refused_unless_admin(caller, request, "the broker's config") {
        return refusal;
    }
    let properties = broker
        .effective_config()
        .and_then(|effective| config_properties(&effective.toml));
    match properties {
        Ok(text) => RemotingCommand::success(request).with_body(text),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// RocketMQ's names of config values, each with the dotted key of Apogee's value it is
/// (`runtime_config::ROCKETMQ_NAMES` adds the runtime settings' own).
const ROCKETMQ_CONFIG_NAMES: [(&str, &str); 6] = [
    ("brokerClusterName", "cluster_name"),
    ("brokerName", "broker_name"),
    ("brokerId", "broker_id"),
    ("namesrvAddr", "nameservers"),
    ("maxMessageSize", "max_body_bytes"),
    ("traceTopicEnable", "trace.enabled"),
];

/// The effective config `toml` as Properties text: every value by its dotted key (arrays
/// joined with `;`, as RocketMQ's `namesrvAddr`), but [`WITHHELD`]; then the RocketMQ names
/// of the values that have one.
fn config_properties(toml: &str) -> Result<String, ApogeeError> {
    let root: toml::Table = toml
        .parse()
        .map_err(|e| ApogeeError::internal_in("reading the effective config back", e))?;
    let mut values = BTreeMap::new();
    flatten("", &toml::Value::Table(root), &mut values);
    let mut out = String::new();
    for (key, value) in &values {
        if !WITHHELD.contains(&key.as_str()) {
            write_property(&mut out, key, value);
        }
    }
    let renamed = ROCKETMQ_CONFIG_NAMES
        .iter()
        .chain(crate::runtime_config::ROCKETMQ_NAMES.iter());
    for (rocketmq, apogee) in renamed {
        if let Some(value) = values.get(*apogee) {
            write_property(&mut out, rocketmq, value);
        }
    }
    if let Some(flush) = values.get("store.flush") {
        let flush_type = if flush == "sync" {
            "SYNC_FLUSH"
        } else {
            "ASYNC_FLUSH"
        };
        write_property(&mut out, "flushDiskType", flush_type);
    }
    Ok(out)
}

/// Every leaf of `value` into `out` by its dotted key under `prefix`.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        toml::Value::Array(items) => {
            let text: Vec<String> = items.iter().map(scalar).collect();
            out.insert(prefix.to_string(), text.join(";"));
        }
        other => {
            out.insert(prefix.to_string(), scalar(other));
        }
    }
}

/// A TOML value as its text (a string without quotes).
fn scalar(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Appends `key=value` as Java's `Properties.load` reads it back: backslash escapes for
/// the separators, comment marks, control characters and a leading space, `\uXXXX` for
/// everything outside printable ASCII (the tools read the body as ISO-8859-1).
fn write_property(out: &mut String, key: &str, value: &str) {
    escape_into(out, key, true);
    out.push('=');
    escape_into(out, value, false);
    out.push('\n');
}

fn escape_into(out: &mut String, text: &str, is_key: bool) {
    for (i, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
        }
    }
}

/// Answers UPDATE_BROKER_CONFIG: the body names one setting (`key=value`, Properties text).
pub fn update_broker_config(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refusal) = refused_unless_admin(caller, request, "a change of the broker's config")
    {
        return refusal;
    }
    let text = String::from_utf8_lossy(&request.body);
    let properties = parse_properties(&text);
    let (key, value) = match properties.as_slice() {
        [(key, value)] => (key, value),
        [] => {
            return RemotingCommand::error(
                request,
                response::INVALID_PARAMETER,
                "the request names no setting (its body is `key=value`)",
            )
        }
        more => {
            let keys: Vec<&str> = more.iter().map(|(k, _)| k.as_str()).collect();
            return RemotingCommand::error(
                request,
                response::INVALID_PARAMETER,
                format!(
                    "Apogee changes one setting per request, this one names {}: {}",
                    keys.len(),
                    keys.join(", ")
                ),
            );
        }
    };
    let by = match &caller.identity {
        Some(apogee_proto::auth::Identity::User { access_key, .. }) => access_key.as_str(),
        Some(apogee_proto::auth::Identity::Cluster) => "cluster",
        None => "anonymous",
    };
    match broker.change_runtime_setting(key, value, by) {
        Ok((setting, previous)) => {
            let mut answer = RemotingCommand::success(request);
            answer.remark = Some(format!(
                "{} changed from {previous} to {}",
                setting.key, setting.value
            ));
            answer
        }
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// The `key=value` pairs of Properties text as Java's `Properties.load` reads them: blank
/// and comment lines skipped, `=`, `:` or white space between key and value, backslash
/// escapes and continued lines; a key given twice keeps its last value.
fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        // A line ending in an odd number of backslashes goes on on the next line.
        while logical.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1 {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_property(&logical);
        let (key, value) = (unescape(key), unescape(value));
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
    }
    pairs
}

/// A logical line's raw key and value: the key ends at the first unescaped `=`, `:` or
/// white space; white space and one `=` or `:` after it are the separator.
fn split_property(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, '=' | ':' | ' ' | '\t' | '\x0c') {
            end = i;
            break;
        }
    }
    let key = &line[..end];
    let mut rest = line[end..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(after) = rest.strip_prefix(['=', ':']) {
        rest = after.trim_start_matches([' ', '\t', '\x0c']);
    }
    (key, rest)
}

/// Properties escapes undone: `\t`, `\n`, `\r`, `\f`, `\uXXXX` (a pair of them for a
/// character outside the BMP), and `\x` for any other x.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    // UTF-16 units of consecutive `\uXXXX` escapes, decoded together.
    let mut units: Vec<u16> = Vec::new();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or('\u{FFFD}')));
    };
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next();
            if next == Some('u') {
                let hex: String = chars.by_ref().take(4).collect();
                if let Ok(unit) = u16::from_str_radix(&hex, 16) {
                    units.push(unit);
                    continue;
                }
                flush(&mut units, &mut out);
                out.push_str("\\u");
                out.push_str(&hex);
                continue;
            }
            flush(&mut units, &mut out);
            match next {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('f') => out.push('\x0c'),
                Some(other) => out.push(other),
                None => {}
            }
            continue;
        }
        flush(&mut units, &mut out);
        out.push(c);
    }
    flush(&mut units, &mut out);
    out
}

#[cfg(test)]
#[path = "broker_reads_tests.rs"]
mod tests;

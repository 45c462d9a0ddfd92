//! `apogee config import-state <DIR>`: moves a RocketMQ 4 broker's state to an Apogee cluster.
//!
//! DIR is a RocketMQ store's `config/` directory (or a copy of it). Each of its files that is
//! there is read, and none is ever written:
//! - `topics.json`: the topics, with their queue count, permission and (RocketMQ 5's
//!   `message.type` attribute) message type; a topic without a type takes every kind, as in
//!   RocketMQ 4 (Apogee's `mixed`);
//! - `subscriptionGroup.json`: the consumer groups, with their retries (`retryMaxTimes`, and
//!   RocketMQ 5's `groupRetryPolicy`) and order (`consumeMessageOrderly`);
//! - `consumerOffset.json`: which group consumed which topic. RocketMQ's offsets count
//!   positions in RocketMQ's own queues, which Apogee never opens: a group that had consumed a
//!   topic is positioned at the end of the topic's queues on Apogee, so it receives what is
//!   sent from the move on (not the whole topic again, nor nothing, as a new group would
//!   under its consume-from setting). The plan shows RocketMQ's offsets beside it;
//! - `plain_acl.yml`: the accounts, recreated as users with their own secret keys (so
//!   applications keep signing with them) and ACL entries (see [`plain_acl`]).
//!
//! RocketMQ's own topics and groups (auto-creation templates, system topics, retry and
//! dead-letter topics, tool groups) are skipped with the reason. Without `--apply` the plan
//! is all that happens; with it, each step is made through the admin API in the order users,
//! ACL entries, topics, groups, offsets. A step whose object exists already is reported and
//! the rest goes on; the command fails when any step failed.

use crate::admin::{Admin, Perm, TopicType};
use crate::config_import::plain_acl::{self, AclStep};
use crate::error::{ToolError, ToolResult};
use crate::output::{Format, Table};
use apogee_proto::remoting::route::quote_integer_keys;
use apogee_proto::{cluster, delay_level, group::GroupConfig, group::RetryPolicy, limits, names};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[path = "rocketmq_state_apply.rs"]
pub mod apply;

/// `apogee config import-state`.
#[derive(Debug, clap::Args)]
pub struct ImportStateArgs {
    /// A RocketMQ store's config/ directory (or a copy): the files of it that are there are
    /// read, none is written.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Make the changes (without it, only the plan is printed and nothing changes).
    #[arg(long)]
    pub apply: bool,
    /// Create the topics on these broker groups only (repeatable; default: every group).
    #[arg(long = "broker-group", value_name = "NAME")]
    pub broker_groups: Vec<String>,
}

/// The files of a RocketMQ `config/` directory this import reads.
pub const FILES: [&str; 4] = [
    "topics.json",
    "subscriptionGroup.json",
    "consumerOffset.json",
    "plain_acl.yml",
];

/// RocketMQ's permission bits (`PermName`).
const PERM_READ: i64 = 4;
const PERM_WRITE: i64 = 2;
const PERM_INHERIT: i64 = 1;

/// The text of the files found, by name.
pub type Files = BTreeMap<String, String>;

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopicStep {
    pub name: String,
    pub queues: i32,
    /// `rw`, `r` or `w`.
    pub permission: &'static str,
    /// The message types it takes, as `apogee topic create --type` names them.
    pub message_type: &'static str,
    #[serde(skip)]
    pub perm: Perm,
    #[serde(skip)]
    pub kind: TopicType,
}

/// One change the import makes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Step {
    CreateUser {
        user: String,
        admin: bool,
        #[serde(skip)]
        secret: plain_acl::SecretKey,
    },
    Grant {
        user: String,
        resource: String,
        actions: String,
        deny: bool,
        #[serde(skip)]
        grant: plain_acl::Grant,
    },
    CreateTopic(TopicStep),
    CreateGroup {
        group: String,
        max_delivery_attempts: u32,
        fifo: bool,
        retry: String,
        #[serde(skip)]
        config: cluster::GroupConfig,
    },
    /// Position the group at the end of the topic's queues.
    PositionGroup {
        group: String,
        topic: String,
        /// RocketMQ's committed offsets, by queue (for the record).
        rocketmq_offsets: BTreeMap<u32, i64>,
    },
}

impl Step {
    /// The order changes are made in: users, ACL entries, topics, groups, offsets.
    fn phase(&self) -> u8 {
        match self {
            Step::CreateUser { .. } => 0,
            Step::Grant { .. } => 1,
            Step::CreateTopic(_) => 2,
            Step::CreateGroup { .. } => 3,
            Step::PositionGroup { .. } => 4,
        }
    }

    /// What kind of change, as the plan's first column says it.
    pub fn action(&self) -> &'static str {
        match self {
            Step::CreateUser { .. } => "create user",
            Step::Grant { .. } => "grant",
            Step::CreateTopic(_) => "create topic",
            Step::CreateGroup { .. } => "create group",
            Step::PositionGroup { .. } => "position group",
        }
    }

    /// The object the change is about.
    pub fn subject(&self) -> String {
        match self {
            Step::CreateUser { user, .. } | Step::Grant { user, .. } => user.clone(),
            Step::CreateTopic(t) => t.name.clone(),
            Step::CreateGroup { group, .. } => group.clone(),
            Step::PositionGroup { group, topic, .. } => format!("{group} on {topic}"),
        }
    }

    /// The change's details, in a few words.
    pub fn detail(&self) -> String {
        match self {
            Step::CreateUser { admin, .. } => {
                let role = if *admin { "admin" } else { "user" };
                format!("role {role}, RocketMQ's secret key")
            }
            Step::Grant {
                resource,
                actions,
                deny,
                ..
            } => format!(
                "{} {actions} on {resource}",
                if *deny { "deny" } else { "allow" }
            ),
            Step::CreateTopic(t) => format!(
                "{} queues, perm {}, type {}",
                t.queues, t.permission, t.message_type
            ),
            Step::CreateGroup {
                max_delivery_attempts,
                fifo,
                retry,
                ..
            } => format!(
                "{max_delivery_attempts} deliveries, {}, retry {retry}",
                if *fifo { "orderly" } else { "concurrently" }
            ),
            Step::PositionGroup {
                rocketmq_offsets, ..
            } => format!(
                "at the end of each queue (RocketMQ had consumed {} messages over {} queues)",
                rocketmq_offsets.values().map(|o| (*o).max(0)).sum::<i64>(),
                rocketmq_offsets.len()
            ),
        }
    }
}

/// Something of RocketMQ's state the import leaves out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub file: &'static str,
    pub name: String,
    pub reason: String,
}

/// The plan: the changes in the order they are made, and what is left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub skipped: Vec<Skipped>,
    /// Things the operator should know (lost ACL nuances, address allow-lists).
    pub notes: Vec<String>,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {message}")]
pub struct StateError {
    pub file: &'static str,
    pub message: String,
}

fn bad(file: &'static str, message: impl Into<String>) -> StateError {
    StateError {
        file,
        message: message.into(),
    }
}

/// The plan for `files` (the texts of those of [`FILES`] that were found).
pub fn plan(files: &Files) -> Result<Plan, StateError> {
    let mut plan = Plan::default();
    if let Some(text) = files.get("plain_acl.yml") {
        acl_steps(text, &mut plan)?;
    }
    if let Some(text) = files.get("topics.json") {
        topic_steps(text, &mut plan)?;
    }
    if let Some(text) = files.get("subscriptionGroup.json") {
        group_steps(text, &mut plan)?;
    }
    if let Some(text) = files.get("consumerOffset.json") {
        offset_steps(text, &mut plan)?;
    }
    // Users before their ACL entries, topics and groups before the offsets that name them.
    plan.steps.sort_by_key(Step::phase);
    Ok(plan)
}

fn acl_steps(text: &str, plan: &mut Plan) -> Result<(), StateError> {
    let file = plain_acl::parse(text).map_err(|m| bad("plain_acl.yml", m))?;
    if file.global_address_list || file.accounts.iter().any(|a| a.address_list) {
        plan.notes.push(
            "plain_acl.yml has address allow-lists (whiteRemoteAddress): Apogee has none; \
             restrict addresses with the network instead"
                .into(),
        );
    }
    let secrets: BTreeMap<&str, &plain_acl::SecretKey> = file
        .accounts
        .iter()
        .map(|a| (a.access_key.as_str(), &a.secret_key))
        .collect();
    for step in plain_acl::steps(&file, None) {
        match step {
            AclStep::User { access_key, admin } => {
                let secret = secrets.get(access_key.as_str()).copied().cloned();
                match secret.filter(|s| !s.0.is_empty()) {
                    Some(secret) => plan.steps.push(Step::CreateUser {
                        user: access_key,
                        admin,
                        secret,
                    }),
                    None => plan.skipped.push(Skipped {
                        file: "plain_acl.yml",
                        name: access_key,
                        reason: "the account has no secretKey".into(),
                    }),
                }
            }
            AclStep::Grant(grant) => plan.steps.push(Step::Grant {
                user: grant.user.clone(),
                resource: format!(
                    "{} {}",
                    if grant.topic { "topic" } else { "group" },
                    grant.pattern
                ),
                actions: match (grant.perm.publish, grant.perm.subscribe) {
                    (true, true) => "pub,sub",
                    (true, false) => "pub",
                    _ => "sub",
                }
                .into(),
                deny: grant.deny,
                grant,
            }),
            AclStep::Note(note) => plan.notes.push(note),
        }
    }
    Ok(())
}

/// Reads RocketMQ's JSON (fastjson writes integer map keys unquoted: `{0:12}`).
pub fn parse_json(file: &'static str, text: &str) -> Result<Value, StateError> {
    serde_json::from_str(&quote_integer_keys(text)).map_err(|e| bad(file, e.to_string()))
}

fn table<'a>(
    file: &'static str,
    root: &'a Value,
    key: &str,
) -> Result<&'a serde_json::Map<String, Value>, StateError> {
    root.get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| bad(file, format!("no {key} object")))
}

/// Why RocketMQ's topic `name` is not carried over, if it is one of RocketMQ's own.
fn system_topic(name: &str, perm: i64) -> Option<&'static str> {
    const OWN: [&str; 6] = [
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "BenchmarkTest",
        "OFFSET_MOVED_EVENT",
        "SELF_TEST_TOPIC",
        "TRANS_CHECK_MAX_TIME_TOPIC",
    ];
    if name.starts_with(names::RETRY_PREFIX) || name.starts_with(names::DLQ_PREFIX) {
        return Some("a retry or dead-letter topic: Apogee keeps its own per group");
    }
    if OWN.contains(&name)
        || name.starts_with("RMQ_SYS_")
        || name.starts_with("rmq_sys_")
        || name.ends_with("_REPLY_TOPIC")
    {
        return Some("one of RocketMQ's own topics");
    }
    if perm & PERM_INHERIT != 0 {
        return Some("an auto-creation template (inherit permission): Apogee's brokers auto-create by setting");
    }
    None
}

/// Why RocketMQ's group `name` is not carried over, if it is one of RocketMQ's own.
fn system_group(name: &str) -> Option<&'static str> {
    const OWN: [&str; 10] = [
        "TOOLS_CONSUMER",
        "FILTERSRV_CONSUMER",
        "__MONITOR_CONSUMER",
        "CLIENT_INNER_PRODUCER",
        "SELF_TEST_P_GROUP",
        "SELF_TEST_C_GROUP",
        "CID_ONS-HTTP-PROXY",
        "CID_ONSAPI_PERMISSION",
        "CID_ONSAPI_OWNER",
        "CID_ONSAPI_PULL",
    ];
    if OWN.contains(&name) || name.starts_with("CID_RMQ_SYS_") || name.starts_with("CID_SYS_RMQ_") {
        return Some("one of RocketMQ's own groups");
    }
    None
}

fn topic_steps(text: &str, plan: &mut Plan) -> Result<(), StateError> {
    const FILE: &str = "topics.json";
    let root = parse_json(FILE, text)?;
    for (name, t) in table(FILE, &root, "topicConfigTable")? {
        let int = |k: &str| t.get(k).and_then(Value::as_i64);
        let perm = int("perm").unwrap_or(PERM_READ | PERM_WRITE);
        let skip = |reason: String| Skipped {
            file: FILE,
            name: name.clone(),
            reason,
        };
        if let Some(reason) = system_topic(name, perm) {
            plan.skipped.push(skip(reason.into()));
            continue;
        }
        if let Err(e) = limits::validate_topic(name) {
            plan.skipped.push(skip(e.to_string()));
            continue;
        }
        let queues = int("readQueueNums")
            .unwrap_or(0)
            .max(int("writeQueueNums").unwrap_or(0));
        if !(1..=i64::from(limits::MAX_QUEUES_PER_TOPIC)).contains(&queues) {
            plan.skipped.push(skip(format!(
                "{queues} queues: Apogee takes 1 to {}",
                limits::MAX_QUEUES_PER_TOPIC
            )));
            continue;
        }
        let (perm, permission) = match (perm & PERM_READ != 0, perm & PERM_WRITE != 0) {
            (true, true) => (Perm::Rw, "rw"),
            (true, false) => (Perm::R, "r"),
            (false, true) => (Perm::W, "w"),
            (false, false) => {
                plan.skipped
                    .push(skip("neither readable nor writable (perm 0)".into()));
                continue;
            }
        };
        let attributes = t.get("attributes").and_then(Value::as_object);
        let declared = attributes.and_then(|a| {
            a.get("message.type")
                .or_else(|| a.get("+message.type"))
                .and_then(Value::as_str)
        });
        let (kind, message_type) = match declared.map(str::to_ascii_uppercase).as_deref() {
            None | Some("MIXED") | Some("UNSPECIFIED") => (TopicType::Mixed, "mixed"),
            Some("NORMAL") => (TopicType::Normal, "normal"),
            Some("FIFO") => (TopicType::Fifo, "fifo"),
            Some("DELAY") => (TopicType::Delay, "delay"),
            Some("TRANSACTION") => (TopicType::Transaction, "transaction"),
            Some(other) => {
                plan.skipped.push(skip(format!(
                    "message.type {other} has no Apogee equivalent"
                )));
                continue;
            }
        };
        plan.steps.push(Step::CreateTopic(TopicStep {
            name: name.clone(),
            queues: queues as i32,
            permission,
            message_type,
            perm,
            kind,
        }));
    }
    Ok(())
}

fn group_steps(text: &str, plan: &mut Plan) -> Result<(), StateError> {
    const FILE: &str = "subscriptionGroup.json";
    let root = parse_json(FILE, text)?;
    for (name, g) in table(FILE, &root, "subscriptionGroupTable")? {
        let skip = |reason: String| Skipped {
            file: FILE,
            name: name.clone(),
            reason,
        };
        if let Some(reason) = system_group(name) {
            plan.skipped.push(skip(reason.into()));
            continue;
        }
        if g.get("consumeEnable").and_then(Value::as_bool) == Some(false) {
            plan.notes.push(format!(
                "group {name} had consumption disabled (consumeEnable false): Apogee has no \
                 such switch; it is created able to consume"
            ));
        }
        let retries = g.get("retryMaxTimes").and_then(Value::as_i64).unwrap_or(16);
        let mut config = GroupConfig::with_defaults(name);
        config.max_delivery_attempts = (retries.max(0) + 1).min(u32::MAX as i64) as u32;
        config.fifo = g
            .get("consumeMessageOrderly")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        config.retry = retry_policy(g.get("groupRetryPolicy"));
        if let Err(e) = config.validate() {
            plan.skipped.push(skip(e.to_string()));
            continue;
        }
        plan.steps.push(Step::CreateGroup {
            group: name.clone(),
            max_delivery_attempts: config.max_delivery_attempts,
            fifo: config.fifo,
            retry: describe_retry(&config.retry),
            config: (&config).into(),
        });
    }
    Ok(())
}

/// RocketMQ 5's `groupRetryPolicy`, or RocketMQ 4's retries: delay levels 3 to 18 (10 s to
/// 2 h), what a push consumer's failed message gets.
fn retry_policy(policy: Option<&Value>) -> RetryPolicy {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let policy = policy.filter(|p| p.is_object());
    let kind = policy
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase);
    match (kind.as_deref(), policy) {
        (Some("EXPONENTIAL"), Some(p)) => {
            let e = p.get("exponentialRetryPolicy").unwrap_or(&Value::Null);
            RetryPolicy::Exponential {
                initial_ms: num(e, "initial").unwrap_or(1000.0) as u64,
                max_ms: num(e, "max").unwrap_or(7_200_000.0) as u64,
                multiplier: num(e, "multiplier").unwrap_or(2.0),
            }
        }
        (Some("CUSTOMIZED"), Some(p)) => {
            let next: Vec<u64> = p
                .get("customizedRetryPolicy")
                .and_then(|c| c.get("next"))
                .and_then(Value::as_array)
                .map(|n| n.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            if next.is_empty() {
                rocketmq4_retries()
            } else {
                RetryPolicy::Custom(next)
            }
        }
        _ => rocketmq4_retries(),
    }
}

fn rocketmq4_retries() -> RetryPolicy {
    RetryPolicy::Custom(
        delay_level::LEVELS_SECS[2..]
            .iter()
            .map(|s| s * 1000)
            .collect(),
    )
}

fn describe_retry(policy: &RetryPolicy) -> String {
    match policy {
        RetryPolicy::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => format!("exponential {initial_ms} ms x{multiplier} up to {max_ms} ms"),
        RetryPolicy::Custom(steps) => format!(
            "{} steps from {} s",
            steps.len(),
            steps.first().copied().unwrap_or(0) / 1000
        ),
    }
}

fn offset_steps(text: &str, plan: &mut Plan) -> Result<(), StateError> {
    const FILE: &str = "consumerOffset.json";
    let root = parse_json(FILE, text)?;
    for (key, queues) in table(FILE, &root, "offsetTable")? {
        let Some((topic, group)) = key.split_once('@') else {
            return Err(bad(FILE, format!("{key}: expected topic@group")));
        };
        let skip = |reason: String| Skipped {
            file: FILE,
            name: key.clone(),
            reason,
        };
        if let Some(reason) = system_topic(topic, 0).or_else(|| system_group(group)) {
            plan.skipped.push(skip(reason.into()));
            continue;
        }
        if let Err(e) = limits::validate_topic(topic).and(limits::validate_group(group)) {
            plan.skipped.push(skip(e.to_string()));
            continue;
        }
        let offsets = queues
            .as_object()
            .ok_or_else(|| bad(FILE, format!("{key}: expected an object of queue offsets")))?
            .iter()
            .map(|(q, o)| {
                let queue = q
                    .parse::<u32>()
                    .map_err(|_| bad(FILE, format!("{key}: queue {q:?} is not a number")))?;
                Ok((queue, o.as_i64().unwrap_or(0)))
            })
            .collect::<Result<BTreeMap<u32, i64>, StateError>>()?;
        let known_group = plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::CreateGroup { group: g, .. } if g == group));
        if !known_group {
            let config = GroupConfig {
                retry: rocketmq4_retries(),
                max_delivery_attempts: 17,
                ..GroupConfig::with_defaults(group)
            };
            plan.steps.push(Step::CreateGroup {
                group: group.to_string(),
                max_delivery_attempts: config.max_delivery_attempts,
                fifo: false,
                retry: describe_retry(&config.retry),
                config: (&config).into(),
            });
        }
        plan.steps.push(Step::PositionGroup {
            group: group.to_string(),
            topic: topic.to_string(),
            rocketmq_offsets: offsets,
        });
    }
    Ok(())
}

/// Reads the files of `dir` that are there (at least one must be).
pub fn read_dir(dir: &std::path::Path) -> ToolResult<Files> {
    if !dir.is_dir() {
        return Err(ToolError::Usage(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    let mut files = Files::new();
    for name in FILES {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                files.insert(name.to_string(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ToolError::Input(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
    }
    if files.is_empty() {
        return Err(ToolError::Usage(format!(
            "{} has none of {}: give a RocketMQ store's config/ directory",
            dir.display(),
            FILES.join(", ")
        )));
    }
    Ok(files)
}

/// Runs `apogee config import-state`: the plan, and with `--apply` (and `admin`) its outcome.
pub async fn run<W: Write>(
    args: &ImportStateArgs,
    admin: Option<&Admin>,
    f: Format,
    out: &mut W,
) -> ToolResult<()> {
    let files = read_dir(&args.dir)?;
    let plan = plan(&files).map_err(|e| ToolError::Input(format!("{}/{e}", args.dir.display())))?;
    let outcomes = match (args.apply, admin) {
        (true, Some(admin)) => Some(apply::apply(admin, &plan, &args.broker_groups).await),
        _ => None,
    };
    match f {
        Format::Json | Format::Jsonl => {
            let json = serde_json::json!({
                "read": files.keys().collect::<Vec<_>>(),
                "plan": plan,
                "applied": outcomes,
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json).map_err(|e| ToolError::Input(e.to_string()))?
            )?;
        }
        Format::Table => out.write_all(render(&files, &plan, outcomes.as_deref()).as_bytes())?,
    }
    out.flush()?;
    let failed = outcomes.iter().flatten().filter(|o| o.failed()).count();
    if failed > 0 {
        return Err(ToolError::Server(format!(
            "{failed} of {} steps failed (see above); the others were made",
            plan.steps.len()
        )));
    }
    Ok(())
}

/// The plan (or its outcome) as tables.
fn render(files: &Files, plan: &Plan, outcomes: Option<&[apply::Outcome]>) -> String {
    let mut s = format!(
        "read: {}\n",
        files.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    match outcomes {
        None => {
            let mut table = Table::new(["STEP", "WHAT", "DETAIL"]);
            for step in &plan.steps {
                table.push(vec![step.action().into(), step.subject(), step.detail()]);
            }
            s.push_str(&table.render());
        }
        Some(outcomes) => {
            let mut table = Table::new(["STEP", "WHAT", "DETAIL", "RESULT"]);
            for o in outcomes {
                table.push(vec![
                    o.action.into(),
                    o.subject.clone(),
                    o.detail.clone(),
                    o.result.clone(),
                ]);
            }
            s.push_str(&table.render());
        }
    }
    if !plan.skipped.is_empty() {
        let mut table = Table::new(["SKIPPED", "FROM", "WHY"]);
        for k in &plan.skipped {
            table.push(vec![k.name.clone(), k.file.into(), k.reason.clone()]);
        }
        s.push('\n');
        s.push_str(&table.render());
    }
    for note in &plan.notes {
        s.push_str(&format!("note: {note}\n"));
    }
    if outcomes.is_none() {
        s.push_str(&format!(
            "{} steps planned; nothing changed (add --apply to make them)\n",
            plan.steps.len()
        ));
    }
    s
}

#[cfg(test)]
#[path = "rocketmq_state_tests.rs"]
mod tests;

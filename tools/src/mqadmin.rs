//! RocketMQ's mqadmin command names, accepted in place of Apogee's commands, with mqadmin's
//! short options (`apogee updateTopic -t orders -c DefaultCluster -r 8 -w 8`).
//!
//! The command line is rewritten before clap parses it: the mqadmin name becomes the Apogee
//! command, and after it each of that command's mqadmin letters becomes the Apogee flag or
//! argument meaning the same (`-t orders` the topic argument, `-r 8 -w 8` `--queues 8`,
//! `-o true` `--type fifo`). A letter whose mqadmin meaning Apogee does not have is refused
//! with the reason (a usage error) rather than dropped; a few that change nothing in Apogee
//! (`-p 6`, read-write, the default) are accepted. `-c CLUSTER` is checked against the
//! clusters the NameServers know before the command runs ([`check_cluster`]). Anything that
//! is not one of the command's mqadmin letters (Apogee's own flags, `-h`) passes unchanged.

use crate::admin::{Admin, TopicType};
use crate::error::{ToolError, ToolResult};
use apogee_admin::spelling::Spelled;
use std::collections::BTreeSet;
use std::ffi::OsString;

/// The hidden top-level flag an mqadmin `-c CLUSTER` becomes.
pub const CLUSTER_FLAG: &str = "--mqadmin-cluster";

/// What one mqadmin option becomes.
#[derive(Clone, Copy)]
enum Becomes {
    /// `-x V`: `--flag V`.
    Flag(&'static str),
    /// `-x V`: the command's positional argument number `n` (from 0).
    Arg(usize),
    /// `-x V`: the arguments this function makes of `V` (an error names what is wrong).
    Map(fn(&str) -> Result<Vec<String>, String>),
    /// `-r N` / `-w N` of updateTopic: the one queue count (both must agree).
    Queues,
    /// `-c CLUSTER`: checked to be the NameServers' cluster.
    Cluster,
    /// An option without a value that changes nothing here (a print format mqadmin has).
    Switch,
    /// Refused: what Apogee does instead.
    Refused(&'static str),
}

use Becomes::*;

/// An mqadmin command: its name, the Apogee command and flags it stands for, its options.
pub struct Alias {
    pub name: &'static str,
    pub apogee: &'static [&'static str],
    options: &'static [(char, Becomes)],
}

const ONE_CLUSTER: &str = "Apogee's commands act on every broker group the NameServers know: \
                           point --nameserver at one cluster's NameServers";
const PICK_BROKER: &str = "Apogee asks one broker: name it with -b (address or group name)";
const NO_BROKER_ADDR: &str = "groups are created on every broker group";
const BY_GROUP: &str = "Apogee's consume pops for a consumer group: give -g; positions per \
                        queue are `apogee message print`'s";

/// Every mqadmin command name Apogee accepts, with its options.
pub const ALIASES: [Alias; 20] = [
    Alias {
        name: "updateTopic",
        apogee: &["topic", "create", "--update-if-exists"],
        options: &[
            ('t', Arg(0)),
            ('c', Cluster),
            ('b', Flag("--broker")),
            ('r', Queues),
            ('w', Queues),
            ('p', Map(topic_perm)),
            ('o', Map(topic_order)),
            ('a', Map(topic_attributes)),
            ('u', Refused("unit topics are not an Apogee feature")),
            ('s', Refused("unit topics are not an Apogee feature")),
        ],
    },
    Alias {
        name: "deleteTopic",
        apogee: &["topic", "delete"],
        options: &[('t', Arg(0)), ('c', Cluster)],
    },
    Alias {
        name: "topicList",
        apogee: &["topic", "list"],
        options: &[('c', Switch)],
    },
    Alias {
        name: "topicRoute",
        apogee: &["topic", "route"],
        options: &[('t', Arg(0)), ('l', Switch)],
    },
    Alias {
        name: "topicStatus",
        apogee: &["topic", "status"],
        options: &[('t', Arg(0)), ('c', Cluster)],
    },
    Alias {
        name: "clusterList",
        apogee: &["cluster", "list"],
        options: &[
            ('c', Cluster),
            ('m', Switch),
            (
                'i',
                Refused("Apogee prints once; rerun it (e.g. with `watch`)"),
            ),
        ],
    },
    Alias {
        name: "brokerStatus",
        apogee: &["broker", "status"],
        options: &[('b', Arg(0)), ('c', Refused(PICK_BROKER))],
    },
    Alias {
        name: "getBrokerConfig",
        apogee: &["broker", "config", "get"],
        options: &[('b', Arg(0)), ('c', Refused(PICK_BROKER))],
    },
    Alias {
        name: "updateBrokerConfig",
        apogee: &["broker", "config", "set"],
        options: &[
            ('b', Arg(0)),
            ('k', Arg(1)),
            ('v', Arg(2)),
            ('c', Refused(PICK_BROKER)),
            ('a', Refused(PICK_BROKER)),
        ],
    },
    Alias {
        name: "updateSubGroup",
        apogee: &["group", "create", "--update-if-exists"],
        options: &[
            ('g', Arg(0)),
            ('c', Cluster),
            ('b', Refused(NO_BROKER_ADDR)),
            ('r', Map(group_retries)),
            ('o', Flag("--fifo")),
            ('s', Map(group_consume_enable)),
            (
                'p',
                Refused("give the retry policy as --retry-custom or --retry-exponential"),
            ),
            ('d', Map(group_broadcast)),
            ('m', Map(group_consume_from_min)),
            ('q', Refused("retry queues are not an Apogee setting")),
            (
                'i',
                Refused("which member serves a group is not an Apogee setting"),
            ),
            (
                'w',
                Refused("which member serves a group is not an Apogee setting"),
            ),
            (
                'a',
                Refused("Apogee does not notify consumers of id changes"),
            ),
        ],
    },
    Alias {
        name: "deleteSubGroup",
        apogee: &["group", "delete"],
        options: &[
            ('g', Arg(0)),
            ('c', Cluster),
            ('b', Refused("a group is deleted from every broker group")),
            ('r', Map(group_remove_offset)),
        ],
    },
    Alias {
        name: "consumerProgress",
        apogee: &["group", "describe"],
        options: &[
            ('g', Arg(0)),
            ('c', Cluster),
            (
                't',
                Refused("group describe shows every topic of the group"),
            ),
            (
                's',
                Refused("group describe lists the group's clients with their addresses"),
            ),
        ],
    },
    Alias {
        name: "resetOffsetByTime",
        apogee: &["group", "reset-offset"],
        options: &[
            ('g', Arg(0)),
            ('t', Flag("--topic")),
            ('s', Map(reset_timestamp)),
            ('c', Cluster),
            (
                'f',
                Refused("deprecated in mqadmin; Apogee resets by time as asked"),
            ),
            (
                'b',
                Refused("Apogee resets the topic's queues on every broker group"),
            ),
            (
                'q',
                Refused("Apogee resets the topic's queues on every broker group"),
            ),
            (
                'o',
                Refused("give a time (-s), or --to-earliest / --to-latest"),
            ),
        ],
    },
    Alias {
        name: "consumerConnection",
        apogee: &["clients", "list"],
        options: &[
            ('g', Flag("--group")),
            ('b', Refused("clients list asks every broker group")),
        ],
    },
    Alias {
        name: "producerConnection",
        apogee: &["clients", "list"],
        options: &[
            ('t', Flag("--topic")),
            (
                'g',
                Refused("RocketMQ 5 producers have no group: filter by topic with -t"),
            ),
        ],
    },
    Alias {
        name: "queryMsgById",
        apogee: &["message", "get"],
        options: &[
            ('i', Arg(0)),
            ('c', Cluster),
            ('t', Map(not_needed)),
            (
                'g',
                Refused("to deliver a message again, `apogee dlq resend`"),
            ),
            (
                'd',
                Refused("to deliver a message again, `apogee dlq resend`"),
            ),
            (
                's',
                Refused("to deliver a message again, `apogee dlq resend`"),
            ),
            ('u', Refused("unit topics are not an Apogee feature")),
            ('f', Refused("-o json prints the whole body")),
        ],
    },
    Alias {
        name: "queryMsgByKey",
        apogee: &["message", "find"],
        options: &[
            ('t', Flag("--topic")),
            ('k', Flag("--key")),
            ('m', Flag("--limit")),
            ('c', Cluster),
            ('b', Refused("message find searches the whole topic")),
            ('e', Refused("message find searches the whole topic")),
        ],
    },
    Alias {
        name: "queryMsgByOffset",
        apogee: &["message", "print"],
        options: &[
            ('t', Flag("--topic")),
            ('b', Flag("--broker")),
            ('i', Flag("--queue")),
            ('o', Flag("--from")),
            ('f', Refused("-o json prints the whole body")),
        ],
    },
    Alias {
        name: "sendMessage",
        apogee: &["send"],
        options: &[
            ('t', Flag("--topic")),
            ('p', Flag("--body")),
            ('k', Flag("--key")),
            ('c', Flag("--tag")),
            ('b', Refused("the client picks the queue")),
            ('i', Refused("the client picks the queue")),
            ('m', Refused("message trace is not an Apogee feature")),
        ],
    },
    Alias {
        name: "consumeMessage",
        apogee: &["consume"],
        options: &[
            ('t', Flag("--topic")),
            ('g', Flag("--group")),
            ('c', Flag("--max")),
            ('b', Refused(BY_GROUP)),
            ('i', Refused(BY_GROUP)),
            ('o', Refused(BY_GROUP)),
            ('s', Refused(BY_GROUP)),
            ('e', Refused(BY_GROUP)),
        ],
    },
];

/// A value Apogee does not need (queryMsgById's topic: an id is found in every topic).
fn not_needed(_: &str) -> Result<Vec<String>, String> {
    Ok(Vec::new())
}

/// updateTopic's `-p`: only read-write (6, the default) is a create; others are an update.
fn topic_perm(v: &str) -> Result<Vec<String>, String> {
    match v {
        "6" => Ok(Vec::new()),
        "2" | "4" => Err(format!(
            "a topic is created read-write; then `apogee topic update <topic> --perm {}`",
            if v == "2" { "wo" } else { "ro" }
        )),
        _ => Err(format!(
            "{v:?} is not a permission (2: write, 4: read, 6: both)"
        )),
    }
}

fn bool_value(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

/// updateTopic's `-o true`: a FIFO topic.
fn topic_order(v: &str) -> Result<Vec<String>, String> {
    Ok(if bool_value(v)? {
        vec!["--type".into(), "fifo".into()]
    } else {
        Vec::new()
    })
}

/// updateTopic's `-a +message.type=FIFO,...`: the message type; no other attribute.
fn topic_attributes(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for attr in v.split(',').filter(|a| !a.is_empty()) {
        let kind = attr
            .strip_prefix("+message.type=")
            .ok_or_else(|| format!("{attr:?}: only +message.type=TYPE is an Apogee setting"))?;
        let t = TopicType::parse(kind).ok_or_else(|| {
            format!(
                "{kind:?} is not a message type ({})",
                TopicType::names().join(", ")
            )
        })?;
        out.extend(["--type".to_string(), t.name().to_string()]);
    }
    Ok(out)
}

/// updateSubGroup's `-r N` (retries after the first delivery): `--max-attempts N+1`.
fn group_retries(v: &str) -> Result<Vec<String>, String> {
    let n: u32 = v
        .parse()
        .map_err(|_| format!("{v:?} is not a number of retries"))?;
    Ok(vec!["--max-attempts".into(), (n + 1).to_string()])
}

/// updateSubGroup's `-s`: a group is always enabled.
fn group_consume_enable(v: &str) -> Result<Vec<String>, String> {
    if bool_value(v)? {
        Ok(Vec::new())
    } else {
        Err("Apogee has no disabled groups; stop the consumers, or delete the group".into())
    }
}

/// updateSubGroup's `-d`: `false` (RocketMQ's default) is what every Apogee group is.
fn group_broadcast(v: &str) -> Result<Vec<String>, String> {
    refused_when_true(v, "broadcast consumption is not an Apogee feature")
}

/// updateSubGroup's `-m`: `false` (RocketMQ's default) leaves where a new group starts to
/// the brokers, as Apogee always does.
fn group_consume_from_min(v: &str) -> Result<Vec<String>, String> {
    refused_when_true(
        v,
        "where a new group starts is the brokers' consume.auto_create_start",
    )
}

/// A boolean letter whose `false` is RocketMQ's default and Apogee's only behaviour: nothing
/// to add; `true` refused with `why`.
fn refused_when_true(v: &str, why: &str) -> Result<Vec<String>, String> {
    if bool_value(v)? {
        Err(why.into())
    } else {
        Ok(Vec::new())
    }
}

/// deleteSubGroup's `-r`: Apogee's group delete removes the offsets too.
fn group_remove_offset(v: &str) -> Result<Vec<String>, String> {
    if bool_value(v)? {
        Ok(Vec::new())
    } else {
        Err("Apogee's group delete removes the group's offsets too".into())
    }
}

/// resetOffsetByTime's `-s`: `now`, Unix milliseconds or `yyyy-MM-dd#HH:mm:ss:SSS` (local
/// time), as `--to-time` in RFC 3339.
fn reset_timestamp(v: &str) -> Result<Vec<String>, String> {
    use chrono::TimeZone;
    let at = if v == "now" {
        chrono::Local::now().fixed_offset()
    } else if let Ok(ms) = v.parse::<i64>() {
        chrono::Local
            .timestamp_millis_opt(ms)
            .single()
            .ok_or_else(|| format!("{v:?} is not a time"))?
            .fixed_offset()
    } else {
        let naive =
            chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d#%H:%M:%S:%3f").map_err(|_| {
                format!("{v:?} is not now, Unix milliseconds or yyyy-MM-dd#HH:mm:ss:SSS")
            })?;
        chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .ok_or_else(|| format!("{v:?} does not exist in the local time zone"))?
            .fixed_offset()
    };
    Ok(vec![
        "--to-time".into(),
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
    ])
}

/// Rewrites an mqadmin command line (see the module documentation); an mqadmin option
/// Apogee cannot honour is an error naming it. `commands`: Apogee's top-level command names
/// (after one of them no alias is looked for).
pub fn expand(args: Vec<OsString>, commands: &[String]) -> Result<Vec<OsString>, String> {
    let mut out = Vec::with_capacity(args.len() + 2);
    let mut args = args.into_iter();
    out.extend(args.next());
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            out.push(arg);
            break;
        }
        if let Some(alias) = ALIASES.iter().find(|a| a.name == text) {
            let rest: Vec<OsString> = args.by_ref().collect();
            let (command, cluster) = translate(alias, rest)?;
            if let Some(c) = cluster {
                out.extend([CLUSTER_FLAG.into(), c.into()]);
            }
            out.extend(command);
            return Ok(out);
        }
        // An Apogee command name: no alias follows.
        let is_command = commands.contains(&text);
        // A global option taking a value in the next argument.
        let takes_value = ["--nameserver", "-o", "--output", "--timeout"].contains(&text.as_str())
            || crate::tls_args::VALUE_FLAGS.contains(&text.as_str());
        out.push(arg);
        if takes_value {
            out.extend(args.next());
        }
        if is_command {
            break;
        }
    }
    out.extend(args);
    Ok(out)
}

/// The Apogee command words and arguments for `alias` followed by `rest`, and the cluster
/// named with `-c`.
fn translate(
    alias: &Alias,
    rest: Vec<OsString>,
) -> Result<(Vec<OsString>, Option<String>), String> {
    let mut flags: Vec<OsString> = Vec::new();
    let mut positional: Vec<Option<String>> = Vec::new();
    let mut queues: Option<String> = None;
    let mut cluster = None;
    let mut rest = rest.into_iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            flags.push(arg);
            flags.extend(rest.by_ref());
            break;
        }
        let letter = match text
            .strip_prefix('-')
            .map(|l| l.chars().collect::<Vec<_>>())
        {
            Some(l) if l.len() == 1 => l[0],
            _ => {
                flags.push(arg);
                continue;
            }
        };
        if letter == 'n' {
            // mqadmin's NameServer address.
            flags.push("--nameserver".into());
            flags.extend(rest.next());
            continue;
        }
        let Some((_, becomes)) = alias.options.iter().find(|(l, _)| *l == letter) else {
            flags.push(arg);
            continue;
        };
        let named = |what: &str| format!("{} -{letter}: {what}", alias.name);
        if let Refused(why) = becomes {
            return Err(named(&format!("not supported ({why})")));
        }
        if let Switch = becomes {
            continue;
        }
        let value = rest
            .next()
            .map(|v| v.to_string_lossy().into_owned())
            .ok_or_else(|| named("needs a value"))?;
        match *becomes {
            Flag(flag) => flags.extend([flag.into(), value.into()]),
            Arg(n) => {
                if positional.len() <= n {
                    positional.resize(n + 1, None);
                }
                positional[n] = Some(value);
            }
            Map(f) => flags.extend(
                f(&value)
                    .map_err(|e| named(&e))?
                    .into_iter()
                    .map(Into::into),
            ),
            Queues => match &queues {
                Some(q) if *q != value => {
                    return Err(format!(
                        "{}: -r {q} and -w {value} differ; an Apogee topic has one queue \
                         count for reads and writes",
                        alias.name
                    ))
                }
                _ => queues = Some(value),
            },
            Cluster => cluster = Some(value),
            Refused(_) | Switch => unreachable!("handled above"),
        }
    }
    if let Some(q) = queues {
        flags.extend(["--queues".into(), q.into()]);
    }
    let mut out: Vec<OsString> = alias.apogee.iter().map(OsString::from).collect();
    for (i, p) in positional.into_iter().enumerate() {
        let p = p.ok_or_else(|| format!("{}: argument {} missing", alias.name, i + 1))?;
        out.push(p.into());
    }
    out.extend(flags);
    Ok((out, cluster))
}

/// The cluster an mqadmin command named with `-c`: it must be one the NameServers know, and
/// the only one (Apogee's commands act on every broker group they know).
pub async fn check_cluster(admin: &Admin, name: &str) -> ToolResult<()> {
    let info = admin.get_cluster_info().await?;
    let known: BTreeSet<&str> = info
        .groups
        .iter()
        .map(|g| g.cluster_name.as_str())
        .collect();
    let list = || known.iter().copied().collect::<Vec<_>>().join(", ");
    if !known.contains(name) {
        return Err(ToolError::Usage(format!(
            "-c {name}: no such cluster (the NameServers know: {})",
            list()
        )));
    }
    if known.len() > 1 {
        return Err(ToolError::Usage(format!(
            "-c {name}: the NameServers know several clusters ({}); {ONE_CLUSTER}",
            list()
        )));
    }
    Ok(())
}

/// Broker groups given by name or by a member's address (mqadmin's `-b host:port`): the
/// group names. The NameServers are asked only when an address is among them.
pub async fn broker_groups(admin: &Admin, given: &[String]) -> ToolResult<Vec<String>> {
    if !given.iter().any(|b| b.contains(':')) {
        return Ok(given.to_vec());
    }
    let info = admin.get_cluster_info().await?;
    given
        .iter()
        .map(|b| {
            if !b.contains(':') {
                return Ok(b.clone());
            }
            info.groups
                .iter()
                .find(|g| g.members.iter().any(|m| m.endpoint == *b))
                .map(|g| g.broker_name.clone())
                .ok_or_else(|| ToolError::Usage(format!("no registered broker listens on {b}")))
        })
        .collect()
}

#[cfg(test)]
#[path = "mqadmin_tests.rs"]
mod tests;

//! The admin writes RocketMQ's tools (`mqadmin`, the dashboard, `DefaultMQAdminExt`) send a
//! broker, for an admin caller only where authentication is on, and refused by a slave
//! naming its master (the core's [`Broker::refuse_on_slave`]):
//!
//! - UPDATE_AND_CREATE_TOPIC (`mqadmin updateTopic`): the header's queues, `perm` bits and
//!   `attributes` (`+message.type=...`) made into the topic ([`Broker::upsert_topic`]).
//!   What an Apogee topic cannot be is refused with the reason: read and write queue counts
//!   that differ, the `order` flag (RocketMQ keeps order configs on the NameServer; ordered
//!   sends with a queue selector work on any topic, and a FIFO topic is
//!   `+message.type=FIFO`), the inherit and priority perm bits, unit flags, other attributes.
//! - DELETE_TOPIC_IN_BROKER (`mqadmin deleteTopic`, before the NameServers' part): the topic
//!   with its messages and offsets here ([`Broker::remove_topic`]; one not hosted here is
//!   no error, as RocketMQ's broker answers).
//! - UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (`mqadmin updateSubGroup`): the body's
//!   `SubscriptionGroupConfig` as the group's config ([`Broker::upsert_group`]); see
//!   [`group_config_of`] for what maps where and what is refused.
//! - DELETE_SUBSCRIPTIONGROUP (`mqadmin deleteSubGroup`): the group's config, and with
//!   `cleanOffset` its offsets and in-flight deliveries ([`Broker::remove_group`]).
//! - INVOKE_BROKER_TO_RESET_OFFSET (`mqadmin resetOffsetByTime`): every queue of the topic
//!   moved to the first message stored at or after the time (`timestamp` < 0: the queues'
//!   ends), through the admin protocol's offset reset ([`Broker::reset_group_offset`],
//!   which also tells the group's remoting consumers); the answer is RocketMQ's
//!   `ResetOffsetBody`, the new offset of each queue.

use super::args;
use crate::actions::admin::{OffsetReset, OffsetTarget, TopicUpsert};
use crate::remoting_state::offset_reset::reset_offset_body;
use crate::services::Broker;
use crate::topics::{MessageKind, MessageKinds, TopicPermission};
use apogee_proto::auth::Identity;
use apogee_proto::group::{GroupConfig, RetryPolicy};
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::{v2, ApogeeError};
use apogee_server::remoting::Caller;
use serde::Deserialize;
use std::collections::BTreeMap;

/// RocketMQ's permission bits: read and write (inherit 1 and priority 8 are not Apogee's).
const PERM_READ: i32 = 4;
const PERM_WRITE: i32 = 2;

/// The answer refusing a caller that is not an admin (authentication on), else None.
fn refuse_non_admin(caller: &Caller, request: &RemotingCommand) -> Option<RemotingCommand> {
    (!caller.is_admin()).then(|| {
        RemotingCommand::refusal(
            request,
            &ApogeeError::Forbidden(format!(
                "request code {} changes the cluster's configuration: it needs an admin user",
                request.code
            )),
        )
    })
}

/// Who asked, for the log.
fn who(caller: &Caller) -> &str {
    match &caller.identity {
        Some(Identity::User { access_key, .. }) => access_key,
        Some(Identity::Cluster) => "cluster",
        None => "anonymous",
    }
}

/// A malformed or missing field as the error the answer carries (INVALID_PARAMETER).
fn bad(e: args::BadArgument) -> ApogeeError {
    ApogeeError::BadRequest(e.0)
}

/// SUCCESS, or the refusal of `result`'s error.
fn answer<T>(request: &RemotingCommand, result: Result<T, ApogeeError>) -> RemotingCommand {
    match result {
        Ok(_) => RemotingCommand::success(request),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// Answers UPDATE_AND_CREATE_TOPIC.
pub fn update_and_create_topic(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refused) = refuse_non_admin(caller, request) {
        return refused;
    }
    let result = topic_upsert(request).and_then(|wanted| broker.upsert_topic(wanted, who(caller)));
    answer(request, result)
}

/// The topic a CreateTopicRequestHeader asks for; what Apogee cannot honour is refused,
/// naming it.
fn topic_upsert(request: &RemotingCommand) -> Result<TopicUpsert, ApogeeError> {
    let name = args::string(request, "topic").map_err(bad)?;
    let read: i32 = args::required(request, "readQueueNums").map_err(bad)?;
    let write: i32 = args::required(request, "writeQueueNums").map_err(bad)?;
    if read != write {
        return Err(ApogeeError::BadRequest(format!(
            "readQueueNums {read} and writeQueueNums {write} differ: an Apogee topic reads \
             and writes the same queues (-r and -w the same)"
        )));
    }
    let queues = u32::try_from(read)
        .map_err(|_| ApogeeError::BadRequest(format!("queue count {read} is not positive")))?;
    let perm: i32 = args::required(request, "perm").map_err(bad)?;
    if perm & !(PERM_READ | PERM_WRITE) != 0 {
        return Err(ApogeeError::BadRequest(format!(
            "perm {perm}: Apogee topics take read (4) and write (2) only, not inherit (1) or \
             priority (8)"
        )));
    }
    let permission = match (perm & PERM_READ != 0, perm & PERM_WRITE != 0) {
        (true, true) => TopicPermission::ReadWrite,
        (true, false) => TopicPermission::Read,
        (false, true) => TopicPermission::Write,
        (false, false) => TopicPermission::None,
    };
    if let Some(filter) = request.ext("topicFilterType") {
        if filter != "SINGLE_TAG" {
            return Err(ApogeeError::BadRequest(format!(
                "topicFilterType {filter}: Apogee messages carry one tag (SINGLE_TAG)"
            )));
        }
    }
    if args::optional::<i32>(request, "topicSysFlag")
        .map_err(bad)?
        .unwrap_or(0)
        != 0
    {
        return Err(ApogeeError::BadRequest(
            "topicSysFlag: unit topics are not an Apogee feature".into(),
        ));
    }
    if args::optional::<bool>(request, "order")
        .map_err(bad)?
        .unwrap_or(false)
    {
        return Err(ApogeeError::BadRequest(
            "order: Apogee keeps no order config on its NameServers; ordered sends with a \
             queue selector and orderly consumers work on any topic, and a topic of FIFO \
             message groups is -a +message.type=FIFO"
                .into(),
        ));
    }
    let kinds = topic_kinds(request.ext("attributes").unwrap_or(""))?;
    Ok(TopicUpsert {
        name: name.to_string(),
        queues,
        permission,
        kinds,
    })
}

/// The message types an `attributes` modification (`+key=value,-key`) sets: None when it
/// names none. `+cleanup.policy=DELETE` is what every Apogee topic does (its log is
/// deleted by retention) and is taken; any other attribute is refused.
fn topic_kinds(attributes: &str) -> Result<Option<MessageKinds>, ApogeeError> {
    let mut kinds = None;
    for attr in attributes.split(',').filter(|a| !a.is_empty()) {
        match attr.split_once('=') {
            Some(("+message.type", "MIXED")) => {
                kinds = Some(MessageKinds::of(&[
                    MessageKind::Normal,
                    MessageKind::Delay,
                    MessageKind::Transaction,
                ]))
            }
            Some(("+message.type", value)) => {
                let kind = v2::MessageType::from_str_name(value)
                    .and_then(MessageKind::from_wire)
                    .ok_or_else(|| {
                        ApogeeError::BadRequest(format!(
                            "message.type {value} is not one of NORMAL, FIFO, DELAY, \
                             TRANSACTION, MIXED, LITE, PRIORITY"
                        ))
                    })?;
                kinds = Some(MessageKinds::of(&[kind]));
            }
            Some(("+cleanup.policy", "DELETE")) => {}
            _ => {
                return Err(ApogeeError::BadRequest(format!(
                    "topic attribute {attr}: Apogee takes +message.type=TYPE (and \
                     +cleanup.policy=DELETE, what it always does) only"
                )))
            }
        }
    }
    Ok(kinds)
}

/// Answers DELETE_TOPIC_IN_BROKER.
pub async fn delete_topic(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refused) = refuse_non_admin(caller, request) {
        return refused;
    }
    let topic = match args::string(request, "topic") {
        Ok(t) => t,
        Err(e) => return e.answer(request),
    };
    answer(request, broker.remove_topic(topic, who(caller)).await)
}

/// Answers UPDATE_AND_CREATE_SUBSCRIPTIONGROUP.
pub fn update_and_create_group(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refused) = refuse_non_admin(caller, request) {
        return refused;
    }
    let result =
        group_config_of(&request.body).and_then(|config| broker.upsert_group(config, who(caller)));
    answer(request, result)
}

/// RocketMQ's `SubscriptionGroupConfig` as its tools write it (fields they leave out take
/// RocketMQ's defaults).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionGroupBody {
    group_name: String,
    consume_enable: Option<bool>,
    consume_message_orderly: Option<bool>,
    retry_queue_nums: Option<i64>,
    retry_max_times: Option<i64>,
    group_retry_policy: Option<GroupRetryPolicyBody>,
    broker_id: Option<i64>,
    which_broker_when_consume_slowly: Option<i64>,
    notify_consumer_ids_changed_enable: Option<bool>,
    group_sys_flag: Option<i64>,
    consume_timeout_minute: Option<i64>,
    subscription_data_set: Option<Vec<serde_json::Value>>,
    attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupRetryPolicyBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    exponential_retry_policy: Option<ExponentialBody>,
    customized_retry_policy: Option<CustomizedBody>,
}

#[derive(Deserialize)]
struct ExponentialBody {
    initial: u64,
    max: u64,
    multiplier: u64,
}

#[derive(Deserialize)]
struct CustomizedBody {
    next: Vec<u64>,
}

/// RocketMQ's `SubscriptionGroupConfig` (JSON) as an Apogee group:
///
/// - `retryMaxTimes` (retries after the first delivery) is one less than Apogee's delivery
///   attempts; `consumeMessageOrderly` is a FIFO group;
/// - `groupRetryPolicy`: EXPONENTIAL is Apogee's exponential backoff (initial, max,
///   multiplier); CUSTOMIZED, and RocketMQ's default, a list of steps. RocketMQ takes a
///   customized list's first retry from its third step (its delay level 3), so the steps
///   from the third on are the group's;
/// - `consumeBroadcastEnable` and `consumeFromMinEnable` are not kept: Apogee serves a
///   group's broadcasting consumers whatever the flag (their offsets are their own), and
///   where a new group starts is the brokers' `consume.auto_create_start`;
/// - refused, naming the field, when not RocketMQ's default: a disabled group
///   (`consumeEnable` false), `retryQueueNums` other than 1 (a group's retry topic has one
///   queue), `brokerId` and `whichBrokerWhenConsumeSlowly` (which member serves reads),
///   `notifyConsumerIdsChangedEnable` false (members are always told), `groupSysFlag`,
///   `consumeTimeoutMinute`, subscriptions and attributes.
pub(crate) fn group_config_of(body: &[u8]) -> Result<GroupConfig, ApogeeError> {
    let b: SubscriptionGroupBody = serde_json::from_slice(body).map_err(|e| {
        ApogeeError::BadRequest(format!("the body is not a SubscriptionGroupConfig: {e}"))
    })?;
    let refuse = |field: &str, why: &str| {
        Err(ApogeeError::BadRequest(format!(
            "{field}: {why} (group {})",
            b.group_name
        )))
    };
    if b.consume_enable == Some(false) {
        return refuse(
            "consumeEnable false",
            "Apogee has no disabled groups; stop the consumers, or delete the group",
        );
    }
    if b.retry_queue_nums.is_some_and(|n| n != 1) {
        return refuse(
            "retryQueueNums",
            "a group's retry topic has one queue in Apogee",
        );
    }
    if b.broker_id.is_some_and(|id| id != 0)
        || b.which_broker_when_consume_slowly.is_some_and(|id| id != 1)
    {
        return refuse(
            "brokerId / whichBrokerWhenConsumeSlowly",
            "which member serves a group's reads is not an Apogee setting (slaves serve \
             while their master is away)",
        );
    }
    if b.notify_consumer_ids_changed_enable == Some(false) {
        return refuse(
            "notifyConsumerIdsChangedEnable false",
            "Apogee always tells a group's consumers when its members change",
        );
    }
    if b.group_sys_flag.is_some_and(|f| f != 0) {
        return refuse("groupSysFlag", "unit groups are not an Apogee feature");
    }
    if b.consume_timeout_minute.is_some_and(|m| m != 15) {
        return refuse("consumeTimeoutMinute", "not an Apogee setting");
    }
    if b.subscription_data_set
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return refuse(
            "subscriptionDataSet",
            "Apogee takes subscriptions from the consumers",
        );
    }
    if let Some(key) = b.attributes.as_ref().and_then(|a| a.keys().next()) {
        return refuse(
            &format!("attribute {key}"),
            "group attributes are not Apogee's",
        );
    }
    let mut config = GroupConfig::with_defaults(&b.group_name);
    if let Some(retries) = b.retry_max_times {
        config.max_delivery_attempts = u32::try_from(retries)
            .ok()
            .and_then(|r| r.checked_add(1))
            .ok_or_else(|| {
            ApogeeError::BadRequest(format!("retryMaxTimes {retries} is not 0 or more"))
        })?;
    }
    config.fifo = b.consume_message_orderly.unwrap_or(false);
    config.retry = retry_policy_of(b.group_retry_policy)?;
    config.validate()?;
    Ok(config)
}

/// RocketMQ's customized retry steps (ms) when a group names none: its 18 delay levels.
fn rocketmq_default_steps() -> Vec<u64> {
    apogee_proto::delay_level::LEVELS_SECS
        .iter()
        .map(|s| s * 1000)
        .collect()
}

/// A `groupRetryPolicy` as Apogee's backoff (RocketMQ's default customized policy when it
/// is absent, or names a type without its settings).
fn retry_policy_of(policy: Option<GroupRetryPolicyBody>) -> Result<RetryPolicy, ApogeeError> {
    let policy = policy.unwrap_or(GroupRetryPolicyBody {
        kind: None,
        exponential_retry_policy: None,
        customized_retry_policy: None,
    });
    let steps = match policy.kind.as_deref().unwrap_or("CUSTOMIZED") {
        "EXPONENTIAL" => match policy.exponential_retry_policy {
            Some(e) => {
                return Ok(RetryPolicy::Exponential {
                    initial_ms: e.initial,
                    max_ms: e.max,
                    multiplier: e.multiplier as f64,
                })
            }
            None => rocketmq_default_steps(),
        },
        "CUSTOMIZED" => policy
            .customized_retry_policy
            .map_or_else(rocketmq_default_steps, |c| c.next),
        other => {
            return Err(ApogeeError::BadRequest(format!(
                "groupRetryPolicy type {other} is not EXPONENTIAL or CUSTOMIZED"
            )))
        }
    };
    // RocketMQ's first retry waits `next[2]`, its n-th `next[n + 1]`, the last step repeating.
    let from_third = match steps.len() {
        0 => {
            return Err(ApogeeError::BadRequest(
                "a customized retry policy needs at least one step".into(),
            ))
        }
        1..=2 => vec![steps[steps.len() - 1]],
        _ => steps[2..].to_vec(),
    };
    Ok(RetryPolicy::Custom(from_third))
}

/// Answers DELETE_SUBSCRIPTIONGROUP.
pub fn delete_group(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refused) = refuse_non_admin(caller, request) {
        return refused;
    }
    let result = args::string(request, "groupName")
        .and_then(|group| {
            let clean = args::optional::<bool>(request, "cleanOffset")?.unwrap_or(false);
            Ok((group, clean))
        })
        .map_err(bad)
        .and_then(|(group, clean)| broker.remove_group(group, clean, who(caller)));
    answer(request, result)
}

/// Answers INVOKE_BROKER_TO_RESET_OFFSET with the new offset of each queue.
pub fn reset_offset(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if let Some(refused) = refuse_non_admin(caller, request) {
        return refused;
    }
    let result = reset_asked(request).and_then(|(group, topic, to)| {
        let reset = OffsetReset {
            group,
            topic,
            to: Some(to),
            execute: true,
        };
        let moved = broker.reset_group_offset(&reset, who(caller))?;
        let offsets: Vec<(u32, u64)> = moved.iter().map(|q| (q.queue_id, q.new_offset)).collect();
        Ok(reset_offset_body(
            &broker.config().broker_name,
            topic,
            &offsets,
        ))
    });
    match result {
        Ok(body) => RemotingCommand::success(request).with_body(body),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// The group, topic and target a ResetOffsetRequestHeader asks for: a time (< 0: the
/// queues' ends) for every queue of the topic, moved backwards or forwards (`isForce`).
fn reset_asked(request: &RemotingCommand) -> Result<(&str, &str, OffsetTarget), ApogeeError> {
    let group = args::string(request, "group").map_err(bad)?;
    let topic = args::string(request, "topic").map_err(bad)?;
    let timestamp: i64 = args::required(request, "timestamp").map_err(bad)?;
    if args::optional::<i32>(request, "queueId")
        .map_err(bad)?
        .is_some_and(|q| q >= 0)
        || args::optional::<i64>(request, "offset")
            .map_err(bad)?
            .is_some_and(|o| o != -1)
    {
        return Err(ApogeeError::BadRequest(
            "Apogee resets every queue of the topic to a time; one queue to an offset is \
             not served (`apogee group reset-offset`)"
                .into(),
        ));
    }
    if args::optional::<bool>(request, "isForce").map_err(bad)? == Some(false) {
        return Err(ApogeeError::BadRequest(
            "isForce false (move only queues whose offset is past the time) is not served: \
             Apogee moves every queue to the time, forwards or back (-f true)"
                .into(),
        ));
    }
    let to = if timestamp < 0 {
        OffsetTarget::Latest
    } else {
        OffsetTarget::TimestampMs(timestamp)
    };
    Ok((group, topic, to))
}

#[cfg(test)]
#[path = "admin_writes_tests.rs"]
mod tests;

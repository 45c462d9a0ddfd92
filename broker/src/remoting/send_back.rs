//! CONSUMER_SEND_MSG_BACK: a remoting push consumer's listener failed a message, and the
//! consumer hands it back to be consumed again later.
//!
//! Arguments: `offset` (the message's commit-log offset, from its offset message id),
//! `group`, `delayLevel`, `originMsgId`, `originTopic`, `maxReconsumeTimes`. The message is
//! read by its offset and a copy stored, as RocketMQ does:
//!
//! - to the group's retry topic `%RETRY%<group>` (created with one queue when missing; the
//!   group's consumers subscribe to it), delayed by the delay level through the schedule:
//!   the level asked for (at most 18), or 3 + the message's reconsume times for level 0.
//!   The copy keeps the message id, body, tag, keys and properties, counts one more
//!   reconsume (`RECONSUME_TIME`), and names its first topic (`RETRY_TOPIC`, which the
//!   client restores as the message's topic) and first message id (`ORIGIN_MESSAGE_ID`);
//! - to the group's dead-letter topic `%DLQ%<group>` instead once its reconsume times
//!   reach `maxReconsumeTimes` (16 when not given), or for a negative delay level, through
//!   the consume engine's dead-letter writer.

use super::args::{self, BadArgument};
use super::convert::message_at;
use super::offsets::{authorize_sub, refused};
use crate::consume::dead_letter::{store_dead_letter, DeadLetterOrigin};
use crate::services::Broker;
use crate::store::record::internal as prop;
use crate::store::{NewMessage, StoredMessage};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::message::property;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::v2::MessageType;
use apogee_proto::{delay_level, names, ApogeeError};

/// Reconsume times before the dead-letter topic when the request names none (RocketMQ's
/// default `retryMaxTimes` of a subscription group).
pub const DEFAULT_MAX_RECONSUME_TIMES: u32 = 16;

/// The highest delay level (2 h); a higher one asked for is this one.
pub const MAX_DELAY_LEVEL: u32 = delay_level::LEVELS_SECS.len() as u32;

/// A send-back's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendBack {
    pub log_offset: u64,
    pub group: String,
    pub delay_level: i32,
    pub origin_message_id: Option<String>,
    pub max_reconsume_times: u32,
}

impl SendBack {
    /// Reads the request's extension fields.
    pub fn read(request: &RemotingCommand) -> Result<SendBack, BadArgument> {
        let log_offset: i64 = args::required(request, "offset")?;
        let log_offset = u64::try_from(log_offset)
            .map_err(|_| BadArgument(format!("the field offset = {log_offset} is negative")))?;
        Ok(SendBack {
            log_offset,
            group: args::string(request, "group")?.to_string(),
            delay_level: args::optional(request, "delayLevel")?.unwrap_or(0),
            origin_message_id: args::optional::<String>(request, "originMsgId")?
                .filter(|id| !id.is_empty()),
            max_reconsume_times: args::optional::<i64>(request, "maxReconsumeTimes")?
                .map_or(DEFAULT_MAX_RECONSUME_TIMES, |n| {
                    n.clamp(0, u32::MAX as i64) as u32
                }),
        })
    }
}

/// Where a failed message goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The retry topic, after this delay level.
    Retry { level: u32 },
    /// The dead-letter topic.
    DeadLetter,
}

/// Where a message consumed `reconsume_times` times before goes when sent back with
/// `delay_level` under `max_reconsume_times` (RocketMQ's rule).
pub fn next_step(reconsume_times: u32, delay_level: i32, max_reconsume_times: u32) -> Next {
    if delay_level < 0 || reconsume_times >= max_reconsume_times {
        return Next::DeadLetter;
    }
    let level = match delay_level as u32 {
        0 => 3u32.saturating_add(reconsume_times),
        n => n,
    };
    Next::Retry {
        level: level.min(MAX_DELAY_LEVEL),
    }
}

/// The value of user property `name` of `message`.
/// The topic a message was first sent to: a retry copy's `RETRY_TOPIC`, else its own. A dead
/// letter names it, so an operator's resend goes back there, not to the retry topic.
pub fn origin_topic(message: &StoredMessage) -> &str {
    let topic = message.msg.topic.as_str();
    if topic.starts_with(names::RETRY_PREFIX) {
        if let Some(first) = user_property(message, property::RETRY_TOPIC) {
            return first;
        }
    }
    topic
}

fn user_property<'m>(message: &'m StoredMessage, name: &str) -> Option<&'m str> {
    message
        .msg
        .properties
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn set_property(msg: &mut NewMessage, name: &str, value: String) {
    msg.properties.retain(|(k, _)| k != name);
    msg.properties.push((name.to_string(), value));
}

/// The retry copy of `message` for `group`, due at `due_ms` (still to be turned into its
/// schedule record).
pub fn retry_copy(message: &StoredMessage, back: &SendBack, due_ms: i64) -> NewMessage {
    let mut msg = message.msg.clone();
    msg.topic = names::retry_topic(&back.group);
    msg.queue_id = 0;
    msg.reconsume_times = message.msg.reconsume_times.saturating_add(1);
    // Transaction, schedule and dead-letter markers would mean something to their indexes.
    msg.internal.retain(|(k, _)| k == prop::BODY_ENCODING);
    if user_property(message, property::RETRY_TOPIC).is_none() {
        set_property(&mut msg, property::RETRY_TOPIC, message.msg.topic.clone());
    }
    if user_property(message, property::ORIGIN_MESSAGE_ID).is_none() {
        let origin = back
            .origin_message_id
            .clone()
            .unwrap_or_else(|| message.msg.message_id.clone());
        set_property(&mut msg, property::ORIGIN_MESSAGE_ID, origin);
    }
    msg.message_type = MessageType::Delay as u8;
    msg.delivery_timestamp_ms = Some(due_ms);
    msg
}

/// CONSUMER_SEND_MSG_BACK.
pub async fn consumer_send_back(
    broker: &Broker,
    caller: &apogee_server::remoting::Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let back = match SendBack::read(request) {
        Ok(b) => b,
        Err(e) => return e.answer(request),
    };
    let message = match message_at(broker.store(), back.log_offset) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return RemotingCommand::error(
                request,
                response::SYSTEM_ERROR,
                format!("no message at commit-log offset {}", back.log_offset),
            )
        }
        Err(e) => return refused(request, &e),
    };
    if let Err(e) = authorize_sub(caller, Some(&back.group), &message.msg.topic) {
        return refused(request, &e);
    }
    match send_back(broker, &message, &back).await {
        Ok(()) => RemotingCommand::success(request),
        Err(e) => refused(request, &e),
    }
}

/// Stores the retry or dead-letter copy of `message`.
pub async fn send_back(
    broker: &Broker,
    message: &StoredMessage,
    back: &SendBack,
) -> Result<(), ApogeeError> {
    let reconsumed = message.msg.reconsume_times;
    match next_step(reconsumed, back.delay_level, back.max_reconsume_times) {
        Next::DeadLetter => {
            let origin = DeadLetterOrigin {
                group: &back.group,
                topic: origin_topic(message),
                queue_id: message.msg.queue_id,
                queue_offset: message.queue_offset,
                attempts: reconsumed.saturating_add(1),
            };
            store_dead_letter(broker.store(), broker.topics(), message, &origin).await?;
            Ok(())
        }
        Next::Retry { level } => {
            let retry = names::retry_topic(&back.group);
            broker.topics().ensure_system_topic(&retry, 1)?;
            let delay = delay_level::delay_of(level).unwrap_or_default();
            let due_ms = apogee_proto::time::now_ms()
                .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            let mut copy = retry_copy(message, back, due_ms);
            let schedule = broker.schedule();
            schedule.check_delivery_time(&copy)?;
            schedule.to_waiting(&mut copy);
            broker
                .store()
                .append_internal(vec![copy])
                .await
                .map_err(ApogeeError::from)?;
            schedule.stored([due_ms]);
            tracing::debug!(
                group = %back.group, topic = %message.msg.topic, level,
                reconsume_times = reconsumed + 1, "sent back to {retry}"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "send_back_tests.rs"]
mod tests;

//! A failed message's way back, whichever transport it came over: a consumer hands back a
//! message its listener failed (remoting CONSUMER_SEND_MSG_BACK: [`Broker::send_back`]), or
//! sends it to its group's retry topic itself (a push consumer's fallback when the send-back
//! failed: [`Broker::send_to_retry`]). Either way one copy is stored, as RocketMQ does:
//!
//! - to the group's retry topic `%RETRY%<group>` (created with one queue when missing; the
//!   group's consumers subscribe to it), delayed by the delay level through the schedule:
//!   the level asked for (at most 18), or 3 + the message's reconsume times for level 0.
//!   The copy keeps the message id, body, tag, keys and properties, counts one more
//!   reconsume (`RECONSUME_TIME`), and names its first topic (`RETRY_TOPIC`, which the
//!   client restores as the message's topic) and first message id (`ORIGIN_MESSAGE_ID`);
//! - to the group's dead-letter topic `%DLQ%<group>` instead once its reconsume times
//!   reach the limit ([`Broker::reconsume_limit`]), or for a negative delay level, through
//!   the consume engine's dead-letter writer.

use crate::consume::dead_letter::{store_dead_letter, DeadLetterOrigin};
use crate::produce::validate::{self, SendLimits};
use crate::produce::Outgoing;
use crate::services::Broker;
use crate::store::record::internal as prop;
use crate::store::{AppendResult, NewMessage, StoredMessage};
use apogee_proto::remoting::message::property;
use apogee_proto::v2::MessageType;
use apogee_proto::{delay_level, names, ApogeeError};

/// Reconsume times before the dead-letter topic when neither the request nor a group names
/// any (RocketMQ's default `retryMaxTimes` of a subscription group).
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
    /// As the request gives it; `None`: the group's (see [`reconsume_limit`]).
    pub max_reconsume_times: Option<u32>,
}

impl SendBack {
    /// What becomes of `message`, the stored message at the request's offset: its copy
    /// counts one more reconsume.
    pub fn decide(&self, broker: &Broker, message: &StoredMessage) -> RetryDecision {
        let reconsumed = message.msg.reconsume_times;
        RetryDecision {
            group: self.group.clone(),
            next: next_step(
                reconsumed,
                self.delay_level,
                broker.reconsume_limit(&self.group, self.max_reconsume_times),
            ),
            reconsume_times: reconsumed.saturating_add(1),
            origin_message_id: self.origin_message_id.clone(),
        }
    }
}

impl Broker {
    /// The reconsume times a message of `group` is allowed: `asked` when a request gives it,
    /// else the group's deliveries less one, else [`DEFAULT_MAX_RECONSUME_TIMES`].
    pub fn reconsume_limit(&self, group: &str, asked: Option<u32>) -> u32 {
        asked.unwrap_or_else(|| {
            self.groups()
                .get(group)
                .map_or(DEFAULT_MAX_RECONSUME_TIMES, |g| {
                    g.max_delivery_attempts.saturating_sub(1)
                })
        })
    }
}

/// What becomes of a message a consumer of `group` failed: where it goes ([`next_step`]'s
/// answer) and what its copy counts and names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryDecision {
    /// The consumer group that failed it (whose retry or dead-letter topic takes it).
    pub group: String,
    pub next: Next,
    /// The reconsume times its copy carries: the deliveries that failed.
    pub reconsume_times: u32,
    /// Its first message id as the consumer names it; a copy that names none yet takes this,
    /// else the message's own id.
    pub origin_message_id: Option<String>,
}

impl RetryDecision {
    /// What becomes of a message a consumer of `group` sent to the group's retry topic (its
    /// fallback when a send-back failed): the header's `reconsume_times` already count the
    /// failed delivery, and so does its copy; `delay_level` is its `DELAY`, `asked_max` the
    /// header's `maxReconsumeTimes`.
    pub fn of_sent(
        broker: &Broker,
        group: &str,
        reconsume_times: u32,
        delay_level: i32,
        asked_max: Option<u32>,
        origin_message_id: Option<String>,
    ) -> RetryDecision {
        RetryDecision {
            group: group.to_string(),
            next: next_step(
                reconsume_times,
                delay_level,
                broker.reconsume_limit(group, asked_max),
            ),
            reconsume_times,
            origin_message_id,
        }
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

/// The value of user property `name` of `message`.
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

/// The retry copy of `message` as `decision` says, due at `due_ms` (still to be turned into
/// its schedule record).
pub fn retry_copy(message: &StoredMessage, decision: &RetryDecision, due_ms: i64) -> NewMessage {
    let mut msg = message.msg.clone();
    msg.topic = names::retry_topic(&decision.group);
    msg.queue_id = 0;
    msg.reconsume_times = decision.reconsume_times;
    // Transaction, schedule and dead-letter markers would mean something to their indexes.
    msg.internal.retain(prop::is_carried);
    if user_property(message, property::RETRY_TOPIC).is_none() {
        set_property(&mut msg, property::RETRY_TOPIC, message.msg.topic.clone());
    }
    if user_property(message, property::ORIGIN_MESSAGE_ID).is_none() {
        let origin = decision
            .origin_message_id
            .clone()
            .unwrap_or_else(|| message.msg.message_id.clone());
        set_property(&mut msg, property::ORIGIN_MESSAGE_ID, origin);
    }
    msg.message_type = MessageType::Delay as u8;
    msg.delivery_timestamp_ms = Some(due_ms);
    msg
}

/// A message a consumer of `group` sent to the group's retry topic: the message as sent
/// (of the topic its `RETRY_TOPIC` names), the reconsume times it already counts (the failed
/// delivery included), its `DELAY` level, the `maxReconsumeTimes` asked for and its first
/// message id.
#[derive(Debug)]
pub struct RetrySend {
    pub group: String,
    pub message: Outgoing,
    pub reconsume_times: u32,
    pub delay_level: i32,
    pub max_reconsume_times: Option<u32>,
    pub origin_message_id: Option<String>,
}

/// Where a failed message's copy was stored.
#[derive(Clone, Copy, Debug)]
pub enum Copied {
    /// The retry copy's waiting record in the schedule.
    Retry(AppendResult),
    /// The dead-letter copy (written now, or found written before): its commit-log and
    /// queue offsets when its record is found.
    DeadLetter(Option<(u64, u64)>),
}

impl Broker {
    /// Hands back the message stored at `order.log_offset` that a consumer of
    /// `order.group` failed, once `authorize` allows the caller to consume the message's
    /// topic: its retry or dead-letter copy is stored.
    pub async fn send_back(
        &self,
        order: &SendBack,
        authorize: impl FnOnce(&str) -> Result<(), ApogeeError>,
    ) -> Result<Copied, ApogeeError> {
        let message = self.message_at(order.log_offset)?.ok_or_else(|| {
            ApogeeError::Internal(format!(
                "no message at commit-log offset {}",
                order.log_offset
            ))
        })?;
        authorize(&message.msg.topic)?;
        let decision = order.decide(self, &message);
        self.store_retry(&message, &decision).await
    }

    /// Stores the retry or dead-letter copy of a message a consumer sent to its group's
    /// retry topic; the message is checked against the broker's send limits first.
    pub async fn send_to_retry(&self, order: RetrySend) -> Result<Copied, ApogeeError> {
        let now_ms = apogee_proto::time::now_ms();
        validate::message(&SendLimits::of(self.config()), &order.message, now_ms)?;
        let decision = RetryDecision::of_sent(
            self,
            &order.group,
            order.reconsume_times,
            order.delay_level,
            order.max_reconsume_times,
            order.origin_message_id,
        );
        let sent = order.message;
        let message = StoredMessage {
            msg: NewMessage {
                topic: sent.topic,
                queue_id: 0,
                message_id: sent.message_id,
                tag: sent.tag,
                keys: sent.keys,
                message_group: None,
                message_type: MessageType::Normal as u8,
                born_timestamp_ms: sent.born_timestamp_ms.unwrap_or(now_ms),
                born_host: sent.born_host,
                delivery_timestamp_ms: None,
                reconsume_times: order.reconsume_times,
                properties: sent.properties,
                internal: prop::flag_property(sent.flag).into_iter().collect(),
                body: sent.body,
            },
            queue_offset: 0,
            log_offset: 0,
            record_size: 0,
            store_timestamp_ms: now_ms,
            body_crc32: 0,
        };
        self.store_retry(&message, &decision).await
    }

    /// Stores the retry or dead-letter copy of `message` as `decision` says: the one place a
    /// failed message is copied.
    async fn store_retry(
        &self,
        message: &StoredMessage,
        decision: &RetryDecision,
    ) -> Result<Copied, ApogeeError> {
        match decision.next {
            Next::DeadLetter => {
                let origin = DeadLetterOrigin {
                    group: &decision.group,
                    topic: origin_topic(message),
                    queue_id: message.msg.queue_id,
                    queue_offset: message.queue_offset,
                    attempts: decision.reconsume_times,
                };
                store_dead_letter(self.store(), self.topics(), message, &origin).await?;
                Ok(Copied::DeadLetter(
                    self.dead_letter_of(message, &decision.group),
                ))
            }
            Next::Retry { level } => {
                let retry = names::retry_topic(&decision.group);
                self.topics().ensure_system_topic(&retry, 1)?;
                let delay = delay_level::delay_of(level).unwrap_or_default();
                let due_ms = apogee_proto::time::now_ms()
                    .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                let mut copy = retry_copy(message, decision, due_ms);
                let schedule = self.schedule();
                schedule.check_delivery_time(&copy)?;
                schedule.to_waiting(&mut copy);
                let stored = self
                    .store()
                    .append_internal(vec![copy])
                    .await
                    .map_err(ApogeeError::from)?;
                schedule.stored([due_ms]);
                tracing::debug!(
                    group = %decision.group, topic = %message.msg.topic, level,
                    reconsume_times = decision.reconsume_times, "sent back to {retry}"
                );
                let at = stored.into_iter().next().ok_or_else(|| {
                    ApogeeError::Internal(format!("no record of the retry copy in {retry}"))
                })?;
                Ok(Copied::Retry(at))
            }
        }
    }

    /// Where the dead-letter copy of `message` for `group` is (commit-log and queue offset).
    fn dead_letter_of(&self, message: &StoredMessage, group: &str) -> Option<(u64, u64)> {
        let dlq = names::dlq_topic(group);
        self.store()
            .lookup_all_by_id(&message.msg.message_id, 64)
            .unwrap_or_default()
            .into_iter()
            .rfind(|m| m.msg.topic == dlq)
            .map(|m| (m.log_offset, m.queue_offset))
    }
}

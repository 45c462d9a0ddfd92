//! SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE: a remoting producer's send decoded
//! into the producer service's input ([`Outgoing`]) and stored with ONE call of
//! `Producer::send`, the gRPC send's own path (validation, admission, auto-create, routing).
//!
//! The message's RocketMQ properties become Apogee's fields: `UNIQ_KEY` the message id (one is
//! made when absent), `TAGS` the tag, `KEYS` (space separated) the keys, a delay level,
//! `__STARTDELIVERTIME` or a `TIMER_*` property the delivery time (a DELAY message),
//! `TRAN_MSG` a TRANSACTION message (its first check-back after
//! `CHECK_IMMUNITY_TIME_IN_SECONDS` when given); the other properties are user properties.
//! A zlib body (sys flag compressed) is stored inflated.
//!
//! A send to a group's retry topic `%RETRY%<group>` is a push consumer's failed message (its
//! fallback when CONSUMER_SEND_MSG_BACK failed): it is stored as a send-back's copy is
//! (`Broker::send_to_retry`), in the retry topic after its delay level (`DELAY`) or in the
//! dead-letter topic once its `reconsumeTimes` reach `maxReconsumeTimes`, for a caller that
//! may consume the group on the topic its `RETRY_TOPIC` names. A batch to a retry topic and
//! a send to any other system topic are refused.
//!
//! The answer: SUCCESS (FLUSH_SLAVE_TIMEOUT when stored but not replicated) with `msgId`
//! the offset message id (this broker's address the client reached and the record's
//! commit-log offset; comma separated for a batch, as RocketMQ), `queueId`, `queueOffset`,
//! `transactionId` (a transaction's: what END_TRANSACTION and a check-back name; for any
//! other single message its message id, as RocketMQ's broker answers), `MSG_REGION` and
//! `TRACE_ON`; or the error's response code.
//!
//! The producer's `flag` (each batch entry's own) is kept with the message
//! (`record::internal::FLAG`) and read back by remoting consumers.

use super::args::{self, BadArgument};
use super::offsets::authorize_sub;
use crate::actions::retry::{Copied, RetrySend};
use crate::produce::{Outgoing, Sender};
use crate::services::Broker;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::message_id;
use apogee_proto::remoting::codes::{request as req, response, response_code_of};
use apogee_proto::remoting::message::{
    self, decode_batch, offset_message_id, property, push_offset_message_id, sys_flag, BatchEntry,
    Properties,
};
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::v2::{Encoding, MessageType};
use apogee_proto::{limits, names, ApogeeError};
use apogee_server::remoting::{Caller, RemotingConnection};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

/// RocketMQ's default delay levels (`messageDelayLevel`), level 1 first.
pub const DELAY_LEVELS_MS: [i64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// The region a send's answer names (RocketMQ's default `regionId`).
pub const REGION: &str = "DefaultRegion";

/// A send request's header, whichever of its two spellings it came in.
#[derive(Debug, Default, PartialEq)]
pub struct SendHeader {
    pub producer_group: String,
    pub topic: String,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub flag: i32,
    pub properties: Properties,
    pub reconsume_times: i32,
    /// A send to a retry topic: the reconsume times before its dead letter, when given.
    pub max_reconsume_times: Option<i32>,
    pub batch: bool,
}

impl SendHeader {
    /// The header of `request`: SEND_MESSAGE_V2 names its fields `a` to `n`
    /// (RocketMQ's `SendMessageRequestHeaderV2`), and so does SEND_BATCH_MESSAGE as RocketMQ's
    /// clients send it (read by its long names when it has a `topic`); SEND_MESSAGE by their
    /// names.
    pub fn read(request: &RemotingCommand) -> Result<SendHeader, BadArgument> {
        let v2 = request.code == req::SEND_MESSAGE_V2
            || (request.code == req::SEND_BATCH_MESSAGE && request.ext("topic").is_none());
        let name = |long: &'static str, short: &'static str| if v2 { short } else { long };
        Ok(SendHeader {
            producer_group: args::string(request, name("producerGroup", "a"))?.to_string(),
            topic: args::string(request, name("topic", "b"))?.to_string(),
            queue_id: args::required(request, name("queueId", "e"))?,
            sys_flag: args::optional(request, name("sysFlag", "f"))?.unwrap_or(0),
            born_timestamp: args::optional(request, name("bornTimestamp", "g"))?.unwrap_or(0),
            flag: args::optional(request, name("flag", "h"))?.unwrap_or(0),
            properties: message::properties_from_str(
                request.ext(name("properties", "i")).unwrap_or(""),
            ),
            reconsume_times: args::optional(request, name("reconsumeTimes", "j"))?.unwrap_or(0),
            max_reconsume_times: args::optional(request, name("maxReconsumeTimes", "l"))?,
            batch: request.code == req::SEND_BATCH_MESSAGE
                || args::optional(request, name("batch", "m"))?.unwrap_or(false),
        })
    }
}

fn parse_ms(properties: &Properties, name: &str) -> Result<Option<i64>, ApogeeError> {
    match properties.get(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            ApogeeError::IllegalDeliveryTime(format!("property {name} = {v:?} is not a number"))
        }),
    }
}

/// The delivery time (ms since the epoch) the properties ask for, counted from `now_ms`.
pub fn delivery_time_ms(properties: &Properties, now_ms: i64) -> Result<Option<i64>, ApogeeError> {
    if let Some(at) = parse_ms(properties, property::START_DELIVER_TIME)? {
        return Ok(Some(at));
    }
    if let Some(at) = parse_ms(properties, property::TIMER_DELIVER_MS)? {
        return Ok(Some(at));
    }
    if let Some(secs) = parse_ms(properties, property::TIMER_DELAY_SEC)? {
        return Ok(Some(now_ms.saturating_add(secs.saturating_mul(1000))));
    }
    if let Some(ms) = parse_ms(properties, property::TIMER_DELAY_MS)? {
        return Ok(Some(now_ms.saturating_add(ms)));
    }
    match parse_ms(properties, property::DELAY)? {
        // As RocketMQ: a level above the last is the last; 0 or less is no delay.
        Some(level) if level > 0 => {
            let index = (level as usize).min(DELAY_LEVELS_MS.len()) - 1;
            Ok(Some(now_ms + DELAY_LEVELS_MS[index]))
        }
        _ => Ok(None),
    }
}

/// One message of a send (its properties, flag and body, in a batch entry's form) as the
/// producer service takes it.
pub fn outgoing(
    topic: &str,
    queue_id: i32,
    born_timestamp: i64,
    born_host: &str,
    message: BatchEntry,
    now_ms: i64,
) -> Result<Outgoing, ApogeeError> {
    let BatchEntry {
        flag,
        body,
        mut properties,
    } = message;
    // Taken out, not copied: a system property, never kept among the user's.
    let message_id = properties
        .remove(property::UNIQ_KEY)
        .filter(|id| !id.is_empty())
        .unwrap_or_else(message_id::new_message_id);
    let delivery = delivery_time_ms(&properties, now_ms)?;
    let transaction = properties
        .get(property::TRAN_MSG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let first_check = parse_ms(&properties, property::CHECK_IMMUNITY_TIME_IN_SECONDS)
        .ok()
        .flatten()
        .filter(|&secs| secs > 0)
        .map(|secs| Duration::from_secs(secs as u64));
    let message_type = match (transaction, delivery) {
        (true, _) => MessageType::Transaction,
        (false, Some(_)) => MessageType::Delay,
        (false, None) => MessageType::Normal,
    };
    let tag = properties.remove(property::TAGS).filter(|t| !t.is_empty());
    let trace_context = properties
        .remove(property::TRACE_CONTEXT)
        .filter(|t| !t.is_empty());
    let keys = properties
        .remove(property::KEYS)
        .map(|k| k.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let user: Vec<(String, String)> = properties
        .into_iter()
        .filter(|(name, _)| !property::is_system(name))
        .collect();
    Ok(Outgoing {
        topic: topic.to_string(),
        has_system_properties: true,
        message_id,
        tag,
        keys,
        message_group: None,
        lite_topic: None,
        priority: None,
        message_type: message_type as i32,
        body_encoding: Encoding::Identity as i32,
        delivery_timestamp: delivery.map(|ms| prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        }),
        queue_id,
        born_timestamp_ms: (born_timestamp > 0).then_some(born_timestamp),
        born_host: born_host.to_string(),
        first_check: if transaction { first_check } else { None },
        properties: user,
        flag,
        trace_context,
        body,
    })
}

/// The messages of a send request (a single message's `properties` moved in, not copied).
fn messages(
    header: &SendHeader,
    properties: Properties,
    body: Bytes,
    born_host: &str,
    max_body_bytes: usize,
) -> Result<Vec<Outgoing>, ApogeeError> {
    let now_ms = apogee_proto::time::now_ms();
    if header.batch {
        let entries = decode_batch(body)
            .map_err(|e| ApogeeError::BadRequest(format!("the batch body: {e}")))?;
        return entries
            .into_iter()
            .map(|e| {
                outgoing(
                    &header.topic,
                    header.queue_id,
                    header.born_timestamp,
                    born_host,
                    e,
                    now_ms,
                )
            })
            .collect();
    }
    Ok(vec![outgoing(
        &header.topic,
        header.queue_id,
        header.born_timestamp,
        born_host,
        BatchEntry {
            flag: header.flag,
            body: inflated(header, body, max_body_bytes)?,
            properties,
        },
        now_ms,
    )?])
}

/// The body of a single message as sent: inflated when its sys flag says compressed.
fn inflated(header: &SendHeader, body: Bytes, max_body_bytes: usize) -> Result<Bytes, ApogeeError> {
    if header.sys_flag & sys_flag::COMPRESSED == 0 {
        return Ok(body);
    }
    match message::inflate(&body, header.sys_flag, max_body_bytes) {
        Ok(inflated) => Ok(Bytes::from(inflated)),
        Err(message::MessageCodecError::InflatedTooLarge(_)) => {
            Err(ApogeeError::MessageBodyTooLarge {
                size: max_body_bytes + 1,
                limit: max_body_bytes,
            })
        }
        Err(e) => Err(ApogeeError::BadRequest(format!("the compressed body: {e}"))),
    }
}

/// Answers SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE.
pub async fn send_message(
    broker: &Broker,
    conn: &RemotingConnection,
    caller: &Caller,
    request: RemotingCommand,
) -> RemotingCommand {
    let mut header = match SendHeader::read(&request) {
        Ok(h) => h,
        Err(bad) => return bad.answer(&request),
    };
    if header.topic.starts_with(names::RETRY_PREFIX) {
        return send_to_retry_topic(broker, conn, caller, &request, &header).await;
    }
    if let Err(e) = caller.authorize(&[(ResourceKind::Topic, &header.topic)], Action::Pub) {
        return RemotingCommand::refusal(&request, &e);
    }
    let peer = conn.peer_text();
    let body = request.body.clone();
    let properties = std::mem::take(&mut header.properties);
    let max_body_bytes = broker.config().max_body_bytes;
    let messages = match messages(&header, properties, body, peer, max_body_bytes) {
        Ok(m) => m,
        Err(e) => return RemotingCommand::refusal(&request, &e),
    };
    // A single message's id: its receipt's transaction id unless it is a transaction's (as
    // RocketMQ's broker; a batch's answer names none).
    let single_id = (!header.batch)
        .then(|| messages.first().map(|m| m.message_id.clone()))
        .flatten();
    let client_id = client_id(&header.producer_group, peer);
    let sender = Sender::new(&client_id, peer);
    match broker.send(messages, &sender).await {
        Ok(sent) => {
            let code = match &sent.not_replicated {
                Some(e) => response_code_of(e),
                None => response::SUCCESS,
            };
            let store_host = store_host(conn);
            let mut ids = String::with_capacity(sent.log_offsets.len() * 33);
            for (i, &off) in sent.log_offsets.iter().enumerate() {
                if i > 0 {
                    ids.push(',');
                }
                push_offset_message_id(&mut ids, store_host, off as i64);
            }
            let mut answer = stored_answer(
                RemotingCommand::response_to(
                    &request,
                    code,
                    sent.not_replicated.as_ref().map(ToString::to_string),
                ),
                &ids,
                header.queue_id,
                sent.receipts.first().map_or(0, |r| r.queue_offset),
                broker.config().trace.enabled,
            );
            if let Some(id) = sent.transaction_id.or(single_id) {
                answer = answer.with_ext_str("transactionId", &id);
            }
            if let Some(handle) = sent.receipts.first().and_then(|r| r.recall_handle.as_ref()) {
                answer = answer.with_ext_str("recallHandle", handle);
            }
            answer
        }
        Err(e) => RemotingCommand::refusal(&request, &e),
    }
}

/// `answer` with what every stored send's answer names: the message ids, the queue and the
/// queue offset, the region and the trace switch (`trace.enabled`: a 4.x producer sends no
/// trace record of a message whose answer says "false").
fn stored_answer(
    mut answer: RemotingCommand,
    ids: &str,
    queue_id: i32,
    queue_offset: u64,
    trace_on: bool,
) -> RemotingCommand {
    // Room for these fields, a transaction id and a recall handle at once, not grown field
    // by field.
    answer.ext_fields.reserve(7, 160 + ids.len());
    // In name order, so each field is appended after one comparison.
    answer
        .with_ext_str(property::MSG_REGION, REGION)
        .with_ext_str(property::TRACE_ON, if trace_on { "true" } else { "false" })
        .with_ext_str("msgId", ids)
        .with_ext_int("queueId", queue_id)
        .with_ext_int("queueOffset", queue_offset)
}

/// Properties of a failed message sent to a retry topic that the retry decides instead
/// (its delay, its type).
const RETRY_DECIDES: [&str; 6] = [
    property::DELAY,
    property::TRAN_MSG,
    property::START_DELIVER_TIME,
    property::TIMER_DELIVER_MS,
    property::TIMER_DELAY_SEC,
    property::TIMER_DELAY_MS,
];

/// A send to `%RETRY%<group>`: the message a consumer of the group failed, as the message
/// to copy (of the topic its `RETRY_TOPIC` names, counting the header's reconsume times) and
/// what it asks of its retry.
fn failed_message(
    header: &SendHeader,
    group: &str,
    body: Bytes,
    peer: &str,
    max_body_bytes: usize,
) -> Result<RetrySend, ApogeeError> {
    let mut properties = header.properties.clone();
    let delay_level = parse_ms(&properties, property::DELAY)?.map_or(0, |level| {
        level.clamp(i32::MIN.into(), i32::MAX.into()) as i32
    });
    properties.retain(|name, _| !RETRY_DECIDES.contains(&name.as_str()));
    let origin_message_id = properties
        .get(property::ORIGIN_MESSAGE_ID)
        .filter(|id| !id.is_empty())
        .cloned();
    let message = outgoing(
        first_topic(header)?,
        0,
        header.born_timestamp,
        peer,
        BatchEntry {
            flag: header.flag,
            body: inflated(header, body, max_body_bytes)?,
            properties,
        },
        apogee_proto::time::now_ms(),
    )?;
    Ok(RetrySend {
        group: group.to_string(),
        message,
        reconsume_times: u32::try_from(header.reconsume_times).unwrap_or(0),
        delay_level,
        max_reconsume_times: header
            .max_reconsume_times
            .map(|n| u32::try_from(n).unwrap_or(0)),
        origin_message_id,
    })
}

/// The topic a message sent to a retry topic was first sent to: its `RETRY_TOPIC`, a topic
/// of clients.
fn first_topic(header: &SendHeader) -> Result<&str, ApogeeError> {
    match header.properties.get(property::RETRY_TOPIC) {
        Some(topic) if !topic.is_empty() && !names::is_system_topic(topic) => Ok(topic),
        Some(topic) => Err(ApogeeError::BadRequest(format!(
            "a send to {} names RETRY_TOPIC {topic:?}, not a topic of clients",
            header.topic
        ))),
        None => Err(ApogeeError::BadRequest(format!(
            "a send to {} lacks the property RETRY_TOPIC (the topic it was first sent to)",
            header.topic
        ))),
    }
}

/// Answers a send to a group's retry topic: stores the retry or dead-letter copy as
/// CONSUMER_SEND_MSG_BACK does, answered with the copy's offset message id.
async fn send_to_retry_topic(
    broker: &Broker,
    conn: &RemotingConnection,
    caller: &Caller,
    request: &RemotingCommand,
    header: &SendHeader,
) -> RemotingCommand {
    let group = &header.topic[names::RETRY_PREFIX.len()..];
    if header.batch {
        let e = ApogeeError::BadRequest(format!(
            "a batch cannot be sent to the retry topic {}; send its messages one by one",
            header.topic
        ));
        return RemotingCommand::refusal(request, &e);
    }
    let checked = limits::validate_group(group)
        .and_then(|()| first_topic(header))
        .and_then(|topic| authorize_sub(caller, Some(group), topic));
    if let Err(e) = checked {
        return RemotingCommand::refusal(request, &e);
    }
    let peer = conn.peer_text();
    let max_body_bytes = broker.config().max_body_bytes;
    let failed = match failed_message(header, group, request.body.clone(), peer, max_body_bytes) {
        Ok(failed) => failed,
        Err(e) => return RemotingCommand::refusal(request, &e),
    };
    let message_id = failed.message.message_id.clone();
    let (log_offset, queue_offset) = match broker.send_to_retry(failed).await {
        Ok(Copied::Retry(at)) => (Some(at.log_offset), at.queue_offset),
        Ok(Copied::DeadLetter(at)) => (at.map(|(log, _)| log), at.map_or(0, |(_, q)| q)),
        Err(e) => return RemotingCommand::refusal(request, &e),
    };
    let id = log_offset.map_or(message_id, |off| {
        offset_message_id(store_host(conn), off as i64)
    });
    stored_answer(
        RemotingCommand::response_to(request, response::SUCCESS, None),
        &id,
        0,
        queue_offset,
        broker.config().trace.enabled,
    )
}

/// The client id a remoting producer's sends are made under (quotas, a half message's
/// producer): its producer group at its address.
pub fn client_id(producer_group: &str, peer: &str) -> String {
    let mut id = String::with_capacity(producer_group.len() + 1 + peer.len());
    id.push_str(producer_group);
    id.push('@');
    id.push_str(peer);
    id
}

/// The store host of messages a client reads over `conn`: the broker's address it reached.
pub fn store_host(conn: &RemotingConnection) -> SocketAddr {
    conn.local()
}

#[cfg(test)]
#[path = "send_tests.rs"]
pub(crate) mod tests;

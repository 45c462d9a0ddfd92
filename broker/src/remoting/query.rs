//! VIEW_MESSAGE_BY_ID (a message by its commit-log offset, what an offset message id
//! names) and QUERY_MESSAGE (a topic's messages by key, or by message id when
//! `_UNIQUE_KEY_QUERY` is true): the messages found in the stored-message layout, read
//! through the store's own indexes, SUB on the topic.
//!
//! A query by key keeps the messages stored within `[beginTimestamp, endTimestamp]`; a
//! query by message id ignores the times (a RocketMQ client derives its begin time from the
//! id, which means nothing for an id made by another client). At most
//! [`MAX_QUERY_MESSAGES`] messages are answered whatever `maxNum` asks, out of at most
//! [`MAX_QUERY_HITS`] index hits.

use super::args;
use super::convert::to_message_ext;
use crate::services::Broker;
use crate::store::StoredMessage;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::{names, ApogeeError};
use apogee_server::remoting::{Caller, RemotingConnection};
use bytes::BytesMut;

/// The most messages one QUERY_MESSAGE answers (RocketMQ's `maxMsgsNumBatch`).
pub const MAX_QUERY_MESSAGES: usize = 64;
/// The most index hits one query reads (the time filter of a query by key runs over them).
pub const MAX_QUERY_HITS: usize = 1024;

/// Whether a stored record is the broker's own (a half message, a schedule's waiting copy,
/// an op record): never shown by a view or a query.
fn is_internal(stored: &StoredMessage) -> bool {
    let topic = stored.msg.topic.as_str();
    topic == names::HALF_TOPIC
        || topic == names::HALF_OUTCOME_TOPIC
        || topic == names::SCHEDULE_TOPIC
}

/// The answer carrying `found` in the stored-message layout.
fn found_answer(
    request: &RemotingCommand,
    conn: &RemotingConnection,
    found: &[StoredMessage],
) -> RemotingCommand {
    let mut body = BytesMut::new();
    for stored in found {
        if let Err(e) = to_message_ext(stored, conn.local()).encode(&mut body) {
            tracing::warn!(error = %e, id = stored.msg.message_id, "a found message does not encode");
        }
    }
    RemotingCommand::success(request).with_body(body.freeze())
}

/// Answers VIEW_MESSAGE_BY_ID.
pub fn view_message_by_id(
    broker: &Broker,
    conn: &RemotingConnection,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let offset: i64 = match args::required(request, "offset") {
        Ok(o) => o,
        Err(bad) => return bad.answer(request),
    };
    let found = match u64::try_from(offset) {
        Ok(offset) => match broker.message_at(offset) {
            Ok(found) => found.filter(|m| !is_internal(m)),
            Err(e) => return RemotingCommand::refusal(request, &e),
        },
        Err(_) => None,
    };
    let Some(stored) = found else {
        return RemotingCommand::error(
            request,
            response::QUERY_NOT_FOUND,
            format!("no message starts at commit-log offset {offset}"),
        );
    };
    if let Err(e) = caller.authorize(&[(ResourceKind::Topic, &stored.msg.topic)], Action::Sub) {
        return RemotingCommand::refusal(request, &e);
    }
    found_answer(request, conn, &[stored])
}

/// Answers QUERY_MESSAGE.
pub fn query_message(
    broker: &Broker,
    conn: &RemotingConnection,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let read = || -> Result<_, args::BadArgument> {
        Ok((
            args::string(request, "topic")?.to_string(),
            args::string(request, "key")?.to_string(),
            args::optional::<i64>(request, "maxNum")?.unwrap_or(MAX_QUERY_MESSAGES as i64),
            args::optional::<i64>(request, "beginTimestamp")?.unwrap_or(0),
            args::optional::<i64>(request, "endTimestamp")?.unwrap_or(i64::MAX),
            args::optional::<bool>(request, "_UNIQUE_KEY_QUERY")?.unwrap_or(false),
        ))
    };
    let (topic, key, max, begin, end, by_id) = match read() {
        Ok(fields) => fields,
        Err(bad) => return bad.answer(request),
    };
    if let Err(e) = caller.authorize(&[(ResourceKind::Topic, &topic)], Action::Sub) {
        return RemotingCommand::refusal(request, &e);
    }
    let max = (max.max(1) as usize).min(MAX_QUERY_MESSAGES);
    let store = broker.store();
    let found = if by_id {
        store.lookup_all_by_id(&key, MAX_QUERY_HITS).map(|all| {
            all.into_iter()
                .filter(|m| m.msg.topic == topic)
                .take(max)
                .collect()
        })
    } else {
        store
            .lookup_by_key(&topic, &key, MAX_QUERY_HITS)
            .map(|all| {
                all.into_iter()
                    .filter(|m| (begin..=end).contains(&m.store_timestamp_ms))
                    .take(max)
                    .collect::<Vec<_>>()
            })
    };
    let found: Vec<StoredMessage> = match found {
        Ok(found) => found,
        Err(e) => return RemotingCommand::refusal(request, &ApogeeError::from(e)),
    };
    if found.is_empty() {
        return RemotingCommand::error(
            request,
            response::QUERY_NOT_FOUND,
            format!(
                "no message of topic {topic} has the {} {key:?}",
                if by_id { "id" } else { "key" }
            ),
        );
    }
    found_answer(request, conn, &found)
        .with_ext("indexLastUpdateTimestamp", apogee_proto::time::now_ms())
        .with_ext("indexLastUpdatePhyoffset", store.log_end_offset())
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;

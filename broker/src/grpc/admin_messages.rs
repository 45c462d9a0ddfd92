//! The message-query and dead-letter operations of `apogee.cluster.v1.Admin` on a broker:
//! a message by id (every stored record with that id), by topic and key, a range of one queue,
//! a group's dead letters and their resend (the logic is in `crate::dead_letters`). Each
//! answer covers this broker group only; the NameServer fans out and merges.

use crate::dead_letters::{self, blocking, DeadLetter, Outcome};
use crate::services::Broker;
use crate::store::{record::internal, StoredMessage};
use apogee_proto::cluster::{self, ResendOutcome};
use apogee_proto::{limits, names, ApogeeError};
use std::sync::Arc;

/// Messages a key search returns unless asked otherwise, and at most.
const DEFAULT_FIND_LIMIT: usize = 64;
const MAX_FIND_LIMIT: usize = 1000;
/// Messages a queue read returns unless asked otherwise, and at most.
const DEFAULT_READ_COUNT: usize = 32;
const MAX_READ_COUNT: usize = 1000;
/// Records of one id a lookup returns at most.
const MAX_ID_RECORDS: usize = 1024;
/// Dead letters listed unless asked otherwise.
const DEFAULT_DLQ_LIMIT: usize = 1000;
/// Body bytes of one answer beyond which a queue read stops (it returns at least one).
const MAX_ANSWER_BODY_BYTES: usize = 4 * 1024 * 1024;

fn bounded(asked: u32, default: usize, max: usize) -> usize {
    match asked {
        0 => default,
        n => (n as usize).min(max),
    }
}

/// A stored record as an operator sees it, with the in-flight attempts of every group.
pub fn view(broker: &Broker, m: &StoredMessage) -> cluster::MessageView {
    let msg = &m.msg;
    let delivery_attempts = broker
        .consume()
        .attempts_of(&msg.topic, msg.queue_id, m.queue_offset)
        .into_iter()
        .map(|(group, attempts)| cluster::GroupAttempts { group, attempts })
        .collect();
    cluster::MessageView {
        topic: msg.topic.clone(),
        queue_id: msg.queue_id as i32,
        queue_offset: m.queue_offset as i64,
        log_offset: m.log_offset as i64,
        message_id: msg.message_id.clone(),
        tag: msg.tag.clone().unwrap_or_default(),
        keys: msg.keys.clone(),
        user_properties: msg.properties.iter().cloned().collect(),
        body: msg.body.to_vec(),
        store_timestamp_ms: m.store_timestamp_ms,
        born_timestamp_ms: msg.born_timestamp_ms,
        delivery_attempts,
        broker_name: broker.config().broker_name.clone(),
        message_group: msg.message_group.clone().unwrap_or_default(),
        message_type: i32::from(msg.message_type),
        body_encoding: msg
            .internal(internal::BODY_ENCODING)
            .unwrap_or_default()
            .to_string(),
        born_host: msg.born_host.clone(),
        delivery_timestamp_ms: msg.delivery_timestamp_ms.unwrap_or(0),
    }
}

fn views(broker: &Broker, records: &[StoredMessage]) -> Vec<cluster::MessageView> {
    records.iter().map(|m| view(broker, m)).collect()
}

fn required(what: &str, value: &str) -> Result<(), ApogeeError> {
    if value.trim().is_empty() {
        return Err(ApogeeError::BadRequest(format!("{what} is required")));
    }
    Ok(())
}

/// Every stored record with the id, oldest first (empty when there is none).
pub async fn get_message(
    broker: &Arc<Broker>,
    req: cluster::GetMessageRequest,
) -> Result<cluster::GetMessageResponse, ApogeeError> {
    required("a message id", &req.message_id)?;
    let store = broker.store().clone();
    let records = blocking(move || {
        store
            .lookup_all_by_id(&req.message_id, MAX_ID_RECORDS)
            .map_err(ApogeeError::from)
    })
    .await?;
    Ok(cluster::GetMessageResponse {
        messages: views(broker, &records),
    })
}

/// Messages of a topic carrying a key, oldest first.
pub async fn find_messages(
    broker: &Arc<Broker>,
    req: cluster::FindMessagesRequest,
) -> Result<cluster::FindMessagesResponse, ApogeeError> {
    required("a topic", &req.topic)?;
    required("a key", &req.key)?;
    let limit = bounded(req.limit, DEFAULT_FIND_LIMIT, MAX_FIND_LIMIT);
    let store = broker.store().clone();
    let records = blocking(move || {
        store
            .lookup_by_key(&req.topic, &req.key, limit)
            .map_err(ApogeeError::from)
    })
    .await?;
    Ok(cluster::FindMessagesResponse {
        messages: views(broker, &records),
    })
}

/// Consecutive messages of one queue from an offset, and the queue's bounds. A system topic
/// (a dead-letter topic ...) needs no topic config; a user topic must exist here.
pub async fn read_queue(
    broker: &Arc<Broker>,
    req: cluster::ReadQueueRequest,
) -> Result<cluster::ReadQueueResponse, ApogeeError> {
    required("a topic", &req.topic)?;
    let count = bounded(req.count, DEFAULT_READ_COUNT, MAX_READ_COUNT);
    let config = broker.topics().get(&req.topic);
    if config.is_none() && !names::is_system_topic(&req.topic) {
        return Err(ApogeeError::TopicNotFound(req.topic));
    }
    if let Some(c) = &config {
        if i64::from(req.queue_id) >= i64::from(c.queue_count) {
            return Err(ApogeeError::BadRequest(format!(
                "topic {} has queues 0..{} on broker group {}",
                req.topic,
                c.queue_count - 1,
                broker.config().broker_name
            )));
        }
    }
    let store = broker.store().clone();
    let (records, (min, next)) = blocking(move || {
        let bounds = store
            .queue_bounds(&req.topic, req.queue_id)
            .map_err(ApogeeError::from)?;
        let from = req.from_offset.max(bounds.0);
        let records = store
            .read_queue(&req.topic, req.queue_id, from, count, MAX_ANSWER_BODY_BYTES)
            .map_err(ApogeeError::from)?;
        Ok((records, bounds))
    })
    .await?;
    Ok(cluster::ReadQueueResponse {
        messages: views(broker, &records),
        bounds: vec![cluster::QueueBounds {
            broker_name: broker.config().broker_name.clone(),
            min_offset: min,
            next_offset: next,
        }],
    })
}

fn dead_letter_info(broker: &Broker, d: &DeadLetter) -> cluster::DeadLetter {
    cluster::DeadLetter {
        message: Some(view(broker, &d.record)),
        group: d.group.clone(),
        original_topic: d.original_topic.clone(),
        original_queue_id: d.original_queue as i32,
        original_queue_offset: d.original_offset as i64,
        attempts: d.attempts,
        resent_at_ms: d.resent.as_ref().map_or(0, |r| r.at_ms),
    }
}

/// The group's dead letters on this broker, oldest first.
pub async fn list_dead_letters(
    broker: &Arc<Broker>,
    req: cluster::ListDeadLettersRequest,
) -> Result<cluster::ListDeadLettersResponse, ApogeeError> {
    limits::validate_group(&req.group)?;
    let limit = bounded(req.limit, DEFAULT_DLQ_LIMIT, usize::MAX);
    let store = broker.store().clone();
    let group = req.group.clone();
    let list = blocking(move || dead_letters::list(&store, &group, limit)).await?;
    Ok(cluster::ListDeadLettersResponse {
        dead_letters: list.iter().map(|d| dead_letter_info(broker, d)).collect(),
    })
}

/// Writes the group's dead letters (all, or those with one id) back to their topics; `by` is
/// who asked (for the log).
pub async fn resend_dead_letters(
    broker: &Arc<Broker>,
    req: cluster::ResendDeadLettersRequest,
    by: &str,
) -> Result<cluster::ResendDeadLettersResponse, ApogeeError> {
    limits::validate_group(&req.group)?;
    if !broker.membership().is_master() {
        return Err(ApogeeError::Forbidden(format!(
            "broker {} is a slave; resend dead letters through its master",
            broker.config().broker_name
        )));
    }
    let id = Some(req.message_id.as_str()).filter(|s| !s.is_empty());
    tracing::info!(group = %req.group, id = ?id, by, "operator resends dead letters");
    let done = dead_letters::resend(broker.store(), broker.topics(), &req.group, id).await?;
    let results = done
        .iter()
        .map(|(d, outcome)| {
            let (outcome, at, detail) = match outcome {
                Outcome::Resent(r) => (ResendOutcome::Resent, Some(r), String::new()),
                Outcome::AlreadyResent(r) => (ResendOutcome::AlreadyResent, Some(r), String::new()),
                Outcome::Failed(why) => (ResendOutcome::ResendFailed, None, why.clone()),
            };
            let mut info = dead_letter_info(broker, d);
            if let Some(r) = at {
                info.resent_at_ms = r.at_ms;
            }
            cluster::ResendResult {
                dead_letter: Some(info),
                outcome: outcome as i32,
                queue_id: at.map_or(-1, |r| r.queue_id as i32),
                queue_offset: at.map_or(-1, |r| r.queue_offset as i64),
                detail,
            }
        })
        .collect();
    Ok(cluster::ResendDeadLettersResponse { results })
}

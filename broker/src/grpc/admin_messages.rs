//! The message-query and dead-letter operations of `apogee.cluster.v1.Admin` on a broker:
//! a message by id (every stored record with that id), by topic and key, a range of one queue,
//! a group's dead letters and their resend. The broker's admin actions find them
//! (`crate::actions::admin`); these functions put them into the wire's messages. Each answer
//! covers this broker group only; the NameServer fans out and merges.

use crate::actions::admin::{DeadLetterRecord, MessageRecord, ResentLetter};
use crate::dead_letters::Outcome;
use crate::services::Broker;
use crate::store::record::internal;
use crate::store::StoredMessage;
use apogee_proto::cluster::{self, ResendOutcome};
use apogee_proto::ApogeeError;

/// A stored record as an operator sees it, with the in-flight attempts of every group.
fn view(
    broker_name: &str,
    stored: &StoredMessage,
    attempts: &[(String, u32)],
) -> cluster::MessageView {
    let msg = &stored.msg;
    cluster::MessageView {
        topic: msg.topic.clone(),
        queue_id: msg.queue_id as i32,
        queue_offset: stored.queue_offset as i64,
        log_offset: stored.log_offset as i64,
        message_id: msg.message_id.clone(),
        tag: msg.tag.clone().unwrap_or_default(),
        keys: msg.keys.clone(),
        user_properties: msg.properties.iter().cloned().collect(),
        body: msg.body.to_vec(),
        store_timestamp_ms: stored.store_timestamp_ms,
        born_timestamp_ms: msg.born_timestamp_ms,
        delivery_attempts: attempts
            .iter()
            .map(|(group, attempts)| cluster::GroupAttempts {
                group: group.clone(),
                attempts: *attempts,
            })
            .collect(),
        broker_name: broker_name.to_string(),
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

fn views(broker: &Broker, records: &[MessageRecord]) -> Vec<cluster::MessageView> {
    let name = &broker.config().broker_name;
    records
        .iter()
        .map(|m| view(name, &m.record, &m.attempts))
        .collect()
}

/// Every stored record with the id, oldest first (empty when there is none).
pub async fn get_message(
    broker: &Broker,
    req: cluster::GetMessageRequest,
) -> Result<cluster::GetMessageResponse, ApogeeError> {
    let records = broker.messages_by_id(&req.message_id).await?;
    Ok(cluster::GetMessageResponse {
        messages: views(broker, &records),
    })
}

/// Messages of a topic carrying a key, oldest first.
pub async fn find_messages(
    broker: &Broker,
    req: cluster::FindMessagesRequest,
) -> Result<cluster::FindMessagesResponse, ApogeeError> {
    let records = broker
        .messages_by_key(&req.topic, &req.key, req.limit)
        .await?;
    Ok(cluster::FindMessagesResponse {
        messages: views(broker, &records),
    })
}

/// Consecutive messages of one queue from an offset, and the queue's bounds.
pub async fn read_queue(
    broker: &Broker,
    req: cluster::ReadQueueRequest,
) -> Result<cluster::ReadQueueResponse, ApogeeError> {
    let read = broker
        .read_queue_messages(&req.topic, req.queue_id, req.from_offset, req.count)
        .await?;
    Ok(cluster::ReadQueueResponse {
        messages: views(broker, &read.messages),
        bounds: vec![cluster::QueueBounds {
            broker_name: broker.config().broker_name.clone(),
            min_offset: read.min_offset,
            next_offset: read.next_offset,
        }],
    })
}

fn dead_letter_info(broker_name: &str, d: &DeadLetterRecord) -> cluster::DeadLetter {
    let letter = &d.letter;
    cluster::DeadLetter {
        message: Some(view(broker_name, &letter.record, &d.attempts)),
        group: letter.group.clone(),
        original_topic: letter.original_topic.clone(),
        original_queue_id: letter.original_queue as i32,
        original_queue_offset: letter.original_offset as i64,
        attempts: letter.attempts,
        resent_at_ms: letter.resent.as_ref().map_or(0, |r| r.at_ms),
    }
}

/// The group's dead letters on this broker, oldest first.
pub async fn list_dead_letters(
    broker: &Broker,
    req: cluster::ListDeadLettersRequest,
) -> Result<cluster::ListDeadLettersResponse, ApogeeError> {
    let list = broker.dead_letters(&req.group, req.limit).await?;
    let name = &broker.config().broker_name;
    Ok(cluster::ListDeadLettersResponse {
        dead_letters: list.iter().map(|d| dead_letter_info(name, d)).collect(),
    })
}

fn resend_result(broker_name: &str, r: &ResentLetter) -> cluster::ResendResult {
    let (outcome, at, detail) = match &r.outcome {
        Outcome::Resent(r) => (ResendOutcome::Resent, Some(r), String::new()),
        Outcome::AlreadyResent(r) => (ResendOutcome::AlreadyResent, Some(r), String::new()),
        Outcome::Failed(why) => (ResendOutcome::ResendFailed, None, why.clone()),
    };
    let mut info = dead_letter_info(broker_name, &r.letter);
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
}

/// Writes the group's dead letters (all, or those with one id) back to their topics; `by` is
/// who asked (for the log).
pub async fn resend_dead_letters(
    broker: &Broker,
    req: cluster::ResendDeadLettersRequest,
    by: &str,
) -> Result<cluster::ResendDeadLettersResponse, ApogeeError> {
    let done = broker
        .resend_dead_letters(&req.group, Some(req.message_id.as_str()), by)
        .await?;
    let name = &broker.config().broker_name;
    Ok(cluster::ResendDeadLettersResponse {
        results: done.iter().map(|r| resend_result(name, r)).collect(),
    })
}

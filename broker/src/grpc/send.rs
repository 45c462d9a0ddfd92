//! SendMessage: validate every message of a request, then append them all to
//! the commit log in one batch. A request with one bad message is refused as
//! a whole with that message's status; nothing of it is stored.

use super::convert::{delivery_time_ms, into_new_message};
use crate::server::Broker;
use apogee_proto::error::ok_status;
use apogee_proto::time::now_ms;
use apogee_proto::v2::{self, Encoding, MessageType, Permission};
use apogee_proto::{limits, message_id, names, ApogeeError};

/// Where a valid message goes and what it is stored as.
struct Checked {
    queue_id: u32,
    message_type: MessageType,
    /// The delivery time (Unix ms) its delivery timestamp names, as
    /// [`delivery_time_ms`] reads it.
    delivery_ms: Option<i64>,
}

/// Checks one message (reading it, copying nothing); returns its queue and stored type.
fn validate(broker: &Broker, m: &v2::Message) -> Result<Checked, ApogeeError> {
    let topic = m
        .topic
        .as_ref()
        .map(|t| t.name.as_str())
        .unwrap_or_default();
    limits::validate_topic(topic)?;
    if names::is_system_topic(topic) {
        return Err(ApogeeError::Forbidden(format!(
            "topic {topic} is a system topic; clients cannot write it"
        )));
    }
    let sp = m
        .system_properties
        .as_ref()
        .ok_or_else(|| ApogeeError::BadRequest("message has no system properties".into()))?;
    if !message_id::is_acceptable_message_id(&sp.message_id) {
        return Err(ApogeeError::IllegalMessageId(format!(
            "message id {:?} must be 1 to {} letters, digits, '-' or '_'",
            sp.message_id,
            message_id::MAX_MESSAGE_ID_LEN
        )));
    }
    limits::validate_body(m.body.len(), broker.config.max_body_bytes)?;
    if let Some(tag) = sp.tag.as_deref() {
        limits::validate_tag(tag)?;
    }
    for key in &sp.keys {
        limits::validate_key(key)?;
    }
    if m.user_properties.len() > limits::MAX_PROPERTY_COUNT {
        return Err(ApogeeError::MessagePropertiesTooLarge(format!(
            "{} user properties, the limit is {}",
            m.user_properties.len(),
            limits::MAX_PROPERTY_COUNT
        )));
    }
    let props_bytes: usize = m
        .user_properties
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + sp.keys.iter().map(String::len).sum::<usize>()
        + sp.tag.as_ref().map_or(0, String::len);
    if props_bytes > limits::MAX_PROPERTIES_BYTES {
        return Err(ApogeeError::MessagePropertiesTooLarge(format!(
            "{props_bytes} bytes of properties, keys and tag; the limit is {}",
            limits::MAX_PROPERTIES_BYTES
        )));
    }
    if let Some(k) = m
        .user_properties
        .keys()
        .find(|k| k.is_empty() || k.chars().any(char::is_control))
    {
        return Err(ApogeeError::IllegalProperty(format!(
            "property key {k:?} is empty or has control characters"
        )));
    }

    let message_type = match MessageType::try_from(sp.message_type) {
        // A client that names no type but sets a delivery time means DELAY.
        Ok(MessageType::Unspecified) if sp.delivery_timestamp.is_some() => MessageType::Delay,
        Ok(t) => t,
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown message type {}",
                sp.message_type
            )))
        }
    };
    match Encoding::try_from(sp.body_encoding) {
        Ok(Encoding::Unspecified | Encoding::Identity | Encoding::Gzip) => {}
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown body encoding {}",
                sp.body_encoding
            )))
        }
    }
    match message_type {
        MessageType::Delay if sp.delivery_timestamp.is_none() => {
            return Err(ApogeeError::IllegalDeliveryTime(
                "a DELAY message needs a delivery timestamp".into(),
            ))
        }
        MessageType::Delay => {}
        // As RocketMQ 5: only DELAY messages have a delivery time.
        t if sp.delivery_timestamp.is_some() => {
            return Err(ApogeeError::MessageTypeConflict(format!(
                "a {} message cannot have a delivery timestamp; send it as DELAY",
                t.as_str_name()
            )))
        }
        _ => {}
    }

    let config = broker.topics.for_send(
        topic,
        broker.topics.auto_creates(),
        broker.config.default_queue_count,
    )?;
    if config.permission == Permission::Read as i32 || config.permission == Permission::None as i32
    {
        return Err(ApogeeError::Forbidden(format!(
            "topic {topic} is not writable on this broker"
        )));
    }
    let effective_type = if message_type == MessageType::Unspecified {
        MessageType::Normal
    } else {
        message_type
    };
    if !config.message_types.contains(&(effective_type as i32)) {
        return Err(ApogeeError::MessageTypeConflict(format!(
            "topic {topic} does not accept {} messages",
            effective_type.as_str_name()
        )));
    }
    if message_type == MessageType::Fifo && sp.message_group.as_deref().unwrap_or("").is_empty() {
        return Err(ApogeeError::IllegalMessageGroup(
            "FIFO messages need a message group".into(),
        ));
    }
    let queue_id = sp.queue_id;
    if queue_id < 0 || queue_id >= config.queue_count {
        return Err(ApogeeError::BadRequest(format!(
            "queue {queue_id} does not exist; topic {topic} has {} queues on this broker",
            config.queue_count
        )));
    }
    let delivery_ms = sp.delivery_timestamp.as_ref().map(|ts| {
        let max_delay_ms = i64::try_from(broker.config.schedule.max_delay_ms).unwrap_or(i64::MAX);
        delivery_time_ms(ts, now_ms(), max_delay_ms, &sp.message_id)
    });
    Ok(Checked {
        queue_id: queue_id as u32,
        message_type: effective_type,
        delivery_ms,
    })
}

/// The message ids of a request, for refusing it.
fn ids_of(messages: &[v2::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.system_properties
                .as_ref()
                .map(|s| s.message_id.clone())
                .unwrap_or_default()
        })
        .collect()
}

/// The answer refusing a whole request (the messages with `ids`) with `e`.
fn refuse_all(ids: Vec<String>, e: &ApogeeError) -> v2::SendMessageResponse {
    let status = e.to_status();
    v2::SendMessageResponse {
        status: Some(status.clone()),
        entries: ids
            .into_iter()
            .map(|message_id| v2::SendResultEntry {
                status: Some(status.clone()),
                message_id,
                transaction_id: String::new(),
                offset: 0,
                ..Default::default()
            })
            .collect(),
    }
}

/// What the metrics count of a stored request: its topic, its first message's declared
/// type (a request's messages share both) and the body sizes.
struct Counted {
    topic: String,
    message_type: MessageType,
    sizes: Vec<usize>,
}

impl Counted {
    fn of(messages: &[v2::Message]) -> Counted {
        let first = messages.first();
        Counted {
            topic: first
                .and_then(|m| m.topic.as_ref())
                .map_or_else(String::new, |t| t.name.clone()),
            message_type: first
                .and_then(|m| m.system_properties.as_ref())
                .and_then(|sp| MessageType::try_from(sp.message_type).ok())
                .unwrap_or(MessageType::Normal),
            sizes: messages.iter().map(|m| m.body.len()).collect(),
        }
    }

    fn record(self, broker: &Broker) {
        broker
            .metrics
            .stored(&self.topic, self.message_type, self.sizes);
    }
}

/// Stores the messages of one SendMessage request. A TRANSACTION message (which must be
/// sent alone) is stored as a half message and answered with its transaction id; a DELAY
/// message waits in the schedule topic and is answered with its recall handle.
pub async fn send_message(
    broker: &Broker,
    req: v2::SendMessageRequest,
    peer: &str,
    client_id: &str,
) -> v2::SendMessageResponse {
    let messages = req.messages;
    if broker.config.role == crate::config::Role::Slave {
        let e = ApogeeError::Forbidden(format!(
            "broker {} id {} is a slave and takes no sends; send to the master (broker id 0) of \
             its group",
            broker.config.broker_name, broker.config.broker_id
        ));
        return refuse_all(ids_of(&messages), &e);
    }
    if messages.is_empty() {
        return refuse_all(
            Vec::new(),
            &ApogeeError::BadRequest("no messages in the request".into()),
        );
    }
    if messages.len() > limits::MAX_BATCH_MESSAGES {
        let e = ApogeeError::PayloadTooLarge(format!(
            "{} messages in one request, the limit is {}",
            messages.len(),
            limits::MAX_BATCH_MESSAGES
        ));
        return refuse_all(ids_of(&messages), &e);
    }
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    if total > limits::MAX_BATCH_BYTES {
        let e = ApogeeError::PayloadTooLarge(format!(
            "{total} bytes of bodies in one request, the limit is {}",
            limits::MAX_BATCH_BYTES
        ));
        return refuse_all(ids_of(&messages), &e);
    }
    let topic = messages[0].topic.as_ref().map_or("", |t| t.name.as_str());
    if let Err(e) = broker.quotas.admit_send(client_id, topic, messages.len()) {
        return refuse_all(ids_of(&messages), &e);
    }
    let mut checked = Vec::with_capacity(messages.len());
    for m in &messages {
        match validate(broker, m) {
            Ok(c) => checked.push(c),
            Err(e) => return refuse_all(ids_of(&messages), &e),
        }
    }
    let is_txn = |c: &Checked| c.message_type == MessageType::Transaction;
    if checked.len() > 1 && checked.iter().any(is_txn) {
        let e = ApogeeError::BadRequest(
            "a transactional message must be sent alone, not in a batch".into(),
        );
        return refuse_all(ids_of(&messages), &e);
    }
    broker.sessions.note_sent_topic(client_id, topic);
    let first_check = messages[0]
        .system_properties
        .as_ref()
        .and_then(|sp| sp.orphaned_transaction_recovery_duration.as_ref())
        .map(apogee_proto::time::duration_ms)
        .filter(|&ms| ms > 0)
        .map(|ms| std::time::Duration::from_millis(ms as u64));
    let counted = Counted::of(&messages);
    // Valid: the messages become records, their bodies, properties and ids moved, not copied.
    let mut records: Vec<_> = messages
        .into_iter()
        .zip(&checked)
        .map(|(m, c)| {
            let mut record = into_new_message(m, c.queue_id, peer);
            record.message_type = c.message_type as u8;
            record.delivery_timestamp_ms = c.delivery_ms;
            record
        })
        .collect();
    let ids: Vec<String> = records.iter().map(|r| r.message_id.clone()).collect();
    for record in &records {
        if record.message_type == MessageType::Delay as u8 {
            if let Err(e) = broker.schedule.check_delivery_time(record) {
                return refuse_all(ids, &e);
            }
        }
    }
    let mut transaction_id = String::new();
    if checked.first().is_some_and(is_txn) {
        let (half, id) = broker
            .txns
            .half_record(records.remove(0), client_id, first_check);
        records.push(half);
        transaction_id = id;
    }
    let mut recall_handles = vec![String::new(); records.len()];
    let mut due = Vec::new();
    for (record, handle) in records.iter_mut().zip(&mut recall_handles) {
        if record.message_type == MessageType::Delay as u8 {
            due.push(record.delivery_timestamp_ms.unwrap_or(0));
            *handle = broker.schedule.to_waiting(record);
        }
    }
    let (results, status) = match broker.store.append(records).await {
        Ok(results) => (results, ok_status()),
        // SYNC_MASTER: stored here, but no slave confirmed it (docs/REPLICATION.md).
        Err(crate::store::StoreError::NotReplicated {
            results,
            timed_out,
            reason,
        }) => {
            let e = if timed_out {
                ApogeeError::SlavePersistenceTimeout(reason)
            } else {
                ApogeeError::NotReplicated(reason)
            };
            (results, e.to_status())
        }
        Err(e) => {
            // Too large, storage full, a failed store: one mapping (`StoreError` -> protocol).
            let e = ApogeeError::from(e);
            if matches!(e, ApogeeError::Internal(_)) {
                tracing::error!(
                    topic = %counted.topic,
                    client_id,
                    messages = ids.len(),
                    "append failed: {e}"
                );
            }
            return refuse_all(ids, &e);
        }
    };
    // The records are stored (and indexed) even when not replicated: they will be delivered.
    broker.schedule.stored(due);
    counted.record(broker);
    v2::SendMessageResponse {
        status: Some(status.clone()),
        entries: ids
            .into_iter()
            .zip(results)
            .zip(recall_handles)
            .map(|((message_id, r), recall_handle)| v2::SendResultEntry {
                status: Some(status.clone()),
                message_id,
                transaction_id: transaction_id.clone(),
                offset: r.queue_offset as i64,
                recall_handle,
            })
            .collect(),
    }
}

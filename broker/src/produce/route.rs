//! Where admitted messages are stored and the append itself: a TRANSACTION message (alone
//! in its request) becomes a half message (`crate::txn`), a DELAY message a waiting record
//! of the schedule (`crate::schedule`), any other message a record of its own topic and
//! queue, readable at once. All records of a request are appended in one batch.
//!
//! "Stored but not replicated" (a SYNC_MASTER append no slave confirmed) is a result here,
//! not a failure: the records are stored and indexed and will be delivered; the error the
//! client is told is the store's one mapping of it (`StoreError` into `ApogeeError`).

use super::admit::Admitted;
use super::{Outgoing, Producer, Receipt, Sender, Sent};
use crate::store::record::internal;
use crate::store::{NewMessage, StoreError};
use crate::v2_message::GZIP;
use apogee_proto::v2::{Encoding, MessageType};
use apogee_proto::ApogeeError;
use std::time::Duration;

/// The store record of an admitted message, its body, properties and ids moved, not copied.
fn into_record(m: Outgoing, admitted: &Admitted, peer: &str) -> NewMessage {
    let born_host = if m.born_host.is_empty() {
        peer.to_string()
    } else {
        m.born_host
    };
    NewMessage {
        topic: m.topic,
        queue_id: admitted.queue_id,
        message_id: m.message_id,
        tag: m.tag.filter(|t| !t.is_empty()),
        keys: m.keys,
        message_group: m.message_group.filter(|g| !g.is_empty()),
        message_type: admitted.message_type as u8,
        born_timestamp_ms: m
            .born_timestamp_ms
            .unwrap_or_else(apogee_proto::time::now_ms),
        born_host,
        delivery_timestamp_ms: admitted.delivery_ms,
        reconsume_times: 0,
        properties: m.properties,
        internal: match Encoding::try_from(m.body_encoding) {
            Ok(Encoding::Gzip) => vec![(internal::BODY_ENCODING.to_string(), GZIP.to_string())],
            _ => Vec::new(),
        }
        .into_iter()
        .chain(m.priority.map(super::priority::record_property))
        .chain(internal::flag_property(m.flag))
        .chain(
            m.trace_context
                .map(|t| (internal::TRACE_CONTEXT.to_string(), t)),
        )
        .collect(),
        body: m.body,
    }
}

impl Producer {
    /// Stores admitted messages (`admitted[i]` of `messages[i]`) where their type routes
    /// them; returns their receipts.
    pub(super) async fn route_and_append(
        &self,
        messages: Vec<Outgoing>,
        admitted: &[Admitted],
        sender: &Sender<'_>,
    ) -> Result<Sent, ApogeeError> {
        let first_check: Option<Duration> = messages.first().and_then(|m| m.first_check);
        let mut records: Vec<NewMessage> = messages
            .into_iter()
            .zip(admitted)
            .map(|(m, a)| into_record(m, a, sender.peer))
            .collect();
        let is_delay = |r: &NewMessage| r.message_type == MessageType::Delay as u8;
        for record in records.iter().filter(|r| is_delay(r)) {
            self.schedule.check_delivery_time(record)?;
        }
        let mut transaction_id = None;
        if admitted
            .first()
            .is_some_and(|a| a.message_type == MessageType::Transaction)
        {
            let (half, id) =
                self.txns
                    .half_record(records.remove(0), sender.client_id, first_check);
            records.push(half);
            transaction_id = Some(id);
        }
        let mut recall_handles = vec![None; records.len()];
        let mut due = Vec::new();
        for (record, handle) in records.iter_mut().zip(&mut recall_handles) {
            if is_delay(record) {
                due.push(record.delivery_timestamp_ms.unwrap_or(0));
                *handle = Some(self.schedule.to_waiting(record));
            }
        }
        let (results, not_replicated) = match self.store.append(records).await {
            Ok(results) => (results, None),
            Err(mut e) => {
                if let StoreError::NotReplicated { results, .. } = &mut e {
                    // SYNC_MASTER: stored here, but no slave confirmed it
                    // (docs/REPLICATION.md).
                    (std::mem::take(results), Some(ApogeeError::from(e)))
                } else {
                    // Too large, storage full, a failed store: one mapping
                    // (`StoreError` -> protocol); the transport logs a failed store with the
                    // request's topic and client.
                    return Err(ApogeeError::from(e));
                }
            }
        };
        // The records are stored (and indexed) even when not replicated: they will be delivered.
        self.schedule.stored(due);
        Ok(Sent {
            log_offsets: results.iter().map(|r| r.log_offset).collect(),
            receipts: results
                .into_iter()
                .zip(recall_handles)
                .map(|(r, recall_handle)| Receipt {
                    queue_offset: r.queue_offset,
                    recall_handle,
                })
                .collect(),
            transaction_id,
            not_replicated,
        })
    }
}

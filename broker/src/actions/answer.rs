//! A consumer's answer to a popped message (gRPC AckMessage, ChangeInvisibleDuration and
//! ForwardMessageToDeadLetterQueue, remoting ACK_MESSAGE and CHANGE_MESSAGE_INVISIBLETIME): done, or visible again after a
//! time, or given up on (to the dead-letter topic now). The delivery is named by its receipt handle; a lite message's by its lite topic too,
//! and its lite queue may then hand out its next message.

use crate::services::Broker;
use apogee_proto::time::now_ms;
use apogee_proto::{limits, names, ApogeeError};

/// Which delivery a consumer answers.
#[derive(Clone, Copy, Debug)]
pub struct Answered<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    /// The lite topic of a lite message (under the LITE parent `topic`).
    pub lite_topic: Option<&'a str>,
    pub receipt_handle: &'a str,
}

impl Broker {
    /// The delivery is done: it is not handed out again. INVALID_RECEIPT_HANDLE when the
    /// handle is not the delivery's current one (acked already, delivered again or changed
    /// since, or forged).
    pub fn ack(&self, delivery: &Answered<'_>) -> Result<(), ApogeeError> {
        let queue = self.answered_queue(delivery)?;
        self.consume()
            .ack(delivery.group, &queue, delivery.receipt_handle)?;
        self.lite_queue_moved(delivery.group, &queue, None);
        Ok(())
    }

    /// The delivery becomes visible again `invisible_ms` from now, without a backoff on top;
    /// with `suspend` that next delivery counts no attempt (the consumer put it off). Returns
    /// the delivery's new receipt handle (the old one is stale from now on).
    pub fn change_invisible(
        &self,
        delivery: &Answered<'_>,
        invisible_ms: i64,
        suspend: bool,
    ) -> Result<String, ApogeeError> {
        if !(limits::MIN_INVISIBLE_MS..=limits::MAX_INVISIBLE_MS).contains(&invisible_ms) {
            return Err(ApogeeError::IllegalInvisibleTime(format!(
                "invisible time {invisible_ms} ms is outside {}..={} ms",
                limits::MIN_INVISIBLE_MS,
                limits::MAX_INVISIBLE_MS
            )));
        }
        let queue = self.answered_queue(delivery)?;
        let now = now_ms();
        let handle = self.consume().change_invisible_with(
            delivery.group,
            &queue,
            delivery.receipt_handle,
            invisible_ms,
            now,
            suspend,
        )?;
        self.lite_queue_moved(delivery.group, &queue, Some(now + invisible_ms));
        Ok(handle)
    }

    /// The consumer gives up on the delivery (the FIFO push consumers, at their last attempt):
    /// it is stored in the group's dead-letter topic now. OK also when an earlier call stored
    /// it (Java's FIFO consumer repeats the call until it gets OK).
    pub async fn dead_letter(
        &self,
        delivery: &Answered<'_>,
        message_id: &str,
    ) -> Result<(), ApogeeError> {
        let queue = self.answered_queue(delivery)?;
        match self
            .consume()
            .expired_by_handle(delivery.group, &queue, delivery.receipt_handle)
        {
            Ok(e) => {
                let moved = crate::consume::dead_letter::dead_letter(
                    self.store(),
                    self.topics(),
                    self.consume(),
                    &e,
                )
                .await?;
                if moved {
                    self.metrics().dead_lettered(&e.key.topic, &e.key.group);
                }
                self.lite_queue_moved(delivery.group, &queue, None);
                Ok(())
            }
            Err(ApogeeError::InvalidReceiptHandle(why)) => {
                let dlq = names::dlq_topic(delivery.group);
                let stored = self
                    .store()
                    .lookup_all_by_id(message_id, 64)
                    .map_err(ApogeeError::internal)?
                    .iter()
                    .any(|m| m.msg.topic == dlq);
                if stored {
                    Ok(())
                } else {
                    Err(ApogeeError::InvalidReceiptHandle(why))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The topic whose queue holds the delivery: a lite message's lite queue, else the topic.
    fn answered_queue(&self, delivery: &Answered<'_>) -> Result<String, ApogeeError> {
        limits::validate_group(delivery.group)?;
        limits::validate_topic(delivery.topic)?;
        match delivery.lite_topic.filter(|l| !l.is_empty()) {
            Some(l) => {
                limits::validate_lite_topic(l, self.config().lite.max_topic_len)?;
                Ok(names::lite_queue_topic(delivery.topic, l))
            }
            None => Ok(delivery.topic.to_string()),
        }
    }

    /// After an answer or a dead letter of a lite message: its lite queue may hand out its
    /// next message (or this one again at `due_ms`).
    fn lite_queue_moved(&self, group: &str, queue: &str, due_ms: Option<i64>) {
        if names::split_lite_queue_topic(queue).is_none() {
            return;
        }
        match due_ms {
            Some(at) => self.lite().due_at(group, queue, at),
            None => self.lite().mark_ready(group, queue),
        }
    }
}

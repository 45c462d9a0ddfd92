//! Messages as an operator looks them up on this broker group: by id (every stored record
//! with that id), by topic and key, a range of one queue with its bounds, a group's dead
//! letters and their resend (the logic is in `crate::dead_letters`). Each record comes with
//! the in-flight attempts of every group. Each answer covers this broker group only; the
//! NameServer fans out and merges.

use crate::dead_letters::{self, blocking, DeadLetter, Outcome};
use crate::services::Broker;
use crate::store::StoredMessage;
use apogee_proto::{limits, names, ApogeeError};

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

/// A stored record with the in-flight attempts of every group (group, attempts).
#[derive(Clone, Debug)]
pub struct MessageRecord {
    pub record: StoredMessage,
    pub attempts: Vec<(String, u32)>,
}

/// A range of one queue and the queue's bounds.
#[derive(Clone, Debug)]
pub struct QueueRead {
    pub messages: Vec<MessageRecord>,
    /// The oldest offset still stored.
    pub min_offset: u64,
    /// The offset the queue's next message will get.
    pub next_offset: u64,
}

/// A dead letter with the in-flight attempts of its record.
#[derive(Clone, Debug)]
pub struct DeadLetterRecord {
    pub letter: DeadLetter,
    pub attempts: Vec<(String, u32)>,
}

/// A dead letter an operator's resend chose, and what became of it.
#[derive(Clone, Debug)]
pub struct ResentLetter {
    pub letter: DeadLetterRecord,
    pub outcome: Outcome,
}

/// What was asked for, or the default when 0, at most `max`.
fn bounded(asked: u32, default: usize, max: usize) -> usize {
    match asked {
        0 => default,
        n => (n as usize).min(max),
    }
}

fn required(what: &str, value: &str) -> Result<(), ApogeeError> {
    if value.trim().is_empty() {
        return Err(ApogeeError::BadRequest(format!("{what} is required")));
    }
    Ok(())
}

impl Broker {
    /// Every stored record with the id, oldest first (empty when there is none).
    pub async fn messages_by_id(
        &self,
        message_id: &str,
    ) -> Result<Vec<MessageRecord>, ApogeeError> {
        required("a message id", message_id)?;
        let store = self.store().clone();
        let id = message_id.to_string();
        let records = blocking(move || {
            store
                .lookup_all_by_id(&id, MAX_ID_RECORDS)
                .map_err(ApogeeError::from)
        })
        .await?;
        Ok(self.with_attempts(records))
    }

    /// Messages of a topic carrying a key, oldest first; at most `limit` (0: the default).
    pub async fn messages_by_key(
        &self,
        topic: &str,
        key: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, ApogeeError> {
        required("a topic", topic)?;
        required("a key", key)?;
        let limit = bounded(limit, DEFAULT_FIND_LIMIT, MAX_FIND_LIMIT);
        let store = self.store().clone();
        let (topic, key) = (topic.to_string(), key.to_string());
        let records = blocking(move || {
            store
                .lookup_by_key(&topic, &key, limit)
                .map_err(ApogeeError::from)
        })
        .await?;
        Ok(self.with_attempts(records))
    }

    /// Consecutive messages of one queue from an offset (the oldest stored when that is
    /// older), at most `count` (0: the default), and the queue's bounds. A system topic (a
    /// dead-letter topic ...) needs no topic config; a user topic must exist here and have
    /// the queue.
    pub async fn read_queue_messages(
        &self,
        topic: &str,
        queue_id: u32,
        from_offset: u64,
        count: u32,
    ) -> Result<QueueRead, ApogeeError> {
        required("a topic", topic)?;
        let count = bounded(count, DEFAULT_READ_COUNT, MAX_READ_COUNT);
        let config = self.topics().get(topic);
        if config.is_none() && !names::is_system_topic(topic) {
            return Err(ApogeeError::TopicNotFound(topic.to_string()));
        }
        if let Some(c) = &config {
            if queue_id >= c.queues {
                return Err(ApogeeError::BadRequest(format!(
                    "topic {topic} has queues 0..{} on broker group {}",
                    c.queues - 1,
                    self.config().broker_name
                )));
            }
        }
        let store = self.store().clone();
        let name = topic.to_string();
        let (records, (min, next)) = blocking(move || {
            let bounds = store
                .queue_bounds(&name, queue_id)
                .map_err(ApogeeError::from)?;
            let from = from_offset.max(bounds.0);
            let records = store
                .read_queue(&name, queue_id, from, count, MAX_ANSWER_BODY_BYTES)
                .map_err(ApogeeError::from)?;
            Ok((records, bounds))
        })
        .await?;
        Ok(QueueRead {
            messages: self.with_attempts(records),
            min_offset: min,
            next_offset: next,
        })
    }

    /// The group's dead letters here, oldest first; at most `limit` (0: the default).
    pub async fn dead_letters(
        &self,
        group: &str,
        limit: u32,
    ) -> Result<Vec<DeadLetterRecord>, ApogeeError> {
        limits::validate_group(group)?;
        let limit = bounded(limit, DEFAULT_DLQ_LIMIT, usize::MAX);
        let store = self.store().clone();
        let name = group.to_string();
        let list = blocking(move || dead_letters::list(&store, &name, limit)).await?;
        Ok(list
            .into_iter()
            .map(|letter| self.dead_letter_record(letter))
            .collect())
    }

    /// Writes the group's dead letters (all, or those with `message_id`) back to their
    /// topics; only a master does. `by` is who asked (for the log).
    pub async fn resend_dead_letters(
        &self,
        group: &str,
        message_id: Option<&str>,
        by: &str,
    ) -> Result<Vec<ResentLetter>, ApogeeError> {
        limits::validate_group(group)?;
        if !self.membership().is_master() {
            return Err(ApogeeError::Forbidden(format!(
                "broker {} is a slave; resend dead letters through its master",
                self.config().broker_name
            )));
        }
        let id = message_id.filter(|s| !s.is_empty());
        tracing::info!(group, id = ?id, by, "operator resends dead letters");
        let done = dead_letters::resend(self.store(), self.topics(), group, id).await?;
        Ok(done
            .into_iter()
            .map(|(letter, outcome)| ResentLetter {
                letter: self.dead_letter_record(letter),
                outcome,
            })
            .collect())
    }

    fn with_attempts(&self, records: Vec<StoredMessage>) -> Vec<MessageRecord> {
        records
            .into_iter()
            .map(|record| MessageRecord {
                attempts: self.attempts_on(&record),
                record,
            })
            .collect()
    }

    fn dead_letter_record(&self, letter: DeadLetter) -> DeadLetterRecord {
        DeadLetterRecord {
            attempts: self.attempts_on(&letter.record),
            letter,
        }
    }

    /// Every group's in-flight attempts on a stored record.
    fn attempts_on(&self, m: &StoredMessage) -> Vec<(String, u32)> {
        self.consume()
            .attempts_of(&m.msg.topic, m.msg.queue_id, m.queue_offset)
    }
}

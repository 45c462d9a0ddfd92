//! Dead letters: the messages a consumer group gave up on, kept in its dead-letter topic
//! `%DLQ%<group>` (queue 0), and an operator's way to put them back.
//!
//! The consume engine writes a dead letter (a copy of the message with its original id, tag,
//! keys, properties and body, plus the internal `dlq.*` properties naming where it came from
//! and the attempts it had). This module reads them ([`list`], [`with_id`]) and resends them
//! ([`resend`]): each chosen dead letter becomes a new record in its original topic with the
//! original id, tag, keys, properties and body, marked with the internal properties
//! `DLQ_RESENT_AT` and [`RESENT_FROM`] (the dead letter's log offset), so every group of that
//! topic gets it again.
//!
//! "Resent already" is decided from the log itself: a dead letter was resent when a record
//! with its message id carries its log offset in [`RESENT_FROM`] (found through the
//! message-id index). Publication and the resent mark are therefore one record, as for
//! transaction commits and scheduled deliveries: no crash can publish a copy without marking
//! the dead letter resent or mark it without publishing, the mark reaches slaves with the log,
//! and an index rebuilt from the log keeps it. Resends are serialised by one lock across
//! "check, append", so two concurrent resends of one dead letter write one copy.

use crate::store::record::internal;
use crate::store::{AppendResult, MessageStore, NewMessage, StoredMessage};
use crate::topics::TopicTable;
use apogee_proto::{names, time::now_ms, ApogeeError};
use std::sync::Arc;

/// Internal property on a resent copy: the log offset of the dead letter it was made from.
pub const RESENT_FROM: &str = "dlq.resent_from";

/// Queue of a dead-letter topic that holds the dead letters.
pub const DLQ_QUEUE_ID: u32 = 0;
/// How many dead letters are read (and resent) at a time.
const PAGE: usize = 128;
/// Byte budget of the bodies of one page.
const PAGE_BYTES: usize = 8 * 1024 * 1024;
/// How many records of one message id are looked at to find an earlier resend.
const MAX_ID_RECORDS: usize = 1024;

/// Serialises resends (rare operator actions) across "is it resent? / append the copy".
static RESEND_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where and when a dead letter was resent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resent {
    pub at_ms: i64,
    pub queue_id: u32,
    pub queue_offset: u64,
}

/// A record of a dead-letter topic with its origin decoded.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub group: String,
    /// The record in `%DLQ%<group>`.
    pub record: StoredMessage,
    /// Empty when the record does not name its original topic.
    pub original_topic: String,
    pub original_queue: u32,
    pub original_offset: u64,
    pub attempts: u32,
    /// Set when an operator resent it.
    pub resent: Option<Resent>,
}

/// What a resend did with one dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Resent(Resent),
    AlreadyResent(Resent),
    Failed(String),
}

/// Runs blocking store reads off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApogeeError> + Send + 'static,
) -> Result<T, ApogeeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApogeeError::internal)?
}

fn parsed<T: std::str::FromStr + Default>(m: &StoredMessage, key: &str) -> T {
    m.msg
        .internal(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

impl DeadLetter {
    /// Decodes a record of `%DLQ%<group>` (the resent state is looked up separately).
    pub fn from_record(group: &str, record: StoredMessage) -> DeadLetter {
        DeadLetter {
            group: group.to_string(),
            original_topic: record
                .msg
                .internal(internal::DLQ_TOPIC)
                .unwrap_or_default()
                .to_string(),
            original_queue: parsed(&record, internal::DLQ_QUEUE),
            original_offset: parsed(&record, internal::DLQ_OFFSET),
            attempts: parsed(&record, internal::DLQ_ATTEMPTS),
            resent: None,
            record,
        }
    }

    /// The copy written back to the original topic, stamped `now`.
    fn resend_copy(&self, queue_id: u32, now: i64) -> NewMessage {
        let m = &self.record.msg;
        let mut internal_props = vec![
            (internal::DLQ_RESENT_AT.to_string(), now.to_string()),
            (RESENT_FROM.to_string(), self.record.log_offset.to_string()),
        ];
        internal_props.extend(m.carried_internal());
        NewMessage {
            topic: self.original_topic.clone(),
            queue_id,
            message_id: m.message_id.clone(),
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            message_group: m.message_group.clone(),
            message_type: m.message_type,
            born_timestamp_ms: m.born_timestamp_ms,
            born_host: m.born_host.clone(),
            delivery_timestamp_ms: m.delivery_timestamp_ms,
            reconsume_times: 0,
            properties: m.properties.clone(),
            internal: internal_props,
            body: m.body.clone(),
        }
    }
}

/// The resend of the dead letter at `dlq_log_offset` among the records with its id, if any.
fn find_resend(records: &[StoredMessage], dlq_log_offset: u64) -> Option<Resent> {
    let mark = dlq_log_offset.to_string();
    records
        .iter()
        .find(|r| r.msg.internal(RESENT_FROM) == Some(mark.as_str()))
        .map(|r| Resent {
            at_ms: parsed(r, internal::DLQ_RESENT_AT),
            queue_id: r.msg.queue_id,
            queue_offset: r.queue_offset,
        })
}

/// Fills in `resent` from the message-id index.
fn with_resent_state(store: &MessageStore, mut d: DeadLetter) -> Result<DeadLetter, ApogeeError> {
    if d.record.msg.message_id.is_empty() {
        return Ok(d);
    }
    let records = store
        .lookup_all_by_id(&d.record.msg.message_id, MAX_ID_RECORDS)
        .map_err(ApogeeError::from)?;
    d.resent = find_resend(&records, d.record.log_offset);
    Ok(d)
}

/// One page of the dead-letter queue from `from` (consecutive offsets), with their resent
/// state; empty at the end.
fn page(
    store: &MessageStore,
    group: &str,
    from: u64,
    max: usize,
) -> Result<Vec<DeadLetter>, ApogeeError> {
    let topic = names::dlq_topic(group);
    store
        .read_queue(&topic, DLQ_QUEUE_ID, from, max.min(PAGE), PAGE_BYTES)
        .map_err(ApogeeError::from)?
        .into_iter()
        .map(|r| with_resent_state(store, DeadLetter::from_record(group, r)))
        .collect()
}

/// Up to `limit` dead letters of `group` on this broker, oldest first.
pub fn list(
    store: &MessageStore,
    group: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, ApogeeError> {
    let mut out: Vec<DeadLetter> = Vec::new();
    let mut from = 0;
    while out.len() < limit {
        let got = page(store, group, from, limit - out.len())?;
        let Some(last) = got.last() else { break };
        from = last.record.queue_offset + 1;
        out.extend(got);
    }
    Ok(out)
}

/// The dead letters of `group` carrying `message_id` (a message can die more than once).
pub fn with_id(
    store: &MessageStore,
    group: &str,
    message_id: &str,
) -> Result<Vec<DeadLetter>, ApogeeError> {
    let topic = names::dlq_topic(group);
    let records = store
        .lookup_all_by_id(message_id, MAX_ID_RECORDS)
        .map_err(ApogeeError::from)?;
    Ok(records
        .iter()
        .filter(|r| r.msg.topic == topic)
        .map(|r| {
            let mut d = DeadLetter::from_record(group, r.clone());
            d.resent = find_resend(&records, r.log_offset);
            d
        })
        .collect())
}

/// The queue a resent copy goes to: its original one while the topic still has it, else 0.
fn target_queue(topics: &TopicTable, d: &DeadLetter) -> Result<u32, String> {
    if d.original_topic.is_empty() {
        return Err("the dead letter does not name its original topic".into());
    }
    let Some(config) = topics.get(&d.original_topic) else {
        return Err(format!(
            "its original topic {} no longer exists on this broker",
            d.original_topic
        ));
    };
    Ok(if d.original_queue < config.queues {
        d.original_queue
    } else {
        0
    })
}

/// Resends one page: dead letters resent before are reported, the others appended in one
/// group commit. Called with [`RESEND_LOCK`] held.
async fn resend_page(
    store: &MessageStore,
    topics: &TopicTable,
    page: Vec<DeadLetter>,
) -> Result<Vec<(DeadLetter, Outcome)>, ApogeeError> {
    let now = now_ms();
    let mut out: Vec<(DeadLetter, Outcome)> = Vec::with_capacity(page.len());
    let mut copies: Vec<NewMessage> = Vec::new();
    // (index in `out`, queue of the copy) of each appended copy, in append order.
    let mut pending: Vec<(usize, u32)> = Vec::new();
    for d in page {
        let outcome = match (&d.resent, target_queue(topics, &d)) {
            (Some(r), _) => Outcome::AlreadyResent(r.clone()),
            (None, Err(why)) => Outcome::Failed(why),
            (None, Ok(queue)) => {
                copies.push(d.resend_copy(queue, now));
                pending.push((out.len(), queue));
                // Replaced once the append answers.
                Outcome::Failed("not appended".into())
            }
        };
        out.push((d, outcome));
    }
    let results: Vec<AppendResult> = store
        .append_internal(copies)
        .await
        .map_err(ApogeeError::from)?;
    for ((i, queue_id), r) in pending.into_iter().zip(results) {
        let (d, outcome) = &mut out[i];
        tracing::info!(
            group = %d.group, id = %d.record.msg.message_id, topic = %d.original_topic,
            "dead letter resent"
        );
        *outcome = Outcome::Resent(Resent {
            at_ms: now,
            queue_id,
            queue_offset: r.queue_offset,
        });
    }
    Ok(out)
}

/// Resends the dead letters of `group` (only those with `message_id` when given) to their
/// original topics; ones resent before are reported as such and not written again.
pub async fn resend(
    store: &Arc<MessageStore>,
    topics: &TopicTable,
    group: &str,
    message_id: Option<&str>,
) -> Result<Vec<(DeadLetter, Outcome)>, ApogeeError> {
    let _serialised = RESEND_LOCK.lock().await;
    if let Some(id) = message_id {
        let (s, g, id) = (store.clone(), group.to_string(), id.to_string());
        let chosen = blocking(move || with_id(&s, &g, &id)).await?;
        return resend_page(store, topics, chosen).await;
    }
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let (s, g) = (store.clone(), group.to_string());
        let got = blocking(move || page(&s, &g, from, PAGE)).await?;
        let Some(last) = got.last() else { break };
        from = last.record.queue_offset + 1;
        out.extend(resend_page(store, topics, got).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::MessageKind;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<MessageStore>,
        topics: Arc<TopicTable>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (store, topics) =
            crate::topics::test_store_with_orders(dir.path(), MessageKind::Normal);
        Fixture {
            _dir: dir,
            store,
            topics,
        }
    }

    /// What the consume engine writes for a message of `orders` that died in group `g`.
    fn dead(id: &str, topic: &str, queue: u32, offset: u64) -> NewMessage {
        NewMessage {
            topic: names::dlq_topic("g"),
            queue_id: 0,
            message_id: id.into(),
            tag: Some("paid".into()),
            keys: vec!["order-7".into()],
            message_group: None,
            message_type: apogee_proto::v2::MessageType::Normal as u8,
            born_timestamp_ms: 1_000,
            born_host: "10.0.0.9".into(),
            delivery_timestamp_ms: None,
            reconsume_times: 0,
            properties: vec![("amount".into(), "42".into())],
            internal: vec![
                (internal::BODY_ENCODING.into(), "gzip".into()),
                (internal::FLAG.into(), "5".into()),
                (internal::DLQ_GROUP.into(), "g".into()),
                (internal::DLQ_TOPIC.into(), topic.into()),
                (internal::DLQ_QUEUE.into(), queue.to_string()),
                (internal::DLQ_OFFSET.into(), offset.to_string()),
                (internal::DLQ_ATTEMPTS.into(), "3".into()),
            ],
            body: b"order 7".to_vec().into(),
        }
    }

    impl Fixture {
        async fn put(&self, msgs: Vec<NewMessage>) {
            self.store.append(msgs).await.unwrap();
        }
        async fn resend(&self, id: Option<&str>) -> Vec<(DeadLetter, Outcome)> {
            resend(&self.store, &self.topics, "g", id).await.unwrap()
        }
    }

    fn outcomes(done: &[(DeadLetter, Outcome)]) -> Vec<&Outcome> {
        done.iter().map(|(_, o)| o).collect()
    }

    #[tokio::test]
    async fn dead_letters_are_listed_with_their_origin() {
        let f = fixture();
        f.put(vec![dead("M1", "orders", 2, 5), dead("M2", "orders", 1, 0)])
            .await;
        let list = list(&f.store, "g", 10).unwrap();
        assert_eq!(list.len(), 2);
        let d = &list[0];
        assert_eq!(d.record.msg.message_id, "M1");
        assert_eq!(
            (
                d.original_topic.as_str(),
                d.original_queue,
                d.original_offset
            ),
            ("orders", 2, 5)
        );
        assert_eq!((d.attempts, d.record.queue_offset), (3, 0));
        assert_eq!(d.resent, None);
        assert_eq!(super::list(&f.store, "g", 1).unwrap().len(), 1);
        assert!(super::list(&f.store, "other", 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_resend_writes_the_original_message_back_once() {
        let f = fixture();
        f.put(vec![dead("M1", "orders", 2, 5)]).await;
        let done = f.resend(Some("M1")).await;
        let Outcome::Resent(r) = done[0].1.clone() else {
            panic!("{done:?}")
        };
        assert_eq!((r.queue_id, r.queue_offset), (2, 0));
        let copy = &f.store.read_queue("orders", 2, 0, 10, 1 << 20).unwrap()[0];
        let m = &copy.msg;
        assert_eq!(m.message_id, "M1");
        assert_eq!(m.tag.as_deref(), Some("paid"));
        assert_eq!(m.keys, ["order-7"]);
        assert_eq!(m.properties, [("amount".to_string(), "42".to_string())]);
        assert_eq!(&m.body[..], b"order 7");
        assert_eq!(m.internal(internal::BODY_ENCODING), Some("gzip"));
        assert_eq!(m.flag(), 5);
        assert_eq!(
            m.internal(internal::DLQ_RESENT_AT),
            Some(&*r.at_ms.to_string())
        );
        assert_eq!(m.internal(internal::DLQ_TOPIC), None);

        // Again, by id or all: reported, not written.
        for again in [f.resend(Some("M1")).await, f.resend(None).await] {
            assert_eq!(outcomes(&again), [&Outcome::AlreadyResent(r.clone())]);
        }
        assert_eq!(f.store.queue_bounds("orders", 2).unwrap(), (0, 1));
        assert_eq!(list(&f.store, "g", 10).unwrap()[0].resent, Some(r));
    }

    #[tokio::test]
    async fn a_message_that_dies_again_can_be_resent_again() {
        let f = fixture();
        f.put(vec![dead("M1", "orders", 0, 0)]).await;
        f.resend(None).await;
        // The resent copy (orders/0@0) used up its attempts too.
        f.put(vec![dead("M1", "orders", 0, 0)]).await;
        let done = f.resend(Some("M1")).await;
        assert!(matches!(done[0].1, Outcome::AlreadyResent(_)), "{done:?}");
        assert!(
            matches!(
                done[1].1,
                Outcome::Resent(Resent {
                    queue_offset: 1,
                    ..
                })
            ),
            "{done:?}"
        );
        assert_eq!(with_id(&f.store, "g", "M1").unwrap().len(), 2);
        assert!(with_id(&f.store, "g", "nope").unwrap().is_empty());
    }

    #[tokio::test]
    async fn resends_fall_back_to_queue_0_and_report_gone_topics() {
        let f = fixture();
        f.put(vec![
            dead("M1", "orders", 9, 0),
            dead("M2", "gone", 0, 0),
            dead("M3", "", 0, 0),
        ])
        .await;
        let done = f.resend(None).await;
        assert!(
            matches!(done[0].1, Outcome::Resent(Resent { queue_id: 0, .. })),
            "{done:?}"
        );
        assert!(matches!(&done[1].1, Outcome::Failed(why) if why.contains("gone")));
        assert!(matches!(&done[2].1, Outcome::Failed(why) if why.contains("original topic")));
        // Failed ones stay resendable.
        assert!(list(&f.store, "g", 10).unwrap()[1].resent.is_none());
    }
}

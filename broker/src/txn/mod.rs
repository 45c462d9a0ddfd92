//! Transactional messages: half messages, their outcome, check-backs and parking.
//!
//! Every step is a commit-log record, so the state survives crashes, is rebuilt by recovery,
//! and will reach slaves with the log (the index side is `store::txn_index`):
//!
//! - **half message**: a TRANSACTION send is stored in [`names::HALF_TOPIC`] (queue chosen by
//!   transaction id over `transaction.half_queues` queues) with internal properties naming
//!   its real topic and queue, the producer and when the first check-back is due. Consumers
//!   cannot read system topics. As RocketMQ's, it carries its transaction id as the property
//!   `__transactionId__`, which the published message and its copies keep.
//! - **commit**: ONE record, the message published in its real topic with its original id,
//!   keys, tag and properties, carrying the transaction id; dispatching it records the outcome
//!   in the same index batch. Publication and outcome are one record, so a crash can never
//!   separate them.
//! - **rollback / check / park**: small records in [`names::HALF_OUTCOME_TOPIC`].
//!
//! Concurrent EndTransactions for one transaction are serialised by a striped lock (a
//! transaction maps to one of [`LOCK_STRIPES`] async mutexes), held across "read the outcome,
//! append the record"; different transactions proceed in parallel. A repeated outcome is
//! answered OK without a second record; the opposite outcome is refused with
//! PRECONDITION_FAILED. The check-back loop is in [`checker`].

pub mod checker;
mod outcomes;
pub mod producers;

pub use outcomes::TxnOutcomes;

use crate::config::TransactionSection;
use crate::registration::NameServerLink;
use crate::store::record::internal;
use crate::store::txn_index::{self, op, Outcome, TxnFacts};
use crate::store::{MessageStore, NewMessage, StoredMessage};
use crate::topics::TopicTable;
use apogee_proto::cluster::{TransactionInfo, TransactionState};
use apogee_proto::remoting::message::property;
use apogee_proto::{names, txn_id, ApogeeError};
use apogee_server::telemetry::Sessions;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Number of locks transactions are spread over.
pub const LOCK_STRIPES: usize = 64;
/// Default and largest number of transactions one list returns.
pub const DEFAULT_LIST_LIMIT: usize = 1000;
pub const MAX_LIST_LIMIT: usize = 100_000;

/// What an EndTransaction asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Commit,
    Rollback,
    /// "Still unknown" (a check-back answer): nothing changes.
    Unknown,
}

/// Who resolves a transaction (recorded with the outcome, shown in logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolvedBy {
    Producer,
    CheckBack,
    Operator,
}

impl ResolvedBy {
    fn as_str(self) -> &'static str {
        match self {
            ResolvedBy::Producer => "producer",
            ResolvedBy::CheckBack => "check",
            ResolvedBy::Operator => "operator",
        }
    }
}

/// An EndTransaction (or an operator's resolve) to apply.
#[derive(Clone, Debug)]
pub struct EndRequest<'a> {
    pub transaction_id: &'a str,
    /// The real topic the client names; checked when not empty.
    pub topic: &'a str,
    /// The message id the client names; checked when not empty.
    pub message_id: &'a str,
    pub resolution: Resolution,
    pub by: ResolvedBy,
}

/// The transactions of one broker.
pub struct Transactions {
    store: Arc<MessageStore>,
    topics: Arc<TopicTable>,
    sessions: Arc<Sessions>,
    /// NameServers to relay check-backs through when no producer is connected here.
    relay: Option<Arc<NameServerLink>>,
    config: TransactionSection,
    broker_name: String,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Commits and rollbacks by topic, for the metrics.
    pub outcomes: TxnOutcomes,
    /// `transaction.max_checks`, changeable at runtime.
    max_checks: AtomicU32,
    /// Controller mode: whether this broker may answer as the master now (its lease); an
    /// ending is then also acknowledged only once the in-sync set holds its record.
    serving_gate: parking_lot::RwLock<Option<crate::consume::ServingGate>>,
    /// Asks producers the Telemetry sessions do not know (remoting producer groups).
    producer_check_back: parking_lot::RwLock<Option<Arc<dyn producers::ProducerCheckBack>>>,
}

impl Transactions {
    pub fn new(
        store: Arc<MessageStore>,
        topics: Arc<TopicTable>,
        sessions: Arc<Sessions>,
        relay: Option<Arc<NameServerLink>>,
        config: TransactionSection,
        broker_name: String,
    ) -> Arc<Transactions> {
        Arc::new(Transactions {
            store,
            topics,
            sessions,
            relay,
            broker_name,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            outcomes: Default::default(),
            max_checks: AtomicU32::new(config.max_checks),
            config,
            serving_gate: parking_lot::RwLock::new(None),
            producer_check_back: parking_lot::RwLock::new(None),
        })
    }

    /// Check-backs no Telemetry producer takes go to `producers` (the remoting producers
    /// of the message's producer group) before the NameServers' relay.
    pub fn set_producer_check_back(&self, producers: Arc<dyn producers::ProducerCheckBack>) {
        *self.producer_check_back.write() = Some(producers);
    }

    /// The real topic of transaction `id` (what an ending is authorized against).
    pub fn topic_of(&self, id: &str) -> Result<String, ApogeeError> {
        let (_, half) = self.facts(id)?;
        Ok(half
            .msg
            .internal(internal::REAL_TOPIC)
            .unwrap_or_default()
            .to_string())
    }

    /// Controller mode: endings are refused with `gate`'s error while it refuses (before the
    /// record is appended and again before the answer), and an ending whose record the
    /// in-sync set does not hold yet is answered with the not-replicated status instead of OK.
    pub fn set_serving_gate(&self, gate: crate::consume::ServingGate) {
        *self.serving_gate.write() = Some(gate);
    }

    /// Controller mode: the serving gate's refusal while it refuses (the end-transaction
    /// action asks it first, before it looks the transaction up).
    pub(crate) fn check_gate(&self) -> Result<(), ApogeeError> {
        match &*self.serving_gate.read() {
            Some(gate) => gate(),
            None => Ok(()),
        }
    }

    /// Check-backs made before a half message is parked.
    pub fn max_checks(&self) -> u32 {
        self.max_checks.load(Ordering::Relaxed)
    }

    /// Changes `max_checks` (a runtime setting; transactions past it are parked at their
    /// next due check).
    pub fn set_max_checks(&self, n: u32) {
        self.max_checks.store(n, Ordering::Relaxed);
    }

    fn lock_for(&self, id: &str) -> &tokio::sync::Mutex<()> {
        let h = store_index_hash(id);
        &self.locks[(h % LOCK_STRIPES as u64) as usize]
    }

    /// Turns a validated TRANSACTION message into its half record; returns it with its new
    /// transaction id. `first_check` overrides the configured first check-back delay (the
    /// message's orphaned-transaction-recovery duration).
    pub fn half_record(
        &self,
        mut msg: NewMessage,
        producer: &str,
        first_check: Option<Duration>,
    ) -> (NewMessage, String) {
        let id = txn_id::new_transaction_id(&self.broker_name);
        let delay = first_check.unwrap_or(Duration::from_millis(self.config.check_delay_ms));
        let check_at = apogee_proto::time::now_ms() + delay.as_millis() as i64;
        msg.internal.retain(internal::is_carried);
        msg.internal.extend([
            (internal::TXN_ID.into(), id.clone()),
            (internal::REAL_TOPIC.into(), std::mem::take(&mut msg.topic)),
            (internal::REAL_QUEUE.into(), msg.queue_id.to_string()),
            (internal::PRODUCER.into(), producer.to_string()),
            (internal::CHECK_AT.into(), check_at.to_string()),
        ]);
        // As RocketMQ's half message: the transaction id among the properties, which the
        // published message and its copies keep (the id EndTransaction names).
        msg.properties
            .retain(|(k, _)| k != property::TRANSACTION_ID);
        msg.properties
            .push((property::TRANSACTION_ID.into(), id.clone()));
        msg.topic = names::HALF_TOPIC.to_string();
        msg.queue_id = (store_index_hash(&id) % u64::from(self.config.half_queues)) as u32;
        (msg, id)
    }

    fn facts(&self, id: &str) -> Result<(TxnFacts, StoredMessage), ApogeeError> {
        let unknown = || {
            ApogeeError::InvalidTransactionId(format!(
                "{id:?} is not a transaction of broker {}",
                self.broker_name
            ))
        };
        if txn_id::broker_of(id) != Some(self.broker_name.as_str()) {
            return Err(unknown());
        }
        let facts = txn_index::load(self.store.kv().as_ref(), id)
            .map_err(ApogeeError::from)?
            .ok_or_else(unknown)?;
        let half = self
            .store
            .read_at(facts.half.log_offset, facts.half.size)
            .map_err(ApogeeError::from)?;
        Ok((facts, half))
    }

    /// Applies an EndTransaction; returns the transaction as it stands afterwards.
    #[tracing::instrument(skip_all, fields(txn = req.transaction_id, by = req.by.as_str()))]
    pub async fn end(&self, req: EndRequest<'_>) -> Result<TransactionInfo, ApogeeError> {
        let id = req.transaction_id;
        self.check_gate()?;
        let _serial = self.lock_for(id).lock().await;
        // Read under the lock: another request may be ending it at the same time.
        let (mut facts, half) = self.facts(id)?;
        let real_topic = half.msg.internal(internal::REAL_TOPIC).unwrap_or_default();
        if !req.topic.is_empty() && req.topic != real_topic {
            return Err(ApogeeError::InvalidTransactionId(format!(
                "transaction {id} belongs to topic {real_topic}, not {}",
                req.topic
            )));
        }
        if !req.message_id.is_empty() && req.message_id != half.msg.message_id {
            return Err(ApogeeError::InvalidTransactionId(format!(
                "transaction {id} is message {}, not {}",
                half.msg.message_id, req.message_id
            )));
        }
        let current = facts.outcome.map(|(o, _)| o);
        let now = apogee_proto::time::now_ms();
        let (record, outcome) = match (current, req.resolution) {
            (_, Resolution::Unknown) => (None, facts.outcome),
            (Some(Outcome::Committed), Resolution::Commit)
            | (Some(Outcome::RolledBack), Resolution::Rollback) => (None, facts.outcome),
            (Some(Outcome::Committed), Resolution::Rollback) => {
                return Err(ApogeeError::PreconditionFailed(format!(
                    "transaction {id} was already committed; it cannot be rolled back"
                )))
            }
            (Some(Outcome::RolledBack), Resolution::Commit) => {
                return Err(ApogeeError::PreconditionFailed(format!(
                    "transaction {id} was already rolled back; it cannot be committed"
                )))
            }
            (None | Some(Outcome::Parked), Resolution::Commit) => (
                Some(self.commit_record(&half, id, req.by)?),
                Some((Outcome::Committed, now)),
            ),
            (None | Some(Outcome::Parked), Resolution::Rollback) => (
                Some(op_record(id, op::ROLLBACK, req.by, &[])),
                Some((Outcome::RolledBack, now)),
            ),
        };
        if let Some(record) = record {
            let strict = self.serving_gate.read().is_some();
            let appended = if strict {
                self.store.append(vec![record]).await
            } else {
                self.store.append_internal(vec![record]).await
            };
            appended.map_err(ApogeeError::from)?;
            self.check_gate()?;
            tracing::debug!(resolution = ?req.resolution, "transaction ended");
            let committed = matches!(outcome, Some((Outcome::Committed, _)));
            self.outcomes.ended(real_topic, committed);
        } else if matches!(
            (current, req.resolution),
            (Some(Outcome::Committed), Resolution::Commit)
                | (Some(Outcome::RolledBack), Resolution::Rollback)
        ) && self.serving_gate.read().is_some()
        {
            // A retry of an ending already written (its first answer may have been "not
            // replicated"): OK only once the in-sync members hold it, as for the first.
            self.store
                .wait_replicated_to_end()
                .await
                .map_err(ApogeeError::from)?;
            self.check_gate()?;
        }
        facts.outcome = outcome;
        Ok(self.info(id, &facts, &half))
    }

    /// The message a commit publishes: the half message in its real topic and queue.
    fn commit_record(
        &self,
        half: &StoredMessage,
        id: &str,
        by: ResolvedBy,
    ) -> Result<NewMessage, ApogeeError> {
        let topic = half
            .msg
            .internal(internal::REAL_TOPIC)
            .unwrap_or_default()
            .to_string();
        let config = self.topics.get(&topic).ok_or_else(|| {
            ApogeeError::TopicNotFound(format!("{topic} (the topic of transaction {id})"))
        })?;
        let queue: u32 = half
            .msg
            .internal(internal::REAL_QUEUE)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        let mut msg = half.msg.clone();
        msg.topic = topic;
        // The topic may have been recreated with fewer queues since.
        msg.queue_id = queue % config.queues.max(1);
        msg.internal.retain(internal::is_carried);
        msg.internal.extend([
            (internal::TXN_ID.into(), id.to_string()),
            (internal::TXN_BY.into(), by.as_str().into()),
        ]);
        Ok(msg)
    }

    /// The admin view of a transaction.
    fn info(&self, id: &str, facts: &TxnFacts, half: &StoredMessage) -> TransactionInfo {
        let state = match facts.outcome.map(|(o, _)| o) {
            None => TransactionState::Pending,
            Some(Outcome::Committed) => TransactionState::Committed,
            Some(Outcome::RolledBack) => TransactionState::RolledBack,
            Some(Outcome::Parked) => TransactionState::Parked,
        };
        TransactionInfo {
            transaction_id: id.to_string(),
            topic: half
                .msg
                .internal(internal::REAL_TOPIC)
                .unwrap_or_default()
                .to_string(),
            message_id: half.msg.message_id.clone(),
            producer: half
                .msg
                .internal(internal::PRODUCER)
                .unwrap_or_default()
                .to_string(),
            store_timestamp_ms: facts.half.store_timestamp_ms,
            checks: facts.checks.count,
            state: state as i32,
            broker_name: self.broker_name.clone(),
            next_check_ms: if state == TransactionState::Pending {
                facts.checks.next_due_ms
            } else {
                0
            },
        }
    }

    /// Transactions in id order; `unresolved_only` keeps pending and parked ones.
    pub fn list(
        &self,
        unresolved_only: bool,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<TransactionInfo>, ApogeeError> {
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let kv = self.store.kv();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let ids =
                txn_index::ids(kv.as_ref(), after.as_deref(), 512).map_err(ApogeeError::from)?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            for id in ids {
                let (facts, half) = self.facts(&id)?;
                let unresolved = matches!(facts.outcome, None | Some((Outcome::Parked, _)));
                if unresolved_only && !unresolved {
                    continue;
                }
                let info = self.info(&id, &facts, &half);
                if !topic.is_empty() && info.topic != topic {
                    continue;
                }
                out.push(info);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            after = Some(last);
        }
        Ok(out)
    }

    /// Live producers are told about transactions through this registry.
    pub(crate) fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

/// A record of the transaction op topic.
fn op_record(id: &str, kind: &str, by: ResolvedBy, extra: &[(&str, String)]) -> NewMessage {
    let mut internal = vec![
        (internal::TXN_ID.to_string(), id.to_string()),
        (internal::TXN_OP.to_string(), kind.to_string()),
        (internal::TXN_BY.to_string(), by.as_str().to_string()),
    ];
    internal.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    NewMessage::op_record(names::HALF_OUTCOME_TOPIC, internal)
}

/// A stable hash of a transaction id (FNV-1a, the store's tag hash).
fn store_index_hash(id: &str) -> u64 {
    crate::store::tag_hash(id)
}

#[cfg(test)]
mod tests;

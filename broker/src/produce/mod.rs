//! The producer side of the broker: what happens to the messages of one send, from the
//! request to the receipts. [`Producer`] owns it and is built from exactly what it reads
//! (the store, the topic table, the transactions, the schedule, the send quotas, the
//! Telemetry sessions and [`ProducerConfig`]), so it is tested over an in-memory store
//! without a running broker.
//!
//! A send goes through four steps, each in its own file:
//!
//! 1. **validation** (`validate.rs`): the request's size and each message on its own, pure
//!    functions over [`SendLimits`];
//! 2. **admission** (`admit.rs`, and here: the refusal on anything but the master, in
//!    controller mode also without a valid lease or with too few committed in-sync members
//!    ([`Membership::check_writable`]), and the send quotas): the topic
//!    exists (or is auto-created), is writable, accepts the type and has the queue;
//! 3. **routing** (`route.rs`): a TRANSACTION message to the half topic, a DELAY message to
//!    the schedule, any other to its topic and queue;
//! 4. **the append**: one batch; "stored but not replicated" is a result, not a failure.
//!
//! A request with one bad message is refused as a whole with that message's error; nothing
//! of it is stored. The answers are domain values ([`Sent`], [`ApogeeError`]); the
//! transport (`grpc::send`) decodes requests into [`Outgoing`] and encodes the answers.

mod admit;
pub mod lite;
pub mod priority;
mod route;
pub mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lite;
#[cfg(test)]
mod tests_validate;

pub use validate::SendLimits;

use crate::config::{BrokerConfig, Role};
use crate::membership::{Membership, SendAdmission};
use crate::quotas::Quotas;
use crate::schedule::Schedule;
use crate::store::MessageStore;
use crate::topics::TopicTable;
use crate::txn::Transactions;
use apogee_proto::v2::MessageType;
use apogee_proto::ApogeeError;
use apogee_server::telemetry::Sessions;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Longest a send waits for this member's promotion to master to finish (the controller has
/// named it master; its store does not take appends yet).
const PROMOTION_WAIT: Duration = Duration::from_secs(5);

/// One message as a producer sent it, nothing checked yet. Numbers the protocol defines
/// (type, encoding) are kept as sent, so an unknown one is refused by validation with the
/// number in the error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outgoing {
    pub topic: String,
    /// False when the request carried no system properties for it (refused: BAD_REQUEST).
    pub has_system_properties: bool,
    pub message_id: String,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub message_group: Option<String>,
    /// A LITE message's lite topic (`system_properties.lite_topic`).
    pub lite_topic: Option<String>,
    /// A PRIORITY message's priority (`system_properties.priority`).
    pub priority: Option<i32>,
    /// The `apache.rocketmq.v2.MessageType` number.
    pub message_type: i32,
    /// The `apache.rocketmq.v2.Encoding` number of the body.
    pub body_encoding: i32,
    pub delivery_timestamp: Option<prost_types::Timestamp>,
    /// The queue of its topic it names.
    pub queue_id: i32,
    /// When the producer made it (Unix ms); the time it is stored when not given.
    pub born_timestamp_ms: Option<i64>,
    /// The producer's host as it says; the peer address when empty.
    pub born_host: String,
    /// A TRANSACTION message's first check-back delay (its orphaned-transaction recovery
    /// duration), when it names one (else `transaction.check_delay_ms`).
    pub first_check: Option<Duration>,
    /// User properties, sorted by key.
    pub properties: Vec<(String, String)>,
    /// A remoting producer's `flag` (RocketMQ's `Message.flag`, opaque to the broker): kept
    /// with the message and read back by remoting consumers; 0 from a gRPC producer (the v2
    /// protocol has no such field).
    pub flag: i32,
    /// The producer's trace context (W3C `traceparent` as the official clients write it):
    /// kept with the message and every copy of it, handed to its consumers.
    pub trace_context: Option<String>,
    pub body: Bytes,
}

/// Who sends: the client id (for quotas, check-backs, logs) and the peer's address (the
/// born host of a message that names none).
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    pub client_id: &'a str,
    pub peer: &'a str,
    /// The send's pass of the handover gate, when its transport took it on deciding to
    /// answer the send here (`grpc::forward`); None: the producer takes it.
    pub admitted: Option<&'a SendAdmission>,
}

impl<'a> Sender<'a> {
    /// A sender whose send the producer admits past the handover gate itself.
    pub fn new(client_id: &'a str, peer: &'a str) -> Sender<'a> {
        Sender {
            client_id,
            peer,
            admitted: None,
        }
    }
}

/// Where one stored message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Its offset in its queue (the half or schedule topic's queue for a transactional or
    /// delayed message).
    pub queue_offset: u64,
    /// A DELAY message's recall handle.
    pub recall_handle: Option<String>,
}

/// A stored request: a receipt per message, in request order.
#[derive(Debug)]
pub struct Sent {
    pub receipts: Vec<Receipt>,
    /// Each stored record's commit-log offset, in request order (a remoting send answers
    /// with the offset message id made of it).
    pub log_offsets: Vec<u64>,
    /// A TRANSACTION message's transaction id.
    pub transaction_id: Option<String>,
    /// Stored here but not confirmed by a slave (SYNC_MASTER): what the client is told.
    pub not_replicated: Option<ApogeeError>,
}

/// What a slave answers a write (a send, an end of transaction, a recall, a dead letter) it
/// cannot pass to its master `master` ("" when not known): HA_NOT_AVAILABLE, which the
/// official producers retry (docs/REPLICATION.md, "Reads from slaves and the master's
/// return"). A slave stores nothing of its own: its log is a copy of the master's.
pub fn slave_refusal(broker_name: &str, broker_id: i64, master: &str) -> ApogeeError {
    let master = if master.is_empty() {
        "its master".to_string()
    } else {
        format!("its master {master}")
    };
    ApogeeError::Unavailable(format!(
        "broker {broker_name} id {broker_id} is a slave and {master} is not reachable; a slave \
         stores no writes of its own: retry on another broker group, or here once the master \
         is back"
    ))
}

/// What a producer service is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    pub limits: SendLimits,
    /// Queues of a topic a send creates (`default_queue_count`).
    pub default_queue_count: u32,
    /// A slave takes no sends; its name and id say so in the refusal.
    pub role: Role,
    pub broker_name: String,
    pub broker_id: i64,
    /// Lite topics' name length and per-broker quota.
    pub lite: lite::LiteLimits,
}

impl ProducerConfig {
    /// The producer's part of a broker's config.
    pub fn of(config: &BrokerConfig) -> ProducerConfig {
        ProducerConfig {
            limits: SendLimits::of(config),
            default_queue_count: config.default_queue_count,
            role: config.role,
            broker_name: config.broker_name.clone(),
            broker_id: config.broker_id,
            lite: lite::LiteLimits::of(config),
        }
    }
}

/// The producer-side service of one broker.
pub struct Producer {
    config: ProducerConfig,
    store: Arc<MessageStore>,
    topics: Arc<TopicTable>,
    txns: Arc<Transactions>,
    schedule: Arc<Schedule>,
    quotas: Arc<Quotas>,
    /// A producer that sends to a topic is a candidate for its check-backs.
    sessions: Arc<Sessions>,
    /// The role now: only the master takes sends (in controller mode: with a valid lease and
    /// enough committed in-sync members).
    membership: Arc<Membership>,
    /// Lite-topic creations of sends under way (the lite-topic quota).
    lite_quota: lite::LiteQuota,
}

/// What a [`Producer`] works on, besides its configuration.
pub struct ProducerParts {
    pub store: Arc<MessageStore>,
    pub topics: Arc<TopicTable>,
    pub txns: Arc<Transactions>,
    pub schedule: Arc<Schedule>,
    pub quotas: Arc<Quotas>,
    pub sessions: Arc<Sessions>,
    pub membership: Arc<Membership>,
}

impl Producer {
    pub fn new(config: ProducerConfig, parts: ProducerParts) -> Producer {
        let ProducerParts {
            store,
            topics,
            txns,
            schedule,
            quotas,
            sessions,
            membership,
        } = parts;
        Producer {
            lite_quota: lite::LiteQuota::default(),
            membership,
            config,
            store,
            topics,
            txns,
            schedule,
            quotas,
            sessions,
        }
    }

    /// Stores the messages of one send request from `sender`: all of them, or none and the
    /// error of the first that is refused. A TRANSACTION message (which must be sent alone)
    /// is stored as a half message and answered with its transaction id; a DELAY message
    /// waits in the schedule and is answered with its recall handle.
    pub async fn send(
        &self,
        messages: Vec<Outgoing>,
        sender: &Sender<'_>,
    ) -> Result<Sent, ApogeeError> {
        // A planned handover holds sends back until the successor is elected (a gRPC send
        // is then passed to it by `grpc::forward`; one here is refused as a slave's), and
        // steps down only once the sends admitted before it were answered. A gRPC send
        // answered here was admitted when `grpc::forward` decided so.
        let _in_flight = match sender.admitted {
            Some(_) => None,
            None => Some(self.membership.send_admitted().await),
        };
        if !self.membership.is_master() {
            if self.membership.controlled_mode() {
                self.membership.check_serving()?;
            }
            return Err(slave_refusal(
                &self.config.broker_name,
                self.config.broker_id,
                "",
            ));
        }
        self.membership.check_writable()?;
        // A member the controller has just made master takes appends once its promotion has
        // finished (`Broker::promote`: the slave loop ended, the log synced, the epoch
        // recorded). A send arriving in between, such as one a handover passed on, waits
        // for it instead of being refused as a slave's.
        if self.store.is_replica() && !self.store.wait_takes_writes(PROMOTION_WAIT).await {
            return Err(ApogeeError::Unavailable(format!(
                "member {} is becoming the master and does not take sends yet: retry",
                self.membership.member_id()
            )));
        }
        validate::request(&messages)?;
        let mut messages = messages;
        let topic = messages[0].topic.as_str();
        self.quotas
            .admit_send(sender.client_id, topic, messages.len())?;
        let now_ms = apogee_proto::time::now_ms();
        let mut lite_topics: Vec<Option<String>> = Vec::with_capacity(messages.len());
        let mut admitted = messages
            .iter()
            .map(|m| {
                let mut valid = validate::message(&self.config.limits, m, now_ms)?;
                let lite = lite::check(&self.config.lite, m, valid.message_type)?;
                if lite.is_some() {
                    valid.message_type = MessageType::Lite;
                }
                lite_topics.push(lite.map(str::to_string));
                admit::to_topic(&self.topics, self.config.default_queue_count, m, valid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if admitted.len() > 1
            && admitted
                .iter()
                .any(|a| a.message_type == MessageType::Transaction)
        {
            return Err(ApogeeError::BadRequest(
                "a transactional message must be sent alone, not in a batch".into(),
            ));
        }
        let lite_queues: std::collections::BTreeSet<(&str, &str)> = messages
            .iter()
            .zip(&lite_topics)
            .filter_map(|(m, l)| Some((m.topic.as_str(), l.as_deref()?)))
            .collect();
        let _creating = if lite_queues.is_empty() {
            None
        } else {
            Some(self.lite_quota.reserve(
                &self.store,
                &lite_queues,
                self.config.lite.max_lite_topics,
            )?)
        };
        drop(lite_queues);
        self.sessions.note_sent_topic(sender.client_id, topic);
        lite::route(&mut messages, &mut admitted, &lite_topics);
        let sent = self.route_and_append(messages, &admitted, sender).await?;
        // Fencing: the answer, after any wait for slaves, needs the lease still valid.
        self.membership.check_serving().map_err(|e| {
            ApogeeError::Unavailable(format!(
                "the send was written on this broker but is not acknowledged: {e}"
            ))
        })?;
        Ok(sent)
    }
}

//! The producer: validates messages locally, picks a writable queue
//! round-robin (by message group for FIFO messages), sends one message or
//! one same-topic batch per SendMessage request, and retries on another
//! broker after transport failures and retryable server codes (a FIFO
//! message is retried on its message group's queue: see `fifo_queue`).
//! A SYNC_MASTER's "stored on the master, not replicated" answers
//! (HA_NOT_AVAILABLE, SLAVE_PERSISTENCE_TIMEOUT) mean the message IS stored:
//! they are never resent (a resend would store a second copy) and come back
//! as the distinct error [`ClientError::is_stored_not_replicated`] names.
//!
//! With [`SendTransport::Remoting`](crate::config::SendTransport) a producer sends the
//! messages remoting carries over RocketMQ's remoting frames instead ([`crate::remoting`]),
//! with the same queue choice and resend rules; everything else stays on gRPC.
//!
//! A producer built with [`ProducerBuilder`] declares its topics up front
//! (they are announced in its Telemetry settings, with every topic it later
//! sends to) and may carry a [`TransactionChecker`] that answers the
//! brokers' transaction check-backs; see [`crate::transaction`].

use crate::config::SendTransport;
use crate::core::Core;
use crate::message::Message;
use crate::remoting::RemotingSends;
use crate::route::{broker_name, queue_endpoint, select_queue};
use crate::telemetry::Role;
use crate::transaction::{
    end_request, Transaction, TransactionChecker, TransactionReceipt, TransactionResolution,
};
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::message_id::new_message_ids;
use apogee_proto::{limits, time::duration, v2, ApogeeError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use v2::Code;

/// Where a sent message was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReceipt {
    pub message_id: String,
    pub queue_id: i32,
    /// Offset of the message in its queue.
    pub offset: i64,
    /// Broker group that stored the message.
    pub broker_name: String,
    /// For a scheduled (delayed) message: what [`Producer::recall`] takes to cancel it before
    /// its time; empty otherwise.
    pub recall_handle: String,
    /// The endpoint of the broker that answered (a slave that forwarded the send to its
    /// master answers for it).
    pub endpoint: String,
}

/// One stored message of a request: its receipt, its transaction id (empty
/// unless it is a half message) and the endpoint of the broker that stored it.
struct Stored {
    receipt: SendReceipt,
    transaction_id: String,
    endpoint: String,
}

/// How the messages of one request are sent.
#[derive(Clone, Copy, Debug, Default)]
struct SendKind {
    /// As half messages (message type TRANSACTION).
    transaction: bool,
    /// First check-back delay asked for a half message.
    check_delay: Option<Duration>,
}

/// Configures a [`Producer`]: the topics it declares and its transaction
/// checker.
pub struct ProducerBuilder {
    config: ClientConfig,
    topics: Vec<String>,
    checker: Option<Arc<dyn TransactionChecker>>,
}

impl ProducerBuilder {
    /// Declares a topic the producer sends to. Declared topics are
    /// announced in the Telemetry settings from the start (brokers look a
    /// producer up by topic for transaction check-backs), and `connect`
    /// fetches their routes and opens a session to each of their brokers.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Declares several topics (see [`ProducerBuilder::topic`]).
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Answers the brokers' transaction check-backs with `checker`. The
    /// producer then also keeps sessions open to the brokers of its topics.
    pub fn transaction_checker(mut self, checker: impl TransactionChecker + 'static) -> Self {
        self.checker = Some(Arc::new(checker));
        self
    }

    /// Creates the producer; with declared topics, fails when one of them
    /// has no route.
    pub async fn connect(self) -> Result<Producer> {
        for topic in &self.topics {
            limits::validate_topic(topic)?;
        }
        let remoting = (self.config.send_transport == SendTransport::Remoting)
            .then(|| Arc::new(RemotingSends::new(&self.config)));
        let core = Core::start(self.config, Role::Producer, self.checker)?;
        for topic in &self.topics {
            core.note_topic(topic);
        }
        for topic in &self.topics {
            core.open_sessions(topic).await?;
        }
        Ok(Producer {
            core,
            next: Arc::new(AtomicUsize::new(rand::random::<u16>() as usize)),
            remoting,
        })
    }
}

/// Sends messages. Cheap to clone; clones share connections and routes.
#[derive(Clone)]
pub struct Producer {
    core: Arc<Core>,
    next: Arc<AtomicUsize>,
    /// Sends over remoting ([`SendTransport::Remoting`]).
    remoting: Option<Arc<RemotingSends>>,
}

impl Producer {
    /// Creates a producer. Connections are made on first use.
    pub async fn connect(config: ClientConfig) -> Result<Producer> {
        Producer::builder(config).connect().await
    }

    /// Starts configuring a producer (declared topics, transaction checker).
    pub fn builder(config: ClientConfig) -> ProducerBuilder {
        ProducerBuilder {
            config,
            topics: Vec::new(),
            checker: None,
        }
    }

    /// The topics announced in the Telemetry settings: the declared ones
    /// and every topic sent to since.
    pub fn topics(&self) -> Vec<String> {
        self.core.topics()
    }

    /// Starts a transaction (one half message, then commit or rollback).
    pub fn begin_transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// Ends a transaction with EndTransaction (source `SOURCE_CLIENT`) at
    /// the broker that stored its half message, falling back to the
    /// NameServers (which forward it) when that broker cannot be reached.
    /// `Unknown` sends nothing: the broker's check-back decides later.
    pub async fn end_transaction(
        &self,
        receipt: &TransactionReceipt,
        resolution: TransactionResolution,
    ) -> Result<()> {
        if resolution == TransactionResolution::Unknown {
            return Ok(());
        }
        let req = end_request(
            self.core.resource(&receipt.topic),
            &receipt.message_id,
            &receipt.transaction_id,
            resolution,
            v2::TransactionSource::SourceClient,
        );
        let mut targets = vec![receipt.endpoint.clone()];
        for ns in &self.core.config.nameservers {
            if !targets.contains(ns) {
                targets.push(ns.clone());
            }
        }
        self.first_answer(&targets, req, |mut c, r| async move {
            c.end_transaction(r).await
        })
        .await
        .map(|_: v2::EndTransactionResponse| ())
    }

    /// Cancels a scheduled message before its time, through the NameServers (which forward it
    /// to the broker holding it); returns its message id. A message already delivered is
    /// refused with PRECONDITION_FAILED, an unknown handle with MESSAGE_NOT_FOUND.
    pub async fn recall(&self, topic: &str, recall_handle: &str) -> Result<String> {
        let req = v2::RecallMessageRequest {
            topic: Some(self.core.resource(topic)),
            recall_handle: recall_handle.to_string(),
        };
        let nameservers = self.core.config.nameservers.clone();
        let resp: v2::RecallMessageResponse = self
            .first_answer(&nameservers, req, |mut c, r| async move {
                c.recall_message(r).await
            })
            .await?;
        Ok(resp.message_id)
    }

    /// Sends `req` to the first of `targets` that answers; a retryable failure moves on to the
    /// next one. The answer's status must be OK.
    async fn first_answer<Req, Resp, F, Fut>(
        &self,
        targets: &[String],
        req: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        Resp: HasStatus,
        F: Fn(crate::transport::MessagingClient, tonic::Request<Req>) -> Fut,
        Fut:
            std::future::Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut first_err = None;
        for addr in targets.iter().filter(|a| !a.is_empty()) {
            let res = self
                .core
                .call(addr, req.clone(), self.core.config.request_timeout, &call)
                .await
                .and_then(|r: Resp| ClientError::check(r.status()).map(|()| r));
            match res {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() => {
                    tracing::debug!(endpoint = %addr, error = %e, "call failed, trying the next endpoint");
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err.unwrap_or_else(|| ClientError::NoRoute("no endpoint to call".into())))
    }

    /// Sends one half message (see [`Transaction::send`]).
    pub(crate) async fn send_half(
        &self,
        message: Message,
        check_delay: Option<Duration>,
    ) -> Result<TransactionReceipt> {
        let topic = message.topic.clone();
        let kind = SendKind {
            transaction: true,
            check_delay,
        };
        let stored = self
            .send_kind(vec![message], kind)
            .await?
            .pop()
            .ok_or_else(|| ClientError::Transport("no send result".into()))?;
        if stored.transaction_id.is_empty() {
            return Err(ClientError::Transport(format!(
                "broker {} stored message {} without a transaction id (is {topic} a transaction topic?)",
                stored.receipt.broker_name, stored.receipt.message_id
            )));
        }
        let r = stored.receipt;
        Ok(TransactionReceipt {
            topic,
            message_id: r.message_id,
            transaction_id: stored.transaction_id,
            queue_id: r.queue_id,
            offset: r.offset,
            broker_name: r.broker_name,
            endpoint: stored.endpoint,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.core.config
    }

    /// Largest body the servers accept (learned over Telemetry).
    pub fn max_body_size(&self) -> usize {
        self.core.sessions.body_limit.get()
    }

    /// Sends one message.
    pub async fn send(&self, message: Message) -> Result<SendReceipt> {
        let mut receipts = self.send_batch(vec![message]).await?;
        receipts
            .pop()
            .ok_or_else(|| ClientError::Transport("no send result".into()))
    }

    /// Sends messages of one topic as one request to one queue.
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<Vec<SendReceipt>> {
        if let Some(remoting) = &self.remoting {
            if messages.iter().all(crate::remoting::carries) {
                let topic = check_batch(&messages, self.max_body_size())?;
                self.core.note_topic(&topic);
                let ids = new_message_ids(messages.len());
                return remoting.send(&messages, &ids).await;
            }
        }
        let stored = self.send_kind(messages, SendKind::default()).await?;
        Ok(stored.into_iter().map(|s| s.receipt).collect())
    }

    async fn send_kind(&self, messages: Vec<Message>, kind: SendKind) -> Result<Vec<Stored>> {
        let topic = check_batch(&messages, self.max_body_size())?;
        self.core.note_topic(&topic);
        let ids = new_message_ids(messages.len());
        let message_group = messages[0].message_group.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let born_host = crate::config::hostname();
        let attempts = self.core.config.max_attempts.max(1);
        let mut avoid: Vec<String> = Vec::new();
        let mut attempt = 0;
        loop {
            let route = self.core.route(&topic).await?;
            let writable = route.writable_queues();
            let Some(queue) = (match &message_group {
                Some(group) => fifo_queue(writable, group),
                None => select_queue(writable, start + attempt as usize, &avoid),
            }) else {
                // A group without a master is presented read-only (by a slave) until the
                // controller elects one, seconds later: the next send fetches the route again
                // instead of keeping this one for the route's lifetime.
                self.core.routes.invalidate(&topic);
                return Err(ClientError::NoRoute(format!(
                    "topic {topic} has no writable queue"
                )));
            };
            let broker = broker_name(queue).to_string();
            let result = self.send_to(queue, &messages, &ids, &born_host, kind).await;
            attempt += 1;
            match result {
                Ok(receipts) => return Ok(receipts),
                Err(e) if may_resend(&e) && attempt < attempts => {
                    tracing::debug!(topic, broker, attempt, error = %e, "send failed, retrying");
                    self.core.routes.invalidate(&topic);
                    if !avoid.contains(&broker) {
                        avoid.push(broker);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    if e.may_mean_stale_route() {
                        self.core.routes.invalidate(&topic);
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn send_to(
        &self,
        queue: &v2::MessageQueue,
        messages: &[Message],
        ids: &[String],
        born_host: &str,
        kind: SendKind,
    ) -> Result<Vec<Stored>> {
        let addr = queue_endpoint(queue)
            .ok_or_else(|| ClientError::NoRoute("queue without endpoint".into()))?;
        let ns = &self.core.config.namespace;
        let born_ms = apogee_proto::time::now_ms();
        let req = v2::SendMessageRequest {
            messages: messages
                .iter()
                .zip(ids)
                .map(|(m, id)| {
                    let mut v = m.to_v2(ns, id, queue.id, born_host, born_ms);
                    if let (true, Some(sp)) = (kind.transaction, v.system_properties.as_mut()) {
                        sp.message_type = v2::MessageType::Transaction as i32;
                        sp.orphaned_transaction_recovery_duration = kind.check_delay.map(duration);
                    }
                    v
                })
                .collect(),
        };
        let resp = self
            .core
            .call(
                &addr,
                req,
                self.core.config.request_timeout,
                |mut c, r| async move { c.send_message(r).await },
            )
            .await?;
        let receipts = receipts(resp, ids, queue.id, broker_name(queue))?;
        Ok(receipts
            .into_iter()
            .map(|(receipt, transaction_id)| Stored {
                receipt: SendReceipt {
                    endpoint: addr.clone(),
                    ..receipt
                },
                transaction_id,
                endpoint: addr.clone(),
            })
            .collect())
    }

    /// Notifies the servers and closes the telemetry streams.
    pub async fn shutdown(self) {
        if let Some(remoting) = &self.remoting {
            remoting.close();
        }
        self.core.shutdown().await;
    }
}

/// The queue every FIFO message of `group` goes to while the writable queues
/// stay the same: a stable hash of the group (the same in every process and
/// build) over the queues sorted by broker name and queue id. Retries go to
/// the same queue, so one message group never spreads over two queues.
pub(crate) fn fifo_queue<'a>(
    queues: &'a [v2::MessageQueue],
    group: &str,
) -> Option<&'a v2::MessageQueue> {
    let mut sorted: Vec<&v2::MessageQueue> = queues.iter().collect();
    sorted.sort_by(|a, b| (broker_name(a), a.id).cmp(&(broker_name(b), b.id)));
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    Some(sorted[(fnv1a(group.as_bytes()) % n) as usize])
}

/// 64-bit FNV-1a: a hash whose value does not depend on the Rust release.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(6)).min(1000))
}

/// Whether a failed send may be sent again (to another queue or broker): a retryable failure
/// that does not say the message is stored. A SYNC_MASTER answers a send it stored without a
/// slave's copy HA_NOT_AVAILABLE or SLAVE_PERSISTENCE_TIMEOUT with the text of
/// [`ApogeeError::NotReplicated`] (docs/REPLICATION.md); resending it would store it twice.
/// HA_NOT_AVAILABLE with any other text is a refusal that stored nothing (a slave whose
/// master is away, a fenced member, a master without its lease during a failover): resent.
pub(crate) fn may_resend(e: &ClientError) -> bool {
    e.is_retryable()
        && !e.is_stored_not_replicated()
        && match e {
            ClientError::Server(ApogeeError::Unavailable(text)) => !says_stored(text),
            _ => e.code() != Some(Code::SlavePersistenceTimeout),
        }
}

/// Whether a server's text is that of a "stored on the master, not replicated" answer.
fn says_stored(text: &str) -> bool {
    [
        ApogeeError::NotReplicated(String::new()).to_string(),
        ApogeeError::SlavePersistenceTimeout(String::new()).to_string(),
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix.as_str()))
}

impl ClientError {
    /// A send was answered "stored on the master, not replicated" (a SYNC_MASTER without a
    /// slave in sync, or whose slave did not confirm in time): the message IS stored and will
    /// be delivered; only the slave's copy is missing. The producer never resends it; the
    /// error (`ApogeeError::NotReplicated` or `ApogeeError::SlavePersistenceTimeout`) names the
    /// message ids, the broker, queue and offsets.
    pub fn is_stored_not_replicated(&self) -> bool {
        matches!(
            self,
            ClientError::Server(
                ApogeeError::NotReplicated(_) | ApogeeError::SlavePersistenceTimeout(_)
            )
        )
    }
}

/// The distinct error of a send answered HA_NOT_AVAILABLE or SLAVE_PERSISTENCE_TIMEOUT
/// (stored, not replicated), naming where each message is stored; `None` for other answers.
fn stored_not_replicated(
    resp: &v2::SendMessageResponse,
    ids: &[String],
    queue_id: i32,
    broker: &str,
) -> Option<ClientError> {
    let status = resp.status.as_ref()?;
    let code = Code::try_from(status.code).ok()?;
    let timed_out = match code {
        // A refusal that stored nothing (not the master now) says so in its own words.
        Code::HaNotAvailable if !says_stored(&status.message) => return None,
        Code::HaNotAvailable => false,
        Code::SlavePersistenceTimeout => true,
        _ => return None,
    };
    // The server's text is the error's own display ("stored on the master, ...: reason").
    let reason = [
        ApogeeError::NotReplicated(String::new()).to_string(),
        ApogeeError::SlavePersistenceTimeout(String::new()).to_string(),
    ]
    .iter()
    .find_map(|prefix| status.message.strip_prefix(prefix.as_str()))
    .unwrap_or(&status.message)
    .to_string();
    let stored: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let entry = resp.entries.get(i);
            let id = entry
                .map(|e| e.message_id.as_str())
                .filter(|m| !m.is_empty())
                .unwrap_or(id);
            match entry {
                Some(e) => format!("message {id} (queue {queue_id}, offset {})", e.offset),
                None => format!("message {id} (queue {queue_id})"),
            }
        })
        .collect();
    let detail = format!("{} on broker {broker}: {reason}", stored.join(", "));
    Some(ClientError::Server(if timed_out {
        ApogeeError::SlavePersistenceTimeout(detail)
    } else {
        ApogeeError::NotReplicated(detail)
    }))
}

/// Checks a batch locally; returns its topic.
pub(crate) fn check_batch(messages: &[Message], max_body: usize) -> Result<String> {
    let first = messages
        .first()
        .ok_or_else(|| ClientError::Config("nothing to send: the batch is empty".into()))?;
    if messages.len() > limits::MAX_BATCH_MESSAGES {
        return Err(ApogeeError::PayloadTooLarge(format!(
            "{} messages in one batch, the limit is {}",
            messages.len(),
            limits::MAX_BATCH_MESSAGES
        ))
        .into());
    }
    let mut total = 0usize;
    for m in messages {
        if m.topic != first.topic {
            return Err(ClientError::Config(format!(
                "a batch must have one topic, found {} and {}",
                first.topic, m.topic
            )));
        }
        if m.message_group != first.message_group {
            return Err(ClientError::Config(
                "a batch must have one message group (or none)".into(),
            ));
        }
        if m.message_type() != first.message_type() || m.lite_topic != first.lite_topic {
            return Err(ClientError::Config(
                "a batch must have one message type (and one lite topic, or none)".into(),
            ));
        }
        m.validate(max_body)?;
        total += m.body.len()
            + m.properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
    }
    if total > limits::MAX_BATCH_BYTES {
        return Err(ApogeeError::PayloadTooLarge(format!(
            "the batch has {total} bytes, the limit is {}",
            limits::MAX_BATCH_BYTES
        ))
        .into());
    }
    Ok(first.topic.clone())
}

/// Turns a SendMessage response into one receipt (and transaction id,
/// empty for plain messages) per sent message.
pub(crate) fn receipts(
    resp: v2::SendMessageResponse,
    ids: &[String],
    queue_id: i32,
    broker: &str,
) -> Result<Vec<(SendReceipt, String)>> {
    if let Some(e) = stored_not_replicated(&resp, ids, queue_id, broker) {
        return Err(e);
    }
    ClientError::check(resp.status.as_ref())?;
    if resp.entries.len() != ids.len() {
        return Err(ClientError::Transport(format!(
            "broker {broker} returned {} results for {} messages",
            resp.entries.len(),
            ids.len()
        )));
    }
    resp.entries
        .into_iter()
        .zip(ids)
        .map(|(entry, id)| {
            if let Some(status) = &entry.status {
                ClientError::check(Some(status))?;
            }
            let receipt = SendReceipt {
                message_id: if entry.message_id.is_empty() {
                    id.clone()
                } else {
                    entry.message_id
                },
                queue_id,
                offset: entry.offset,
                broker_name: broker.to_string(),
                recall_handle: entry.recall_handle,
                endpoint: String::new(),
            };
            Ok((receipt, entry.transaction_id))
        })
        .collect()
}

/// A response that carries its outcome in a status.
trait HasStatus {
    fn status(&self) -> Option<&v2::Status>;
}

impl HasStatus for v2::EndTransactionResponse {
    fn status(&self) -> Option<&v2::Status> {
        self.status.as_ref()
    }
}

impl HasStatus for v2::RecallMessageResponse {
    fn status(&self) -> Option<&v2::Status> {
        self.status.as_ref()
    }
}

#[cfg(test)]
#[path = "producer_tests.rs"]
mod tests;

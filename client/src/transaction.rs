//! Transactional messages, RocketMQ 5 style: a producer sends one *half*
//! message (stored by the broker, invisible to consumers) and then commits
//! or rolls it back with EndTransaction at the broker that stored it. When
//! no outcome arrives in time, the broker asks a producer of the topic over
//! its Telemetry stream (RecoverOrphanedTransactionCommand); the registered
//! [`TransactionChecker`] decides, and the answer goes back as an
//! EndTransaction with source `SOURCE_SERVER_CHECK` to the endpoint whose
//! stream carried the question.
//!
//! - [`Transaction`]: one transaction of a [`Producer`], from
//!   [`Producer::begin_transaction`]; carries exactly one message.
//! - [`TransactionReceipt`]: where the half message went and its ids.
//! - [`TransactionChecker`], [`TransactionCheck`] and
//!   [`TransactionResolution`]: the check-back side.
//!
//! ```no_run
//! # async fn demo() -> apogee_client::Result<()> {
//! use apogee_client::{ClientConfig, Message, Producer, TransactionCheck, TransactionResolution};
//! let producer = Producer::builder(ClientConfig::new("127.0.0.1:9876"))
//!     .topic("orders")
//!     .transaction_checker(|_check: &TransactionCheck| {
//!         // Look the order up by _check.message.keys, _check.transaction_id ...
//!         TransactionResolution::Commit
//!     })
//!     .connect()
//!     .await?;
//! let mut txn = producer.begin_transaction();
//! let receipt = txn.send(Message::new("orders", "order-42")).await?;
//! // ... local transaction ...
//! txn.commit().await?;
//! println!("committed {}", receipt.transaction_id);
//! # Ok(()) }
//! ```

use crate::message::{Message, ReceivedMessage};
use crate::producer::Producer;
use crate::transport::{request, MessagingClient};
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::{v2, ApogeeError};
use std::sync::Arc;
use std::time::Duration;

/// The outcome of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionResolution {
    /// Publish the message to consumers.
    Commit,
    /// Discard the message.
    Rollback,
    /// Not decided yet: the broker asks again later.
    Unknown,
}

impl TransactionResolution {
    /// The protocol value (`Unknown` is `TRANSACTION_RESOLUTION_UNSPECIFIED`).
    pub fn to_v2(self) -> v2::TransactionResolution {
        match self {
            TransactionResolution::Commit => v2::TransactionResolution::Commit,
            TransactionResolution::Rollback => v2::TransactionResolution::Rollback,
            TransactionResolution::Unknown => v2::TransactionResolution::Unspecified,
        }
    }
}

/// A broker's question about a transaction it has no outcome for.
#[derive(Clone, Debug, PartialEq)]
pub struct TransactionCheck {
    pub transaction_id: String,
    /// The half message as the broker stored it. `endpoint` and
    /// `broker_name` say where the question came from (`broker_name` is
    /// empty: the command does not carry it); the receipt handle is empty.
    pub message: ReceivedMessage,
}

/// Decides the outcome of transactions the broker checks back on.
///
/// Called on a blocking thread (`spawn_blocking`), so it may block, e.g. on
/// a database query. Any `Fn(&TransactionCheck) -> TransactionResolution`
/// closure is a checker.
pub trait TransactionChecker: Send + Sync {
    fn check(&self, check: &TransactionCheck) -> TransactionResolution;
}

impl<F> TransactionChecker for F
where
    F: Fn(&TransactionCheck) -> TransactionResolution + Send + Sync,
{
    fn check(&self, check: &TransactionCheck) -> TransactionResolution {
        self(check)
    }
}

/// Where a half message was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionReceipt {
    pub topic: String,
    pub message_id: String,
    /// The broker's id of the transaction (for EndTransaction and the
    /// `apogee txn` commands).
    pub transaction_id: String,
    pub queue_id: i32,
    /// Offset of the half message (not of the published message).
    pub offset: i64,
    /// Broker group that stored the half message.
    pub broker_name: String,
    /// `host:port` of that broker; EndTransaction goes there.
    pub endpoint: String,
}

/// One transaction: at most one message (the protocol ties a transaction
/// id to one half message), then [`Transaction::commit`] or
/// [`Transaction::rollback`]. Dropping it without either leaves the
/// outcome to the broker's check-back.
pub struct Transaction {
    producer: Producer,
    check_delay: Option<Duration>,
    sent: Option<TransactionReceipt>,
}

impl Transaction {
    pub(crate) fn new(producer: Producer) -> Self {
        Transaction {
            producer,
            check_delay: None,
            sent: None,
        }
    }

    /// Asks the broker to wait `delay` before its first check-back
    /// (`orphaned_transaction_recovery_duration`) instead of its default.
    pub fn with_check_delay(mut self, delay: Duration) -> Self {
        self.check_delay = Some(delay);
        self
    }

    /// Sends the transaction's message as a half message. A second send
    /// after a successful one is refused; after a failed one the
    /// transaction is still empty and the send may be repeated.
    pub async fn send(&mut self, message: Message) -> Result<TransactionReceipt> {
        if let Some(r) = &self.sent {
            return Err(ClientError::Config(format!(
                "a transaction carries one message; transaction {} already has message {}",
                r.transaction_id, r.message_id
            )));
        }
        check_transactional(&message)?;
        let receipt = self.producer.send_half(message, self.check_delay).await?;
        self.sent = Some(receipt.clone());
        Ok(receipt)
    }

    /// The half message's receipt, once sent.
    pub fn receipt(&self) -> Option<&TransactionReceipt> {
        self.sent.as_ref()
    }

    /// Publishes the message. Repeating a successful commit is harmless.
    pub async fn commit(&self) -> Result<()> {
        self.end(TransactionResolution::Commit).await
    }

    /// Discards the message.
    pub async fn rollback(&self) -> Result<()> {
        self.end(TransactionResolution::Rollback).await
    }

    async fn end(&self, resolution: TransactionResolution) -> Result<()> {
        let receipt = self.sent.as_ref().ok_or_else(|| {
            ClientError::Config("the transaction has no message yet: send one first".into())
        })?;
        self.producer.end_transaction(receipt, resolution).await
    }
}

/// A transactional message can be neither FIFO nor delayed.
pub(crate) fn check_transactional(message: &Message) -> Result<()> {
    if message.message_group.is_some() || message.delivery_timestamp.is_some() {
        return Err(ApogeeError::MessageTypeConflict(
            "a transactional message cannot have a message group or a delivery time".into(),
        )
        .into());
    }
    Ok(())
}

/// An EndTransaction request.
pub(crate) fn end_request(
    topic: v2::Resource,
    message_id: &str,
    transaction_id: &str,
    resolution: TransactionResolution,
    source: v2::TransactionSource,
) -> v2::EndTransactionRequest {
    v2::EndTransactionRequest {
        topic: Some(topic),
        message_id: message_id.to_string(),
        transaction_id: transaction_id.to_string(),
        resolution: resolution.to_v2() as i32,
        source: source as i32,
        trace_context: String::new(),
    }
}

/// Sends one EndTransaction over `client` and checks the answer.
pub(crate) async fn send_end(
    mut client: MessagingClient,
    config: &ClientConfig,
    req: v2::EndTransactionRequest,
) -> Result<()> {
    let timeout = config.request_timeout;
    let call = client.end_transaction(request(config, req, timeout));
    let resp = tokio::time::timeout(timeout + Duration::from_millis(500), call).await??;
    ClientError::check(resp.into_inner().status.as_ref())
}

/// What a telemetry stream needs to answer check-backs: the checker and
/// the stub of the endpoint the stream is connected to.
#[derive(Clone)]
pub(crate) struct CheckResponder {
    pub(crate) checker: Arc<dyn TransactionChecker>,
    pub(crate) client: MessagingClient,
    pub(crate) config: ClientConfig,
    pub(crate) endpoint: String,
}

impl CheckResponder {
    /// Answers the command in the background (the stream keeps reading).
    pub(crate) fn spawn(&self, cmd: v2::RecoverOrphanedTransactionCommand) {
        let me = self.clone();
        tokio::spawn(async move {
            let id = cmd.transaction_id.clone();
            match me.answer(cmd).await {
                Ok(resolution) => tracing::debug!(
                    endpoint = %me.endpoint, transaction_id = %id, ?resolution,
                    "transaction check answered"
                ),
                Err(e) => tracing::warn!(
                    endpoint = %me.endpoint, transaction_id = %id, error = %e,
                    "transaction check not answered"
                ),
            }
        });
    }

    async fn answer(
        &self,
        cmd: v2::RecoverOrphanedTransactionCommand,
    ) -> Result<TransactionResolution> {
        let (topic, check) = parse_check(cmd, &self.endpoint)?;
        let checker = self.checker.clone();
        let asked = check.clone();
        let resolution = tokio::task::spawn_blocking(move || checker.check(&asked))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "transaction checker panicked; answering unknown");
                TransactionResolution::Unknown
            });
        let req = end_request(
            topic,
            &check.message.message_id,
            &check.transaction_id,
            resolution,
            v2::TransactionSource::SourceServerCheck,
        );
        send_end(self.client.clone(), &self.config, req).await?;
        Ok(resolution)
    }
}

/// The topic resource (namespace kept) and the check a command asks for;
/// an error when it lacks the transaction id, the message, its topic or
/// its message id.
pub(crate) fn parse_check(
    cmd: v2::RecoverOrphanedTransactionCommand,
    endpoint: &str,
) -> Result<(v2::Resource, TransactionCheck)> {
    let bad = |what: &str| ClientError::Transport(format!("transaction check without {what}"));
    if cmd.transaction_id.is_empty() {
        return Err(bad("a transaction id"));
    }
    let message = cmd.message.ok_or_else(|| bad("a message"))?;
    let topic = message
        .topic
        .clone()
        .filter(|t| !t.name.is_empty())
        .ok_or_else(|| bad("a topic"))?;
    let message = ReceivedMessage::from_v2(message, "", endpoint);
    if message.message_id.is_empty() {
        return Err(bad("a message id"));
    }
    Ok((
        topic,
        TransactionCheck {
            transaction_id: cmd.transaction_id,
            message,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(topic: &str, id: &str, txn: &str) -> v2::RecoverOrphanedTransactionCommand {
        v2::RecoverOrphanedTransactionCommand {
            message: Some(v2::Message {
                topic: Some(v2::Resource {
                    resource_namespace: "ns".into(),
                    name: topic.into(),
                }),
                user_properties: Default::default(),
                system_properties: Some(v2::SystemProperties {
                    message_id: id.into(),
                    tag: Some("A".into()),
                    ..Default::default()
                }),
                body: bytes::Bytes::from_static(b"order-1"),
            }),
            transaction_id: txn.into(),
        }
    }

    #[test]
    fn resolutions_map_to_the_protocol() {
        use TransactionResolution::*;
        assert_eq!(Commit.to_v2(), v2::TransactionResolution::Commit);
        assert_eq!(Rollback.to_v2(), v2::TransactionResolution::Rollback);
        assert_eq!(Unknown.to_v2(), v2::TransactionResolution::Unspecified);
        let req = end_request(
            v2::Resource::default(),
            "M",
            "T1",
            Unknown,
            v2::TransactionSource::SourceServerCheck,
        );
        assert_eq!(req.resolution, 0);
        assert_eq!(req.source, v2::TransactionSource::SourceServerCheck as i32);
        assert_eq!(
            (req.message_id.as_str(), req.transaction_id.as_str()),
            ("M", "T1")
        );
    }

    #[test]
    fn checks_are_parsed_with_their_namespace() {
        let (topic, check) = parse_check(command("T", "M1", "X1"), "h:1").unwrap();
        assert_eq!(
            (topic.resource_namespace.as_str(), topic.name.as_str()),
            ("ns", "T")
        );
        assert_eq!(check.transaction_id, "X1");
        assert_eq!(check.message.message_id, "M1");
        assert_eq!(check.message.topic, "T");
        assert_eq!(check.message.endpoint, "h:1");
        assert_eq!(&check.message.body[..], b"order-1");
        assert_eq!(check.message.tag.as_deref(), Some("A"));
    }

    #[test]
    fn incomplete_checks_are_refused() {
        assert!(parse_check(command("T", "M", ""), "h:1").is_err());
        assert!(parse_check(command("", "M", "X"), "h:1").is_err());
        assert!(parse_check(command("T", "", "X"), "h:1").is_err());
        let mut no_message = command("T", "M", "X");
        no_message.message = None;
        assert!(parse_check(no_message, "h:1").is_err());
    }

    #[test]
    fn closures_are_checkers_and_fifo_or_delay_is_refused() {
        let checker: Arc<dyn TransactionChecker> =
            Arc::new(|c: &TransactionCheck| match c.message.tag.as_deref() {
                Some("A") => TransactionResolution::Commit,
                _ => TransactionResolution::Unknown,
            });
        let (_, check) = parse_check(command("T", "M", "X"), "h:1").unwrap();
        assert_eq!(checker.check(&check), TransactionResolution::Commit);
        assert!(check_transactional(&Message::new("T", "x")).is_ok());
        let fifo = Message::builder("T", "x").message_group("g").build();
        assert_eq!(
            check_transactional(&fifo).unwrap_err().code(),
            Some(v2::Code::MessagePropertyConflictWithType)
        );
        let delayed = Message::builder("T", "x")
            .deliver_after(Duration::from_secs(1))
            .build();
        assert!(check_transactional(&delayed).is_err());
    }
}

//! Sending over the client library's Producer, as `apogee send` and the console's test
//! message do: plain, or each copy as its own transaction (a half message) committed, rolled
//! back or left open. (Consuming, which only the CLI does, is apogee-tools' `consume`.)
//!
//! `send` checks the body against the limit the brokers announce in their
//! Telemetry Settings (`publishing.max_body_size`, from the broker setting
//! `max_body_bytes`), not a limit of its own.

use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use crate::spelling::Spelled;
use apogee_client::{ClientConfig, Message, Producer, SendReceipt, TransactionReceipt};
use futures::StreamExt;
use serde::Serialize;
use std::future::Future;

/// Sends in flight at once for `send --count`.
const SEND_CONCURRENCY: usize = 16;
/// One sent message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SendRow {
    pub message_id: String,
    pub queue_id: i32,
    pub offset: i64,
    pub broker: String,
}

impl TableRow for SendRow {
    fn headers() -> Vec<&'static str> {
        vec!["MESSAGE ID", "QUEUE", "OFFSET", "BROKER"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.message_id.clone(),
            self.queue_id.to_string(),
            self.offset.to_string(),
            self.broker.clone(),
        ]
    }
}

/// What `send` asks for.
#[derive(Clone, Debug)]
pub struct SendSpec {
    pub topic: String,
    pub body: Vec<u8>,
    pub properties: Vec<(String, String)>,
    pub count: u32,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    /// A priority (type PRIORITY).
    pub priority: Option<u32>,
    /// A lite topic under the (LITE parent) topic (type LITE).
    pub lite_topic: Option<String>,
    /// The message group (type FIFO): messages of one group are received in order.
    pub message_group: Option<String>,
}

impl From<SendReceipt> for SendRow {
    fn from(r: SendReceipt) -> Self {
        SendRow {
            message_id: r.message_id,
            queue_id: r.queue_id,
            offset: r.offset,
            broker: r.broker_name,
        }
    }
}

/// How `send --transaction` ends each transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnEnd {
    Commit,
    Rollback,
    /// Leave it open: the broker's check-back (or `apogee txn`) decides.
    Open,
}

impl Spelled for TxnEnd {
    const SPELLINGS: &'static [(TxnEnd, &'static str, &'static str)] = &[
        (TxnEnd::Commit, "commit", ""),
        (TxnEnd::Rollback, "rollback", ""),
        (
            TxnEnd::Open,
            "open",
            "Leave it open: the broker's check-back (or `apogee txn`) decides",
        ),
    ];
}

impl TxnEnd {
    /// The transaction's state afterwards, named as `apogee txn list` does.
    pub fn state(self) -> &'static str {
        match self {
            TxnEnd::Commit => "COMMITTED",
            TxnEnd::Rollback => "ROLLED_BACK",
            TxnEnd::Open => "PENDING",
        }
    }
}

/// One message sent in its own transaction.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TxnSendRow {
    pub message_id: String,
    pub transaction_id: String,
    /// COMMITTED, ROLLED_BACK or PENDING.
    pub state: String,
    pub queue_id: i32,
    /// Offset of the half message.
    pub offset: i64,
    pub broker: String,
}

impl TableRow for TxnSendRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "MESSAGE ID",
            "TRANSACTION ID",
            "STATE",
            "QUEUE",
            "OFFSET",
            "BROKER",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.message_id.clone(),
            self.transaction_id.clone(),
            self.state.clone(),
            self.queue_id.to_string(),
            self.offset.to_string(),
            self.broker.clone(),
        ]
    }
}

impl TxnSendRow {
    fn new(r: TransactionReceipt, end: TxnEnd) -> Self {
        TxnSendRow {
            message_id: r.message_id,
            transaction_id: r.transaction_id,
            state: end.state().to_string(),
            queue_id: r.queue_id,
            offset: r.offset,
            broker: r.broker_name,
        }
    }
}

pub(crate) fn build_message(spec: &SendSpec) -> Message {
    let mut builder =
        Message::builder(spec.topic.clone(), spec.body.clone()).keys(spec.keys.clone());
    if let Some(tag) = &spec.tag {
        builder = builder.tag(tag.clone());
    }
    for (k, v) in &spec.properties {
        builder = builder.property(k.clone(), v.clone());
    }
    if let Some(p) = spec.priority {
        builder = builder.priority(p);
    }
    if let Some(lite) = &spec.lite_topic {
        builder = builder.lite_topic(lite);
    }
    if let Some(group) = &spec.message_group {
        builder = builder.message_group(group.clone());
    }
    builder.build()
}

/// Runs `op` `count` times, [`SEND_CONCURRENCY`] at once; returns the
/// results that succeeded (in order, up to the first failure) and that
/// failure.
pub(crate) async fn send_each<R, F, Fut>(count: u32, op: F) -> (Vec<R>, Option<ToolError>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ToolResult<R>>,
{
    let mut results = futures::stream::iter(0..count)
        .map(|_| op())
        .buffered(SEND_CONCURRENCY);
    let mut rows = Vec::new();
    while let Some(res) = results.next().await {
        match res {
            Ok(r) => rows.push(r),
            Err(e) => return (rows, Some(e)),
        }
    }
    (rows, None)
}

/// The broker setting that bounds a body, as `send` names it.
pub const BODY_LIMIT_SETTING: &str = "max_body_bytes";

/// A producer for `spec`'s topic, connected to the topic's brokers so that it knows the
/// cluster's body limit (their Settings' `publishing.max_body_size`); refuses a body above it.
pub(crate) async fn producer_for(config: ClientConfig, spec: &SendSpec) -> ToolResult<Producer> {
    let producer = Producer::builder(config)
        .topic(&spec.topic)
        .connect()
        .await?;
    if let Err(e) = check_body_size(spec.body.len(), producer.max_body_size()) {
        producer.shutdown().await;
        return Err(e);
    }
    Ok(producer)
}

/// A body of `size` bytes against the cluster's limit; the error names the setting.
pub fn check_body_size(size: usize, limit: usize) -> ToolResult<()> {
    if size <= limit {
        return Ok(());
    }
    Err(ToolError::Input(format!(
        "the message body of {size} bytes exceeds the cluster's limit of {limit} bytes (the \
         `{BODY_LIMIT_SETTING}` setting of the brokers and NameServers, announced to clients as \
         publishing.max_body_size)"
    )))
}

/// Sends `count` copies of the message; returns the receipts of the sends
/// that succeeded (in order, up to the first failure) and that failure.
pub async fn send(config: ClientConfig, spec: &SendSpec) -> (Vec<SendRow>, Option<ToolError>) {
    let producer = match producer_for(config, spec).await {
        Ok(p) => p,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let message = build_message(spec);
    let out = send_each(spec.count, || {
        let producer = producer.clone();
        let message = message.clone();
        async move { Ok(SendRow::from(producer.send(message).await?)) }
    })
    .await;
    producer.shutdown().await;
    out
}

/// Sends `count` copies of the message, each in its own transaction, and
/// ends each as `end` says; returns the rows of the transactions that went
/// through (in order, up to the first failure) and that failure. A failed
/// commit or rollback names the transaction left open.
pub async fn send_transactional(
    config: ClientConfig,
    spec: &SendSpec,
    end: TxnEnd,
) -> (Vec<TxnSendRow>, Option<ToolError>) {
    let producer = match producer_for(config, spec).await {
        Ok(p) => p,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let message = build_message(spec);
    let out = send_each(spec.count, || {
        let mut txn = producer.begin_transaction();
        let message = message.clone();
        async move {
            let receipt = txn.send(message).await?;
            let ended = match end {
                TxnEnd::Commit => txn.commit().await,
                TxnEnd::Rollback => txn.rollback().await,
                TxnEnd::Open => Ok(()),
            };
            if let Err(e) = ended {
                let verb = if end == TxnEnd::Commit {
                    "commit"
                } else {
                    "rollback"
                };
                return Err(ToolError::Server(format!(
                    "message {} was sent as transaction {}, but its {verb} failed: {e}; \
                     end it with `apogee txn {verb} {}`",
                    receipt.message_id, receipt.transaction_id, receipt.transaction_id
                )));
            }
            Ok(TxnSendRow::new(receipt, end))
        }
    })
    .await;
    producer.shutdown().await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    #[test]
    fn send_rows_render_as_table_and_json() {
        let rows = vec![SendRow {
            message_id: "01AB".into(),
            queue_id: 2,
            offset: 17,
            broker: "broker-a".into(),
        }];
        assert_eq!(
            render_list(&rows, Format::Table),
            "MESSAGE ID  QUEUE  OFFSET  BROKER\n01AB        2      17      broker-a\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render_list(&rows, Format::Json)).unwrap();
        assert_eq!(v[0]["message_id"], "01AB");
        assert_eq!(v[0]["queue_id"], 2);
        assert_eq!(v[0]["offset"], 17);
        assert_eq!(v[0]["broker"], "broker-a");
    }

    #[test]
    fn transactional_send_rows_carry_the_transaction() {
        let receipt = TransactionReceipt {
            topic: "T".into(),
            message_id: "01AB".into(),
            transaction_id: "TX1".into(),
            queue_id: 1,
            offset: 4,
            broker_name: "broker-a".into(),
            endpoint: "h:1".into(),
        };
        let rows = vec![TxnSendRow::new(receipt, TxnEnd::Open)];
        assert_eq!(
            render_list(&rows, Format::Table),
            "MESSAGE ID  TRANSACTION ID  STATE    QUEUE  OFFSET  BROKER\n\
             01AB        TX1             PENDING  1      4       broker-a\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render_list(&rows, Format::Json)).unwrap();
        assert_eq!(v[0]["transaction_id"], "TX1");
        assert_eq!(v[0]["state"], "PENDING");
        assert_eq!(v[0]["message_id"], "01AB");
        assert_eq!(v[0]["broker"], "broker-a");
        assert_eq!(TxnEnd::Commit.state(), "COMMITTED");
        assert_eq!(TxnEnd::Rollback.state(), "ROLLED_BACK");
    }

    #[test]
    fn bodies_above_the_cluster_limit_name_the_setting() {
        assert!(check_body_size(1024, 1024).is_ok());
        let e = check_body_size(2_000_000, 1_048_576).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("2000000 bytes")
                && text.contains("limit of 1048576 bytes")
                && text.contains("`max_body_bytes`"),
            "{text}"
        );
    }
}

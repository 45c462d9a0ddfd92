//! `apogee send` and `apogee consume`: thin commands over the client
//! library's Producer and SimpleConsumer. `send --transaction` sends each
//! copy as its own transaction (a half message) and commits it, rolls it
//! back or leaves it open.
//!
//! `consume` prints each batch before it acknowledges it, so it never acks
//! a message it did not print; messages beyond `--max` are left unacked and
//! come back after their invisible duration. With `--nack` it acknowledges
//! nothing: every message comes back after its invisible duration with its
//! delivery attempt raised, until the group's max attempts send it to
//! `%DLQ%<group>`. Ctrl-C (SIGINT) ends it with the output complete (a JSON
//! array closed).
//!
//! `send` checks the body against the limit the brokers announce in their
//! Telemetry Settings (`publishing.max_body_size`, from the broker setting
//! `max_body_bytes`), not a limit of its own.

use crate::error::{ToolError, ToolResult};
use crate::group::created_note;
use crate::output::{one_line, Format, StreamWriter, TableRow};
use crate::spelling::Spelled;
use apogee_client::{
    ClientConfig, FilterExpression, Message, Producer, ReceivedMessage, SendReceipt,
    SimpleConsumer, TransactionReceipt,
};
use futures::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

/// Sends in flight at once for `send --count`.
const SEND_CONCURRENCY: usize = 16;
/// Messages asked for per receive.
const RECEIVE_BATCH: u32 = 32;
/// Shortest time between two empty receives.
const EMPTY_PAUSE: Duration = Duration::from_millis(200);

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

/// One consumed message.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConsumedRow {
    pub message_id: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: i64,
    pub delivery_attempt: i32,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    /// User properties, by key.
    pub properties: std::collections::BTreeMap<String, String>,
    /// The body in `body_format`: never a lossy decoding.
    pub body: String,
    /// "utf8" (the body is valid UTF-8 text), "hex" or "base64".
    pub body_format: &'static str,
    /// Body bytes.
    pub body_size: usize,
    /// Where the whole body was written (`--out-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    pub broker: String,
    /// When the broker stored it (for a scheduled message: when it was published).
    pub store_timestamp_ms: i64,
    /// The delivery time a scheduled message asked for.
    pub delivery_timestamp_ms: Option<i64>,
}

/// How `consume` writes bodies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFormat {
    /// UTF-8 text when the body is valid UTF-8, else hex.
    #[default]
    Text,
    /// Always lower-case hex.
    Hex,
    /// Always base64 (standard alphabet, padded).
    Base64,
}

impl Spelled for BodyFormat {
    const SPELLINGS: &'static [(BodyFormat, &'static str, &'static str)] = &[
        (
            BodyFormat::Text,
            "text",
            "UTF-8 text when the body is valid UTF-8, else hex",
        ),
        (BodyFormat::Hex, "hex", "Always lower-case hex"),
        (
            BodyFormat::Base64,
            "base64",
            "Always base64 (standard alphabet, padded)",
        ),
    ];
}

impl BodyFormat {
    /// The body in this format, with the format's name.
    pub fn render(self, body: &[u8]) -> (String, &'static str) {
        match self {
            BodyFormat::Text => crate::message_query::body_text(body),
            BodyFormat::Hex => (body.iter().map(|b| format!("{b:02x}")).collect(), "hex"),
            BodyFormat::Base64 => (
                base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, body),
                "base64",
            ),
        }
    }
}

impl ConsumedRow {
    pub fn new(m: &ReceivedMessage, format: BodyFormat) -> Self {
        let (body, body_format) = format.render(&m.body);
        ConsumedRow {
            body,
            body_format,
            body_size: m.body.len(),
            body_file: None,
            message_id: m.message_id.clone(),
            topic: m.topic.clone(),
            queue_id: m.queue_id,
            offset: m.queue_offset,
            delivery_attempt: m.delivery_attempt,
            tag: m.tag.clone(),
            keys: m.keys.clone(),
            properties: m
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            broker: m.broker_name.clone(),
            store_timestamp_ms: m.store_timestamp_ms,
            delivery_timestamp_ms: m.delivery_timestamp_ms,
        }
    }
}

impl TableRow for ConsumedRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "MESSAGE ID",
            "BROKER",
            "QUEUE",
            "OFFSET",
            "ATTEMPT",
            "TAG",
            "KEYS",
            "PROPERTIES",
            "BODY",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.message_id.clone(),
            self.broker.clone(),
            self.queue_id.to_string(),
            self.offset.to_string(),
            self.delivery_attempt.to_string(),
            one_line(self.tag.as_deref().unwrap_or("-")),
            if self.keys.is_empty() {
                "-".to_string()
            } else {
                one_line(&self.keys.join(","))
            },
            crate::message_query::properties_cell(&self.properties),
            // A preview: a large or binary body must not flood the terminal (JSON has it whole).
            crate::message_query::short_body(&self.body),
        ]
    }
}

/// Minimum column widths of the streamed consume table.
pub const CONSUME_WIDTHS: [usize; 8] = [34, 8, 5, 8, 7, 8, 8, 10];

/// What `consume` asks for.
#[derive(Clone, Debug)]
pub struct ConsumeSpec {
    pub topic: String,
    pub group: String,
    pub max: u32,
    pub wait: Duration,
    pub invisible: Duration,
    /// Acknowledge nothing: every message comes back after `invisible`.
    pub nack: bool,
    /// Tag expression or SQL92 filter, evaluated on the broker.
    pub filter: FilterExpression,
    /// How bodies are printed.
    pub body_format: BodyFormat,
    /// Write each whole body to `<dir>/<message id>.body`.
    pub out_dir: Option<std::path::PathBuf>,
}

/// Receives, prints and then acks (with `nack`: leaves) up to `max` messages; stops after
/// `wait` with nothing new, or at Ctrl-C (SIGINT, [`ToolError::Interrupted`]) with what was
/// printed complete. Returns how many were printed.
pub async fn consume<W: Write>(
    config: ClientConfig,
    spec: &ConsumeSpec,
    out: W,
    format: Format,
) -> ToolResult<usize> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut writer =
        StreamWriter::new(out, format, ConsumedRow::headers(), CONSUME_WIDTHS.to_vec());
    let connect = SimpleConsumer::connect(
        config,
        spec.group.clone(),
        vec![(spec.topic.clone(), spec.filter.clone())],
    );
    let consumer = tokio::select! {
        c = connect => c?,
        _ = &mut interrupted => {
            writer.finish()?;
            return Err(ToolError::Interrupted);
        }
    };
    let outcome = tokio::select! {
        r = consume_loop(&consumer, spec, &mut writer) => r,
        _ = &mut interrupted => Err(ToolError::Interrupted),
    };
    let printed = writer.finish()?;
    if matches!(outcome, Err(ToolError::Interrupted)) {
        // Interrupted: no goodbye to the servers (the process ends; they time the client out).
        return Err(ToolError::Interrupted);
    }
    consumer.shutdown().await;
    outcome.map(|()| printed)
}

async fn consume_loop<W: Write>(
    consumer: &SimpleConsumer,
    spec: &ConsumeSpec,
    writer: &mut StreamWriter<W>,
) -> ToolResult<()> {
    let mut printed: u32 = 0;
    let mut ack_failures: Vec<String> = Vec::new();
    let mut last_new = Instant::now();
    while printed < spec.max {
        let left = spec.wait.saturating_sub(last_new.elapsed());
        let batch = (spec.max - printed).min(RECEIVE_BATCH);
        let asked = Instant::now();
        let messages = consumer
            .receive(&spec.topic, batch, spec.invisible, left)
            .await?;
        if let Some(note) = created_note(&spec.group, &consumer.take_groups_created()) {
            eprintln!("{note}");
        }
        if messages.is_empty() {
            if last_new.elapsed() >= spec.wait {
                break;
            }
            // A server that answers an empty long poll early must not make
            // this loop spin.
            let pause = EMPTY_PAUSE.saturating_sub(asked.elapsed());
            tokio::time::sleep(pause.min(spec.wait.saturating_sub(last_new.elapsed()))).await;
            continue;
        }
        last_new = Instant::now();
        let take = messages.len().min((spec.max - printed) as usize);
        let shown = &messages[..take];
        print_consumed(writer, shown, spec)?;
        printed += take as u32;
        if spec.nack {
            continue;
        }
        note_ack_failures(shown, consumer.ack_many(shown).await, &mut ack_failures);
    }
    ack_outcome(&ack_failures, printed)
}

/// Prints received messages (and writes their bodies to `--out-dir`).
pub fn print_consumed<W: Write>(
    writer: &mut StreamWriter<W>,
    shown: &[ReceivedMessage],
    spec: &ConsumeSpec,
) -> ToolResult<()> {
    for m in shown {
        let mut row = ConsumedRow::new(m, spec.body_format);
        if let Some(dir) = &spec.out_dir {
            let path = dir.join(format!("{}.body", m.message_id));
            std::fs::write(&path, &m.body).map_err(|e| {
                ToolError::Input(format!("writing the body to {}: {e}", path.display()))
            })?;
            row.body_file = Some(path.display().to_string());
        }
        writer.item(&row)?;
    }
    Ok(())
}

/// Keeps the acknowledgements that failed, with their message ids.
pub fn note_ack_failures(
    shown: &[ReceivedMessage],
    results: Vec<apogee_client::Result<()>>,
    failures: &mut Vec<String>,
) {
    for (m, res) in shown.iter().zip(results) {
        if let Err(e) = res {
            failures.push(format!("{}: {e}", m.message_id));
        }
    }
}

/// A consume run's end: an error when some printed message could not be acknowledged.
pub fn ack_outcome(failures: &[String], printed: u32) -> ToolResult<()> {
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(ToolError::Server(format!(
            "{} of {printed} printed messages could not be acknowledged and will be delivered again (first: {first})",
            failures.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render_list;

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
    fn consumed_rows_show_placeholders_and_escape_bodies() {
        let row = ConsumedRow {
            message_id: "ID".into(),
            topic: "T".into(),
            queue_id: 1,
            offset: 5,
            delivery_attempt: 2,
            tag: None,
            keys: vec![],
            properties: Default::default(),
            body: "line1\nline2".into(),
            body_format: "utf8",
            body_size: 11,
            body_file: None,
            broker: "b".into(),
            store_timestamp_ms: 0,
            delivery_timestamp_ms: None,
        };
        assert_eq!(
            row.cells(),
            vec!["ID", "b", "1", "5", "2", "-", "-", "-", "line1\\nline2"]
        );
        // Properties in the table; a long body only as a preview there, whole in JSON.
        let big = ConsumedRow {
            properties: [("a".into(), "1".into()), ("b".into(), "x=y".into())].into(),
            body: "z".repeat(10_000),
            ..row.clone()
        };
        let cells = big.cells();
        assert_eq!(cells[7], "a=1,b=x=y");
        assert!(
            cells[8].len() < 200 && cells[8].ends_with("..."),
            "{}",
            cells[8]
        );
        assert_eq!(
            serde_json::to_value(&big).unwrap()["body"]
                .as_str()
                .unwrap()
                .len(),
            10_000
        );
        assert_eq!(
            serde_json::to_value(&big).unwrap()["properties"]["b"],
            "x=y"
        );
        assert_eq!(ConsumedRow::headers().len(), row.cells().len());
        assert_eq!(CONSUME_WIDTHS.len() + 1, ConsumedRow::headers().len());
        assert_eq!(ConsumedRow::headers()[1], "BROKER");
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["body"], "line1\nline2");
        assert!(v["tag"].is_null());
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

    #[test]
    fn binary_bodies_are_never_decoded_lossily() {
        let binary = [0xff, 0x00, 0x41];
        assert_eq!(BodyFormat::Text.render(&binary), ("ff0041".into(), "hex"));
        assert_eq!(BodyFormat::Text.render(b"ok"), ("ok".into(), "utf8"));
        assert_eq!(BodyFormat::Hex.render(b"ok"), ("6f6b".into(), "hex"));
        assert_eq!(
            BodyFormat::Base64.render(&binary),
            ("/wBB".into(), "base64")
        );
    }
}

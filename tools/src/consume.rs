//! `apogee consume`: receives over the client library's SimpleConsumer and prints.
//!
//! It prints each batch before it acknowledges it, so it never acks a message it did not
//! print; messages beyond `--max` are left unacked and come back after their invisible
//! duration. With `--nack` it acknowledges nothing: every message comes back after its
//! invisible duration with its delivery attempt raised, until the group's max attempts send
//! it to `%DLQ%<group>`. Ctrl-C (SIGINT) ends it with the output complete (a JSON array
//! closed).

use crate::error::{ToolError, ToolResult};
use apogee_admin::group::created_note;
use apogee_admin::output::{one_line, Format, StreamWriter, TableRow};
use apogee_admin::spelling::Spelled;
use apogee_client::{ClientConfig, FilterExpression, ReceivedMessage, SimpleConsumer};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// Messages asked for per receive.
const RECEIVE_BATCH: u32 = 32;
/// Shortest time between two empty receives.
const EMPTY_PAUSE: Duration = Duration::from_millis(200);

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
const CONSUME_WIDTHS: [usize; 8] = [34, 8, 5, 8, 7, 8, 8, 10];

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
    let connect = async {
        let subscription = vec![(spec.topic.clone(), spec.filter.clone())];
        let consumer = SimpleConsumer::connect(config, spec.group.clone(), subscription).await?;
        Ok(consumer)
    };
    consume_with(connect, spec, out, format).await
}

/// What the receive loop needs of a consumer: [`SimpleConsumer`] here, the lite consumer in
/// `crate::lite_consume`.
pub(crate) trait Receiving: Sized {
    /// Whether the run ends before the next receive (having said why on stderr).
    fn ended(&self) -> bool;
    /// Receives up to `batch` messages of `spec`'s topic, waiting at most `wait`.
    async fn receive_batch(
        &self,
        spec: &ConsumeSpec,
        batch: u32,
        wait: Duration,
    ) -> ToolResult<Vec<ReceivedMessage>>;
    async fn ack_many(&self, shown: &[ReceivedMessage]) -> Vec<apogee_client::Result<()>>;
    async fn shutdown(self);
}

impl Receiving for SimpleConsumer {
    fn ended(&self) -> bool {
        false
    }

    async fn receive_batch(
        &self,
        spec: &ConsumeSpec,
        batch: u32,
        wait: Duration,
    ) -> ToolResult<Vec<ReceivedMessage>> {
        let messages = self
            .receive(&spec.topic, batch, spec.invisible, wait)
            .await?;
        if let Some(note) = created_note(&spec.group, &self.take_groups_created()) {
            eprintln!("{note}");
        }
        Ok(messages)
    }

    async fn ack_many(&self, shown: &[ReceivedMessage]) -> Vec<apogee_client::Result<()>> {
        SimpleConsumer::ack_many(self, shown).await
    }

    async fn shutdown(self) {
        SimpleConsumer::shutdown(self).await
    }
}

/// Connects with `connect`, then receives, prints and acks until `spec` says stop, or until
/// Ctrl-C (SIGINT, [`ToolError::Interrupted`]) with what was printed complete. Returns how
/// many were printed.
pub(crate) async fn consume_with<R: Receiving, W: Write>(
    connect: impl std::future::Future<Output = ToolResult<R>>,
    spec: &ConsumeSpec,
    out: W,
    format: Format,
) -> ToolResult<usize> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut writer =
        StreamWriter::new(out, format, ConsumedRow::headers(), CONSUME_WIDTHS.to_vec());
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

async fn consume_loop<R: Receiving, W: Write>(
    consumer: &R,
    spec: &ConsumeSpec,
    writer: &mut StreamWriter<W>,
) -> ToolResult<()> {
    let mut printed: u32 = 0;
    let mut ack_failures: Vec<String> = Vec::new();
    let mut last_new = Instant::now();
    while printed < spec.max && !consumer.ended() {
        let left = spec.wait.saturating_sub(last_new.elapsed());
        let batch = (spec.max - printed).min(RECEIVE_BATCH);
        let asked = Instant::now();
        let messages = consumer.receive_batch(spec, batch, left).await?;
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
fn print_consumed<W: Write>(
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
fn note_ack_failures(
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
fn ack_outcome(failures: &[String], printed: u32) -> ToolResult<()> {
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
    fn body_formats_are_named_as_the_flag_takes_them() {
        for (format, name, _) in BodyFormat::SPELLINGS {
            assert_eq!(BodyFormat::from_name(name), Some(*format));
        }
        assert_eq!(BodyFormat::from_name("BASE64"), Some(BodyFormat::Base64));
        assert_eq!(BodyFormat::default().name(), "text");
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

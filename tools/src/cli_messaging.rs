//! The arguments of `apogee send` and `apogee consume` (clap definitions, and what
//! `send` reads from them: its body and its delivery time), part of [`crate::cli`].

use crate::cli::{group_name, topic_name};
use crate::error::{ToolError, ToolResult};
use crate::messaging::TxnEnd;
use crate::schedule::{self, Delivery};
use crate::spelled_arg::spelled;
use clap::Args;
use std::time::{Duration, SystemTime};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("when").multiple(false))]
#[command(group = clap::ArgGroup::new("payload").required(true).multiple(false))]
pub struct SendArgs {
    /// The topic to send to.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Message body (UTF-8 text).
    #[arg(long, group = "payload")]
    pub body: Option<String>,
    /// Read the body from this file, as bytes ("-": standard input).
    #[arg(long, value_name = "PATH", group = "payload")]
    pub body_file: Option<std::path::PathBuf>,
    /// User property KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    pub properties: Vec<(String, String)>,
    /// How many copies to send.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Message tag (what `consume --tag` filters on).
    #[arg(long)]
    pub tag: Option<String>,
    /// Message key (repeatable).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Send each copy as a transaction and commit it, roll it back, or
    /// leave it open (printing its transaction id).
    #[arg(long, value_parser = spelled::<TxnEnd>(), value_name = "END")]
    pub transaction: Option<TxnEnd>,
    /// Deliver this long after the send (e.g. 30s, 5m, 2h, 1500ms, 1d; a bare number is
    /// seconds).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_duration,
          group = "when",
          conflicts_with = "transaction")]
    pub delay: Option<Duration>,
    /// Deliver at this time (RFC 3339, e.g. 2026-11-22T09:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = schedule::parse_time, group = "when",
          conflicts_with = "transaction")]
    pub deliver_at: Option<SystemTime>,
    /// Deliver after a classic delay level: 1=1s 2=5s 3=10s 4=30s 5..14=1m..10m 15=20m
    /// 16=30m 17=1h 18=2h.
    #[arg(long, value_name = "N", value_parser = schedule::parse_level, group = "when",
          conflicts_with = "transaction")]
    pub delay_level: Option<u32>,
    /// Send PRIORITY messages of this priority (to a `--type priority` topic; higher is
    /// received first).
    #[arg(long, value_name = "N", conflicts_with_all = ["transaction", "when", "lite_topic"])]
    pub priority: Option<u32>,
    /// Send LITE messages to this lite topic under --topic (a `--type lite` parent).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["transaction", "when"])]
    pub lite_topic: Option<String>,
    /// Send FIFO messages in this message group (to a `--type fifo` topic; a group's
    /// messages are received in order).
    #[arg(long, value_name = "NAME",
          conflicts_with_all = ["transaction", "when", "priority", "lite_topic"])]
    pub message_group: Option<String>,
}

impl SendArgs {
    /// The body: `--body` as UTF-8, or the bytes of `--body-file` (or of standard input).
    pub fn body_bytes(&self) -> ToolResult<Vec<u8>> {
        use std::io::Read;
        match (&self.body, &self.body_file) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| ToolError::Input(format!("reading the body from stdin: {e}")))?;
                Ok(buf)
            }
            (None, Some(path)) => std::fs::read(path).map_err(|e| {
                ToolError::Input(format!("reading the body from {}: {e}", path.display()))
            }),
            (None, None) => Err(ToolError::Usage("give --body or --body-file".into())),
        }
    }

    /// When the messages are delivered, if scheduled.
    pub fn delivery(&self) -> Option<Delivery> {
        self.delay
            .map(Delivery::After)
            .or(self.deliver_at.map(Delivery::At))
            .or(self.delay_level.map(Delivery::Level))
    }
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to receive from.
    #[arg(long, value_parser = topic_name)]
    pub topic: String,
    /// Consumer group.
    #[arg(long, value_parser = group_name)]
    pub group: String,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max: u32,
    /// Stop after this long without a new message (e.g. 5s, 2m; a bare number is seconds).
    #[arg(long, default_value = "5s", value_name = "DURATION",
          value_parser = crate::duration::parse_duration)]
    pub wait: Duration,
    /// How long a received message stays hidden from other consumers (1s to 12h; a bare
    /// number is seconds). With --nack: when it comes back, plus the group's retry backoff
    /// for that attempt; after the group's last attempt, when it goes to the dead-letter
    /// topic.
    #[arg(long, default_value = "30s", value_name = "DURATION",
          value_parser = crate::bench::args::invisible)]
    pub invisible: Duration,
    /// Print the messages and do not acknowledge them, as a consumer whose processing failed:
    /// each comes back after --invisible plus the group's retry backoff for that attempt
    /// (RETRY in `apogee group describe`) with its delivery attempt raised; after the
    /// group's last attempt it goes to the dead-letter topic %DLQ%<group> as soon as
    /// --invisible ends (`apogee dlq list --group <group>`).
    #[arg(long)]
    pub nack: bool,
    /// Only messages with these tags (`TagA || TagB`); the default takes all.
    #[arg(long, value_name = "EXPR", conflicts_with = "sql")]
    pub tag: Option<String>,
    /// Only messages this SQL92 filter selects, evaluated on the broker over
    /// user properties and `TAGS`, e.g. "region = 'eu' AND amount > 100".
    #[arg(long, value_name = "EXPR")]
    pub sql: Option<String>,
    /// How bodies are printed: text (UTF-8, or hex when not valid UTF-8), hex or base64.
    /// Tables show a preview; JSON the whole body.
    #[arg(long, value_parser = spelled::<crate::consume::BodyFormat>(), default_value = "text")]
    pub body_format: crate::consume::BodyFormat,
    /// Also write each whole body, as received, to DIR/<message id>.body.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
    /// Consume this lite topic of the LITE parent --topic, as a lite consumer of --group
    /// (a group bound to the parent: `group create --lite-bind`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tag", "sql"],
          value_parser = crate::lite_consume::lite_topic_name)]
    pub lite_topic: Option<String>,
    /// With --lite-topic: where a subscription new to the broker starts (default: the
    /// broker's).
    #[arg(long, value_enum, requires = "lite_topic")]
    pub lite_offset: Option<crate::lite_consume::LiteStart>,
}

/// `KEY=VALUE` of `--property` (the key non-empty; the value may contain `=`).
fn property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
#[path = "cli_messaging_tests.rs"]
mod tests;

//! `apogee consume --topic PARENT --lite-topic X --group G`: a lite simple consumer of the
//! LITE parent topic subscribes to lite topic X (from where `--lite-offset` says, for a
//! subscription new to the broker), then receives, prints and acks as `consume` does (the
//! same `--max`, `--wait`, `--invisible`, `--nack`, body and output flags), and drops its
//! subscription when it ends (COMPLETE_REMOVE). A notice that the broker ended the
//! subscription (an exclusive group's lite topic taken by another client, or the lite topic
//! expired) is printed to stderr and ends the run.

use crate::consume::{consume_with, ConsumeSpec, Receiving};
use crate::error::ToolResult;
use crate::output::Format;
use apogee_client::{ClientConfig, LiteOffset, LiteSimpleConsumer, ReceivedMessage};
use clap::ValueEnum;
use std::io::Write;
use std::time::Duration;

/// Where a new lite subscription starts (`--lite-offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LiteStart {
    /// The group's committed position, else the broker's default.
    Last,
    /// The first message still stored.
    Min,
    /// Only messages sent from now on.
    Max,
}

impl LiteStart {
    pub fn offset(self) -> LiteOffset {
        match self {
            LiteStart::Last => LiteOffset::Last,
            LiteStart::Min => LiteOffset::Min,
            LiteStart::Max => LiteOffset::Max,
        }
    }
}

/// A lite topic name as RocketMQ's rule has it (a bad one is a usage error before any call;
/// a broker configured with a shorter limit still refuses a longer one).
pub fn lite_topic_name(s: &str) -> Result<String, String> {
    apogee_proto::limits::validate_lite_topic(s, apogee_proto::limits::DEFAULT_MAX_LITE_TOPIC_LEN)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Subscribes `lite_topic` under `spec.topic` and consumes it; returns how many messages
/// were printed.
pub async fn consume<W: Write>(
    config: ClientConfig,
    spec: &ConsumeSpec,
    lite_topic: &str,
    start: Option<LiteStart>,
    out: W,
    format: Format,
) -> ToolResult<usize> {
    let connect = async {
        let consumer =
            LiteSimpleConsumer::connect(config, spec.group.clone(), spec.topic.clone()).await?;
        let subscribed = match start {
            Some(s) => consumer.subscribe_lite_from(lite_topic, s.offset()).await,
            None => consumer.subscribe_lite(lite_topic).await,
        };
        match subscribed {
            Ok(()) => Ok(consumer),
            Err(e) => {
                consumer.shutdown().await;
                Err(e.into())
            }
        }
    };
    consume_with(connect, spec, out, format).await
}

impl Receiving for LiteSimpleConsumer {
    fn ended(&self) -> bool {
        let Some(gone) = self.take_unsubscribed().into_iter().next() else {
            return false;
        };
        eprintln!("the broker ended the subscription to lite topic {gone}");
        true
    }

    async fn receive_batch(
        &self,
        spec: &ConsumeSpec,
        batch: u32,
        wait: Duration,
    ) -> ToolResult<Vec<ReceivedMessage>> {
        Ok(self.receive(batch, spec.invisible, wait).await?)
    }

    async fn ack_many(&self, shown: &[ReceivedMessage]) -> Vec<apogee_client::Result<()>> {
        LiteSimpleConsumer::ack_many(self, shown).await
    }

    async fn shutdown(self) {
        LiteSimpleConsumer::shutdown(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("apogee").chain(args.iter().copied()))
    }

    #[test]
    fn consume_takes_a_lite_topic_and_where_it_starts() {
        let base = [
            "consume",
            "--topic",
            "P",
            "--group",
            "G",
            "--lite-topic",
            "s-1",
        ];
        let cli = parse(&base).unwrap();
        let Command::Consume(a) = cli.command else {
            panic!("consume expected")
        };
        assert_eq!(
            (a.lite_topic.as_deref(), a.lite_offset),
            (Some("s-1"), None)
        );
        let mut with = base.to_vec();
        with.extend(["--lite-offset", "min"]);
        let Command::Consume(a) = parse(&with).unwrap().command else {
            panic!("consume expected")
        };
        assert_eq!(a.lite_offset.map(LiteStart::offset), Some(LiteOffset::Min));
        // A bad name, a filter with a lite topic, and a start without one are usage errors.
        let bad = [
            "consume",
            "--topic",
            "P",
            "--group",
            "G",
            "--lite-topic",
            "a%b",
        ];
        assert!(parse(&bad).is_err());
        let mut tagged = base.to_vec();
        tagged.extend(["--tag", "A"]);
        assert!(parse(&tagged).is_err());
        assert!(parse(&[
            "consume",
            "--topic",
            "P",
            "--group",
            "G",
            "--lite-offset",
            "max"
        ])
        .is_err());
    }
}

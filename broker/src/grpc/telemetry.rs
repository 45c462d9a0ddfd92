//! Telemetry: the long-lived stream every official client opens first. The
//! client sends its Settings; the broker answers with its own (body limit,
//! backoff policy) and keeps the stream open until the client closes it.
//! Later, the same stream carries transaction check-back commands.

use super::ResponseStream;
use apogee_proto::error::ok_status;
use apogee_proto::settings::{settings_reply, ServerLimits};
use apogee_proto::v2::{telemetry_command::Command, TelemetryCommand};
use tokio_stream::StreamExt;
use tonic::Streaming;

pub fn serve(
    limits: ServerLimits,
    mut inbound: Streaming<TelemetryCommand>,
) -> ResponseStream<TelemetryCommand> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(Ok(cmd)) = inbound.next().await {
            if let Some(Command::Settings(settings)) = cmd.command {
                let reply = TelemetryCommand {
                    status: Some(ok_status()),
                    command: Some(Command::Settings(settings_reply(&settings, &limits))),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    break;
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

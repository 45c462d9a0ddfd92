//! The server side of a Telemetry stream, shared by the NameServer and the
//! broker. Every official client opens Telemetry first and sends its
//! Settings; the server answers each Settings with [`settings_reply`] and
//! keeps the stream open until the client hangs up or the server closes
//! (`closing` turns true), so a graceful shutdown never waits on clients.

use crate::error::ok_status;
use crate::settings::{settings_reply, ServerLimits};
use crate::v2::{telemetry_command::Command, TelemetryCommand};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Runs one Telemetry session in a task; returns the outbound stream.
pub fn serve_session(
    client_id: String,
    mut inbound: Streaming<TelemetryCommand>,
    limits: ServerLimits,
    mut closing: watch::Receiver<bool>,
) -> ReceiverStream<Result<TelemetryCommand, Status>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tracing::debug!(client = %client_id, "telemetry stream opened");
        loop {
            let command = tokio::select! {
                command = inbound.message() => command,
                _ = closing.wait_for(|closing| *closing) => break,
            };
            match command {
                Ok(Some(TelemetryCommand {
                    command: Some(Command::Settings(settings)),
                    ..
                })) => {
                    let reply = TelemetryCommand {
                        status: Some(ok_status()),
                        command: Some(Command::Settings(settings_reply(&settings, &limits))),
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
                Ok(Some(other)) => {
                    tracing::trace!(client = %client_id, ?other, "ignoring telemetry command")
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(client = %client_id, error = %e, "telemetry stream failed");
                    break;
                }
            }
        }
        tracing::debug!(client = %client_id, "telemetry stream closed");
    });
    ReceiverStream::new(rx)
}

/// The client id a request carries in its `x-mq-client-id` header, or "-".
pub fn client_id<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get("x-mq-client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

//! Raw Telemetry sessions: [`RawSession`] opens one with any Settings and keeps it open;
//! [`ProducerSession`], for tests of transaction check-backs, declares its
//! topics as an official producer does, records every RecoverOrphanedTransactionCommand it is
//! sent and answers each with EndTransaction (source SERVER_CHECK) on the same endpoint.

use crate::rpc;
use apogee_proto::v2::{self, telemetry_command::Command};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// What a producer session answers to a check-back.
pub type Checker =
    Arc<dyn Fn(&v2::RecoverOrphanedTransactionCommand) -> v2::TransactionResolution + Send + Sync>;

/// One check-back as the producer saw it.
#[derive(Clone, Debug)]
pub struct CheckBack {
    pub transaction_id: String,
    pub message: v2::Message,
    /// The status of the EndTransaction that answered it.
    pub answer_code: i32,
}

/// A raw Telemetry stream after its first reply.
pub struct RawSession {
    /// The server's first answer (its Settings reply).
    pub first: v2::TelemetryCommand,
    /// Keeps the stream open; dropping it ends the session.
    pub outbound: mpsc::Sender<v2::TelemetryCommand>,
    pub inbound: tonic::Streaming<v2::TelemetryCommand>,
}

impl RawSession {
    /// A push consumer's session of `group` subscribed to all of `topic`, with `language`
    /// and version 5.0.0 in its user agent.
    pub async fn consumer(
        addr: &str,
        client_id: &str,
        group: &str,
        topic: &str,
        language: v2::Language,
    ) -> RawSession {
        use v2::settings::PubSub;
        let settings = v2::Settings {
            client_type: Some(v2::ClientType::PushConsumer as i32),
            user_agent: Some(v2::Ua {
                language: language as i32,
                version: "5.0.0".into(),
                ..Default::default()
            }),
            pub_sub: Some(PubSub::Subscription(v2::Subscription {
                group: rpc::resource(group),
                subscriptions: vec![v2::SubscriptionEntry {
                    topic: rpc::resource(topic),
                    expression: Some(v2::FilterExpression {
                        r#type: v2::FilterType::Tag as i32,
                        expression: "*".into(),
                    }),
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        RawSession::open(addr, client_id, settings).await
    }

    /// Opens Telemetry to `addr` as `client_id`, sends `settings` and waits (at most 10 s)
    /// for the first reply.
    pub async fn open(addr: &str, client_id: &str, settings: v2::Settings) -> RawSession {
        let (tx, rx) = mpsc::channel(16);
        tx.send(v2::TelemetryCommand {
            status: None,
            command: Some(Command::Settings(settings)),
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request
            .metadata_mut()
            .insert("x-mq-client-id", client_id.parse().unwrap());
        let mut inbound = rpc::messaging(addr)
            .telemetry(request)
            .await
            .expect("Telemetry opens")
            .into_inner();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), inbound.next())
            .await
            .expect("a first Telemetry reply in time")
            .expect("a first Telemetry reply")
            .expect("a first Telemetry reply");
        RawSession {
            first,
            outbound: tx,
            inbound,
        }
    }
}

/// A live producer session; dropping it closes the stream.
pub struct ProducerSession {
    pub client_id: String,
    checks: Arc<Mutex<Vec<CheckBack>>>,
    _outbound: mpsc::Sender<v2::TelemetryCommand>,
    task: tokio::task::JoinHandle<()>,
}

impl ProducerSession {
    /// Opens Telemetry to `addr` as producer `client_id` of `topics`, waits for the settings
    /// reply, then answers check-backs with `checker` in the background.
    pub async fn open(addr: &str, client_id: &str, topics: &[&str], checker: Checker) -> Self {
        let settings = v2::Settings {
            client_type: Some(v2::ClientType::Producer as i32),
            pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing {
                topics: topics.iter().filter_map(|t| rpc::resource(t)).collect(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let RawSession {
            first,
            outbound: tx,
            mut inbound,
        } = RawSession::open(addr, client_id, settings).await;
        assert!(
            matches!(first.command, Some(Command::Settings(_))),
            "{first:?}"
        );
        let checks = Arc::new(Mutex::new(Vec::new()));
        let seen = checks.clone();
        let answer_addr = addr.to_string();
        let task = tokio::spawn(async move {
            let mut answers = rpc::messaging(&answer_addr);
            while let Some(Ok(cmd)) = inbound.next().await {
                let Some(Command::RecoverOrphanedTransactionCommand(check)) = cmd.command else {
                    continue;
                };
                let resolution = checker(&check);
                let message = check.message.clone().unwrap_or_default();
                let answer = answers
                    .end_transaction(v2::EndTransactionRequest {
                        topic: message.topic.clone(),
                        message_id: rpc::id_of(&message),
                        transaction_id: check.transaction_id.clone(),
                        resolution: resolution as i32,
                        source: v2::TransactionSource::SourceServerCheck as i32,
                        trace_context: String::new(),
                    })
                    .await
                    .map(|r| rpc::code(r.get_ref().status.as_ref()))
                    .unwrap_or(-1);
                seen.lock().unwrap().push(CheckBack {
                    transaction_id: check.transaction_id,
                    message,
                    answer_code: answer,
                });
            }
        });
        ProducerSession {
            client_id: client_id.to_string(),
            checks,
            _outbound: tx,
            task,
        }
    }

    /// The check-backs received so far.
    pub fn checks(&self) -> Vec<CheckBack> {
        self.checks.lock().unwrap().clone()
    }
}

impl Drop for ProducerSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

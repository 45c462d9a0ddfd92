//! Transactional producer against an in-process fake endpoint that plays
//! both NameServer and broker: half sends, commit and rollback at the
//! broker's endpoint, topics declared in the Telemetry settings, and
//! check-backs pushed on the Telemetry stream and answered by the checker.

use apogee_client::{
    ClientConfig, ClientError, Message, Producer, TransactionCheck, TransactionResolution,
};
use apogee_proto::error::ok_status;
use apogee_proto::v2::{
    self, messaging_service_server::MessagingService,
    messaging_service_server::MessagingServiceServer, settings::PubSub, telemetry_command::Command,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;
type Stream<T> = ReceiverStream<Result<T, Status>>;

/// What the fake saw, and the way to push commands to its client.
#[derive(Default)]
struct Seen {
    sends: Vec<v2::Message>,
    ends: Vec<v2::EndTransactionRequest>,
    /// Publishing topics of every Settings received.
    settings_topics: Vec<Vec<String>>,
    push: Option<mpsc::Sender<Result<v2::TelemetryCommand, Status>>>,
}

#[derive(Clone)]
struct Fake {
    addr: String,
    seen: Arc<Mutex<Seen>>,
}

fn record_settings(seen: &Mutex<Seen>, cmd: &v2::TelemetryCommand) {
    if let Some(Command::Settings(s)) = &cmd.command {
        if let Some(PubSub::Publishing(p)) = &s.pub_sub {
            let topics = p.topics.iter().map(|t| t.name.clone()).collect();
            seen.lock().settings_topics.push(topics);
        }
    }
}

/// The fake's service: the methods it serves, plus every other method
/// (and server-streaming one) answering UNIMPLEMENTED.
macro_rules! fake_service {
    (
        served { $($item:item)* }
        unimplemented { $($name:ident($req:ident) -> $resp:ident;)* }
        streams { $($stream:ident: $sname:ident($sreq:ident) -> $sresp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl MessagingService for Fake {
            $($item)*
            $(
                async fn $name(&self, _: Request<v2::$req>) -> Reply<v2::$resp> {
                    Err(Status::unimplemented("fake"))
                }
            )*
            $(
                type $stream = Stream<v2::$sresp>;
                async fn $sname(&self, _: Request<v2::$sreq>) -> Reply<Self::$stream> {
                    Err(Status::unimplemented("fake"))
                }
            )*
        }
    };
}

fake_service! {
    served {
        async fn query_route(
            &self,
            r: Request<v2::QueryRouteRequest>,
        ) -> Reply<v2::QueryRouteResponse> {
            let queue = v2::MessageQueue {
                topic: r.into_inner().topic,
                id: 0,
                permission: v2::Permission::ReadWrite as i32,
                broker: Some(v2::Broker {
                    name: "broker-a".into(),
                    id: 0,
                    endpoints: apogee_client::transport::to_endpoints(&self.addr).ok(),
                }),
                accept_message_types: vec![v2::MessageType::Transaction as i32],
            };
            Ok(Response::new(v2::QueryRouteResponse {
                status: Some(ok_status()),
                message_queues: vec![queue],
            }))
        }

        async fn heartbeat(
            &self,
            _: Request<v2::HeartbeatRequest>,
        ) -> Reply<v2::HeartbeatResponse> {
            Ok(Response::new(v2::HeartbeatResponse {
                status: Some(ok_status()),
            }))
        }

        async fn send_message(
            &self,
            r: Request<v2::SendMessageRequest>,
        ) -> Reply<v2::SendMessageResponse> {
            let mut seen = self.seen.lock();
            let mut entries = Vec::new();
            for m in r.into_inner().messages {
                let sp = m.system_properties.clone().unwrap_or_default();
                seen.sends.push(m);
                let txn = sp.message_type == v2::MessageType::Transaction as i32;
                entries.push(v2::SendResultEntry {
                    status: Some(ok_status()),
                    message_id: sp.message_id,
                    transaction_id: if txn {
                        format!("TX-{}", seen.sends.len())
                    } else {
                        String::new()
                    },
                    offset: seen.sends.len() as i64,
                    ..Default::default()
                });
            }
            Ok(Response::new(v2::SendMessageResponse {
                status: Some(ok_status()),
                entries,
            }))
        }









        async fn end_transaction(
            &self,
            r: Request<v2::EndTransactionRequest>,
        ) -> Reply<v2::EndTransactionResponse> {
            self.seen.lock().ends.push(r.into_inner());
            Ok(Response::new(v2::EndTransactionResponse {
                status: Some(ok_status()),
            }))
        }

        type TelemetryStream = Stream<v2::TelemetryCommand>;
        async fn telemetry(
            &self,
            r: Request<tonic::Streaming<v2::TelemetryCommand>>,
        ) -> Reply<Self::TelemetryStream> {
            let mut incoming = r.into_inner();
            let (tx, rx) = mpsc::channel(16);
            let seen = self.seen.clone();
            let first = incoming
                .message()
                .await?
                .ok_or_else(|| Status::invalid_argument("no settings"))?;
            record_settings(&seen, &first);
            let reply = v2::TelemetryCommand {
                status: Some(ok_status()),
                command: Some(Command::Settings(v2::Settings::default())),
            };
            tx.send(Ok(reply)).await.ok();
            seen.lock().push = Some(tx);
            tokio::spawn(async move {
                while let Ok(Some(cmd)) = incoming.message().await {
                    record_settings(&seen, &cmd);
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        }

        async fn notify_client_termination(
            &self,
            _: Request<v2::NotifyClientTerminationRequest>,
        ) -> Reply<v2::NotifyClientTerminationResponse> {
            Ok(Response::new(v2::NotifyClientTerminationResponse {
                status: Some(ok_status()),
            }))
        }
    }
    unimplemented {
        query_assignment(QueryAssignmentRequest) -> QueryAssignmentResponse;
        ack_message(AckMessageRequest) -> AckMessageResponse;
        forward_message_to_dead_letter_queue(ForwardMessageToDeadLetterQueueRequest)
            -> ForwardMessageToDeadLetterQueueResponse;
        update_offset(UpdateOffsetRequest) -> UpdateOffsetResponse;
        get_offset(GetOffsetRequest) -> GetOffsetResponse;
        query_offset(QueryOffsetRequest) -> QueryOffsetResponse;
        change_invisible_duration(ChangeInvisibleDurationRequest)
            -> ChangeInvisibleDurationResponse;
        recall_message(RecallMessageRequest) -> RecallMessageResponse;
        sync_lite_subscription(SyncLiteSubscriptionRequest) -> SyncLiteSubscriptionResponse;
    }
    streams {
        ReceiveMessageStream: receive_message(ReceiveMessageRequest) -> ReceiveMessageResponse;
        PullMessageStream: pull_message(PullMessageRequest) -> PullMessageResponse;
    }
}

async fn start_fake() -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = Fake {
        addr: listener.local_addr().unwrap().to_string(),
        seen: Arc::default(),
    };
    let service = MessagingServiceServer::new(fake.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    fake
}

fn config(fake: &Fake) -> ClientConfig {
    ClientConfig::new(&fake.addr).with_request_timeout(Duration::from_secs(3))
}

/// A producer declaring topic T, without a checker.
async fn producer_of_t(fake: &Fake) -> Producer {
    Producer::builder(config(fake))
        .topic("T")
        .connect()
        .await
        .unwrap()
}

impl Fake {
    /// Pushes commands on the client's telemetry stream.
    fn pusher(&self) -> mpsc::Sender<Result<v2::TelemetryCommand, Status>> {
        let push = self.seen.lock().push.clone();
        push.expect("telemetry stream open")
    }
}

/// Polls `f` until it returns `Some`, for up to 5 s.
async fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..250 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met in time");
}

fn check_command(txn: &str, body: &str) -> v2::TelemetryCommand {
    v2::TelemetryCommand {
        status: None,
        command: Some(Command::RecoverOrphanedTransactionCommand(
            v2::RecoverOrphanedTransactionCommand {
                message: Some(v2::Message {
                    topic: Some(v2::Resource {
                        resource_namespace: String::new(),
                        name: "T".into(),
                    }),
                    user_properties: Default::default(),
                    system_properties: Some(v2::SystemProperties {
                        message_id: format!("M-{txn}"),
                        message_type: v2::MessageType::Transaction as i32,
                        ..Default::default()
                    }),
                    body: body.as_bytes().to_vec().into(),
                }),
                transaction_id: txn.into(),
            },
        )),
    }
}

#[tokio::test]
async fn half_send_commit_and_rollback_go_to_the_broker() {
    let fake = start_fake().await;
    let producer = producer_of_t(&fake).await;
    // The declared topic is in the first Settings, before any send.
    let first = fake.seen.lock().settings_topics.first().cloned();
    assert_eq!(first, Some(vec!["T".to_string()]));
    assert_eq!(producer.topics(), vec!["T"]);

    let mut txn = producer
        .begin_transaction()
        .with_check_delay(Duration::from_secs(7));
    assert!(matches!(txn.commit().await, Err(ClientError::Config(_))));
    let receipt = txn.send(Message::new("T", "order-1")).await.unwrap();
    assert_eq!(receipt.transaction_id, "TX-1");
    assert_eq!(receipt.endpoint, fake.addr);
    assert_eq!(receipt.broker_name, "broker-a");
    assert_eq!(txn.receipt(), Some(&receipt));
    let sp = fake.seen.lock().sends[0].system_properties.clone().unwrap();
    assert_eq!(sp.message_type, v2::MessageType::Transaction as i32);
    assert_eq!(sp.message_id, receipt.message_id);
    assert_eq!(
        sp.orphaned_transaction_recovery_duration.map(|d| d.seconds),
        Some(7)
    );
    let again = txn.send(Message::new("T", "order-2")).await.unwrap_err();
    assert!(matches!(again, ClientError::Config(_)), "{again}");
    assert!(again.to_string().contains("one message"));
    txn.commit().await.unwrap();

    let mut other = producer.begin_transaction();
    let r2 = other.send(Message::new("T", "order-3")).await.unwrap();
    other.rollback().await.unwrap();
    producer
        .end_transaction(&r2, TransactionResolution::Unknown)
        .await
        .unwrap();

    let ends = fake.seen.lock().ends.clone();
    assert_eq!(ends.len(), 2, "unknown sends nothing: {ends:?}");
    assert_eq!(ends[0].transaction_id, "TX-1");
    assert_eq!(ends[0].message_id, receipt.message_id);
    assert_eq!(ends[0].topic.as_ref().unwrap().name, "T");
    assert_eq!(ends[0].resolution, v2::TransactionResolution::Commit as i32);
    assert_eq!(ends[0].source, v2::TransactionSource::SourceClient as i32);
    assert_eq!(ends[1].transaction_id, r2.transaction_id);
    assert_eq!(
        ends[1].resolution,
        v2::TransactionResolution::Rollback as i32
    );

    let fifo = Message::builder("T", "x").message_group("g").build();
    let mut third = producer.begin_transaction();
    assert!(third.send(fifo).await.is_err());
    producer.shutdown().await;
}

#[tokio::test]
async fn new_topics_are_announced_on_first_use() {
    let fake = start_fake().await;
    let producer = producer_of_t(&fake).await;
    let mut txn = producer.begin_transaction();
    txn.send(Message::new("U", "x")).await.unwrap();
    let seen = fake.seen.clone();
    eventually(|| {
        let s = seen.lock();
        s.settings_topics
            .iter()
            .any(|t| t == &["T".to_string(), "U".to_string()])
            .then_some(())
    })
    .await;
    assert_eq!(producer.topics(), vec!["T", "U"]);
}

#[tokio::test]
async fn check_backs_are_answered_by_the_checker() {
    let fake = start_fake().await;
    let checker = |c: &TransactionCheck| match &c.message.body[..] {
        b"yes" => TransactionResolution::Commit,
        b"no" => TransactionResolution::Rollback,
        _ => TransactionResolution::Unknown,
    };
    let producer = Producer::builder(config(&fake))
        .topic("T")
        .transaction_checker(checker)
        .connect()
        .await
        .unwrap();
    // Connecting opened the session to the topic's broker.
    let push = fake.pusher();
    for (txn, body) in [("A", "yes"), ("B", "no"), ("C", "maybe")] {
        push.send(Ok(check_command(txn, body))).await.unwrap();
    }
    let seen = fake.seen.clone();
    let mut ends = eventually(|| {
        let s = seen.lock();
        (s.ends.len() == 3).then(|| s.ends.clone())
    })
    .await;
    ends.sort_by(|a, b| a.transaction_id.cmp(&b.transaction_id));
    let got: Vec<(&str, &str, i32, i32)> = ends
        .iter()
        .map(|e| {
            (
                e.transaction_id.as_str(),
                e.message_id.as_str(),
                e.resolution,
                e.source,
            )
        })
        .collect();
    let check = v2::TransactionSource::SourceServerCheck as i32;
    assert_eq!(
        got,
        vec![
            ("A", "M-A", v2::TransactionResolution::Commit as i32, check),
            (
                "B",
                "M-B",
                v2::TransactionResolution::Rollback as i32,
                check
            ),
            (
                "C",
                "M-C",
                v2::TransactionResolution::Unspecified as i32,
                check
            ),
        ]
    );
    producer.shutdown().await;
}

#[tokio::test]
async fn check_backs_without_a_checker_are_ignored() {
    let fake = start_fake().await;
    let producer = producer_of_t(&fake).await;
    let push = fake.pusher();
    push.send(Ok(check_command("A", "yes"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.seen.lock().ends.is_empty());
    producer.shutdown().await;
}

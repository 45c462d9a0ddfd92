//! The registration loop against a fake NameServer that holds registrations open, so a
//! change can land while one is on its way; and the session: beats of the data version
//! only, a registration sent when asked, a broken session opened again.

use super::NameServerLink;
use crate::config::BrokerConfig;
use crate::groups::GroupTable;
use crate::store::MemKv;
use crate::topics::TopicConfig;
use crate::topics::TopicTable;
use apogee_proto::cluster::registry_server::{Registry, RegistryServer};
use apogee_proto::cluster::{self, SessionAnswer, SessionBeat};
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};

/// What the fake NameServer saw of a session.
#[derive(Debug, PartialEq)]
enum SessionEvent {
    /// A session opened, by this process, with this interval.
    Opened { instance: u64, interval_ms: u64 },
    /// A beat, with its encoded size.
    Beat { bytes: usize },
}

/// Records each registration's topic names, then waits for a permit before answering.
/// Sessions: the first opening is answered "register required" when `ask_at_first_open`
/// is set, the rest "no"; a session is ended with an error after `beats_per_session`
/// beats.
struct HeldRegistry {
    seen: mpsc::UnboundedSender<Vec<String>>,
    answers: Arc<Semaphore>,
    sessions: mpsc::UnboundedSender<SessionEvent>,
    beats_per_session: usize,
    ask_at_first_open: std::sync::atomic::AtomicBool,
}

impl HeldRegistry {
    fn new(seen: mpsc::UnboundedSender<Vec<String>>, answers: Arc<Semaphore>) -> Self {
        HeldRegistry {
            seen,
            answers,
            sessions: mpsc::unbounded_channel().0,
            beats_per_session: usize::MAX,
            ask_at_first_open: Default::default(),
        }
    }
}

#[tonic::async_trait]
impl Registry for HeldRegistry {
    async fn register_broker(
        &self,
        req: Request<cluster::RegisterBrokerRequest>,
    ) -> Result<Response<cluster::RegisterBrokerResponse>, Status> {
        let names = req
            .into_inner()
            .topics
            .into_iter()
            .map(|t| t.name)
            .collect();
        self.seen.send(names).unwrap();
        self.answers.acquire().await.unwrap().forget();
        Ok(Response::new(Default::default()))
    }
    async fn broker_heartbeat(
        &self,
        _: Request<cluster::BrokerHeartbeatRequest>,
    ) -> Result<Response<cluster::BrokerHeartbeatResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
    type BrokerSessionStream = UnboundedReceiverStream<Result<SessionAnswer, Status>>;
    async fn broker_session(
        &self,
        req: Request<tonic::Streaming<SessionBeat>>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        let mut beats = req.into_inner();
        let open = beats.message().await?.and_then(|b| b.open).expect("open");
        let _ = self.sessions.send(SessionEvent::Opened {
            instance: open.instance_id,
            interval_ms: open.heartbeat_interval_ms,
        });
        let first = self
            .ask_at_first_open
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let (answers, rx) = mpsc::unbounded_channel();
        let _ = answers.send(Ok(SessionAnswer {
            register_required: first,
            ..SessionAnswer::default()
        }));
        let (events, limit) = (self.sessions.clone(), self.beats_per_session);
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Some(beat)) = beats.message().await {
                let _ = events.send(SessionEvent::Beat {
                    bytes: beat.encoded_len(),
                });
                n += 1;
                if n == limit {
                    let _ = answers.send(Err(Status::unavailable("ended by the test")));
                    return;
                }
                let _ = answers.send(Ok(SessionAnswer::default()));
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
    async fn unregister_broker(
        &self,
        _: Request<cluster::UnregisterBrokerRequest>,
    ) -> Result<Response<cluster::UnregisterBrokerResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
    async fn get_route(
        &self,
        _: Request<cluster::GetRouteRequest>,
    ) -> Result<Response<cluster::GetRouteResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn get_cluster_info(
        &self,
        _: Request<cluster::GetClusterInfoRequest>,
    ) -> Result<Response<cluster::GetClusterInfoResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn relay_check_back(
        &self,
        _: Request<cluster::RelayCheckBackRequest>,
    ) -> Result<Response<cluster::RelayCheckBackResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

fn topic(name: &str) -> TopicConfig {
    TopicConfig::new(name, 1)
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Vec<String>>) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("no registration came")
        .unwrap()
}

#[tokio::test]
async fn a_topic_created_while_a_registration_is_on_its_way_is_registered_next() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let answers = Arc::new(Semaphore::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = HeldRegistry::new(seen_tx, answers.clone());
    serve(listener, registry);

    // Periodic rounds far away: only changes make this broker register.
    let config = BrokerConfig {
        nameservers: vec![addr.to_string()],
        register_interval_secs: 3600,
        heartbeat_interval_ms: 60_000,
        heartbeat_interval_secs: None,
        ..Default::default()
    };
    let kv = Arc::new(MemKv::new());
    let topics = Arc::new(TopicTable::load(kv.clone()).unwrap());
    let groups = Arc::new(GroupTable::load(kv, false).unwrap());
    let link = Arc::new(NameServerLink::new(&config, None).unwrap());
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(link.run(topics.clone(), groups.clone(), stopped));

    topics.create(topic("first")).unwrap();
    assert_eq!(next(&mut seen).await, ["first"]);
    // That registration is still unanswered when the second topic is created.
    topics.create(topic("second")).unwrap();
    answers.add_permits(100);
    assert_eq!(next(&mut seen).await, ["first", "second"]);

    stop.send(true).unwrap();
    run.await.unwrap();
}

fn serve(listener: tokio::net::TcpListener, registry: HeldRegistry) {
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RegistryServer::new(registry))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<SessionEvent>) -> SessionEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("no session event came")
        .unwrap()
}

#[tokio::test]
async fn the_session_beats_tiny_registers_when_asked_and_is_opened_again_when_broken() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = HeldRegistry {
        sessions: events_tx,
        beats_per_session: 3,
        ask_at_first_open: true.into(),
        ..HeldRegistry::new(seen_tx, Arc::new(Semaphore::new(1000)))
    };
    serve(listener, registry);

    let config = BrokerConfig {
        nameservers: vec![addr.to_string()],
        register_interval_secs: 3600,
        heartbeat_interval_ms: 20,
        ..Default::default()
    };
    let kv = Arc::new(MemKv::new());
    let topics = Arc::new(TopicTable::load(kv.clone()).unwrap());
    let groups = Arc::new(GroupTable::load(kv, false).unwrap());
    for n in 0..200 {
        topics.create(topic(&format!("topic-{n:03}"))).unwrap();
    }
    let link = Arc::new(NameServerLink::new(&config, None).unwrap());
    link.register_at_start(&topics, &groups).await.unwrap();
    assert_eq!(next(&mut seen).await.len(), 200);
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn(link.run(topics, groups, stopped));

    let SessionEvent::Opened {
        instance,
        interval_ms,
    } = next_event(&mut events).await
    else {
        panic!("the session must open first")
    };
    assert_ne!(instance, 0);
    assert_eq!(interval_ms, 20);
    // Asked at the opening: the full registration again, with all 200 topics.
    assert_eq!(next(&mut seen).await.len(), 200);
    for _ in 0..3 {
        let SessionEvent::Beat { bytes } = next_event(&mut events).await else {
            panic!("beats until the fake ends the session")
        };
        assert!(
            bytes <= 12,
            "a beat of {bytes} bytes carries more than the version"
        );
    }
    // Ended by the NameServer: the same process opens another.
    assert_eq!(
        next_event(&mut events).await,
        SessionEvent::Opened {
            instance,
            interval_ms: 20
        }
    );
    assert!(
        seen.try_recv().is_err(),
        "no registration was asked for again"
    );

    stop.send(true).unwrap();
    run.await.unwrap();
}

#[tokio::test]
async fn the_registration_names_the_remoting_listener_and_the_queues_of_topics_created_on_send() {
    let kv = Arc::new(MemKv::new());
    let topics = TopicTable::load(kv.clone()).unwrap();
    let groups = GroupTable::load(kv, false).unwrap();
    let mut config = BrokerConfig {
        listen: "0.0.0.0:10911".into(),
        advertise: "broker-a.example:10911".into(),
        default_queue_count: 6,
        ..Default::default()
    };
    // Remoting on the gRPC listener, no topic creation on send.
    let sent = NameServerLink::new(&config, None)
        .unwrap()
        .registration(&topics, &groups);
    assert_eq!(sent.remoting_endpoint, "");
    assert_eq!(sent.auto_create_queue_count, 0);
    assert!(sent.serves_remoting);

    // Its own listener: the advertised host with that port; creation on send: its queues.
    config.remoting.listen = "0.0.0.0:10921".into();
    topics.set_auto_create(true);
    let link = NameServerLink::new(&config, None).unwrap();
    let before = link.data_version(&topics, &groups);
    let sent = link.registration(&topics, &groups);
    assert_eq!(sent.remoting_endpoint, "broker-a.example:10921");
    assert_eq!(sent.auto_create_queue_count, 6);
    // Turning creation off is a change the NameServers are told of.
    topics.set_auto_create(false);
    assert_ne!(link.data_version(&topics, &groups), before);

    // A disabled remoting section registers no listener, and that it serves no remoting.
    config.remoting.enabled = false;
    let sent = NameServerLink::new(&config, None)
        .unwrap()
        .registration(&topics, &groups);
    assert_eq!(sent.remoting_endpoint, "");
    assert!(!sent.serves_remoting);
}

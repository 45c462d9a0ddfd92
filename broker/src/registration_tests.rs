//! The registration loop against a fake NameServer that holds registrations open, so a
//! change can land while one is on its way.

use super::NameServerLink;
use crate::config::BrokerConfig;
use crate::groups::GroupTable;
use crate::store::MemKv;
use crate::topics::TopicTable;
use apogee_proto::cluster::registry_server::{Registry, RegistryServer};
use apogee_proto::cluster::{self, TopicConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tonic::{Request, Response, Status};

/// Records each registration's topic names, then waits for a permit before answering.
struct HeldRegistry {
    seen: mpsc::UnboundedSender<Vec<String>>,
    answers: Arc<Semaphore>,
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
    type BrokerSessionStream = tokio_stream::Empty<Result<cluster::SessionAnswer, Status>>;
    async fn broker_session(
        &self,
        _: Request<tonic::Streaming<cluster::SessionBeat>>,
    ) -> Result<Response<Self::BrokerSessionStream>, Status> {
        Err(Status::unimplemented("not in this test"))
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
    TopicConfig {
        name: name.into(),
        queue_count: 1,
        ..Default::default()
    }
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
    let registry = HeldRegistry {
        seen: seen_tx,
        answers: answers.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RegistryServer::new(registry))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // Periodic rounds far away: only changes make this broker register.
    let config = BrokerConfig {
        nameservers: vec![addr.to_string()],
        register_interval_secs: 3600,
        heartbeat_interval_ms: 60_000,
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

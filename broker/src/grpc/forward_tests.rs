//! Unit tests of the slave's pass-through: the treatment of each RPC and the limit of a
//! forwarded call.

use super::*;
use apogee_proto::v2;
use http_body::Body as _;

fn path(method: &str) -> String {
    format!("/{SERVICE}/{method}")
}

#[test]
fn writes_are_forwarded_else_refused() {
    for method in [
        "SendMessage",
        "EndTransaction",
        "RecallMessage",
        "ForwardMessageToDeadLetterQueue",
    ] {
        assert_eq!(
            handling(&path(method)),
            Handling::ForwardElseRefuse,
            "{method}"
        );
    }
}

#[test]
fn reads_and_consume_calls_are_forwarded_else_served_here() {
    for method in [
        "ReceiveMessage",
        "AckMessage",
        "ChangeInvisibleDuration",
        "PullMessage",
        "GetOffset",
        "QueryOffset",
        "UpdateOffset",
        "Heartbeat",
        "NotifyClientTermination",
        "SyncLiteSubscription",
    ] {
        assert_eq!(
            handling(&path(method)),
            Handling::ForwardElseServe,
            "{method}"
        );
    }
}

#[test]
fn routes_telemetry_and_other_services_stay_here() {
    for p in [
        path("QueryRoute"),
        path("QueryAssignment"),
        path("Telemetry"),
        path("NoSuchMethod"),
        "/apogee.cluster.v1.Admin/CreateTopic".to_string(),
        "/apache.rocketmq.v2.MessagingServiceX/SendMessage".to_string(),
        "/grpc.health.v1.Health/Check".to_string(),
        String::new(),
    ] {
        assert_eq!(handling(&p), Handling::Local, "{p}");
    }
}

fn headers_with_timeout(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-timeout", HeaderValue::from_str(value).unwrap());
    h
}

#[test]
fn a_forwarded_call_gives_up_before_the_clients_deadline() {
    // A tenth before the deadline, at most a second before it.
    assert_eq!(
        answer_limit(&headers_with_timeout("3S")),
        Duration::from_millis(2_700)
    );
    assert_eq!(
        answer_limit(&headers_with_timeout("60S")),
        Duration::from_secs(59)
    );
    assert_eq!(answer_limit(&HeaderMap::new()), NO_DEADLINE_LIMIT);
    assert_eq!(
        answer_limit(&headers_with_timeout("junk")),
        NO_DEADLINE_LIMIT
    );
    assert!(
        NO_DEADLINE_LIMIT > Duration::from_millis(apogee_proto::limits::MAX_LONG_POLLING_MS as u64)
    );
}

// ---- the service over a slave's replication state ----------------------------------------

use crate::config::BrokerConfig;
use crate::membership::SendAdmission;
use crate::store::{MemKv, MessageStore, StoreConfig};
use prost::Message as _;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The slave's own MessagingService stand-in: counts the calls that reach it.
#[derive(Clone, Default)]
struct Local(Arc<AtomicUsize>);

impl Service<Request<Body>> for Local {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Body::empty())))
    }
}

fn slave(dir: &std::path::Path) -> Arc<Replication> {
    let store = MessageStore::open_with_kv(StoreConfig::for_tests(dir), Arc::new(MemKv::new()))
        .expect("store");
    let config = BrokerConfig {
        role: Role::Slave,
        broker_id: 1,
        broker_name: "sg".into(),
        ..BrokerConfig::default()
    };
    Replication::new(&config, store, None)
}

/// A unary call of `method` with one empty message as its body.
fn unary(method: &str) -> Request<Body> {
    Request::builder()
        .uri(path(method))
        .header("content-type", "application/grpc")
        .body(Body::new(String::from("\0\0\0\0\0")))
        .unwrap()
}

async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            out.extend_from_slice(&data);
        }
    }
    out
}

#[tokio::test]
async fn with_the_master_away_writes_are_refused_with_ha_not_available_and_reads_served_here() {
    let dir = tempfile::tempdir().unwrap();
    let local = Local::default();
    let mut service = SlaveForwarding::new(local.clone(), slave(dir.path()), "sg", "s:1");
    for method in ["SendMessage", "EndTransaction", "RecallMessage"] {
        let response = service.call(unary(method)).await.unwrap();
        let bytes = body_bytes(response).await;
        assert!(bytes.len() >= 5, "{method}: a gRPC message in the body");
        let answer = v2::SendMessageResponse::decode(&bytes[5..]).expect("a v2 response");
        let status = answer.status.expect("a status");
        assert_eq!(status.code, v2::Code::HaNotAvailable as i32, "{method}");
        assert!(status.message.contains("sg id 1 is a slave"), "{status:?}");
    }
    assert_eq!(
        local.0.load(Ordering::SeqCst),
        0,
        "writes never reach the slave's store"
    );
    for method in ["ReceiveMessage", "AckMessage", "QueryRoute", "Telemetry"] {
        service.call(unary(method)).await.unwrap();
    }
    assert_eq!(local.0.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_master_that_cannot_be_reached_ends_the_call_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let replication = slave(dir.path());
    // Nothing listens there: the forwarded call fails to connect.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let master = unused.local_addr().unwrap().to_string();
    drop(unused);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{master}"))
        .unwrap()
        .connect_lazy();
    replication.set_master_channel(Some(MasterChannel {
        endpoint: master.clone(),
        channel,
    }));
    let local = Local::default();
    let mut service = SlaveForwarding::new(local.clone(), replication, "sg", "s:1");
    let response = service.call(unary("SendMessage")).await.unwrap();
    let status = tonic::Status::from_header_map(response.headers()).expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains(&master), "{status:?}");
    assert_eq!(local.0.load(Ordering::SeqCst), 0);

    // A request another slave forwarded is never passed on again.
    let mut again = unary("SendMessage");
    again
        .headers_mut()
        .insert(FORWARDED_BY_HEADER, HeaderValue::from_static("other:1"));
    service.call(again).await.unwrap();
    assert_eq!(local.0.load(Ordering::SeqCst), 1);
}

/// A master's MessagingService stand-in that keeps every request it is given (and so any
/// pass of the handover gate a request carries) until the test drops it.
#[derive(Clone, Default)]
struct Keeping(Arc<parking_lot::Mutex<Vec<Request<Body>>>>);

impl Keeping {
    fn admitted(&self) -> Vec<bool> {
        self.0
            .lock()
            .iter()
            .map(|r| r.extensions().get::<SendAdmission>().is_some())
            .collect()
    }
}

impl Service<Request<Body>> for Keeping {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        self.0.lock().push(request);
        std::future::ready(Ok(Response::new(Body::empty())))
    }
}

#[tokio::test]
async fn a_send_answered_here_passes_the_handover_gate_when_it_is_routed() {
    use futures::FutureExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store =
        MessageStore::open_with_kv(StoreConfig::for_tests(dir.path()), Arc::new(MemKv::new()))
            .expect("store");
    let config = BrokerConfig {
        role: Role::SyncMaster,
        broker_name: "sg".into(),
        ..BrokerConfig::default()
    };
    let replication = Replication::new(&config, store, None);
    let membership = replication.membership().clone();
    let inner = Keeping::default();
    let mut service = SlaveForwarding::new(inner.clone(), replication, "sg", "m:1");

    // A send reaches the service holding its pass; other calls carry none.
    service.call(unary("SendMessage")).await.unwrap();
    service.call(unary("ReceiveMessage")).await.unwrap();
    assert_eq!(inner.admitted(), vec![true, false]);
    assert_eq!(
        membership.sends_in_flight(),
        1,
        "a handover waits for the send routed here until its answer"
    );

    // A send arriving while a handover holds sends back waits for it to end.
    membership.set_handing_over(true);
    let mut held = service.call(unary("SendMessage"));
    assert!((&mut held).now_or_never().is_none(), "held by the handover");
    assert_eq!(inner.admitted().len(), 2);
    membership.set_handing_over(false);
    held.await.unwrap();
    assert_eq!(inner.admitted(), vec![true, false, true]);
    assert_eq!(membership.sends_in_flight(), 2);
    inner.0.lock().clear();
    assert_eq!(membership.sends_in_flight(), 0, "each answer ends its pass");
}

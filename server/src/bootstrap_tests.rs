//! Unit tests of [`super`]: a server on a real loopback socket, watched over gRPC health
//! while it stops.

use super::*;
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A service name to mark serving (the bootstrap only needs its name).
struct Demo;

impl NamedService for Demo {
    const NAME: &'static str = "apogee.test.Demo";
}

fn watch_request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test]
async fn the_stop_reports_not_serving_first_then_drains_then_tears_down() {
    let bootstrap = Bootstrap::start(None, None, Duration::from_secs(30));
    assert_eq!(bootstrap.ops_addr(), "off");
    bootstrap.set_serving::<Demo>().await;
    let registry = prometheus::Registry::new();
    let service = layer_stack(
        crate::ops::rpc_latency(&registry).unwrap(),
        false,
        &AuthLayer::off(),
        bootstrap.routes(),
    );
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let steps = Arc::new(Mutex::new(Vec::<&str>::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (on_stop_steps, teardown_steps) = (steps.clone(), steps.clone());
    let server = tokio::spawn(bootstrap.serve(
        service,
        listener,
        async move {
            let _ = stopped.await;
        },
        move || on_stop_steps.lock().push("on_stop"),
        async move {
            teardown_steps.lock().push("teardown");
            "torn down"
        },
    ));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut overall = client.watch(watch_request("")).await.unwrap().into_inner();
    let mut demo = client
        .watch(watch_request(Demo::NAME))
        .await
        .unwrap()
        .into_inner();
    for stream in [&mut overall, &mut demo] {
        let first = stream.message().await.unwrap().unwrap();
        assert_eq!(first.status(), Wire::Serving);
    }

    stop.send(()).unwrap();
    // Both statuses turn NOT_SERVING while the connection is still served.
    for stream in [&mut overall, &mut demo] {
        // Bounded so that a stop without NOT_SERVING fails here instead of hanging.
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("NOT_SERVING before the connection closes")
            .unwrap()
            .unwrap();
        assert_eq!(next.status(), Wire::NotServing);
    }
    assert_eq!(
        *steps.lock(),
        vec!["on_stop"],
        "no teardown before the drain"
    );
    // The watches are the open calls: ending them lets the drain finish.
    drop((overall, demo, client));
    assert_eq!(server.await.unwrap(), "torn down");
    assert_eq!(*steps.lock(), vec!["on_stop", "teardown"]);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after the stop"
    );
}

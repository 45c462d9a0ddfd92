//! The broker's gRPC listener sets TCP_NODELAY and keepalive on every
//! accepted connection (without it every small reply waits ~40 ms for the
//! client's delayed ACK). Checked on the sockets the running broker accepted.

use apogee_broker::config::BrokerConfig;
use apogee_proto::v2::{self, messaging_service_client::MessagingServiceClient};
use apogee_server::net::Listener;
use std::time::Duration;

#[tokio::test]
async fn broker_accepted_connections_have_nodelay_and_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hook, seen_rx) = apogee_server::net::reporting_hook();
    let listener = listener.with_accept_hook(hook);
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: addr.to_string(),
        // Nothing listens there: registration retries quietly in the background.
        nameservers: vec!["127.0.0.1:1".into()],
        ..BrokerConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(apogee_broker::serve(config, listener, None, async {
        let _ = stop_rx.await;
    }));
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = MessagingServiceClient::connect(format!("http://{addr}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("broker came up");
    client
        .heartbeat(v2::HeartbeatRequest::default())
        .await
        .unwrap();
    let (nodelay, keepalive) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        nodelay,
        "the broker accepted a connection without TCP_NODELAY"
    );
    assert!(
        keepalive,
        "the broker accepted a connection without keepalive"
    );
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
}

//! Remoting frames written by hand to a real broker's (and NameServer's) gRPC port: an
//! unknown request code is answered REQUEST_CODE_NOT_SUPPORTED with its opaque, in the
//! request's serialization, and the connection goes on; a malformed frame (a truncated
//! length, a header longer than its frame, an unknown serialization type, a frame over
//! `[remoting] max_frame_bytes`) closes its own connection only: another remoting
//! connection, a gRPC client, and a message acknowledged before are still served; the
//! broker's `/metrics` counts each such connection in
//! `apogee_remoting_malformed_frames_total` (and the clean closes not).

use crate::remoting_support::{
    assert_unknown_code_answered, closed_by_server, frame_with_header_word, OrPanic, BINARY, JSON,
};
use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_tests::{http, wait_until, BrokerSpec, Cluster};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The broker's frame limit in these tests (above its 4 MiB body limit, as the config
/// requires); the oversize frame announces four times this and sends only its first bytes.
const MAX_FRAME_BYTES: u32 = 8 * 1024 * 1024;

async fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).await.or_panic("a TCP connection")
}

/// `apogee_remoting_malformed_frames_total` on the `/metrics` of `http_addr`.
async fn malformed_frames_metric(http_addr: &str) -> f64 {
    let (status, body) = http::get(http_addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .or_panic("the exposition parses");
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == "apogee_remoting_malformed_frames_total")
        .unwrap_or_else(|| panic!("no apogee_remoting_malformed_frames_total in {body}"));
    match sample.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("apogee_remoting_malformed_frames_total is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_code_is_answered_not_supported_in_the_requests_serialization() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    let mut broker = connect(cluster.broker_addr("b1")).await;
    assert_unknown_code_answered(&mut broker, JSON, 7).await;
    assert_unknown_code_answered(&mut broker, BINARY, 8).await;
    // The connection goes on after both answers.
    assert_unknown_code_answered(&mut broker, JSON, 9).await;

    let mut nameserver = connect(cluster.ns_addr()).await;
    assert_unknown_code_answered(&mut nameserver, JSON, 1).await;
    assert_unknown_code_answered(&mut nameserver, BINARY, 2).await;
}

/// A malformed start of a connection: its bytes, and whether the client then ends its side
/// (the server sees end of file).
struct BadFrame {
    what: &'static str,
    bytes: Vec<u8>,
    then_eof: bool,
}

fn bad_frames() -> Vec<BadFrame> {
    // Only the length and the header word of a frame over the limit, and a few header bytes:
    // the server closes before the body arrives (it is never sent).
    let mut oversize = (MAX_FRAME_BYTES * 4).to_be_bytes().to_vec();
    oversize.extend_from_slice(&100u32.to_be_bytes());
    oversize.extend_from_slice(b"{\"code\":");
    vec![
        BadFrame {
            what: "a truncated length, then end of file",
            bytes: vec![0, 0],
            then_eof: true,
        },
        BadFrame {
            what: "a header length larger than the frame",
            bytes: frame_with_header_word(100, b"{\"code\":1}", b""),
            then_eof: false,
        },
        BadFrame {
            what: "an unknown serialization type (7)",
            bytes: frame_with_header_word((7 << 24) | 2, b"{}", b""),
            then_eof: false,
        },
        BadFrame {
            what: "a frame over max_frame_bytes",
            bytes: oversize,
            then_eof: false,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_own_connection() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1").env("REMOTING__MAX_FRAME_BYTES", MAX_FRAME_BYTES.to_string()))
        .start()
        .await;
    let topic = "frames";
    cluster.create_topic(topic, 2).await;
    let addr = cluster.broker_addr("b1").to_string();
    let producer = Producer::connect(cluster.client_config())
        .await
        .or_panic("producer");
    let mut acknowledged = BTreeSet::new();
    let before = producer
        .send(Message::new(topic, "sent before the bad frames"))
        .await
        .or_panic("a send before the bad frames");
    acknowledged.insert(before.message_id);

    // A remoting connection open through all of it.
    let mut steady = connect(&addr).await;
    assert_unknown_code_answered(&mut steady, JSON, 1).await;
    let http_addr = cluster.broker_http_addr("b1").to_string();
    assert_eq!(malformed_frames_metric(&http_addr).await, 0.0);

    let frames = bad_frames();
    let bad_count = frames.len();
    for (i, bad) in frames.into_iter().enumerate() {
        let mut conn = connect(&addr).await;
        conn.write_all(&bad.bytes)
            .await
            .or_panic("writing the bytes");
        if bad.then_eof {
            conn.shutdown().await.or_panic("ending the client's side");
        }
        if let Err(e) = closed_by_server(&mut conn).await {
            panic!("{}: the server did not close the connection: {e}", bad.what);
        }
        // The other connection, a new one and gRPC are still served.
        assert_unknown_code_answered(&mut steady, JSON, 10 + i as i32).await;
        assert_unknown_code_answered(&mut connect(&addr).await, BINARY, 20 + i as i32).await;
        let after = producer
            .send(Message::new(topic, format!("sent after {}", bad.what)))
            .await
            .unwrap_or_else(|e| panic!("a gRPC send after {}: {e}", bad.what));
        acknowledged.insert(after.message_id);
    }
    // The server counts a connection before it closes it; the connections closed by their
    // clients after an answer are not counted.
    assert_eq!(
        malformed_frames_metric(&http_addr).await,
        bad_count as f64,
        "apogee_remoting_malformed_frames_total after {bad_count} bad frames"
    );

    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        "frames-readers",
        vec![(topic.to_string(), FilterExpression::tag("*"))],
    )
    .await
    .or_panic("consumer");
    let received = std::sync::Mutex::new(BTreeSet::new());
    wait_until(
        Duration::from_secs(30),
        "every acknowledged message",
        || async {
            let got = consumer
                .receive(topic, 16, Duration::from_secs(30), Duration::from_secs(2))
                .await
                .map_err(|e| e.to_string())?;
            for m in &got {
                consumer.ack(m).await.map_err(|e| e.to_string())?;
                received.lock().unwrap().insert(m.message_id.clone());
            }
            let received = received.lock().unwrap();
            if received.is_superset(&acknowledged) {
                Ok(())
            } else {
                Err(format!("received {received:?} of {acknowledged:?}"))
            }
        },
    )
    .await;
    assert_eq!(*received.lock().unwrap(), acknowledged);
}

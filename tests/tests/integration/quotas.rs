//! Abuse limits: a client over its send quota gets TOO_MANY_REQUESTS (and nothing of a
//! refused send is stored) while another client sends on unaffected; connections beyond the
//! per-address cap are closed, and places come back when connections end; Telemetry sessions
//! beyond the per-address cap are refused; a request larger than the body limit allows is
//! refused from its length prefix.

use apogee_proto::v2;
use apogee_tests::telemetry::RawSession;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::time::{Duration, Instant};

/// One single-message send as `client`; returns the status code.
async fn send_as(addr: &str, client: &str, body: &str) -> i32 {
    let mut request = tonic::Request::new(v2::SendMessageRequest {
        messages: vec![rpc::message("quota-t", 0, body.to_string())],
    });
    request
        .metadata_mut()
        .insert("x-mq-client-id", client.parse().unwrap());
    let r = rpc::messaging(addr)
        .send_message(request)
        .await
        .expect("SendMessage transport")
        .into_inner();
    rpc::code(r.status.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_send_quota_gets_too_many_requests_and_another_is_unaffected() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("LIMITS__SEND_RATE_PER_CLIENT", "5"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("quota-t", 1).await;

    let started = Instant::now();
    let (mut accepted, mut refused) = (0u32, 0u32);
    for i in 0..40 {
        match send_as(&addr, "quota-a", &format!("a-{i}")).await {
            c if c == v2::Code::Ok as i32 => accepted += 1,
            c if c == v2::Code::TooManyRequests as i32 => refused += 1,
            c => panic!("send {i}: unexpected code {}", rpc::code_name(c)),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(refused > 0, "40 sends in {elapsed:.2}s, none refused");
    // At most a full bucket plus what the elapsed time refilled.
    let allowed = 5 + (5.0 * elapsed).ceil() as u32;
    assert!(accepted <= allowed, "{accepted} accepted in {elapsed:.2}s");

    // Another client is not slowed by the first one's quota.
    for i in 0..3 {
        assert_eq!(
            send_as(&addr, "quota-b", &format!("b-{i}")).await,
            v2::Code::Ok as i32
        );
    }
    // Exactly the accepted sends are stored.
    let stored = rpc::queue_contents(&addr, "quota-t", 0).await;
    assert_eq!(stored.len() as u32, accepted + 3, "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_closed_and_places_come_back() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("LIMITS__MAX_CONNECTIONS_PER_ADDRESS", "4"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    // Eight idle connections from this address: at most four stay open (fewer when the
    // NameServer holds one too), the rest are closed as soon as they are accepted.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let closed = wait_until(
        Duration::from_secs(20),
        "connections over the cap to close",
        || {
            let closed = held
                .iter()
                .filter(|s| {
                    // Closed: end of stream or a reset. An open connection has nothing to read
                    // or the server's first HTTP/2 frames (data is not a close).
                    let mut buf = [0u8; 64];
                    match s.try_read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    }
                })
                .count();
            async move {
                if closed >= 4 {
                    Ok(closed)
                } else {
                    Err(format!("{closed} of 8 closed"))
                }
            }
        },
    )
    .await;
    assert!(closed <= 8);
    assert!(cluster
        .broker_log("broker-a")
        .contains("holds its maximum of 4 open connections"));
    // Once they are gone, a client gets in again.
    drop(held);
    wait_until(
        Duration::from_secs(20),
        "a new connection to be served",
        || {
            let addr = addr.clone();
            async move {
                let r = rpc::messaging(&addr)
                    .query_route(v2::QueryRouteRequest {
                        topic: rpc::resource("nothing-here"),
                        endpoints: None,
                    })
                    .await;
                r.map(|_| ()).map_err(|e| e.to_string())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_body_limit_allows_is_refused_before_it_is_buffered() {
    // 1 KiB bodies: requests up to 1024 x 1 KiB plus 1 MiB of overhead are decoded.
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("MAX_BODY_BYTES", "1024"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    cluster.create_topic("size-t", 1).await;
    // Within the frame limit but over the body limit: decoded, then refused per message.
    let small = rpc::send(
        &mut rpc::messaging(&addr),
        vec![rpc::message("size-t", 0, vec![b'x'; 2048])],
    )
    .await;
    assert_eq!(
        rpc::code(small.status.as_ref()),
        v2::Code::MessageBodyTooLarge as i32
    );
    // Over the frame limit: refused by gRPC from the length prefix.
    let huge = rpc::messaging(&addr)
        .send_message(v2::SendMessageRequest {
            messages: vec![rpc::message("size-t", 0, vec![b'x'; 3 << 20])],
        })
        .await
        .expect_err("a 3 MiB request to a broker with 1 KiB bodies");
    assert_eq!(huge.code(), tonic::Code::OutOfRange, "{huge:?}");
    // The broker serves on; nothing was stored.
    assert!(rpc::queue_contents(&addr, "size-t", 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_sessions_beyond_the_per_address_cap_get_too_many_requests() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a").env("LIMITS__MAX_SESSIONS_PER_ADDRESS", "2"))
        .start()
        .await;
    let addr = cluster.broker_addr("broker-a").to_string();
    let java = v2::Language::Java;
    let first = RawSession::consumer(&addr, "s-1", "sess-g", "sess-t", java).await;
    let second = RawSession::consumer(&addr, "s-2", "sess-g", "sess-t", java).await;
    for s in [&first, &second] {
        assert!(
            matches!(
                s.first.command,
                Some(v2::telemetry_command::Command::Settings(_))
            ),
            "{:?}",
            s.first
        );
    }
    let third = RawSession::consumer(&addr, "s-3", "sess-g", "sess-t", java).await;
    assert_eq!(
        rpc::code(third.first.status.as_ref()),
        v2::Code::TooManyRequests as i32,
        "{:?}",
        third.first
    );
    // A session that ends gives its place back.
    drop(first);
    wait_until(Duration::from_secs(20), "a place for a new session", || {
        let addr = addr.clone();
        async move {
            let s = RawSession::consumer(&addr, "s-4", "sess-g", "sess-t", java).await;
            match s.first.command {
                Some(v2::telemetry_command::Command::Settings(_)) => Ok(()),
                _ => Err(format!("{:?}", s.first)),
            }
        }
    })
    .await;
}

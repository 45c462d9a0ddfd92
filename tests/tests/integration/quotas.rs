//! Abuse limits: a client over its send quota gets TOO_MANY_REQUESTS (and nothing of a
//! refused send is stored) while another client sends on unaffected.

use apogee_proto::v2;
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::time::Instant;

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

//! Unit tests of the fan-out: its one error text and per-broker outcomes from fakes, and real
//! calls over loopback to brokers that cannot be reached, refuse the call or never answer.

use super::*;
use apogee_proto::cluster::ListClientsRequest;
use tokio::net::TcpListener;

fn target(name: &str) -> Target {
    Target::new(GroupKey::new("c", name), format!("{name}:10911"))
}

#[test]
fn a_partial_change_names_each_failure_and_where_it_applied() {
    let answers = FanOut::new(
        "CreateGroup of g",
        vec![
            (target("b3"), Ok(3)),
            (target("b2"), Err(Status::unavailable("down"))),
            (target("b1"), Ok(1)),
            (target("b4"), Err(Status::unavailable("stopping"))),
        ],
    );
    let (applied, error) = answers.applied();
    let e = error.unwrap();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(
        e.message(),
        "CreateGroup of g failed on b2: down (at b2:10911); b4: stopping (at b4:10911); \
         applied on b1, b3"
    );
    assert_eq!(broker_names(&applied), ["b1", "b3"]);
    assert_eq!(applied.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1, 3]);
}

#[test]
fn outcomes_name_failures_and_tolerate_not_found() {
    let answers = FanOut::new(
        "x",
        vec![
            (target("b2"), Ok(2)),
            (target("b1"), Ok(1)),
            (target("b3"), Err(Status::not_found("no such group"))),
        ],
    );
    let (applied, error) = answers.tolerating(Code::NotFound).applied();
    assert!(error.is_none());
    assert_eq!(broker_names(&applied), ["b1", "b2"]);

    let answers = FanOut::new(
        "CreateGroup of g",
        vec![
            (target("b1"), Ok(1)),
            (target("b2"), Err(Status::unavailable("down"))),
        ],
    );
    let (applied, error) = answers.applied();
    let e = error.unwrap();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("b2: down"), "{}", e.message());
    assert!(e.message().contains("applied on b1"), "{}", e.message());
    assert_eq!(applied.len(), 1);
}

#[test]
fn a_shared_code_is_kept_and_mixed_codes_are_unavailable() {
    let one = FanOut::<()>::new(
        "ReadQueue of t queue 5",
        vec![(target("b1"), Err(Status::invalid_argument("queues 0..1")))],
    );
    let e = one.answers().unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "ReadQueue of t queue 5 failed on b1: queues 0..1 (at b1:10911)"
    );

    let mixed = FanOut::<()>::new(
        "x",
        vec![
            (target("b1"), Err(Status::invalid_argument("bad"))),
            (target("b2"), Err(Status::already_exists("there"))),
        ],
    );
    assert_eq!(mixed.applied().1.unwrap().code(), Code::Unavailable);
}

#[test]
fn a_query_fails_whole_and_says_nothing_of_answers() {
    let answers = FanOut::new(
        "ListTransactions",
        vec![
            (target("b1"), Ok(1)),
            (target("b2"), Err(Status::unavailable("down"))),
        ],
    );
    let e = answers.answers().unwrap_err();
    assert_eq!(
        e.message(),
        "ListTransactions failed on b2: down (at b2:10911)"
    );
    let all = FanOut::new("x", vec![(target("b2"), Ok(2)), (target("b1"), Ok(1))]);
    let groups: Vec<_> = all
        .answers()
        .unwrap()
        .into_iter()
        .map(|(k, n)| (k.broker_name, n))
        .collect();
    assert_eq!(groups, [("b1".to_string(), 1), ("b2".to_string(), 2)]);
}

#[tokio::test]
async fn each_call_is_bounded_and_reported_per_broker_in_target_order() {
    let targets = vec![target("slow"), target("fast")];
    let outcomes = call_each(targets, Duration::from_millis(50), |t| {
        let slow = t.group.broker_name == "slow";
        async move {
            if slow {
                std::future::pending::<()>().await;
            }
            Ok(7)
        }
    })
    .await;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].0.group.broker_name, "slow");
    let e = outcomes[0].1.as_ref().unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert_eq!(e.message(), "no answer from slow:10911 within 50 ms");
    assert_eq!(outcomes[1].0.group.broker_name, "fast");
    assert_eq!(*outcomes[1].1.as_ref().unwrap(), 7);
}

/// A loopback address nothing listens on.
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A gRPC server on loopback with no service: it answers every call UNIMPLEMENTED.
async fn serviceless_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = tonic::transport::Server::builder().add_routes(tonic::service::Routes::default());
    tokio::spawn(router.serve_with_incoming(incoming));
    addr
}

/// A loopback listener that accepts connections and never answers.
async fn silent_server() -> (String, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (listener.local_addr().unwrap().to_string(), listener)
}

#[tokio::test]
async fn real_calls_report_each_broker_that_is_down_refuses_or_hangs() {
    let channels = BrokerChannels::default().with_call_timeout(Duration::from_millis(500));
    let (silent, _held) = silent_server().await;
    let targets = vec![
        Target::new(GroupKey::new("c", "dead"), dead_address().await),
        Target::new(GroupKey::new("c", "bare"), serviceless_server().await),
        Target::new(GroupKey::new("c", "silent"), silent.clone()),
    ];
    let answers = fan_out(
        &channels,
        targets.clone(),
        "ListClients",
        |mut c| async move { c.list_clients(ListClientsRequest {}).await },
    )
    .await;
    let codes: Vec<(&str, Code)> = answers
        .outcomes
        .iter()
        .map(|(t, r)| (t.group.broker_name.as_str(), r.as_ref().unwrap_err().code()))
        .collect();
    assert_eq!(
        codes,
        [
            ("dead", Code::Unavailable),
            ("bare", Code::Unimplemented),
            ("silent", Code::DeadlineExceeded)
        ]
    );
    let e = answers.answers().unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let text = e.message();
    assert!(text.starts_with("ListClients failed on dead: "), "{text}");
    for t in &targets {
        let named = format!("{}: ", t.group.broker_name);
        assert!(text.contains(&named), "{text}");
        assert!(text.contains(&format!("(at {})", t.endpoint)), "{text}");
    }
    assert!(
        text.contains(&format!("no answer from {silent} within 500 ms")),
        "{text}"
    );
    assert!(!text.contains("applied on"), "{text}");
}

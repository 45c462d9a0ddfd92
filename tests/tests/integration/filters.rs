//! Broker-side filters: groups with different SQL92 property filters each get
//! exactly the messages their expression selects (by ReceiveMessage and by
//! PullMessage), a tag filter keeps working next to them, and malformed
//! expressions are refused with ILLEGAL_FILTER_EXPRESSION.

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_proto::v2::{self, pull_message_response, receive_message_response, Code};
use apogee_proto::{time, v2::messaging_service_client::MessagingServiceClient};
use apogee_tests::wait::wait_until;
use apogee_tests::{rpc, BrokerSpec, Cluster};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::Channel;

const TOPIC: &str = "filtered";
const QUEUES: i32 = 4;
const COUNT: usize = 200;

/// What the test sent for message number `i`: tag and user properties.
struct Sent {
    tag: Option<&'static str>,
    props: BTreeMap<&'static str, String>,
}

/// Varied properties: every message has `i` and `region`; `amount` is a
/// decimal; `vip` is missing from every third message; the tag cycles
/// through A, B and none.
fn sent(i: usize) -> Sent {
    let mut props = BTreeMap::new();
    props.insert("i", i.to_string());
    props.insert("region", ["eu", "us", "asia", "eu-west"][i % 4].to_string());
    props.insert("amount", format!("{}.{}", (i * 37) % 500, i % 10));
    if !i.is_multiple_of(3) {
        props.insert(
            "vip",
            if i.is_multiple_of(2) { "true" } else { "false" }.to_string(),
        );
    }
    props.insert(
        "name",
        format!("{}-{i}", ["order", "refund", "probe"][i % 3]),
    );
    Sent {
        tag: [Some("A"), Some("B"), None][i % 3],
        props,
    }
}

/// The groups under test: name, filter, and the same selection written as
/// Rust over what was sent (computed independently of the broker).
type Selects = fn(usize, &Sent) -> bool;

fn groups() -> Vec<(&'static str, FilterExpression, Selects)> {
    fn amount(s: &Sent) -> f64 {
        s.props["amount"].parse().unwrap()
    }
    vec![
        (
            "sql-eu-big",
            FilterExpression::sql92("region = 'eu' AND amount >= 200"),
            |_, s| s.props["region"] == "eu" && amount(s) >= 200.0,
        ),
        (
            "sql-mixed",
            FilterExpression::sql92(
                "(vip = TRUE AND i BETWEEN 50 AND 150) OR (TAGS = 'B' AND name LIKE 'refund-1%') \
                 OR (vip IS NULL AND region NOT IN ('eu', 'us') AND NOT amount < 400)",
            ),
            |i, s| {
                let vip = s.props.get("vip").map(String::as_str);
                (vip == Some("true") && (50..=150).contains(&i))
                    || (s.tag == Some("B") && s.props["name"].starts_with("refund-1"))
                    || (vip.is_none()
                        && !["eu", "us"].contains(&s.props["region"].as_str())
                        && amount(s) >= 400.0)
            },
        ),
        (
            // A missing property makes the comparison unknown: no match either way.
            "sql-not-vip",
            FilterExpression::sql92("vip <> TRUE"),
            |_, s| s.props.get("vip").is_some_and(|v| v == "false"),
        ),
        ("tag-a", FilterExpression::tag("A"), |_, s| {
            s.tag == Some("A")
        }),
    ]
}

/// Sends the COUNT messages (bodies `msg-<i>`); returns body -> number.
async fn send_all(cluster: &Cluster) -> BTreeMap<String, usize> {
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    let mut bodies = BTreeMap::new();
    for chunk in (0..COUNT).collect::<Vec<_>>().chunks(25) {
        let messages: Vec<Message> = chunk
            .iter()
            .map(|&i| {
                let s = sent(i);
                let mut b = Message::builder(TOPIC, format!("msg-{i}"));
                if let Some(tag) = s.tag {
                    b = b.tag(tag);
                }
                for (k, v) in &s.props {
                    b = b.property(*k, v.clone());
                }
                b.build()
            })
            .collect();
        let receipts = producer.send_batch(messages).await.expect("send_batch");
        assert_eq!(receipts.len(), chunk.len());
        for &i in chunk {
            bodies.insert(format!("msg-{i}"), i);
        }
    }
    bodies
}

/// The numbers `select` picks among the sent messages.
fn expected(select: Selects) -> BTreeSet<usize> {
    (0..COUNT).filter(|&i| select(i, &sent(i))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_group_receives_exactly_what_its_filter_selects() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let bodies = send_all(&cluster).await;

    for (group, filter, select) in groups() {
        let want = expected(select);
        assert!(
            !want.is_empty() && want.len() < COUNT,
            "group {group}: the test data should select some but not all messages"
        );
        let consumer =
            SimpleConsumer::connect(cluster.client_config(), group, vec![(TOPIC.into(), filter)])
                .await
                .expect("consumer");
        let got: Mutex<Vec<usize>> = Mutex::new(Vec::new());
        let what = format!("group {group} to receive its {} messages", want.len());
        wait_until(Duration::from_secs(60), &what, || {
            let (consumer, got, bodies, want) = (&consumer, &got, &bodies, &want);
            async move {
                let messages = consumer
                    .receive(TOPIC, 32, Duration::from_secs(30), Duration::from_secs(1))
                    .await
                    .map_err(|e| format!("receive failed: {e}"))?;
                for (m, r) in messages.iter().zip(consumer.ack_many(&messages).await) {
                    r.map_err(|e| format!("ack of {} failed: {e}", m.message_id))?;
                }
                let mut got = got.lock().unwrap();
                got.extend(messages.iter().map(|m| bodies[m.body_lossy().as_ref()]));
                if got.len() >= want.len() {
                    Ok(())
                } else {
                    Err(format!("{} so far", got.len()))
                }
            }
        })
        .await;
        // Nothing else is left for the group.
        let extra = consumer
            .receive(TOPIC, 32, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .expect("receive");
        let mut got = got.into_inner().unwrap();
        got.extend(extra.iter().map(|m| bodies[m.body_lossy().as_ref()]));
        let got_set: BTreeSet<usize> = got.iter().copied().collect();
        assert_eq!(got.len(), got_set.len(), "group {group}: duplicates");
        assert_eq!(got_set, want, "group {group}: received != selected");
        // Filtered-out messages count as consumed: the group has no lag left.
        let out = cluster
            .cli(&["-o", "json", "group", "describe", group])
            .success();
        assert_eq!(out.json()["lag"], 0, "group {group}: {out}");
    }

    // `apogee consume --sql` takes the same filter.
    let (_, filter, select) = groups().swap_remove(0);
    let out = cluster
        .cli(&[
            "-o",
            "json",
            "consume",
            "--topic",
            TOPIC,
            "--group",
            "cli-sql",
            "--sql",
            &filter.expression,
            "--max",
            "200",
            "--wait",
            "3",
        ])
        .success();
    let printed: BTreeSet<usize> = out
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("consume should print a JSON array: {out}"))
        .iter()
        .map(|m| bodies[m["body"].as_str().expect("body")])
        .collect();
    assert_eq!(printed, expected(select), "{out}");
    let bad = cluster.cli(&[
        "consume", "--topic", TOPIC, "--group", "cli-sql", "--sql", "a >",
    ]);
    assert_ne!(bad.code, 0, "{bad}");
    assert!(bad.stderr.contains("SQL92 filter"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_applies_sql_filters_too() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let bodies = send_all(&cluster).await;
    let mut client = rpc::messaging(&cluster.broker("broker-a").addr);
    let (group, filter, select) = groups().swap_remove(1);
    let mut got = BTreeSet::new();
    for queue in 0..QUEUES {
        for m in pull_filtered(&mut client, group, queue, &filter.expression).await {
            let body = String::from_utf8(m.body.to_vec()).expect("utf-8 body");
            assert!(got.insert(bodies[&body]), "{body} pulled twice");
        }
    }
    assert_eq!(got, expected(select));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_filters_are_refused() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let mut client = rpc::messaging(&cluster.broker("broker-a").addr);
    let long = vec!["a = 1"; 1000].join(" OR ");
    for bad in [
        "a >",
        "a = 'unterminated",
        "(a = 1",
        "a == 1",
        "a > 'text'",
        "a BETWEEN 1",
        "a = NULL",
        long.as_str(),
    ] {
        let status = receive_status(&mut client, "bad-filter", v2::FilterType::Sql, bad).await;
        assert_eq!(
            rpc::code(status.as_ref()),
            Code::IllegalFilterExpression as i32,
            "ReceiveMessage with {bad:.40?}: {status:?}"
        );
        assert!(
            status.as_ref().is_some_and(|s| !s.message.is_empty()),
            "the refusal should say what is wrong: {status:?}"
        );
    }
    // The same through PullMessage and through the client library.
    let req = pull_request("bad-filter", 0, 0, "a >");
    let status = pull_status(&mut client, req).await;
    assert_eq!(
        rpc::code(status.as_ref()),
        Code::IllegalFilterExpression as i32,
        "PullMessage: {status:?}"
    );
    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        "bad-filter",
        vec![(TOPIC.into(), FilterExpression::sql92("region = 'eu' AND"))],
    )
    .await
    .expect("consumer");
    let err = consumer
        .receive(TOPIC, 1, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .expect_err("a malformed filter must be refused");
    assert_eq!(err.code(), Some(Code::IllegalFilterExpression), "{err}");
    // A well-formed filter on the same connection is fine.
    let status = receive_status(&mut client, "good-filter", v2::FilterType::Sql, "a > 1").await;
    assert_eq!(
        rpc::code(status.as_ref()),
        Code::MessageNotFound as i32,
        "{status:?}"
    );
}

/// The final status of one ReceiveMessage with the given filter.
async fn receive_status(
    client: &mut MessagingServiceClient<Channel>,
    group: &str,
    kind: v2::FilterType,
    expression: &str,
) -> Option<v2::Status> {
    let req = v2::ReceiveMessageRequest {
        group: rpc::resource(group),
        message_queue: Some(queue(0)),
        filter_expression: Some(v2::FilterExpression {
            r#type: kind as i32,
            expression: expression.into(),
        }),
        batch_size: 1,
        invisible_duration: Some(time::duration(Duration::from_secs(30))),
        auto_renew: false,
        long_polling_timeout: Some(time::duration(Duration::from_millis(100))),
        attempt_id: None,
    };
    let mut stream = client
        .receive_message(req)
        .await
        .expect("ReceiveMessage transport error")
        .into_inner();
    let mut status = None;
    while let Some(item) = stream.message().await.expect("ReceiveMessage stream") {
        if let Some(receive_message_response::Content::Status(s)) = item.content {
            status = Some(s);
        }
    }
    status
}

fn queue(id: i32) -> v2::MessageQueue {
    v2::MessageQueue {
        topic: rpc::resource(TOPIC),
        id,
        permission: v2::Permission::ReadWrite as i32,
        broker: None,
        accept_message_types: vec![],
    }
}

fn pull_request(group: &str, queue_id: i32, offset: i64, sql: &str) -> v2::PullMessageRequest {
    v2::PullMessageRequest {
        group: rpc::resource(group),
        message_queue: Some(queue(queue_id)),
        offset,
        batch_size: 32,
        filter_expression: Some(v2::FilterExpression {
            r#type: v2::FilterType::Sql as i32,
            expression: sql.into(),
        }),
        long_polling_timeout: Some(time::duration(Duration::ZERO)),
    }
}

async fn pull_status(
    client: &mut MessagingServiceClient<Channel>,
    req: v2::PullMessageRequest,
) -> Option<v2::Status> {
    pull_once(client, req).await.2
}

/// One PullMessage: messages, next offset, status.
async fn pull_once(
    client: &mut MessagingServiceClient<Channel>,
    req: v2::PullMessageRequest,
) -> (Vec<v2::Message>, Option<i64>, Option<v2::Status>) {
    let mut stream = client
        .pull_message(req)
        .await
        .expect("PullMessage transport error")
        .into_inner();
    let (mut messages, mut next, mut status) = (Vec::new(), None, None);
    while let Some(item) = stream.message().await.expect("PullMessage stream") {
        match item.content {
            Some(pull_message_response::Content::Message(m)) => messages.push(m),
            Some(pull_message_response::Content::NextOffset(n)) => next = Some(n),
            Some(pull_message_response::Content::Status(s)) => status = Some(s),
            None => {}
        }
    }
    (messages, next, status)
}

/// Pulls a whole queue from offset 0 with a SQL filter.
async fn pull_filtered(
    client: &mut MessagingServiceClient<Channel>,
    group: &str,
    queue_id: i32,
    sql: &str,
) -> Vec<v2::Message> {
    let (mut out, mut offset) = (Vec::new(), 0i64);
    loop {
        let req = pull_request(group, queue_id, offset, sql);
        let (messages, next, status) = pull_once(client, req).await;
        let c = rpc::code(status.as_ref());
        if c == Code::MessageNotFound as i32 {
            return out;
        }
        assert_eq!(c, Code::Ok as i32, "pull {queue_id}@{offset}: {status:?}");
        out.extend(messages);
        let next = next.expect("OK pull without a next offset");
        if next <= offset {
            return out;
        }
        offset = next;
    }
}

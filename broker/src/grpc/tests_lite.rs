//! Lite consumption through the MessagingService handlers over an in-memory broker: two
//! clients sharing lite topics get each lite topic's messages in order, MIN delivers a send
//! made before any subscription, a suspended delivery counts no attempt, an append wakes a
//! waiting receive, and the sync's refusals.

use super::tests_messaging::{test_broker, topic_config, TestBroker};
use super::*;
use crate::store::NewMessage;
use crate::topics::MessageKind;
use apogee_proto::names::lite_queue_topic;
use apogee_proto::v2::{receive_message_response::Content, Code, LiteSubscriptionAction};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

const PARENT: &str = "chats";
const LITE_GROUP: &str = "agents";

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource {
        name: name.into(),
        ..Default::default()
    })
}

fn with_client<T>(client: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("x-mq-client-id", client.parse().unwrap());
    r
}

fn lite_broker() -> TestBroker {
    let t = test_broker();
    let parent = topic_config(PARENT, 1).with_kinds(&[MessageKind::Lite]);
    t.broker.topics().create(parent).expect("lite parent");
    t
}

/// Stores `body` in lite topic `lite` of [`PARENT`] (as the producer stores a LITE message).
async fn send(t: &TestBroker, lite: &str, body: &str) {
    t.broker
        .store()
        .append(vec![NewMessage {
            topic: lite_queue_topic(PARENT, lite),
            queue_id: 0,
            message_id: apogee_proto::message_id::new_message_id(),
            tag: None,
            keys: vec![],
            message_group: None,
            message_type: v2::MessageType::Lite as u8,
            born_timestamp_ms: 0,
            born_host: "127.0.0.1".into(),
            delivery_timestamp_ms: None,
            reconsume_times: 0,
            properties: vec![],
            internal: vec![],
            body: body.as_bytes().to_vec().into(),
        }])
        .await
        .unwrap();
}

async fn sync(
    t: &TestBroker,
    client: &str,
    action: LiteSubscriptionAction,
    lites: &[&str],
    offset: Option<v2::OffsetOption>,
) -> Code {
    let response = t
        .messaging
        .sync_lite_subscription(with_client(
            client,
            v2::SyncLiteSubscriptionRequest {
                action: action as i32,
                topic: resource(PARENT),
                group: resource(LITE_GROUP),
                lite_topic_set: lites.iter().map(|s| s.to_string()).collect(),
                version: None,
                offset_option: offset,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    Code::try_from(response.status.unwrap().code).unwrap()
}

/// One received message: its body and delivery attempt, with its handle.
struct Got {
    body: String,
    attempt: i32,
    handle: String,
}

async fn receive(t: &TestBroker, client: &str, batch: i32, long_poll_ms: u64) -> Vec<Got> {
    let stream = t
        .messaging
        .receive_message(with_client(
            client,
            v2::ReceiveMessageRequest {
                group: resource(LITE_GROUP),
                message_queue: Some(v2::MessageQueue {
                    topic: resource(PARENT),
                    ..Default::default()
                }),
                batch_size: batch,
                invisible_duration: Some(apogee_proto::time::duration(Duration::from_secs(30))),
                long_polling_timeout: Some(apogee_proto::time::duration(Duration::from_millis(
                    long_poll_ms,
                ))),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::new();
    for r in stream {
        match r.unwrap().content {
            Some(Content::Message(m)) => {
                let sp = m.system_properties.unwrap();
                out.push(Got {
                    body: String::from_utf8(m.body.to_vec()).unwrap(),
                    attempt: sp.delivery_attempt.unwrap_or(0),
                    handle: sp.receipt_handle.unwrap_or_default(),
                });
            }
            Some(Content::Status(s)) => assert!(
                s.code == Code::Ok as i32 || s.code == Code::MessageNotFound as i32,
                "{s:?}"
            ),
            _ => {}
        }
    }
    out
}

/// The lite topic of a test body ("<lite>-<n>").
fn lite_of(body: &str) -> &str {
    body.split('-').next().unwrap()
}

async fn ack(t: &TestBroker, client: &str, got: &Got) -> Code {
    let response = t
        .messaging
        .ack_message(with_client(
            client,
            v2::AckMessageRequest {
                group: resource(LITE_GROUP),
                topic: resource(PARENT),
                entries: vec![v2::AckMessageEntry {
                    message_id: String::new(),
                    receipt_handle: got.handle.clone(),
                    lite_topic: Some(lite_of(&got.body).to_string()),
                }],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    Code::try_from(response.status.unwrap().code).unwrap()
}

#[tokio::test]
async fn two_clients_share_lite_topics_each_in_order() {
    let t = lite_broker();
    let lites = ["a", "b", "c", "d"];
    for c in ["c1", "c2"] {
        assert_eq!(
            sync(&t, c, LiteSubscriptionAction::PartialAdd, &lites, None).await,
            Code::Ok
        );
    }
    for n in 0..5 {
        for l in lites {
            send(&t, l, &format!("{l}-{n}")).await;
        }
    }
    // Both take part: a lite topic handed to one is held from the other until acked.
    let first = receive(&t, "c1", 2, 0).await;
    let second = receive(&t, "c2", 2, 0).await;
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 2);
    let mut held: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|g| lite_of(&g.body))
        .collect();
    held.sort();
    assert_eq!(held, lites, "one message of each lite topic in flight");
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pending = vec![("c1", first), ("c2", second)];
    let mut rounds = 0;
    while seen.values().map(Vec::len).sum::<usize>() < 20 {
        rounds += 1;
        assert!(rounds < 100, "stalled: {seen:?}");
        for (client, got) in pending.drain(..) {
            for g in got {
                seen.entry(lite_of(&g.body).to_string())
                    .or_default()
                    .push(g.body.clone());
                assert_eq!(ack(&t, client, &g).await, Code::Ok);
            }
        }
        for client in ["c2", "c1"] {
            pending.push((client, receive(&t, client, 3, 0).await));
        }
    }
    for l in lites {
        let want: Vec<String> = (0..5).map(|n| format!("{l}-{n}")).collect();
        assert_eq!(seen[l], want, "lite topic {l} in order, each once");
    }
}

#[tokio::test]
async fn min_delivers_a_send_made_before_any_subscription() {
    let t = lite_broker();
    send(&t, "early", "early-0").await;
    assert_eq!(
        sync(
            &t,
            "c1",
            LiteSubscriptionAction::PartialAdd,
            &["early"],
            None
        )
        .await,
        Code::Ok
    );
    assert!(
        receive(&t, "c1", 4, 0).await.is_empty(),
        "LAST starts after it"
    );
    let min = v2::OffsetOption {
        offset_type: Some(v2::offset_option::OffsetType::Policy(
            v2::offset_option::Policy::Min as i32,
        )),
    };
    assert_eq!(
        sync(
            &t,
            "c1",
            LiteSubscriptionAction::PartialAdd,
            &["early"],
            Some(min)
        )
        .await,
        Code::Ok
    );
    let got = receive(&t, "c1", 4, 0).await;
    assert_eq!(
        got.iter().map(|g| g.body.as_str()).collect::<Vec<_>>(),
        ["early-0"]
    );
}

#[tokio::test]
async fn a_suspended_delivery_counts_no_attempt() {
    let t = lite_broker();
    sync(&t, "c1", LiteSubscriptionAction::PartialAdd, &["s"], None).await;
    send(&t, "s", "s-0").await;
    let got = receive(&t, "c1", 1, 0).await;
    assert_eq!(got[0].attempt, 1);
    let changed = t
        .messaging
        .change_invisible_duration(with_client(
            "c1",
            v2::ChangeInvisibleDurationRequest {
                group: resource(LITE_GROUP),
                topic: resource(PARENT),
                receipt_handle: got[0].handle.clone(),
                invisible_duration: Some(apogee_proto::time::duration(Duration::from_secs(1))),
                message_id: String::new(),
                lite_topic: Some("s".into()),
                suspend: Some(true),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.status.unwrap().code, Code::Ok as i32);
    // The receive waits for the redelivery to come due.
    let again = receive(&t, "c1", 1, 10_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, "s-0");
    assert_eq!(again[0].attempt, 1, "suspended: no attempt counted");
}

#[tokio::test]
async fn an_append_wakes_a_waiting_lite_receive() {
    let t = lite_broker();
    sync(&t, "c1", LiteSubscriptionAction::PartialAdd, &["w"], None).await;
    let (got, ()) = tokio::join!(receive(&t, "c1", 4, 20_000), async {
        // The receive holds the broker's one long-poll place while it waits.
        while t.broker.quotas().long_poll().is_ok() {
            tokio::task::yield_now().await;
        }
        send(&t, "w", "w-0").await;
    });
    assert_eq!(
        got.iter().map(|g| g.body.as_str()).collect::<Vec<_>>(),
        ["w-0"]
    );
}

#[tokio::test]
async fn syncs_are_refused_for_bad_names_quota_and_groups() {
    let t = lite_broker();
    assert_eq!(
        sync(
            &t,
            "c1",
            LiteSubscriptionAction::PartialAdd,
            &["bad name"],
            None
        )
        .await,
        Code::IllegalLiteTopic
    );
    let over: Vec<String> = (0..=t.broker.config().lite.subscription_quota)
        .map(|i| format!("l{i}"))
        .collect();
    let over: Vec<&str> = over.iter().map(String::as_str).collect();
    assert_eq!(
        sync(&t, "c1", LiteSubscriptionAction::PartialAdd, &over, None).await,
        Code::LiteSubscriptionQuotaExceeded
    );
    assert!(
        t.broker
            .lite()
            .client("c1")
            .map_or(0, |c| c.subscription_count())
            == 0
    );
    // The group was created as a lite group bound to the parent; a plain group is refused.
    let created = t.broker.groups().get(LITE_GROUP).unwrap();
    assert_eq!(created.lite.as_ref().unwrap().bind_topic, PARENT);
    let response = t
        .messaging
        .sync_lite_subscription(with_client(
            "c1",
            v2::SyncLiteSubscriptionRequest {
                action: LiteSubscriptionAction::PartialAdd as i32,
                topic: resource(PARENT),
                group: resource(super::tests_messaging::GROUP),
                lite_topic_set: vec!["x".into()],
                version: None,
                offset_option: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.status.unwrap().code, Code::BadRequest as i32);
}

#[tokio::test]
async fn lite_topics_are_listed_and_described_with_backlog_and_subscribers() {
    let t = lite_broker();
    sync(
        &t,
        "c1",
        LiteSubscriptionAction::PartialAdd,
        &["x", "yy"],
        None,
    )
    .await;
    send(&t, "x", "x-0").await;
    send(&t, "x", "x-1").await;
    send(&t, "yy", "yy-0").await;
    let got = receive(&t, "c1", 1, 0).await;
    assert_eq!(got.len(), 1);
    let list = |group: &str, after: &str, limit| {
        admin_lite::list(
            &t.broker,
            &apogee_proto::cluster::ListLiteTopicsRequest {
                parent: PARENT.into(),
                group: group.into(),
                after: after.into(),
                limit,
            },
        )
        .unwrap()
    };
    let all = list("", "", 0);
    let rows: Vec<(&str, u64, u32)> = all
        .lite_topics
        .iter()
        .map(|l| (l.lite_topic.as_str(), l.backlog, l.subscribers))
        .collect();
    assert_eq!(rows, [("x", 2, 1), ("yy", 1, 1)]);
    assert!(all.next_after.is_empty());
    // Paged: one at a time.
    let first = list(LITE_GROUP, "", 1);
    assert_eq!(first.lite_topics[0].lite_topic, "x");
    assert_eq!(first.next_after, "x");
    let second = list(LITE_GROUP, "x", 1);
    assert_eq!(second.lite_topics[0].lite_topic, "yy");
    // Described: the group's position, lag and the delivery in flight.
    let d = admin_lite::describe(
        &t.broker,
        &apogee_proto::cluster::DescribeLiteTopicRequest {
            parent: PARENT.into(),
            lite_topic: "x".into(),
            group: String::new(),
        },
    )
    .unwrap();
    assert_eq!(d.lite_topic.unwrap().next_offset, 2);
    assert_eq!(d.groups.len(), 1);
    let g = &d.groups[0];
    assert_eq!(
        (g.group.as_str(), g.committed_offset, g.lag, g.inflight),
        (LITE_GROUP, 0, 2, 1)
    );
    assert_eq!(g.subscribers, ["c1"]);
}

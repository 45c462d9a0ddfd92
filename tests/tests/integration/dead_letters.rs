//! Dead letters with real processes: a message a group never acknowledges ends, after the
//! group's max delivery attempts, in `%DLQ%<group>` with its original id and properties; a
//! consumer of the dead-letter topic reads it; `apogee dlq list` shows it; `apogee dlq resend`
//! delivers it to the group again, and a second resend says "already resent" and writes
//! nothing.

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use serde_json::{json, Value};
use std::time::Duration;

const TOPIC: &str = "payments";
const GROUP: &str = "billing";
const DLQ: &str = "%DLQ%billing";

fn array(v: &Value) -> Vec<Value> {
    v.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("expected a JSON array: {v:#}"))
}

fn dlq_list(cluster: &Cluster, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["dlq", "list", "--group", GROUP, "-o", "json"];
    args.extend_from_slice(extra);
    array(&cluster.cli(&args).success().json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_never_acked_is_dead_lettered_and_resent_once() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("b1"))
        .start()
        .await;
    cluster.create_topic(TOPIC, 2).await;
    cluster
        .cli(&[
            "group",
            "create",
            GROUP,
            "--max-attempts",
            "3",
            "--retry-custom",
            "1s",
        ])
        .success();
    let producer = Producer::connect(cluster.client_config()).await.unwrap();
    let sent = producer
        .send(
            Message::builder(TOPIC, "charge 42")
                .tag("card")
                .key("pay-1")
                .property("amount", "42")
                .build(),
        )
        .await
        .unwrap();
    let id = sent.message_id.clone();

    // The group receives it and never acknowledges it, until it is dead-lettered.
    let consumer = SimpleConsumer::connect(
        cluster.client_config(),
        GROUP,
        vec![(TOPIC.to_string(), FilterExpression::tag("*"))],
    )
    .await
    .unwrap();
    let attempts = std::sync::Mutex::new(Vec::new());
    let listed = wait_until(
        Duration::from_secs(90),
        "the message in the DLQ",
        || async {
            let got = consumer
                .receive(TOPIC, 4, Duration::from_secs(1), Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())?;
            attempts
                .lock()
                .unwrap()
                .extend(got.iter().map(|m| m.delivery_attempt));
            let list = dlq_list(&cluster, &[]);
            if list.is_empty() {
                Err(format!("attempts so far {:?}", attempts.lock().unwrap()))
            } else {
                Ok(list)
            }
        },
    )
    .await;
    assert_eq!(*attempts.lock().unwrap(), [1, 2, 3]);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let d = &listed[0];
    assert_eq!(d["message_id"], id.as_str());
    assert_eq!(d["group"], GROUP);
    assert_eq!(d["original_topic"], TOPIC);
    assert_eq!(d["original_queue_id"], sent.queue_id);
    assert_eq!(d["original_queue_offset"], sent.offset);
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["tag"], "card");
    assert_eq!(d["keys"], json!(["pay-1"]));
    assert_eq!(d["properties"], json!({"amount": "42"}));
    assert_eq!(d["resent_at_ms"], Value::Null);
    assert!(d.get("body").is_none(), "{d:#}");
    let shown = dlq_list(&cluster, &["--show-body"]);
    assert_eq!(shown[0]["body"], "charge 42");

    // The record in the dead-letter topic, seen by id, has the original properties.
    let records = array(
        &cluster
            .cli(&["message", "get", &id, "-o", "json"])
            .success()
            .json(),
    );
    let in_dlq: Vec<&Value> = records.iter().filter(|r| r["topic"] == DLQ).collect();
    assert_eq!(in_dlq.len(), 1, "{records:#?}");
    assert_eq!(in_dlq[0]["properties"], json!({"amount": "42"}));
    assert_eq!(in_dlq[0]["keys"], json!(["pay-1"]));

    // A consumer of the dead-letter topic reads it.
    let mut raw = rpc::messaging(&cluster.broker("b1").addr);
    let from_dlq = wait_until(Duration::from_secs(20), "a read of the DLQ", || {
        let (mut raw, id) = (raw.clone(), id.clone());
        async move {
            let (got, _) = rpc::receive(
                &mut raw,
                "dlq-readers",
                DLQ,
                8,
                Some(apogee_proto::time::duration(Duration::from_secs(60))),
                Duration::from_secs(2),
            )
            .await;
            got.into_iter()
                .find(|m| rpc::id_of(m) == id)
                .ok_or_else(|| "nothing yet".to_string())
        }
    })
    .await;
    assert_eq!(&from_dlq.body[..], b"charge 42");
    assert_eq!(
        from_dlq.user_properties.get("amount").map(String::as_str),
        Some("42")
    );
    rpc::ack(
        &mut raw,
        "dlq-readers",
        DLQ,
        &[(id.clone(), rpc::handle_of(&from_dlq))],
    )
    .await;

    // Resend: the group gets it again.
    let resent = array(
        &cluster
            .cli(&["dlq", "resend", "--group", GROUP, "-o", "json"])
            .success()
            .json(),
    );
    assert_eq!(resent.len(), 1, "{resent:#?}");
    assert_eq!(resent[0]["outcome"], "RESENT");
    assert_eq!(resent[0]["message_id"], id.as_str());
    assert_eq!(resent[0]["original_topic"], TOPIC);
    let again = wait_until(Duration::from_secs(30), "the resent message", || async {
        let got = consumer
            .receive(TOPIC, 4, Duration::from_secs(30), Duration::from_secs(2))
            .await
            .map_err(|e| e.to_string())?;
        got.into_iter()
            .find(|m| m.message_id == id)
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(&again.body[..], b"charge 42");
    assert_eq!(again.tag.as_deref(), Some("card"));
    assert_eq!(again.keys, ["pay-1"]);
    assert_eq!(
        again.properties.get("amount").map(String::as_str),
        Some("42")
    );
    assert_eq!(again.delivery_attempt, 1);
    consumer.ack(&again).await.unwrap();

    // A second resend writes nothing and says so.
    let twice = cluster
        .cli(&["dlq", "resend", "--group", GROUP, "--id", &id])
        .success();
    assert!(twice.stdout.contains("already resent"), "{twice}");
    let twice = array(
        &cluster
            .cli(&["dlq", "resend", "--group", GROUP, "-o", "json"])
            .success()
            .json(),
    );
    assert_eq!(twice[0]["outcome"], "ALREADY_RESENT");
    assert_eq!(twice[0]["queue_offset"], resent[0]["queue_offset"]);
    let records = array(
        &cluster
            .cli(&["message", "get", &id, "-o", "json"])
            .success()
            .json(),
    );
    let in_topic = records.iter().filter(|r| r["topic"] == TOPIC).count();
    assert_eq!(
        in_topic, 2,
        "the original and one resent copy: {records:#?}"
    );
    assert!(dlq_list(&cluster, &[])[0]["resent_at_ms"].as_i64().unwrap() > 0);

    // An id the group has no dead letter of.
    let out = cluster.cli(&["dlq", "resend", "--group", GROUP, "--id", "NOPE"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("no dead letter with id NOPE"), "{out}");
}

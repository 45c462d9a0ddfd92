//! The web console's messages pages over HTTP (`apogee_tests::console_http`), on the console
//! of a real NameServer with one broker: messages sent with the CLI found by id, by topic and
//! key and by queue and offset; a message's page with every property, a text body shown as
//! text, a large binary body as hex cut with a note, and the group holding it in flight with
//! its delivery attempts; an incomplete search is bad input, an unknown id not found; with
//! authentication on, a user who is not an admin refused (403).

use super::console_topics::{create_plain_user, signed_in};
use apogee_proto::auth::Credentials;
use apogee_tests::console_http::ConsoleClient;
use apogee_tests::{rpc, BrokerSpec, Cluster};
use serde_json::Value;

const BROKER: &str = "broker-a";
const TOPIC: &str = "console-m";

/// `apogee -o json send --topic TOPIC <args>`: the one receipt.
fn send(cluster: &Cluster, args: &[&str]) -> Value {
    let out = cluster
        .cli(&[&["-o", "json", "send", "--topic", TOPIC], args].concat())
        .success();
    out.json()[0].clone()
}

fn row_of(id: &str) -> String {
    format!("data-message-id=\"{id}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_id_key_and_offset_and_shown_whole() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new(BROKER))
        .start()
        .await;
    cluster.create_topic(TOPIC, 1).await;
    let text = send(
        &cluster,
        &[
            "--body",
            "order <42> placed",
            "--tag",
            "created",
            "--key",
            "order-42",
            "--property",
            "region=eu",
        ],
    );
    let text_id = text["message_id"].as_str().unwrap().to_string();
    let binary_file = cluster.dir().join("binary.body");
    let binary_size = 64 * 1024 + 100;
    std::fs::write(&binary_file, vec![0xfe_u8; binary_size]).unwrap();
    let binary = send(
        &cluster,
        &["--body-file", &binary_file.display().to_string()],
    );
    let binary_id = binary["message_id"].as_str().unwrap().to_string();
    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));

    let empty = console.get("/console/messages").await.expect(200);
    assert!(empty.body.contains("id=\"message-search\""));
    assert!(!empty.body.contains("id=\"messages\""));

    let by_id = console
        .get(&format!("/console/messages?id={text_id}"))
        .await
        .expect(200);
    assert!(by_id.body.contains(&row_of(&text_id)), "{}", by_id.body);
    assert!(!by_id.body.contains(&row_of(&binary_id)));
    let link = format!("/console/messages/view?topic={TOPIC}&id={text_id}");
    assert!(by_id.links_to(&link), "{}", by_id.body);

    let by_key = console
        .get(&format!("/console/messages?topic={TOPIC}&key=order-42"))
        .await
        .expect(200);
    assert_eq!(by_key.body.matches("data-message-id=").count(), 1);
    assert!(by_key.body.contains(&row_of(&text_id)));

    let queue = text["queue_id"].as_i64().unwrap();
    let by_offset = console
        .get(&format!(
            "/console/messages?topic={TOPIC}&queue={queue}&offset=0"
        ))
        .await
        .expect(200);
    assert!(
        by_offset.body.contains(&row_of(&text_id)),
        "{}",
        by_offset.body
    );
    assert!(by_offset.body.contains(&row_of(&binary_id)));
    let past = console
        .get(&format!(
            "/console/messages?topic={TOPIC}&queue={queue}&offset=2"
        ))
        .await
        .expect(200);
    assert_eq!(past.body.matches("data-message-id=").count(), 0);
    assert!(past.body.contains("class=\"notice\""), "{}", past.body);

    console
        .get(&format!("/console/messages?topic={TOPIC}"))
        .await
        .expect(400);
    console
        .get(&format!("/console/messages?topic={TOPIC}&queue=x"))
        .await
        .expect(400);

    // A consumer group receives the text message and leaves it in flight.
    let got = rpc::receive_exactly(cluster.broker_addr(BROKER), "console-g", TOPIC, 2).await;
    assert_eq!(got.len(), 2);

    let page = console
        .get(&format!(
            "/console/messages/view?topic={TOPIC}&id={text_id}"
        ))
        .await
        .expect(200);
    assert_eq!(page.text_of("body").as_deref(), Some("order <42> placed"));
    assert!(!page.body.contains("class=\"hex\""));
    let properties = page.body.split("id=\"properties\"").nth(1).unwrap();
    let properties = properties.split("</dl>").next().unwrap();
    for shown in ["region", "eu", "created", "order-42", text_id.as_str()] {
        assert!(properties.contains(shown), "{shown} not in {properties}");
    }
    let deliveries = page.body.split("id=\"deliveries\"").nth(1).unwrap();
    let deliveries = deliveries.split("</table>").next().unwrap();
    assert!(
        deliveries.contains("data-group=\"console-g\""),
        "the receiving group holds it in flight: {deliveries}"
    );
    assert!(deliveries.contains(">1</td>"), "{deliveries}");

    let page = console
        .get(&format!(
            "/console/messages/view?topic={TOPIC}&id={binary_id}"
        ))
        .await
        .expect(200);
    assert!(page.body.contains("<pre id=\"body\" class=\"hex\">"));
    let hex = page.text_of("body").unwrap();
    assert_eq!(hex.len(), 2 * 64 * 1024);
    assert!(hex.chars().all(|c| c == 'f' || c == 'e'));
    let cut = page.text_of("body-cut").expect("a note on what was cut");
    assert!(cut.contains("100 bytes not shown"), "{cut}");

    console
        .get(&format!("/console/messages/view?topic=other&id={text_id}"))
        .await
        .expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_a_plain_user_may_not_read_messages() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new(BROKER))
        .start()
        .await;
    let user = Credentials::new("console-reader", "console-reader-secret").unwrap();
    create_plain_user(&cluster, &user);
    let mut plain = signed_in(&cluster, user.access_key(), user.secret_key()).await;
    plain.get("/console/messages").await.expect(200);
    plain
        .get("/console/messages?id=0123456789ABCDEF")
        .await
        .expect(403);
    plain
        .get("/console/messages/view?topic=any&id=0123456789ABCDEF")
        .await
        .expect(403);
}

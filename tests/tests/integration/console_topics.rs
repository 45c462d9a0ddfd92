//! The web console's topics pages over HTTP (`apogee_tests::console_http`), on the console
//! of a real NameServer with one broker: the list filtered and paged on the server with the
//! system topics hidden unless asked for, a topic created, its route and queues, a test
//! message sent (found again with the CLI), its queues and permission changed, its deletion
//! refused without the typed name and done with it; a POST without the CSRF token refused;
//! with authentication on, a user who is not an admin shown the topics their entries grant
//! (none) with a sentence saying so, and refused a create (403) where the admin may.

use apogee_proto::auth::Credentials;
use apogee_tests::console_http::{form, ConsoleClient};
use apogee_tests::rpc::{ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY};
use apogee_tests::{BrokerSpec, Cluster};
use serde_json::Value;

const BROKER: &str = "broker-a";

/// A console client signed in as `access_key`.
pub(crate) async fn signed_in(cluster: &Cluster, access_key: &str, secret: &str) -> ConsoleClient {
    let mut client = ConsoleClient::new(cluster.nameserver_http_addr(0));
    client.get("/console/login").await.expect(200);
    let answer = client
        .post(
            "/console/login",
            &[("access_key", access_key), ("secret_key", secret)],
        )
        .await
        .expect(303);
    assert_eq!(answer.location(), "/console/cluster");
    client
}

/// Signs in as the harness's admin.
pub(crate) async fn signed_in_admin(cluster: &Cluster) -> ConsoleClient {
    signed_in(cluster, ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY).await
}

/// Creates `user` (not an admin) with the CLI.
pub(crate) fn create_plain_user(cluster: &Cluster, user: &Credentials) {
    let secret = cluster.dir().join(format!("{}.secret", user.access_key()));
    std::fs::write(&secret, format!("{}\n", user.secret_key())).unwrap();
    let secret = secret.display().to_string();
    cluster
        .cli(&[
            "user",
            "create",
            user.access_key(),
            "--secret-file",
            &secret,
        ])
        .success();
}

/// `apogee -o json topic list` (with `--system` when `system`).
fn listed_topics(cluster: &Cluster, system: bool) -> Vec<Value> {
    let mut args = vec!["-o", "json", "topic", "list"];
    if system {
        args.push("--system");
    }
    let out = cluster.cli(&args).success();
    out.json().as_array().cloned().unwrap_or_default()
}

fn listed(cluster: &Cluster, topic: &str) -> Option<Value> {
    listed_topics(cluster, false)
        .into_iter()
        .find(|t| t["topic"] == topic)
}

fn row_of(topic: &str) -> String {
    format!("data-topic=\"{topic}\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_list_filters_and_pages_on_the_server() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new(BROKER))
        .start()
        .await;
    for i in 0..52 {
        cluster.create_topic(&format!("page-t{i:02}"), 1).await;
    }
    cluster.create_topic("other-topic", 1).await;
    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));

    let first = console.get("/console/topics").await.expect(200);
    assert!(first.body.contains("id=\"auth-off\""), "{}", first.body);
    assert!(first.body.contains(&row_of("other-topic")));
    assert!(first.body.contains(&row_of("page-t00")));
    assert!(
        !first.body.contains(&row_of("page-t49")),
        "53 topics sorted by name: page-t49 is the 51st"
    );
    assert_eq!(first.body.matches("data-topic=").count(), 50);
    assert!(first.body.contains("id=\"next-page\"") && !first.body.contains("id=\"prev-page\""));
    assert!(
        first
            .body
            .contains("href=\"/console/topics/page-t00\">page-t00</a>"),
        "each topic links to its page: {}",
        first.body
    );

    // Filtered (any case), page 2 of the 52 matching: the last two.
    let second = console
        .get("/console/topics?filter=PAGE-T&page=1")
        .await
        .expect(200);
    assert_eq!(
        second.body.matches("data-topic=").count(),
        2,
        "{}",
        second.body
    );
    assert!(second.body.contains(&row_of("page-t50")) && second.body.contains(&row_of("page-t51")));
    assert!(!second.body.contains(&row_of("other-topic")));
    assert!(second.body.contains("id=\"prev-page\"") && !second.body.contains("id=\"next-page\""));

    // System topics only when asked for: a dead-letter topic.
    cluster
        .dead_letter_one(BROKER, "page-g", "other-topic")
        .await;
    let dlq = apogee_proto::names::dlq_topic("page-g");
    let filter = format!("/console/topics?{}", form(&[("filter", dlq.as_str())]));
    let hidden = console.get(&filter).await.expect(200);
    assert!(!hidden.body.contains(&row_of(&dlq)), "{}", hidden.body);
    let shown = console.get(&format!("{filter}&system=1")).await.expect(200);
    assert!(shown.body.contains(&row_of(&dlq)), "{}", shown.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_created_shown_sent_to_updated_and_deleted() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new(BROKER))
        .start()
        .await;
    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let list = console.get("/console/topics").await.expect(200);
    assert!(list.body.contains("id=\"create-topic\""));

    // Without the CSRF token nothing is created.
    let body = form(&[("name", "console-t"), ("queues", "3"), ("type", "FIFO")]);
    console
        .post_raw("/console/topics", &body, true)
        .await
        .expect(403);
    assert!(listed(&cluster, "console-t").is_none());

    // A bad type or queue count is bad input.
    console
        .post(
            "/console/topics",
            &[("name", "console-t"), ("type", "SOMETIMES")],
        )
        .await
        .expect(400);
    console
        .post(
            "/console/topics",
            &[("name", "console-t"), ("queues", "three")],
        )
        .await
        .expect(400);

    let created = console
        .post(
            "/console/topics",
            &[("name", "console-t"), ("queues", "3"), ("type", "FIFO")],
        )
        .await
        .expect(303);
    assert_eq!(created.location(), "/console/topics/console-t");
    let topic = listed(&cluster, "console-t").expect("created");
    assert_eq!(topic["queues"], 3, "{topic:#}");
    assert_eq!(topic["message_types"], serde_json::json!(["fifo"]));
    assert_eq!(topic["brokers"], serde_json::json!([BROKER]));
    // Again: it exists already.
    console
        .post("/console/topics", &[("name", "console-t")])
        .await
        .expect(409);

    let page = console.get("/console/topics/console-t").await.expect(200);
    assert!(page.body.contains("id=\"route\""));
    assert!(page.body.contains(&format!("data-broker=\"{BROKER}\"")));
    assert!(page.body.contains("id=\"queues\""));
    for q in 0..3 {
        assert!(
            page.body.contains(&format!("data-queue=\"{BROKER}/{q}\"")),
            "{}",
            page.body
        );
    }
    assert!(!page.body.contains(&format!("data-queue=\"{BROKER}/3\"")));
    console
        .get("/console/topics/no-such-topic")
        .await
        .expect(404);

    // A test message, stored as sent: the FIFO topic refuses one without a message group.
    let fields = [
        ("body", "hello <console>"),
        ("tag", "web"),
        ("keys", "k-1, k-2"),
    ];
    let refused = console
        .post("/console/topics/console-t/send", &fields)
        .await
        .expect(400);
    assert!(refused.body.contains("NORMAL"), "{}", refused.body);
    let sent = console
        .post(
            "/console/topics/console-t/send",
            &[&fields[..], &[("message_group", "order-7")]].concat(),
        )
        .await
        .expect(200);
    let id = sent.text_of("sent-id").expect("#sent-id");
    assert!(!id.is_empty());
    let records = cluster
        .cli(&["-o", "json", "message", "get", &id])
        .success()
        .json();
    let record = &records[0];
    assert_eq!(record["topic"], "console-t", "{records:#}");
    assert_eq!(record["body"], "hello <console>");
    assert_eq!(record["tag"], "web");
    assert_eq!(record["keys"], serde_json::json!(["k-1", "k-2"]));
    assert_eq!(record["message_group"], "order-7");
    // The page escapes what it shows again.
    assert!(!sent.body.contains("<console>"), "{}", sent.body);
    assert!(
        sent.body.contains("hello &#60;console&#62;")
            || sent.body.contains("hello &lt;console&gt;")
    );

    let updated = console
        .post(
            "/console/topics/console-t/update",
            &[("queues", "5"), ("perm", "r")],
        )
        .await
        .expect(303);
    assert_eq!(updated.location(), "/console/topics/console-t");
    let topic = listed(&cluster, "console-t").expect("still there");
    assert_eq!(
        (topic["queues"].as_i64(), topic["perm"].as_str()),
        (Some(5), Some("r"))
    );
    console
        .post("/console/topics/console-t/update", &[("perm", "rwx")])
        .await
        .expect(400);

    // Deleting wants the name typed.
    let refused = console
        .post(
            "/console/topics/console-t/delete",
            &[("confirm", "console")],
        )
        .await
        .expect(400);
    assert!(refused.body.contains("class=\"error\""), "{}", refused.body);
    assert!(refused.body.contains("id=\"delete-topic\""));
    assert!(listed(&cluster, "console-t").is_some());
    let body = form(&[("confirm", "console-t")]);
    console
        .post_raw("/console/topics/console-t/delete", &body, true)
        .await
        .expect(403);
    let deleted = console
        .post(
            "/console/topics/console-t/delete",
            &[("confirm", "console-t")],
        )
        .await
        .expect(303);
    assert_eq!(deleted.location(), "/console/topics");
    assert!(listed(&cluster, "console-t").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_only_an_admin_manages_topics() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new(BROKER))
        .start()
        .await;
    let user = Credentials::new("console-user", "console-user-secret").unwrap();
    create_plain_user(&cluster, &user);

    // Not signed in: the page wants a sign-in, a POST is refused.
    let mut anonymous = ConsoleClient::new(cluster.nameserver_http_addr(0));
    anonymous.get("/console/login").await.expect(200);
    let answer = anonymous.get("/console/topics").await.expect(303);
    assert_eq!(answer.location(), "/console/login?next=/console/topics");
    anonymous
        .post("/console/topics", &[("name", "auth-t")])
        .await
        .expect(401);

    let mut plain = signed_in(&cluster, user.access_key(), user.secret_key()).await;
    // The list answers what their entries grant (none) and says so, without a create form.
    let list = plain.get("/console/topics").await.expect(200);
    assert!(
        list.body.contains("id=\"user-scope-note\""),
        "{}",
        list.body
    );
    assert!(!list.body.contains("id=\"create-topic\""), "{}", list.body);
    plain
        .post("/console/topics", &[("name", "auth-t"), ("queues", "2")])
        .await
        .expect(403);
    assert!(listed(&cluster, "auth-t").is_none());

    let mut admin = signed_in_admin(&cluster).await;
    let list = admin.get("/console/topics").await.expect(200);
    assert!(!list.body.contains("id=\"auth-off\""));
    admin
        .post("/console/topics", &[("name", "auth-t"), ("queues", "2")])
        .await
        .expect(303);
    assert_eq!(listed(&cluster, "auth-t").expect("created")["queues"], 2);
    plain
        .post("/console/topics/auth-t/delete", &[("confirm", "auth-t")])
        .await
        .expect(403);
    assert!(listed(&cluster, "auth-t").is_some());
}

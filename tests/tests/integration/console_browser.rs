//! The web console in a real browser (headless Chromium through WebDriver, see
//! `apogee_tests::browser`), on the console a NameServer serves at `/console` of its
//! operations listener, following the pages' contract (their URLs, element ids and form
//! fields): signing in (authentication on), creating a topic, sending a test message and
//! finding it by key, a group's lag falling after a consume, an offset reset after its dry
//! run, a dead letter resent, the rates charts. What the console did is checked apart from it
//! too (the CLI, raw gRPC receives).
//!
//! Skipped without Chromium and chromedriver (`deploy/dev-setup.sh` installs them), except
//! under CI. A failing test saves a screenshot to `target/console-screenshots/<test>.png`.
//! With `APOGEE_CONSOLE_SCREENSHOTS=docs/console` the tests save the main pages' screenshots
//! (cluster, topics, topic, messages, groups, group, rates) for docs/CONSOLE.md.

use apogee_tests::browser::{self, Browser};
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;

const BROKER: &str = "broker-a";
const WAIT: Duration = Duration::from_secs(20);

/// A NameServer and one broker (checking credentials when `authentication`) and a browser on
/// the NameServer's console; None when the browser tests are skipped here.
async fn console(test: &str, authentication: bool) -> Option<(Cluster, Browser)> {
    if !browser::available() {
        return None;
    }
    let mut builder = Cluster::builder().broker(BrokerSpec::new(BROKER));
    if authentication {
        builder = builder.authentication();
    }
    let cluster = builder.start().await;
    let browser = Browser::start(test, cluster.nameserver_http_addr(0)).await?;
    Some((cluster, browser))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_a_wrong_secret_and_opens_the_cluster_page() {
    let Some((_cluster, browser)) = console("sign_in", true).await else {
        return;
    };
    // Without a session a page sends the browser to sign in, remembering where it was going.
    browser.goto("/console/cluster").await;
    browser.wait_for("form#login").await;
    let login = browser.path().await;
    assert!(login.starts_with("/console/login?next="), "{login}");

    browser
        .fill("form#login", "access_key", rpc::ADMIN_ACCESS_KEY)
        .await;
    browser
        .fill("form#login", "secret_key", "not-the-secret")
        .await;
    browser.click("button#sign-in").await;
    browser.wait_for("p.error").await;
    assert!(
        browser.path().await.starts_with("/console/login"),
        "a wrong secret signs nobody in"
    );

    browser
        .fill("form#login", "access_key", rpc::ADMIN_ACCESS_KEY)
        .await;
    browser
        .fill("form#login", "secret_key", rpc::ADMIN_SECRET_KEY)
        .await;
    browser.click("button#sign-in").await;
    browser.wait_for_path("/console/cluster").await;
    browser
        .wait_for(&format!("table#brokers tr[data-broker=\"{BROKER}/0\"]"))
        .await;
    browser.wait_for("table#nameservers").await;
    assert!(
        browser.all("#auth-off").await.is_empty(),
        "the banner of authentication off shows with authentication on"
    );
    browser.page_screenshot("cluster").await;

    // Signed out, the pages want a sign-in again.
    browser.click("button#sign-out").await;
    browser.goto("/console/topics").await;
    browser.wait_for("form#login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_in_the_console_exists_with_its_queues() {
    let Some((cluster, browser)) = console("create_topic", false).await else {
        return;
    };
    browser.goto("/console/topics").await;
    browser.wait_for("p#auth-off").await;
    browser
        .fill("form#create-topic", "name", "web-orders")
        .await;
    browser.fill("form#create-topic", "queues", "3").await;
    browser.fill("form#create-topic", "type", "FIFO").await;
    browser.click("button#create-topic-submit").await;
    browser.wait_for_path("/console/topics/web-orders").await;
    wait_until(WAIT, "three queues in table#queues", || async {
        match browser.all("table#queues tbody tr").await.len() {
            3 => Ok(()),
            n => Err(format!("{n} rows")),
        }
    })
    .await;
    browser.wait_for("table#route").await;
    browser.page_screenshot("topic").await;

    // The cluster has it, as created: FIFO, three queues.
    let listed = cluster.cli_json(&["topic", "list"]);
    let topic = listed
        .as_array()
        .and_then(|topics| topics.iter().find(|t| t["topic"] == "web-orders"))
        .unwrap_or_else(|| panic!("web-orders not listed: {listed:#}"));
    assert_eq!(topic["queues"], 3, "{topic:#}");
    assert_eq!(
        topic["message_types"],
        serde_json::json!(["fifo"]),
        "{topic:#}"
    );

    // The topic list, filtered, shows it.
    browser.goto("/console/topics?filter=web-").await;
    browser.wait_for("tr[data-topic=\"web-orders\"]").await;
    browser.page_screenshot("topics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_message_sent_in_the_console_is_found_by_its_key() {
    let Some((cluster, browser)) = console("send_and_find", false).await else {
        return;
    };
    const BODY: &str = "hello from the console";
    cluster.create_topic("web-keys", 2).await;
    browser.goto("/console/topics/web-keys").await;
    browser.fill("form#send-test", "body", BODY).await;
    browser.fill("form#send-test", "tag", "web").await;
    browser.fill("form#send-test", "keys", "key-42").await;
    browser.click("button#send-test-submit").await;
    let id = browser.text("#sent-id").await.trim().to_string();
    assert!(!id.is_empty(), "no message id shown");

    // Stored as sent, apart from the console.
    let records = cluster.cli_json(&["message", "get", &id]);
    let record = records
        .as_array()
        .and_then(|r| r.iter().find(|r| r["topic"] == "web-keys"))
        .unwrap_or_else(|| panic!("{id} not stored in web-keys: {records:#}"));
    assert_eq!(record["keys"], serde_json::json!(["key-42"]), "{record:#}");
    assert_eq!(record["tag"], "web", "{record:#}");

    // Found by its key, and its page shows its body.
    browser
        .goto("/console/messages?topic=web-keys&key=key-42")
        .await;
    let row = format!("table#messages tr[data-message-id=\"{id}\"]");
    browser.wait_for(&row).await;
    assert_eq!(
        browser.all("table#messages tbody tr").await.len(),
        1,
        "one message has the key"
    );
    browser.page_screenshot("messages").await;
    browser.click(&format!("{row} a")).await;
    browser.wait_for("dl#properties").await;
    assert_eq!(browser.text("pre#body").await, BODY);
}

/// `sent` messages in the one queue of `topic`, of which `group` consumed `consumed`.
async fn group_with_lag(cluster: &Cluster, group: &str, topic: &str, sent: usize, consumed: usize) {
    cluster.create_topic(topic, 1).await;
    rpc::send_numbered(cluster.broker_addr(BROKER), topic, sent).await;
    cluster
        .consume_and_ack(BROKER, group, topic, consumed)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_lag_falls_after_a_consume() {
    let Some((cluster, browser)) = console("group_lag", false).await else {
        return;
    };
    const GROUP: &str = "web-lag-g";
    const TOPIC: &str = "web-lag";
    group_with_lag(&cluster, GROUP, TOPIC, 6, 1).await;

    let in_list = format!("table#groups tr[data-group=\"{GROUP}\"] td.lag");
    browser
        .wait_for_text_on("/console/groups", &in_list, "5")
        .await;
    browser.page_screenshot("groups").await;
    let page = format!("/console/groups/{GROUP}");
    browser.wait_for_text_on(&page, "#group-lag", "5").await;
    browser.wait_for("table#group-queues").await;
    browser.page_screenshot("group").await;

    cluster.consume_and_ack(BROKER, GROUP, TOPIC, 5).await;
    browser.wait_for_text_on(&page, "#group-lag", "0").await;
    assert_eq!(cluster.group_lag(GROUP), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_reset_is_planned_then_executed() {
    let Some((cluster, browser)) = console("reset_offset", false).await else {
        return;
    };
    const GROUP: &str = "web-reset-g";
    const TOPIC: &str = "web-reset";
    group_with_lag(&cluster, GROUP, TOPIC, 4, 4).await;
    let page = format!("/console/groups/{GROUP}");
    browser.wait_for_text_on(&page, "#group-lag", "0").await;

    browser.fill("form#reset-offset", "topic", TOPIC).await;
    browser
        .fill("form#reset-offset", "timestamp", "earliest")
        .await;
    browser.click("button#reset-plan").await;
    browser.wait_for("table#reset-plan").await;
    // The dry run changed nothing.
    assert_eq!(cluster.group_lag(GROUP), 0);

    browser.click("button#reset-execute-submit").await;
    browser.wait_for("p.notice").await;
    browser.wait_for_text_on(&page, "#group-lag", "4").await;
    assert_eq!(cluster.group_lag(GROUP), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_resent_to_its_group() {
    let Some((cluster, browser)) = console("resend_dead_letter", false).await else {
        return;
    };
    const GROUP: &str = "web-dlq-g";
    const TOPIC: &str = "web-dlq";
    cluster.create_topic(TOPIC, 1).await;
    let id = cluster.dead_letter_one(BROKER, GROUP, TOPIC).await;

    let row = format!("table#dead-letters tr[data-message-id=\"{id}\"]");
    browser
        .goto(&format!("/console/groups/{GROUP}/dead-letters"))
        .await;
    browser
        .click(&format!("{row} form.resend button.resend-submit"))
        .await;
    browser.wait_for("p.notice").await;

    // The group gets it again.
    cluster.wait_received(BROKER, GROUP, TOPIC, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rates_page_charts_a_topic() {
    let Some((cluster, browser)) = console("rates", false).await else {
        return;
    };
    cluster.create_topic("web-rates", 1).await;
    rpc::send_numbered(cluster.broker_addr(BROKER), "web-rates", 20).await;
    browser.goto("/console/rates?topic=web-rates").await;
    browser.wait_for("svg.chart").await;
    // The topic's own series is charted (its sends, counted by the broker).
    browser
        .wait_for_text("figure.chart figcaption", "web-rates")
        .await;
    browser.page_screenshot("rates").await;
}

//! The web console in a real browser (headless Chromium through WebDriver, see
//! `apogee_tests::browser`), on the console a NameServer serves at `/console` of its
//! operations listener, following the pages' contract (their URLs, element ids and form
//! fields): signing in (authentication on), creating a topic, sending a test message and
//! finding it by key, a group's lag falling after a consume, an offset reset after its dry
//! run, a dead letter's body shown and the letter resent, the rates charts and their axes, the
//! controller's members and epochs in tables, and what a user who is not an admin sees (the
//! topics and groups their ACL entries grant, and a sentence on the rest). What the console
//! did is checked apart from it too (the CLI, raw gRPC receives).
//!
//! Skipped without Chromium and chromedriver (`deploy/dev-setup.sh` installs them), except
//! under CI. A failing test saves a screenshot to `target/console-screenshots/<test>.png`.
//! With `APOGEE_CONSOLE_SCREENSHOTS=docs/console` the tests save the main pages' screenshots
//! (cluster, topics, topic, messages, groups, group, rates) for docs/CONSOLE.md.

use super::console_topics::create_plain_user;
use apogee_proto::auth::Credentials;
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
async fn a_dead_letters_body_is_shown_and_it_is_resent_to_its_group() {
    let Some((cluster, browser)) = console("resend_dead_letter", false).await else {
        return;
    };
    const GROUP: &str = "web-dlq-g";
    const TOPIC: &str = "web-dlq";
    cluster.create_topic(TOPIC, 1).await;
    let id = cluster.dead_letter_one(BROKER, GROUP, TOPIC).await;

    // From the list, its page: where it came from and its body, with the limit stated.
    let row = format!("table#dead-letters tr[data-message-id=\"{id}\"]");
    let list = format!("/console/groups/{GROUP}/dead-letters");
    browser.goto(&list).await;
    browser.click(&format!("{row} td a")).await;
    browser.wait_for("dl#properties").await;
    assert_eq!(browser.text("pre#body").await, "never acknowledged");
    let limit = browser.text("#body-limit").await;
    assert!(limit.contains("64 KiB"), "{limit}");
    let properties = browser.text("dl#properties").await;
    assert!(properties.contains(TOPIC), "{properties}");

    browser.goto(&list).await;
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

    // Its axes: messages per second from 0 up to the peak, and the time in UTC.
    let chart = "figure.chart:first-of-type svg";
    let rates = texts(&browser, &format!("{chart} text.rate-tick")).await;
    assert!(rates.len() >= 2, "{rates:?}");
    assert_eq!(rates[0], "0/s", "{rates:?}");
    assert!(rates.iter().all(|r| r.ends_with("/s")), "{rates:?}");
    let times = texts(&browser, &format!("{chart} text.time-tick")).await;
    assert!(times.len() >= 2, "{times:?}");
    let clock = |t: &str| {
        let (h, m) = t.split_once(':').unwrap_or(("", ""));
        h.len() == 2
            && m.len() == 2
            && h.parse::<u8>().is_ok_and(|h| h < 24)
            && m.parse::<u8>().is_ok_and(|m| m < 60)
    };
    assert!(times.iter().all(|t| clock(t)), "{times:?}");
    let titles = texts(&browser, &format!("{chart} text.axis-title")).await;
    assert!(titles.iter().any(|t| t.contains("UTC")), "{titles:?}");
}

/// The text of every element matching `css` now.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in browser.all(css).await {
        out.push(element.text().await.expect("an element's text"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_shows_the_controllers_members_and_epochs_in_tables() {
    if !browser::available() {
        return;
    }
    const GROUP: &str = "web-ctl";
    let cluster = Cluster::builder()
        .controller()
        .broker(apogee_tests::failover::member(GROUP, 1))
        .start()
        .await;
    wait_until(WAIT, "the controller to elect a master", || async {
        match apogee_tests::failover::controller_group(&cluster, GROUP).await {
            Ok(g) if g.master != 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let Some(browser) = Browser::start("controller", cluster.nameserver_http_addr(0)).await else {
        return;
    };
    let member = format!("table#controller-members tr[data-member=\"{GROUP}/1\"]");
    browser
        .wait_for_text_on(
            "/console/cluster",
            &format!("{member} td:nth-child(3)"),
            "master",
        )
        .await;
    let headers = texts(&browser, "table#controller-members th").await;
    for column in ["BROKER", "MEMBER", "ROLE", "LAST EPOCH", "IN SYNC"] {
        assert!(
            headers.iter().any(|h| h == column),
            "{column} in {headers:?}"
        );
    }
    let headers = texts(&browser, "table#controller-groups th").await;
    for column in ["MASTER", "MASTER EPOCH", "IN-SYNC EPOCH"] {
        assert!(
            headers.iter().any(|h| h == column),
            "{column} in {headers:?}"
        );
    }
    let group = format!("table#controller-groups tr[data-broker=\"{GROUP}\"] td:nth-child(2)");
    assert_eq!(browser.text(&group).await, "1", "member 1 is the master");
    let summary = browser.text("#controller-summary").await;
    assert!(summary.contains("leader node 1"), "{summary}");
    assert!(
        browser.all("pre#controller").await.is_empty(),
        "the controller's state is a table, not preformatted text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_is_not_an_admin_sees_what_their_acl_entries_grant() {
    let Some((cluster, browser)) = console("not_an_admin", true).await else {
        return;
    };
    const USER: &str = "web-app";
    let user = Credentials::new(USER, "web-app-secret").unwrap();
    create_plain_user(&cluster, &user);
    for topic in ["web-app-orders", "web-other"] {
        cluster.create_topic(topic, 1).await;
    }
    for group in ["web-app-g", "web-other-g"] {
        cluster.cli(&["group", "create", group]).success();
    }
    for grant in [
        &["--topic", "web-app-*", "--actions", "pub,sub"][..],
        &["--group", "web-app-g", "--actions", "sub"][..],
    ] {
        let mut args = vec!["acl", "grant", "--user", USER];
        args.extend_from_slice(grant);
        cluster.cli(&args).success();
    }

    browser.goto("/console/login").await;
    browser.fill("form#login", "access_key", USER).await;
    browser
        .fill("form#login", "secret_key", user.secret_key())
        .await;
    browser.click("button#sign-in").await;
    browser.wait_for_path("/console/cluster").await;

    // The cluster page: the brokers the NameServer knows, no refusal in a cell, a sentence.
    browser
        .wait_for(&format!("table#brokers tr[data-broker=\"{BROKER}/0\"]"))
        .await;
    let brokers = browser.text("table#brokers").await.to_lowercase();
    assert!(!brokers.contains("forbidden"), "{brokers}");
    let note = browser.text("#user-scope-note").await;
    assert!(
        note.contains("not an admin") && note.contains("needs an admin"),
        "{note}"
    );

    // Topics: the ones the prefix entry grants, not the others, and the entry itself.
    let granted = "tr[data-topic=\"web-app-orders\"]";
    browser
        .wait_for_text_on(
            "/console/topics",
            &format!("{granted} td"),
            "web-app-orders",
        )
        .await;
    assert!(browser.all("tr[data-topic=\"web-other\"]").await.is_empty());
    let note = browser.text("#user-scope-note").await;
    assert!(note.contains("only the topics your ACL entries"), "{note}");
    browser
        .wait_for("table#my-acls tr[data-resource=\"web-app-*\"]")
        .await;
    assert!(browser.all("form#create-topic").await.is_empty());

    // Consumer groups: likewise.
    let granted = "tr[data-group=\"web-app-g\"]";
    browser
        .wait_for_text_on("/console/groups", &format!("{granted} td"), "web-app-g")
        .await;
    assert!(browser
        .all("tr[data-group=\"web-other-g\"]")
        .await
        .is_empty());
    let note = browser.text("#user-scope-note").await;
    assert!(note.contains("only the consumer groups"), "{note}");
}

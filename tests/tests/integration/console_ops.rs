//! The web console's operations pages over HTTP (`apogee_tests::console_http`), on the
//! console a NameServer serves: pending transactions committed and rolled back, a scheduled
//! message recalled, and users and ACL entries managed by an admin and refused to a plain
//! user. Each action asks for a confirmation before it acts, is refused without the
//! session's CSRF token, and what it did is checked apart from the console too (the CLI, raw
//! gRPC receives).

use apogee_proto::time::now_ms;
use apogee_proto::v2::{self, MessageType};
use apogee_tests::console_http::{Answer, ConsoleClient};
use apogee_tests::rpc::{self, delay_message, drain, send_half, txn_message};
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const BROKER: &str = "broker-a";

async fn cluster(authentication: bool) -> Cluster {
    let mut builder = Cluster::builder().broker(BrokerSpec::new(BROKER));
    if authentication {
        builder = builder.authentication();
    }
    builder.start().await
}

/// The values of `field` in a JSON list.
fn column(list: &Value, field: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .filter_map(|row| row[field].as_str().map(str::to_string))
        .collect()
}

/// Whether a page holds a row `data-<attr>="<value>"`.
fn has_row(page: &Answer, attr: &str, value: &str) -> bool {
    page.body.contains(&format!("data-{attr}=\"{value}\""))
}

/// POSTs `fields` (no confirmation): the console answers with the question, not the act.
/// Then POSTs them confirmed and follows the 303 to the page that says what was done.
async fn confirm_and_act(
    console: &mut ConsoleClient,
    path: &str,
    fields: &[(&str, &str)],
) -> Answer {
    let question = console.post(path, fields).await.expect(200);
    assert!(
        question.text_of("confirm-question").is_some(),
        "{path} asks first: {}",
        question.body
    );
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let done = console.post(path, &confirmed).await.expect(303);
    let back = done.location().to_string();
    console.get(&back).await.expect(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_transactions_are_listed_committed_and_rolled_back() {
    const TOPIC: &str = "console-payments";
    let cluster = cluster(false).await;
    cluster
        .create_typed_topic(TOPIC, 1, &[MessageType::Normal, MessageType::Transaction])
        .await;
    let mut broker = rpc::messaging(cluster.broker_addr(BROKER));
    let to_commit = send_half(&mut broker, txn_message(TOPIC, 0, "commit me")).await;
    let to_roll_back = send_half(&mut broker, txn_message(TOPIC, 0, "roll me back")).await;

    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let page = console.get("/console/transactions").await.expect(200);
    assert!(page.body.contains("id=\"transactions\""), "{}", page.body);
    for (_, txn) in [&to_commit, &to_roll_back] {
        assert!(
            has_row(&page, "transaction-id", txn),
            "{txn} listed: {}",
            page.body
        );
    }
    assert!(
        page.body.contains("class=\"inline commit\"")
            && page.body.contains("class=\"inline rollback\"")
    );

    let commit = format!("/console/transactions/{}/commit", to_commit.1);
    // Without the session's token nothing happens.
    console
        .post_raw(&commit, "confirm=yes", true)
        .await
        .expect(403);
    // Asked, not yet confirmed: still pending.
    console.post(&commit, &[]).await.expect(200);
    let pending = cluster.cli_json(&["txn", "list", "--pending"]);
    assert!(
        column(&pending, "transaction_id").contains(&to_commit.1),
        "{pending}"
    );

    let back = confirm_and_act(&mut console, &commit, &[]).await;
    assert_eq!(
        back.text_of("resolved-transaction"),
        Some(to_commit.1.clone())
    );
    assert!(back.body.contains("class=\"notice\""), "{}", back.body);
    assert!(
        !has_row(&back, "transaction-id", &to_commit.1),
        "{}",
        back.body
    );
    assert!(has_row(&back, "transaction-id", &to_roll_back.1));

    let rollback = format!("/console/transactions/{}/rollback", to_roll_back.1);
    let back = confirm_and_act(&mut console, &rollback, &[]).await;
    assert_eq!(
        back.text_of("resolved-transaction"),
        Some(to_roll_back.1.clone())
    );
    assert!(back.body.contains("rolled back"), "{}", back.body);
    assert!(!has_row(&back, "transaction-id", &to_roll_back.1));

    // The committed message is delivered, the rolled-back one never.
    let got = drain(&mut broker, "console-g", TOPIC, Duration::from_secs(2)).await;
    let ids: BTreeSet<String> = got.iter().map(rpc::id_of).collect();
    assert_eq!(ids, BTreeSet::from([to_commit.0.clone()]));
    let all = cluster.cli_json(&["txn", "list"]);
    let state_of = |txn: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|t| t["transaction_id"] == txn)
            .map(|t| t["state"].clone())
    };
    assert_eq!(state_of(&to_commit.1), Some("COMMITTED".into()), "{all}");
    assert_eq!(
        state_of(&to_roll_back.1),
        Some("ROLLED_BACK".into()),
        "{all}"
    );

    // Deciding again the other way is refused, with the page saying why.
    let refused = console
        .post(
            &rollback.replace(&to_roll_back.1, &to_commit.1),
            &[("confirm", "yes")],
        )
        .await;
    assert!(
        (400..500).contains(&refused.status) && refused.body.contains("class=\"error\""),
        "{} {}",
        refused.status,
        refused.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_scheduled_messages_are_listed_and_recalled() {
    const TOPIC: &str = "console-reminders";
    let cluster = cluster(false).await;
    cluster
        .create_typed_topic(TOPIC, 1, &[MessageType::Normal, MessageType::Delay])
        .await;
    let mut broker = rpc::messaging(cluster.broker_addr(BROKER));
    let mut waiting = Vec::new();
    for body in ["recall me", "keep me"] {
        let r = rpc::send(
            &mut broker,
            vec![delay_message(TOPIC, 0, body, now_ms() + 600_000)],
        )
        .await;
        assert_eq!(rpc::code(r.status.as_ref()), v2::Code::Ok as i32, "{r:?}");
        waiting.push(r.entries[0].clone());
    }
    let (recalled, kept) = (&waiting[0], &waiting[1]);

    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let page = console.get("/console/scheduled").await.expect(200);
    for m in &waiting {
        assert!(has_row(&page, "message-id", &m.message_id), "{}", page.body);
    }
    assert!(
        page.body.contains("class=\"inline recall\""),
        "{}",
        page.body
    );
    assert!(
        has_row(&page, "broker", BROKER),
        "the broker group's counters: {}",
        page.body
    );

    let fields = [
        ("topic", TOPIC),
        ("handle", recalled.recall_handle.as_str()),
        ("message_id", recalled.message_id.as_str()),
    ];
    let raw = apogee_tests::console_http::form(&[&fields[..], &[("confirm", "yes")]].concat());
    console
        .post_raw("/console/scheduled/recall", &raw, true)
        .await
        .expect(403);
    let back = confirm_and_act(&mut console, "/console/scheduled/recall", &fields).await;
    assert_eq!(
        back.text_of("recalled-message"),
        Some(recalled.message_id.clone())
    );
    assert!(
        !has_row(&back, "message-id", &recalled.message_id),
        "{}",
        back.body
    );
    assert!(has_row(&back, "message-id", &kept.message_id));
    let listed = cluster.cli_json(&["schedule", "list", "--topic", TOPIC]);
    assert_eq!(
        column(&listed, "message_id"),
        BTreeSet::from([kept.message_id.clone()])
    );

    // Recalling it again (a form sent twice) does no harm: the broker answers as before.
    let again = console
        .post(
            "/console/scheduled/recall",
            &[&fields[..], &[("confirm", "yes")]].concat(),
        )
        .await
        .expect(303);
    assert!(
        again.location().starts_with("/console/scheduled?")
            && again.location().contains(&recalled.message_id),
        "{}",
        again.location()
    );
    // A handle no broker issued is bad input, shown on the page; one without a handle too.
    let forged = console
        .post(
            "/console/scheduled/recall",
            &[
                ("topic", TOPIC),
                ("handle", "not-a-handle"),
                ("confirm", "yes"),
            ],
        )
        .await
        .expect(400);
    assert!(forged.body.contains("class=\"error\""), "{}", forged.body);
    console
        .post(
            "/console/scheduled/recall",
            &[("topic", TOPIC), ("handle", ""), ("confirm", "yes")],
        )
        .await
        .expect(400);
}

/// Signs `console` in; the answer to the sign-in POST.
async fn sign_in(console: &mut ConsoleClient, access_key: &str, secret_key: &str) -> Answer {
    console.get("/console/login").await.expect(200);
    let answer = console
        .post(
            "/console/login",
            &[("access_key", access_key), ("secret_key", secret_key)],
        )
        .await;
    if answer.status == 303 {
        // The signed-in session's token (every page carries it, one the user may not see too).
        console.get("/console/cluster").await;
    }
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_access_manages_users_and_acls_for_admins_only() {
    const USER: &str = "console-app";
    const SECRET: &str = "console-app-secret-7";
    let cluster = cluster(true).await;
    let addr = cluster.nameserver_http_addr(0).to_string();
    let mut admin = ConsoleClient::new(&addr);
    let to_login = admin.get("/console/access").await.expect(303);
    assert!(
        to_login.location().starts_with("/console/login?next="),
        "{to_login:?}"
    );
    sign_in(&mut admin, rpc::ADMIN_ACCESS_KEY, rpc::ADMIN_SECRET_KEY)
        .await
        .expect(303);

    let page = admin.get("/console/access").await.expect(200);
    assert!(
        has_row(&page, "user", rpc::ADMIN_ACCESS_KEY),
        "{}",
        page.body
    );
    for id in ["users", "acls", "create-user", "grant"] {
        assert!(
            page.body.contains(&format!("id=\"{id}\"")),
            "#{id}: {}",
            page.body
        );
    }

    // Without the token no user is made.
    admin
        .post_raw(
            "/console/access/users",
            "name=sneaky&secret=sneaky-secret-1&role=admin",
            true,
        )
        .await
        .expect(403);
    let created = admin
        .post(
            "/console/access/users",
            &[("name", USER), ("secret", SECRET), ("role", "user")],
        )
        .await
        .expect(303);
    let page = admin.get(created.location()).await.expect(200);
    assert_eq!(page.text_of("access-change"), Some(USER.to_string()));
    assert!(has_row(&page, "user", USER) && page.body.contains("class=\"inline delete-user\""));
    assert!(
        !page.body.contains(SECRET),
        "the secret is never shown back"
    );
    let users = column(&cluster.cli_json(&["user", "list"]), "user");
    assert!(
        users.contains(USER) && !users.contains("sneaky"),
        "{users:?}"
    );

    let grant = [
        ("user", USER),
        ("kind", "topic"),
        ("pattern", "orders*"),
        ("actions", "pub"),
        ("decision", "allow"),
    ];
    let granted = admin
        .post("/console/access/grant", &grant)
        .await
        .expect(303);
    let page = admin.get(granted.location()).await.expect(200);
    let acl = format!("{USER} topic orders*");
    assert!(has_row(&page, "acl", &acl), "{}", page.body);
    let entries = cluster.cli_json(&["acl", "list", "--user", USER]);
    assert_eq!(entries[0]["resource"], "orders*", "{entries}");
    assert_eq!(entries[0]["actions"], "pub", "{entries}");
    let mut bad = grant;
    bad[3] = ("actions", "write");
    admin.post("/console/access/grant", &bad).await.expect(400);

    // A plain user may sign in but not manage access: the Admin service's 403.
    let mut plain = wait_until(Duration::from_secs(20), "the new user to sign in", || {
        let addr = addr.clone();
        async move {
            let mut plain = ConsoleClient::new(&addr);
            match sign_in(&mut plain, USER, SECRET).await.status {
                303 => Ok(plain),
                other => Err(format!("sign-in answered {other}")),
            }
        }
    })
    .await;
    let refused = plain.get("/console/access").await.expect(403);
    assert!(refused.body.contains("class=\"error\""), "{}", refused.body);
    assert!(
        !refused.body.contains("href=\"/console/access\""),
        "no link for a non-admin"
    );
    plain
        .post(
            "/console/access/users",
            &[
                ("name", "made-by-app"),
                ("secret", "made-by-app-1"),
                ("role", "admin"),
            ],
        )
        .await
        .expect(403);
    plain
        .post("/console/access/grant", &grant)
        .await
        .expect(403);

    let revoke = [("user", USER), ("kind", "topic"), ("pattern", "orders*")];
    let page = confirm_and_act(&mut admin, "/console/access/revoke", &revoke).await;
    assert_eq!(
        page.text_of("access-change"),
        Some(format!("{USER} on topic orders*"))
    );
    assert!(!has_row(&page, "acl", &acl), "{}", page.body);
    assert!(cluster
        .cli_json(&["acl", "list", "--user", USER])
        .as_array()
        .unwrap()
        .is_empty());

    let page = confirm_and_act(
        &mut admin,
        "/console/access/users/delete",
        &[("name", USER)],
    )
    .await;
    assert!(!has_row(&page, "user", USER), "{}", page.body);
    let users = column(&cluster.cli_json(&["user", "list"]), "user");
    assert!(
        !users.contains(USER) && !users.contains("made-by-app"),
        "{users:?}"
    );
}

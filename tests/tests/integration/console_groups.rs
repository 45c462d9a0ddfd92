//! The web console's consumer groups pages over HTTP, on a real NameServer and broker: the
//! list sorted by lag (largest first) and filtered, a group's lag, queues, settings and
//! connected gRPC clients, an offset reset planned by a dry run and then executed, dead
//! letters listed and resent; a POST without the CSRF token refused, and with authentication
//! on a signed-in user who is not an admin shown the groups their entries grant (none) and
//! refused (403) what the Admin service keeps for admins.

use apogee_proto::auth::Credentials;
use apogee_proto::v2;
use apogee_tests::console_http::{Answer, ConsoleClient};
use apogee_tests::telemetry::RawSession;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;

const BROKER: &str = "broker-a";
const WAIT: Duration = Duration::from_secs(30);

async fn cluster(authentication: bool) -> Cluster {
    let mut builder = Cluster::builder().broker(BrokerSpec::new(BROKER));
    if authentication {
        builder = builder.authentication();
    }
    builder.start().await
}

/// The `<tr>` whose `data-<attr>` is `value`, as HTML.
fn row<'a>(page: &'a Answer, attr: &str, value: &str) -> Option<&'a str> {
    let at = page.body.find(&format!("<tr data-{attr}=\"{value}\""))?;
    let end = at + page.body[at..].find("</tr>")?;
    Some(&page.body[at..end])
}

/// The text of the `td.lag` of group `group`'s row in the groups list.
fn listed_lag(page: &Answer, group: &str) -> Option<String> {
    let row = row(page, "group", group)?;
    let cell = row.split("<td class=\"lag\">").nth(1)?;
    Some(cell.split('<').next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_list_by_lag_and_a_group_shows_its_queues_and_clients() {
    let cluster = cluster(false).await;
    let addr = cluster.broker_addr(BROKER).to_string();
    cluster.create_topic("cg-orders", 1).await;
    rpc::send_numbered(&addr, "cg-orders", 6).await;
    cluster
        .consume_and_ack(BROKER, "cg-behind", "cg-orders", 1)
        .await;
    cluster
        .consume_and_ack(BROKER, "cg-done", "cg-orders", 6)
        .await;
    let _client = RawSession::consumer(
        &addr,
        "cg-client-1",
        "cg-behind",
        "cg-orders",
        v2::Language::Java,
    )
    .await;

    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let list = wait_until(WAIT, "the group's lag listed", || async {
        let list = ConsoleClient::new(cluster.nameserver_http_addr(0))
            .get("/console/groups")
            .await
            .expect(200);
        match listed_lag(&list, "cg-behind") {
            Some(lag) if lag == "5" => Ok(list),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(listed_lag(&list, "cg-done").as_deref(), Some("0"));
    let behind = list.body.find("data-group=\"cg-behind\"").unwrap();
    let done = list.body.find("data-group=\"cg-done\"").unwrap();
    assert!(behind < done, "the group most behind comes first");
    assert!(list.body.contains("id=\"group-filter\""));
    assert!(
        !list.body.contains("id=\"next-page\"") && !list.body.contains("id=\"prev-page\""),
        "two groups fit on one page"
    );

    // The filter keeps names holding it, in any case.
    let filtered = console
        .get("/console/groups?filter=BEHIND")
        .await
        .expect(200);
    assert!(row(&filtered, "group", "cg-behind").is_some());
    assert!(
        row(&filtered, "group", "cg-done").is_none(),
        "{}",
        filtered.body
    );

    let group = console.get("/console/groups/cg-behind").await.expect(200);
    assert_eq!(group.text_of("group-lag").as_deref(), Some("5"));
    let queue = row(&group, "queue", &format!("cg-orders/{BROKER}/0"))
        .unwrap_or_else(|| panic!("no queue row: {}", group.body));
    assert!(queue.contains("<td class=\"lag\">5</td>"), "{queue}");
    assert!(
        row(&group, "client", "cg-client-1").is_some(),
        "the connected gRPC client is listed: {}",
        group.body
    );
    assert!(group.body.contains("id=\"group-settings\""));
    assert!(group.body.contains("<form id=\"reset-offset\""));

    let missing = console.get("/console/groups/cg-never-made").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_reset_is_planned_before_it_is_executed() {
    let cluster = cluster(false).await;
    let addr = cluster.broker_addr(BROKER).to_string();
    cluster.create_topic("cg-reset", 1).await;
    rpc::send_numbered(&addr, "cg-reset", 4).await;
    cluster
        .consume_and_ack(BROKER, "cg-reset-g", "cg-reset", 4)
        .await;
    assert_eq!(cluster.group_lag("cg-reset-g"), 0);

    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    console.get("/console/groups/cg-reset-g").await.expect(200);
    let path = "/console/groups/cg-reset-g/reset";
    let earliest = [("topic", "cg-reset"), ("timestamp", "earliest")];

    let forged = console
        .post_raw(path, "topic=cg-reset&timestamp=earliest&execute=1", true)
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    let bad = console
        .post(path, &[("topic", "cg-reset"), ("timestamp", "yesterday")])
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let plan = console.post(path, &earliest).await.expect(200);
    let queue = row(&plan, "queue", &format!("{BROKER}/0"))
        .unwrap_or_else(|| panic!("no plan row: {}", plan.body));
    assert!(queue.contains(">-4<"), "the plan moves back by 4: {queue}");
    assert!(plan.body.contains("<form id=\"reset-execute\""));
    assert!(
        !plan.body.contains("class=\"notice\""),
        "a dry run applies nothing"
    );
    assert_eq!(
        cluster.group_lag("cg-reset-g"),
        0,
        "the dry run changed nothing"
    );

    let applied = console
        .post(path, &[earliest[0], earliest[1], ("execute", "1")])
        .await
        .expect(200);
    assert!(
        applied
            .body
            .contains("<p class=\"notice\" role=\"status\">Applied"),
        "{}",
        applied.body
    );
    assert_eq!(cluster.group_lag("cg-reset-g"), 4);
    let group = console.get("/console/groups/cg-reset-g").await.expect(200);
    assert_eq!(group.text_of("group-lag").as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_resent_once() {
    const GROUP: &str = "cg-dlq-g";
    const TOPIC: &str = "cg-dlq";
    let cluster = cluster(false).await;
    cluster.create_topic(TOPIC, 1).await;
    let id = cluster.dead_letter_one(BROKER, GROUP, TOPIC).await;

    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let page = format!("/console/groups/{GROUP}/dead-letters");
    let listed = console.get(&page).await.expect(200);
    let listed_row = row(&listed, "message-id", &id).unwrap();
    assert!(listed_row.contains(TOPIC), "{listed_row}");
    assert!(listed_row.contains("<form class=\"resend"), "{listed_row}");
    assert!(listed.body.contains("<form id=\"resend-all\""));

    console.get(&page).await.expect(200);
    let resend = format!("{page}/resend");
    let forged = console.post_raw(&resend, &format!("id={id}"), true).await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    let resent = console
        .post(&resend, &[("id", id.as_str())])
        .await
        .expect(200);
    let notice = format!("resent 1: {id} to {TOPIC}");
    assert!(resent.body.contains(&notice), "{}", resent.body);
    assert!(row(&resent, "message-id", &id).is_some(), "{}", resent.body);

    // All of them again: the one resent before is not written twice.
    let again = console.post(&resend, &[]).await.expect(200);
    assert!(
        again.body.contains("1 already resent before"),
        "{}",
        again.body
    );

    // The group gets it again.
    cluster.wait_received(BROKER, GROUP, TOPIC, &id).await;
}

/// A console client signed in as `user`.
async fn signed_in(cluster: &Cluster, user: &Credentials) -> ConsoleClient {
    let mut console = ConsoleClient::new(cluster.nameserver_http_addr(0));
    console.get("/console/login").await.expect(200);
    let answer = console
        .post(
            "/console/login",
            &[
                ("access_key", user.access_key()),
                ("secret_key", user.secret_key()),
                ("next", "/console/groups"),
            ],
        )
        .await
        .expect(303);
    assert_eq!(answer.location(), "/console/groups");
    console
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_only_an_admin_operates_groups() {
    let cluster = cluster(true).await;
    cluster.create_topic("cg-auth", 1).await;
    cluster.cli(&["group", "create", "cg-auth-g"]).success();
    let app = Credentials::new("cg-app", "cg-app-secret-1").unwrap();
    let secret = cluster.dir().join("cg-app.secret");
    std::fs::write(&secret, app.secret_key()).unwrap();
    cluster
        .cli(&[
            "user",
            "create",
            "cg-app",
            "--secret-file",
            &secret.display().to_string(),
        ])
        .success();

    let mut anonymous = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let away = anonymous.get("/console/groups").await.expect(303);
    assert!(
        away.location().starts_with("/console/login?next="),
        "{away:?}"
    );

    let admin = Credentials::new(rpc::ADMIN_ACCESS_KEY, rpc::ADMIN_SECRET_KEY).unwrap();
    let mut admin = signed_in(&cluster, &admin).await;
    let list = admin.get("/console/groups").await.expect(200);
    assert!(row(&list, "group", "cg-auth-g").is_some(), "{}", list.body);

    // The list answers a user what their entries grant (none here) and says so; the rest of
    // the Admin service is for admins: the pages answer 403 with the reason, inside the
    // chrome (whose sign-out form hands out the signed-in session's CSRF token).
    let mut user = signed_in(&cluster, &app).await;
    let list = user.get("/console/groups").await.expect(200);
    assert!(row(&list, "group", "cg-auth-g").is_none(), "{}", list.body);
    assert!(
        list.body.contains("id=\"user-scope-note\""),
        "{}",
        list.body
    );
    for page in [
        "/console/groups/cg-auth-g",
        "/console/groups/cg-auth-g/dead-letters",
    ] {
        let refused = user.get(page).await.expect(403);
        assert!(
            refused.body.contains("role=\"alert\""),
            "{page}: {}",
            refused.body
        );
    }
    let reset = user
        .post(
            "/console/groups/cg-auth-g/reset",
            &[
                ("topic", "cg-auth"),
                ("timestamp", "latest"),
                ("execute", "1"),
            ],
        )
        .await;
    assert_eq!(reset.status, 403, "{}", reset.body);
    assert!(
        reset.body.contains("role=\"alert\""),
        "refused by the cluster, not by the CSRF check: {}",
        reset.body
    );
    let resend = user
        .post("/console/groups/cg-auth-g/dead-letters/resend", &[])
        .await;
    assert_eq!(resend.status, 403, "{}", resend.body);
    assert!(resend.body.contains("role=\"alert\""), "{}", resend.body);
}

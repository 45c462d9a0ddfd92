//! The web console's core over HTTP against real servers: the cluster page lists the
//! brokers; with authentication on, a page sends to the sign-in page, a wrong secret is
//! refused, the admin signs in and out, and a plain user signs in but is refused what only
//! admins may do (the Admin service), exactly as the CLI is, and listed only what their
//! entries grant; with it off, every page says so
//! and a console turned off is not served.

use apogee_proto::auth::Credentials;
use apogee_tests::console_http::{form, ConsoleClient};
use apogee_tests::{rpc, BrokerSpec, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_page_lists_every_broker_and_says_authentication_is_off() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::member("console-g", 0))
        .broker(BrokerSpec::member("console-g", 1))
        .start()
        .await;
    let mut c = ConsoleClient::new(cluster.nameserver_http_addr(0));
    let answer = c.get("/console").await.expect(303);
    assert_eq!(answer.location(), "/console/cluster");
    let page = c.get("/console/cluster").await.expect(200);
    assert!(page.body.contains("id=\"auth-off\""), "{}", page.body);
    for id in ["console-g/0", "console-g/1"] {
        assert!(
            page.body.contains(&format!("data-broker=\"{id}\"")),
            "{id} missing: {}",
            page.body
        );
    }
    assert!(page.body.contains("MASTER") || page.body.contains("master"));
    assert!(page.body.contains("id=\"nameservers\""));
    let css = c.get("/console/static/console.css").await.expect(200);
    assert!(css.body.contains("--accent"));
    // The ops endpoints are still served beside it.
    let (status, _) = apogee_tests::http::get(cluster.nameserver_http_addr(0), "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_checks_the_secret_and_a_plain_user_is_refused_admin_pages() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::member("console-auth", 0))
        .start()
        .await;
    let addr = cluster.nameserver_http_addr(0).to_string();
    let mut c = ConsoleClient::new(&addr);
    let answer = c.get("/console/cluster").await.expect(303);
    assert_eq!(answer.location(), "/console/login?next=/console/cluster");
    let login = c
        .get("/console/login?next=/console/cluster")
        .await
        .expect(200);
    assert!(login.body.contains("id=\"login\""));
    assert!(!login.body.contains("id=\"auth-off\""));

    // A wrong secret, then an unknown key.
    let wrong = c
        .post(
            "/console/login",
            &[
                ("access_key", rpc::ADMIN_ACCESS_KEY),
                ("secret_key", "not-it"),
            ],
        )
        .await
        .expect(401);
    assert!(
        wrong.body.contains("wrong access key or secret key"),
        "{}",
        wrong.body
    );
    c.post(
        "/console/login",
        &[("access_key", "nobody"), ("secret_key", "x")],
    )
    .await
    .expect(401);
    // Without the CSRF token, or from another origin, even the right secret is refused.
    let good = form(&[
        ("access_key", rpc::ADMIN_ACCESS_KEY),
        ("secret_key", rpc::ADMIN_SECRET_KEY),
    ]);
    c.post_raw("/console/login", &good, true).await.expect(403);
    let token = c.csrf().unwrap().to_string();
    let with_token = format!("csrf={token}&{good}");
    c.post_raw("/console/login", &with_token, false)
        .await
        .expect(403);

    // The admin signs in: a new session cookie, the cluster page, the admin section offered.
    let signed = c
        .post(
            "/console/login",
            &[
                ("access_key", rpc::ADMIN_ACCESS_KEY),
                ("secret_key", rpc::ADMIN_SECRET_KEY),
                ("next", "/console/cluster"),
            ],
        )
        .await
        .expect(303);
    assert_eq!(signed.location(), "/console/cluster");
    let cookie = signed
        .header("set-cookie")
        .expect("a new session on sign-in");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let page = c.get("/console/cluster").await.expect(200);
    assert!(
        page.body.contains("data-broker=\"console-auth/0\""),
        "{}",
        page.body
    );
    assert!(page.body.contains(rpc::ADMIN_ACCESS_KEY));
    assert!(page.body.contains("href=\"/console/access\""));
    c.post("/console/logout", &[]).await.expect(303);
    c.get("/console/cluster").await.expect(303);

    // A plain user: signs in, is not offered the admin section, and the Admin service
    // refuses it what it refuses the CLI.
    let user = Credentials::new("console-user", "console-user-secret").unwrap();
    let secret = cluster.dir().join("console-user.secret");
    std::fs::write(&secret, user.secret_key()).unwrap();
    cluster
        .cli(&[
            "user",
            "create",
            "console-user",
            "--secret-file",
            &secret.display().to_string(),
        ])
        .success();
    let mut u = ConsoleClient::new(&addr);
    u.get("/console/login").await.expect(200);
    u.post(
        "/console/login",
        &[
            ("access_key", "console-user"),
            ("secret_key", user.secret_key()),
        ],
    )
    .await
    .expect(303);
    let page = u.get("/console/cluster").await;
    assert!(
        !page.body.contains("href=\"/console/access\""),
        "{}",
        page.body
    );
    let cli = apogee_tests::access::cli_as(cluster.ns_addr(), &user, &["topic", "create", "t"]);
    assert_ne!(cli.code, 0, "the CLI refuses the plain user a change too");
    // Listings answer them what their entries grant: nothing without entries.
    let cli = apogee_tests::access::cli_as(
        cluster.ns_addr(),
        &user,
        &["-o", "json", "topic", "list", "--system"],
    );
    assert_eq!(cli.code, 0, "{cli}");
    assert_eq!(cli.json(), serde_json::json!([]), "{cli}");
}

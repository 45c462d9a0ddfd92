//! Authorization (issue 12): users created with the CLI, ACL entries granting and denying
//! topics and groups, enforced by the brokers (master and slave) and by the NameServer's
//! access point before it forwards; the Admin service stays admin-only; users and entries
//! survive a broker restart and a NameServer restart (learned again from registrations), and
//! reach a broker group added later.

use apogee_proto::auth::Credentials;
use apogee_proto::v2;
use apogee_tests::access::{cli_as, pull_as, receive_as, send_as, signed_as};
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::time::Duration;

const OK: i32 = v2::Code::Ok as i32;
const FORBIDDEN: i32 = v2::Code::Forbidden as i32;
const UNAUTHORIZED: i32 = v2::Code::Unauthorized as i32;

fn app() -> Credentials {
    Credentials::new("acl-app", "acl-app-secret-1").unwrap()
}

/// Creates `app()` as a plain user through the CLI, its secret from a file.
fn create_app(cluster: &Cluster) {
    let secret = cluster.dir().join("acl-app.secret");
    std::fs::write(&secret, format!("{}\n", app().secret_key())).unwrap();
    let secret = secret.display().to_string();
    cluster
        .cli(&["user", "create", "acl-app", "--secret-file", &secret])
        .success();
}

/// Waits until a send to `topic` on `addr` as `app()` answers `code`.
async fn until_send_answers(addr: &str, topic: &str, code: i32) {
    wait_until(
        Duration::from_secs(30),
        &format!("a send to {topic} to answer {}", rpc::code_name(code)),
        || async move {
            match send_as(addr, &app(), topic, "probe").await {
                c if c == code => Ok(()),
                c => Err(rpc::code_name(c)),
            }
        },
    )
    .await;
}

/// A RecallMessage of `topic` through the NameServer at `ns` as `app()`: its status code.
async fn recall_through_nameserver(ns: &str, topic: &str) -> i32 {
    let request = v2::RecallMessageRequest {
        topic: rpc::resource(topic),
        recall_handle: "not-a-handle".into(),
    };
    let answer = rpc::messaging(ns)
        .recall_message(signed_as(&app(), request))
        .await
        .expect("RecallMessage transport error")
        .into_inner();
    rpc::code(answer.status.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_entries_gate_messaging_on_master_slave_and_nameserver() {
    let cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::member("acl-g", 0))
        .broker(BrokerSpec::member("acl-g", 1))
        .start()
        .await;
    for topic in ["acl-a", "acl-b", "acl-c"] {
        cluster.create_topic(topic, 1).await;
    }
    let master = cluster.broker_addr("acl-g-0").to_string();
    let slave = cluster.broker_addr("acl-g-1").to_string();
    create_app(&cluster);
    let users = cluster.cli(&["-o", "json", "user", "list"]).success();
    let listed = users.json();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == "acl-app")
        .unwrap_or_else(|| panic!("acl-app listed: {users:?}"));
    assert_eq!(row["role"], "user", "{users:?}");
    assert!(!users.stdout.contains(app().secret_key()), "{users:?}");

    // A user without entries may do nothing.
    assert_eq!(send_as(&master, &app(), "acl-a", "m").await, FORBIDDEN);
    cluster
        .cli(&[
            "acl",
            "grant",
            "--user",
            "acl-app",
            "--topic",
            "acl-a",
            "--actions",
            "pub",
        ])
        .success();
    // PUB on acl-a: sends to acl-a work, to acl-b and receives from acl-a are forbidden.
    assert_eq!(send_as(&master, &app(), "acl-a", "first").await, OK);
    assert_eq!(send_as(&master, &app(), "acl-b", "m").await, FORBIDDEN);
    let (got, code) = receive_as(&master, &app(), "acl-grp", "acl-a", Duration::ZERO).await;
    assert_eq!((got.len(), code), (0, FORBIDDEN));

    // A prefix grant with a deny entry: the deny wins on acl-b.
    for args in [
        &["--topic", "acl-*", "--actions", "pub,sub"][..],
        &["--topic", "acl-b", "--actions", "pub,sub", "--deny"][..],
        &["--group", "acl-grp", "--actions", "sub"][..],
    ] {
        let mut full = vec!["acl", "grant", "--user", "acl-app"];
        full.extend_from_slice(args);
        cluster.cli(&full).success();
    }
    assert_eq!(send_as(&master, &app(), "acl-b", "m").await, FORBIDDEN);
    assert_eq!(send_as(&master, &app(), "acl-c", "m").await, OK);
    let (_, code) = receive_as(&master, &app(), "acl-grp", "acl-a", Duration::from_secs(2)).await;
    assert_eq!(code, OK);
    let (_, code) = receive_as(&master, &app(), "other-grp", "acl-a", Duration::ZERO).await;
    assert_eq!(code, FORBIDDEN, "SUB on the group is needed too");
    let listed = cluster
        .cli(&["-o", "json", "acl", "list", "--user", "acl-app"])
        .success()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");

    // The NameServer checks before it forwards (with its own cluster proof).
    assert_eq!(
        recall_through_nameserver(cluster.ns_addr(), "acl-b").await,
        FORBIDDEN
    );
    assert_ne!(
        recall_through_nameserver(cluster.ns_addr(), "acl-a").await,
        FORBIDDEN
    );

    // The Admin service needs the admin role.
    let refused = cli_as(cluster.ns_addr(), &app(), &["topic", "create", "acl-d"]);
    assert_ne!(refused.code, 0, "{refused:?}");
    let lower = refused.stderr.to_lowercase();
    assert!(
        lower.contains("admin") || lower.contains("permission"),
        "{refused:?}"
    );

    // The slave got the users and entries by replication: it serves acl-app, and refuses it
    // what the master refuses.
    wait_until(
        Duration::from_secs(30),
        "the slave to serve acl-app its messages",
        || {
            let slave = slave.clone();
            async move {
                match pull_as(&slave, &app(), "acl-grp", "acl-a").await {
                    (m, _) if !m.is_empty() => Ok(()),
                    (_, code) => Err(rpc::code_name(code)),
                }
            }
        },
    )
    .await;
    assert_eq!(
        pull_as(&slave, &app(), "acl-grp", "acl-b").await.1,
        FORBIDDEN
    );

    // Revoking the deny entry lets acl-b through the prefix grant; deleting the user makes
    // its credentials unknown everywhere.
    cluster
        .cli(&["acl", "revoke", "--user", "acl-app", "--topic", "acl-b"])
        .success();
    assert_eq!(send_as(&master, &app(), "acl-b", "m").await, OK);
    cluster.cli(&["user", "delete", "acl-app"]).success();
    assert_eq!(send_as(&master, &app(), "acl-a", "m").await, UNAUTHORIZED);
    until_send_answers(&slave, "acl-a", UNAUTHORIZED).await;
    let left = cluster.cli(&["-o", "json", "acl", "list"]).success().json();
    assert!(left.as_array().unwrap().is_empty(), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_acls_survive_broker_and_nameserver_restarts() {
    let mut cluster = Cluster::builder()
        .authentication()
        .broker(BrokerSpec::new("acl-keep"))
        .start()
        .await;
    cluster.create_topic("keep-t", 1).await;
    create_app(&cluster);
    cluster
        .cli(&[
            "acl",
            "grant",
            "--user",
            "acl-app",
            "--topic",
            "keep-t",
            "--actions",
            "pub",
        ])
        .success();
    let broker = cluster.broker_addr("acl-keep").to_string();
    assert_eq!(send_as(&broker, &app(), "keep-t", "before").await, OK);

    cluster.kill_broker("acl-keep");
    cluster.restart_broker("acl-keep").await;
    assert_eq!(send_as(&broker, &app(), "keep-t", "after").await, OK);
    assert_eq!(send_as(&broker, &app(), "other", "m").await, FORBIDDEN);

    // A restarted NameServer knows no user until the broker registers again.
    cluster.kill_nameserver(0);
    cluster.restart_nameserver(0).await;
    let ns = cluster.ns_addr().to_string();
    wait_until(
        Duration::from_secs(60),
        "the NameServer to learn acl-app again",
        || {
            let ns = ns.clone();
            async move {
                match recall_through_nameserver(&ns, "keep-t").await {
                    UNAUTHORIZED => Err("acl-app unknown".to_string()),
                    FORBIDDEN => Err("acl-app's entry unknown".to_string()),
                    _ => Ok(()),
                }
            }
        },
    )
    .await;
    assert_eq!(recall_through_nameserver(&ns, "other").await, FORBIDDEN);
    let listed = cluster.cli(&["-o", "json", "acl", "list"]).success().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["resource"], "keep-t", "{listed}");

    // A broker group added later is sent the users and entries when it registers: it knows
    // acl-app (a send to a topic it does not host gets past the check to TOPIC_NOT_FOUND).
    cluster.add_broker(BrokerSpec::new("acl-late")).await;
    let late = cluster.broker_addr("acl-late").to_string();
    until_send_answers(&late, "keep-t", v2::Code::TopicNotFound as i32).await;
    assert_eq!(send_as(&late, &app(), "other", "m").await, FORBIDDEN);
}

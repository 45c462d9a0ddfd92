//! Transactional messages against real processes: a half message is seen by consumers if and
//! only if its transaction commits, whoever ends it (the producer, a check-back answer, an
//! operator), through a broker or a NameServer, across SIGKILL, with racing and replayed
//! EndTransactions.

use apogee_proto::v2::messaging_service_client::MessagingServiceClient;
use apogee_proto::v2::{self, Code, MessageType, TransactionResolution as R};
use apogee_tests::rpc::{self, drain, end_transaction, send_half, txn_message};
use apogee_tests::telemetry::{Checker, ProducerSession};
use apogee_tests::{wait_until, BrokerSpec, Cluster};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

const TOPIC: &str = "payments";
const QUIET: Duration = Duration::from_secs(2);

/// A broker whose check-backs come fast: first after 1 s, then every `interval_ms`.
fn fast_checks(name: &str, interval_ms: u64, max_checks: u32) -> BrokerSpec {
    BrokerSpec::new(name)
        .env("TRANSACTION__CHECK_DELAY_MS", "1000")
        .env("TRANSACTION__CHECK_INTERVAL_MS", interval_ms.to_string())
        .env("TRANSACTION__MAX_CHECKS", max_checks.to_string())
        .env("TRANSACTION__SCAN_INTERVAL_MS", "100")
}

async fn cluster_with(spec: BrokerSpec) -> Cluster {
    let cluster = Cluster::builder().broker(spec).start().await;
    cluster
        .create_typed_topic(TOPIC, 4, &[MessageType::Normal, MessageType::Transaction])
        .await;
    cluster
}

/// EndTransaction, which must answer `want`.
async fn expect_end(
    client: &mut MessagingServiceClient<Channel>,
    topic: &str,
    ids: &(String, String),
    resolution: R,
    want: Code,
) {
    let got = end_transaction(client, topic, ids, resolution).await;
    assert_eq!(
        got,
        want as i32,
        "{resolution:?} of {ids:?} on {topic}: expected {}, got {}",
        want.as_str_name(),
        rpc::code_name(got)
    );
}

fn answering(resolution: R) -> Checker {
    Arc::new(move |_| resolution)
}

fn ids(messages: &[v2::Message]) -> BTreeSet<String> {
    messages.iter().map(rpc::id_of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_is_delivered_once_per_group_with_original_fields_and_rollback_never() {
    let cluster = cluster_with(BrokerSpec::new("broker-a")).await;
    let broker = cluster.broker("broker-a").addr.clone();
    let mut client = rpc::messaging(&broker);

    let mut m = txn_message(TOPIC, 2, "charge 42");
    let sp = m.system_properties.as_mut().unwrap();
    sp.tag = Some("card".into());
    sp.keys = vec!["order-7".into(), "customer-3".into()];
    m.user_properties.insert("amount".into(), "42".into());
    let committed = send_half(&mut client, m.clone()).await;
    let rolled_back = send_half(&mut client, txn_message(TOPIC, 1, "refund")).await;

    // Nothing is visible before the outcome.
    assert!(drain(&mut client, "billing", TOPIC, QUIET).await.is_empty());

    expect_end(&mut client, TOPIC, &committed, R::Commit, Code::Ok).await;
    expect_end(&mut client, TOPIC, &rolled_back, R::Rollback, Code::Ok).await;
    // Replays answer OK; the opposite outcome is refused; nothing is delivered twice.
    expect_end(&mut client, TOPIC, &committed, R::Commit, Code::Ok).await;
    expect_end(
        &mut client,
        TOPIC,
        &rolled_back,
        R::Commit,
        Code::PreconditionFailed,
    )
    .await;
    expect_end(
        &mut client,
        TOPIC,
        &committed,
        R::Rollback,
        Code::PreconditionFailed,
    )
    .await;
    let forged = (committed.0.clone(), format!("{}0", committed.1));
    expect_end(
        &mut client,
        TOPIC,
        &forged,
        R::Commit,
        Code::InvalidTransactionId,
    )
    .await;
    expect_end(
        &mut client,
        "other",
        &committed,
        R::Commit,
        Code::InvalidTransactionId,
    )
    .await;

    for group in ["billing", "audit"] {
        let got = drain(&mut client, group, TOPIC, QUIET).await;
        assert_eq!(got.len(), 1, "group {group} got {got:?}");
        let m = &got[0];
        let sp = m.system_properties.as_ref().unwrap();
        assert_eq!(sp.message_id, committed.0);
        assert_eq!(sp.tag.as_deref(), Some("card"));
        assert_eq!(
            sp.keys,
            vec!["order-7".to_string(), "customer-3".to_string()]
        );
        assert_eq!(sp.queue_id, 2);
        assert_eq!(
            m.user_properties.get("amount").map(String::as_str),
            Some("42")
        );
        assert_eq!(&m.body[..], b"charge 42");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_transaction_sent_to_the_nameserver_is_forwarded_to_the_broker() {
    let cluster = cluster_with(BrokerSpec::new("broker-a")).await;
    let mut broker = rpc::messaging(&cluster.broker("broker-a").addr);
    let mut nameserver = rpc::messaging(cluster.ns_addr());
    let half = send_half(&mut broker, txn_message(TOPIC, 0, "via ns")).await;
    let rolled = send_half(&mut broker, txn_message(TOPIC, 0, "via ns, rolled back")).await;
    expect_end(&mut nameserver, TOPIC, &half, R::Commit, Code::Ok).await;
    expect_end(&mut nameserver, TOPIC, &rolled, R::Rollback, Code::Ok).await;
    expect_end(
        &mut nameserver,
        TOPIC,
        &rolled,
        R::Commit,
        Code::PreconditionFailed,
    )
    .await;
    let not_ours = (half.0.clone(), "7F0000010000ABCD".to_string());
    expect_end(
        &mut nameserver,
        TOPIC,
        &not_ours,
        R::Commit,
        Code::InvalidTransactionId,
    )
    .await;
    let got = drain(&mut broker, "g", TOPIC, QUIET).await;
    assert_eq!(ids(&got), BTreeSet::from([half.0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_and_replayed_end_transactions_deliver_at_most_once() {
    let cluster = cluster_with(BrokerSpec::new("broker-a")).await;
    let addr = cluster.broker("broker-a").addr.clone();
    let mut client = rpc::messaging(&addr);
    let half = send_half(&mut client, txn_message(TOPIC, 0, "race")).await;
    let calls = (0..20).map(|i| {
        let mut c = rpc::messaging(&addr);
        let half = half.clone();
        tokio::spawn(async move {
            let r = if i % 2 == 0 { R::Commit } else { R::Rollback };
            (r, end_transaction(&mut c, TOPIC, &half, r).await)
        })
    });
    let results: Vec<(R, i32)> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: BTreeSet<i32> = results
        .iter()
        .filter(|(_, c)| *c == Code::Ok as i32)
        .map(|(r, _)| *r as i32)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one outcome won: {results:?}");
    assert!(results
        .iter()
        .all(|(_, c)| *c == Code::Ok as i32 || *c == Code::PreconditionFailed as i32));
    let committed = winners.contains(&(R::Commit as i32));
    let got = drain(&mut client, "g", TOPIC, QUIET).await;
    assert_eq!(got.len(), usize::from(committed), "{results:?}");
    let listed = cluster.cli(&["-o", "json", "txn", "list"]).success().json();
    let state = listed[0]["state"].as_str().unwrap().to_string();
    assert_eq!(
        state,
        if committed {
            "COMMITTED"
        } else {
            "ROLLED_BACK"
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_died_is_replaced_by_one_whose_checker_decides() {
    use apogee_client::{Producer, TransactionCheck, TransactionResolution};
    let cluster = cluster_with(fast_checks("broker-a", 500, 15)).await;
    let addr = cluster.broker("broker-a").addr.clone();
    // A producer process sends half messages and exits without ending them.
    let open = |body: &str| {
        let out = cluster
            .cli(&[
                "-o",
                "json",
                "send",
                "--topic",
                TOPIC,
                "--body",
                body,
                "--transaction",
                "open",
            ])
            .success()
            .json();
        let e = &out[0];
        (
            e["message_id"].as_str().expect("message_id").to_string(),
            e["transaction_id"]
                .as_str()
                .expect("transaction_id")
                .to_string(),
        )
    };
    let (to_commit, to_roll_back) = (
        open("decided later: commit"),
        open("decided later: roll back"),
    );
    // A new apogee-client producer of the topic, whose checker decides by transaction id.
    let commit_txn = to_commit.1.clone();
    let asked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let seen = asked.clone();
    let producer = Producer::builder(cluster.client_config())
        .topic(TOPIC)
        .transaction_checker(move |check: &TransactionCheck| {
            seen.lock().unwrap().insert(check.transaction_id.clone());
            if check.transaction_id == commit_txn {
                TransactionResolution::Commit
            } else {
                TransactionResolution::Rollback
            }
        })
        .connect()
        .await
        .expect("transactional producer");
    let client = rpc::messaging(&addr);
    let got = wait_until(Duration::from_secs(30), "the committed check-back", || {
        let mut client = client.clone();
        async move {
            let got = drain(&mut client, "g", TOPIC, Duration::from_millis(500)).await;
            if got.is_empty() {
                Err("nothing yet".to_string())
            } else {
                Ok(got)
            }
        }
    })
    .await;
    assert_eq!(ids(&got), BTreeSet::from([to_commit.0.clone()]));
    let want = BTreeSet::from([to_commit.1.clone(), to_roll_back.1.clone()]);
    let (asked_ref, want) = (&asked, &want);
    wait_until(
        Duration::from_secs(10),
        "both check-backs asked",
        || async move {
            let asked = asked_ref.lock().unwrap().clone();
            if asked == *want {
                Ok(())
            } else {
                Err(format!("{asked:?}"))
            }
        },
    )
    .await;
    let listed = cluster.cli(&["-o", "json", "txn", "list"]).success().json();
    let state_of = |txn: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["transaction_id"] == txn)
            .map(|t| t["state"].as_str().unwrap().to_string())
    };
    wait_until(
        Duration::from_secs(10),
        "the rollback answer applied",
        || async {
            let listed = cluster.cli(&["-o", "json", "txn", "list"]).success().json();
            match listed
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["transaction_id"] == to_roll_back.1.as_str())
            {
                Some(t) if t["state"] == "ROLLED_BACK" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(state_of(&to_commit.1).as_deref(), Some("COMMITTED"));
    // The rolled-back one never comes, and neither does a second copy.
    let mut client = client.clone();
    assert!(drain(&mut client, "g", TOPIC, QUIET).await.is_empty());
    drop(producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_unknown_is_checked_max_times_then_parked_until_an_operator_commits() {
    let cluster = cluster_with(fast_checks("broker-a", 300, 3)).await;
    let addr = cluster.broker("broker-a").addr.clone();
    let producer =
        ProducerSession::open(&addr, "undecided", &[TOPIC], answering(R::Unspecified)).await;
    let mut client = rpc::messaging(&addr);
    let half = send_half(&mut client, txn_message(TOPIC, 0, "parked")).await;
    let c = &cluster;
    let parked = wait_until(
        Duration::from_secs(30),
        "the message to be parked",
        || async move {
            let listed = c
                .cli(&["-o", "json", "txn", "list", "--pending"])
                .success()
                .json();
            match listed.as_array().and_then(|a| a.first()) {
                Some(t) if t["state"] == "PARKED" => Ok(t.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(parked["transaction_id"], half.1.as_str());
    assert_eq!(parked["checks"], 3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let checks = producer.checks();
    assert_eq!(
        checks.len(),
        3,
        "exactly max_checks check-backs: {checks:?}"
    );
    assert!(checks.iter().all(|c| c.transaction_id == half.1));
    assert!(
        drain(&mut client, "g", TOPIC, QUIET).await.is_empty(),
        "parked is not delivered"
    );
    let table = cluster.cli(&["txn", "list"]).success();
    assert!(
        table.stdout.contains(&half.1) && table.stdout.contains("PARKED"),
        "{}",
        table.stdout
    );

    cluster.cli(&["txn", "commit", &half.1]).success();
    let got = drain(&mut client, "g", TOPIC, QUIET).await;
    assert_eq!(ids(&got), BTreeSet::from([half.0.clone()]));
    // Committing again changes nothing; rolling back is refused with a non-zero exit.
    cluster.cli(&["txn", "commit", &half.1]).success();
    let refused = cluster.cli(&["txn", "rollback", &half.1]);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(drain(&mut client, "g", TOPIC, QUIET).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_survive_sigkill_and_pending_ones_are_still_checked() {
    let spec = fast_checks("broker-a", 500, 15).env("STORE__FLUSH", "sync");
    let mut cluster = cluster_with(spec).await;
    let addr = cluster.broker("broker-a").addr.clone();
    let mut client = rpc::messaging(&addr);
    let committed = send_half(&mut client, txn_message(TOPIC, 0, "committed")).await;
    let rolled_back = send_half(&mut client, txn_message(TOPIC, 1, "rolled back")).await;
    expect_end(&mut client, TOPIC, &committed, R::Commit, Code::Ok).await;
    expect_end(&mut client, TOPIC, &rolled_back, R::Rollback, Code::Ok).await;
    let mut pending = Vec::new();
    for i in 0..5 {
        pending.push(
            send_half(
                &mut client,
                txn_message(TOPIC, i % 4, format!("pending {i}")),
            )
            .await,
        );
    }
    cluster.kill_broker("broker-a");
    cluster.restart_broker("broker-a").await;

    let mut client = rpc::messaging(&addr);
    expect_end(&mut client, TOPIC, &committed, R::Commit, Code::Ok).await;
    expect_end(
        &mut client,
        TOPIC,
        &rolled_back,
        R::Commit,
        Code::PreconditionFailed,
    )
    .await;
    let before = drain(&mut client, "g", TOPIC, QUIET).await;
    assert_eq!(ids(&before), BTreeSet::from([committed.0.clone()]));
    // The pending ones are still checked after the restart.
    let producer =
        ProducerSession::open(&addr, "after-crash", &[TOPIC], answering(R::Commit)).await;
    let want: BTreeSet<String> = pending.iter().map(|p| p.0.clone()).collect();
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    wait_until(
        Duration::from_secs(30),
        "pending transactions committed by check-back",
        || {
            let (mut client, seen, want) = (client.clone(), seen.clone(), want.clone());
            async move {
                let got = drain(&mut client, "g", TOPIC, Duration::from_millis(300)).await;
                let mut seen = seen.lock().unwrap();
                for m in got {
                    assert!(
                        seen.insert(rpc::id_of(&m)),
                        "delivered twice: {}",
                        rpc::id_of(&m)
                    );
                }
                if *seen == want {
                    Ok(())
                } else {
                    Err(format!("{} of {}", seen.len(), want.len()))
                }
            }
        },
    )
    .await;
    assert!(producer.checks().len() >= pending.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_transactions_half_committed_are_seen_exactly_once() {
    let cluster = cluster_with(BrokerSpec::new("broker-a")).await;
    let addr = cluster.broker("broker-a").addr.clone();
    // All 1,000 are open at once: every half message is sent before any is ended, then the
    // commits and rollbacks race each other, 50 at a time.
    let halves = futures::stream::iter(0..1000)
        .map(|n| {
            let mut client = rpc::messaging(&addr);
            async move {
                (
                    n,
                    send_half(&mut client, txn_message(TOPIC, n % 4, format!("txn {n}"))).await,
                )
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    let ended = futures::stream::iter(halves)
        .map(|(n, half)| {
            let mut client = rpc::messaging(&addr);
            async move {
                let r = if n % 2 == 0 { R::Commit } else { R::Rollback };
                assert_eq!(
                    end_transaction(&mut client, TOPIC, &half, r).await,
                    Code::Ok as i32
                );
                (r, half.0)
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    let want: BTreeSet<String> = ended
        .into_iter()
        .filter(|(r, _)| *r == R::Commit)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(want.len(), 500);
    let mut client = rpc::messaging(&addr);
    let got = drain(&mut client, "g", TOPIC, QUIET).await;
    assert_eq!(got.len(), 500, "each committed message exactly once");
    assert_eq!(ids(&got), want);
}

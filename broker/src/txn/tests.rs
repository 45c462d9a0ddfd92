//! Unit tests of transactions over a real store (commit log + RocksDB in a temp dir).

use super::*;
use apogee_proto::v2::{self, settings::PubSub, MessageType};
use tokio::sync::mpsc;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<MessageStore>,
    sessions: Arc<Sessions>,
    txns: Arc<Transactions>,
}

fn fixture_in(dir: tempfile::TempDir, config: TransactionSection) -> Fixture {
    let (store, topics) =
        crate::topics::test_store_with_orders(dir.path(), crate::topics::MessageKind::Transaction);
    let sessions = Sessions::new();
    let txns = Transactions::new(
        store.clone(),
        topics,
        sessions.clone(),
        None,
        config,
        "broker-a".into(),
    );
    Fixture {
        _dir: dir,
        store,
        sessions,
        txns,
    }
}

fn fixture(config: TransactionSection) -> Fixture {
    fixture_in(tempfile::tempdir().unwrap(), config)
}

fn message(id: &str) -> NewMessage {
    NewMessage {
        topic: "orders".into(),
        queue_id: 3,
        message_id: id.into(),
        tag: Some("paid".into()),
        keys: vec!["order-1".into()],
        message_group: None,
        message_type: MessageType::Transaction as u8,
        born_timestamp_ms: 1_700_000_000_000,
        born_host: "10.0.0.9".into(),
        delivery_timestamp_ms: None,
        reconsume_times: 0,
        properties: vec![("amount".into(), "42".into())],
        internal: vec![],
        body: b"pay order 1".to_vec().into(),
    }
}

impl Fixture {
    async fn half(&self, id: &str) -> String {
        self.half_of(message(id)).await
    }

    async fn half_of(&self, message: NewMessage) -> String {
        let (half, txn) = self.txns.half_record(message, "producer-1", None);
        self.store.append(vec![half]).await.unwrap();
        txn
    }

    fn published(&self) -> Vec<StoredMessage> {
        self.store
            .read_queue("orders", 3, 0, 100, usize::MAX)
            .unwrap()
    }

    async fn end(&self, txn: &str, resolution: Resolution) -> Result<TransactionInfo, ApogeeError> {
        self.txns
            .end(EndRequest {
                transaction_id: txn,
                topic: "orders",
                message_id: "",
                resolution,
                by: ResolvedBy::Producer,
            })
            .await
    }
}

#[tokio::test]
async fn a_half_message_is_invisible_until_commit_then_published_once_as_sent() {
    let f = fixture(TransactionSection::default());
    // What the message itself carries (its body's encoding, a remoting producer's flag, the
    // producer's trace context).
    let carried = vec![
        (internal::BODY_ENCODING.to_string(), "gzip".to_string()),
        (internal::FLAG.to_string(), "7".to_string()),
        (
            internal::TRACE_CONTEXT.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        ),
    ];
    let txn = f
        .half_of(NewMessage {
            internal: carried.clone(),
            ..message("MSG-1")
        })
        .await;
    assert_eq!(txn_id::broker_of(&txn), Some("broker-a"));
    assert!(
        f.published().is_empty(),
        "a half message is not in its topic"
    );
    let info = f.end(&txn, Resolution::Commit).await.unwrap();
    assert_eq!(info.state, TransactionState::Committed as i32);
    // Repeated commits answer OK and publish nothing more.
    f.end(&txn, Resolution::Commit).await.unwrap();
    let published = f.published();
    assert_eq!(published.len(), 1);
    let m = &published[0].msg;
    let sent = message("MSG-1");
    // As RocketMQ's: the transaction id among the properties.
    let mut properties = sent.properties.clone();
    properties.push(("__transactionId__".into(), txn.clone()));
    assert_eq!(
        (&m.message_id, &m.tag, &m.keys, &m.properties, &m.body),
        (
            &sent.message_id,
            &sent.tag,
            &sent.keys,
            &properties,
            &sent.body
        )
    );
    assert_eq!(m.internal(internal::TXN_ID), Some(txn.as_str()));
    assert_eq!(m.carried_internal().collect::<Vec<_>>(), carried);
    assert_eq!(m.flag(), 7);
    // The opposite outcome is refused.
    let err = f.end(&txn, Resolution::Rollback).await.unwrap_err();
    assert!(matches!(err, ApogeeError::PreconditionFailed(_)), "{err}");
}

#[tokio::test]
async fn the_messages_own_recovery_duration_sets_the_first_check() {
    let f = fixture(TransactionSection::default());
    let before = apogee_proto::time::now_ms();
    let (half, txn) = f
        .txns
        .half_record(message("D"), "p", Some(Duration::from_secs(600)));
    f.store.append(vec![half]).await.unwrap();
    let listed = f.txns.list(true, "orders", 0).unwrap();
    assert_eq!(listed[0].transaction_id, txn);
    let due = listed[0].next_check_ms - before;
    assert!(
        (600_000..605_000).contains(&due),
        "first check due in {due} ms"
    );
    let default = f.half("E").await;
    let listed = f.txns.list(true, "orders", 0).unwrap();
    let e = listed.iter().find(|t| t.transaction_id == default).unwrap();
    let due = e.next_check_ms - before;
    assert!(
        (6_000..11_000).contains(&due),
        "default first check due in {due} ms"
    );
}

#[tokio::test]
async fn rollback_is_final_and_unknown_ids_or_topics_are_invalid() {
    let f = fixture(TransactionSection::default());
    let txn = f.half("MSG-2").await;
    f.end(&txn, Resolution::Rollback).await.unwrap();
    f.end(&txn, Resolution::Rollback).await.unwrap();
    let err = f.end(&txn, Resolution::Commit).await.unwrap_err();
    assert!(matches!(err, ApogeeError::PreconditionFailed(_)), "{err}");
    assert!(f.published().is_empty());

    let unknown = txn_id::new_transaction_id("broker-a");
    for bad in [unknown.as_str(), "T1-nope", ""] {
        let err = f.end(bad, Resolution::Commit).await.unwrap_err();
        assert!(matches!(err, ApogeeError::InvalidTransactionId(_)), "{err}");
    }
    let other = f.half("MSG-3").await;
    let wrong_topic = f
        .txns
        .end(EndRequest {
            transaction_id: &other,
            topic: "payments",
            message_id: "",
            resolution: Resolution::Commit,
            by: ResolvedBy::Producer,
        })
        .await
        .unwrap_err();
    assert!(matches!(wrong_topic, ApogeeError::InvalidTransactionId(_)));
    let wrong_id = f
        .txns
        .end(EndRequest {
            transaction_id: &other,
            topic: "orders",
            message_id: "MSG-X",
            resolution: Resolution::Commit,
            by: ResolvedBy::Producer,
        })
        .await
        .unwrap_err();
    assert!(matches!(wrong_id, ApogeeError::InvalidTransactionId(_)));
    assert!(f.published().is_empty());
}

#[tokio::test]
async fn racing_commits_and_rollbacks_publish_at_most_once() {
    let f = fixture(TransactionSection::default());
    let txn = f.half("MSG-R").await;
    let results = futures::future::join_all((0..20).map(|i| {
        let resolution = if i % 2 == 0 {
            Resolution::Commit
        } else {
            Resolution::Rollback
        };
        f.end(&txn, resolution)
    }))
    .await;
    let won_commit =
        f.txns.list(false, "", 0).unwrap()[0].state == TransactionState::Committed as i32;
    let oks = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        oks, 10,
        "exactly the requests agreeing with the winner succeed"
    );
    assert_eq!(f.published().len(), usize::from(won_commit));
}

fn producer_settings(topic: &str) -> v2::Settings {
    v2::Settings {
        client_type: Some(v2::ClientType::Producer as i32),
        pub_sub: Some(PubSub::Publishing(v2::Publishing {
            topics: vec![v2::Resource {
                name: topic.into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn due_transactions_are_checked_with_a_producer_then_parked_after_max_checks() {
    let config = TransactionSection {
        check_delay_ms: 0,
        check_interval_ms: 1,
        max_checks: 3,
        ..TransactionSection::default()
    };
    let f = fixture(config);
    let (tx, mut rx) = mpsc::channel(16);
    f.sessions
        .update(
            f.sessions.next_serial(),
            &producer_settings("orders"),
            "p-2",
            "127.0.0.1:1",
            &tx,
        )
        .unwrap();
    let txn = f.half("MSG-C").await;
    let mut checks = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        f.txns.check_due("127.0.0.1:1").await.unwrap();
        while let Ok(Ok(cmd)) = rx.try_recv() {
            let Some(v2::telemetry_command::Command::RecoverOrphanedTransactionCommand(c)) =
                cmd.command
            else {
                panic!("unexpected command {cmd:?}")
            };
            assert_eq!(c.transaction_id, txn);
            let m = c.message.unwrap();
            assert_eq!(m.topic.unwrap().name, "orders");
            assert_eq!(m.system_properties.unwrap().message_id, "MSG-C");
            checks += 1;
        }
    }
    assert_eq!(checks, 3, "exactly max_checks check-backs");
    let listed = f.txns.list(true, "orders", 0).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, TransactionState::Parked as i32);
    assert_eq!(listed[0].checks, 3);
    // An operator commits the parked message: published once.
    let info = f
        .txns
        .end(EndRequest {
            transaction_id: &txn,
            topic: "",
            message_id: "",
            resolution: Resolution::Commit,
            by: ResolvedBy::Operator,
        })
        .await
        .unwrap();
    assert_eq!(info.state, TransactionState::Committed as i32);
    assert_eq!(f.published().len(), 1);
    assert!(f.txns.list(true, "", 0).unwrap().is_empty());
}

#[tokio::test]
async fn outcomes_and_check_counts_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let config = TransactionSection {
        check_delay_ms: 0,
        ..TransactionSection::default()
    };
    let f = fixture_in(dir, config.clone());
    let committed = f.half("A").await;
    let rolled_back = f.half("B").await;
    let pending = f.half("C").await;
    f.end(&committed, Resolution::Commit).await.unwrap();
    f.end(&rolled_back, Resolution::Rollback).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    f.txns.check_due("x").await.unwrap();
    let Fixture {
        _dir, store, txns, ..
    } = f;
    drop(txns);
    store.shutdown();
    drop(store);
    // The index is rebuilt from the log too: drop it entirely.
    std::fs::remove_dir_all(path.join("index")).unwrap();
    let f = fixture_in(_dir, config);
    let state = |id: &str| {
        f.txns
            .list(false, "", 0)
            .unwrap()
            .into_iter()
            .find(|t| t.transaction_id == id)
            .unwrap()
    };
    assert_eq!(state(&committed).state, TransactionState::Committed as i32);
    assert_eq!(
        state(&rolled_back).state,
        TransactionState::RolledBack as i32
    );
    assert_eq!(state(&pending).state, TransactionState::Pending as i32);
    assert_eq!(state(&pending).checks, 1);
    assert_eq!(f.published().len(), 1);
}

#[tokio::test]
async fn a_retried_ending_is_answered_ok_only_once_the_in_sync_members_hold_it() {
    let f = fixture(TransactionSection::default());
    let txn = f.half("MSG-1").await;
    // Controller mode: appends wait for the in-sync members, answers are lease-gated.
    f.txns.set_serving_gate(Arc::new(|| Ok(())));
    f.store.set_sync_replicas(true).unwrap();
    f.store.set_replica_in_sync(true);
    f.store.set_replicated_exact(u64::MAX);
    f.end(&txn, Resolution::Commit).await.unwrap();
    // The members stop confirming: a retry of the same commit finds it already written, and
    // says what a fresh append would say now.
    f.store.set_replica_in_sync(false);
    f.store.set_replicated_exact(0);
    let retry = f.end(&txn, Resolution::Commit).await;
    assert!(
        matches!(retry, Err(ApogeeError::NotReplicated(_))),
        "{retry:?}"
    );
    f.store.set_replica_in_sync(true);
    f.store.set_replicated_exact(u64::MAX);
    let info = f.end(&txn, Resolution::Commit).await.unwrap();
    assert_eq!(info.state, TransactionState::Committed as i32);
    assert_eq!(f.published().len(), 1, "the commit was published once");
}

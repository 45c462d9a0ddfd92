//! Tests of the role state: assignments by epoch, the lease, the write gate and the report;
//! and of the broker's transitions driven by it (promotion, demotion, fencing, the ack rule).

use super::*;
use crate::store::{MemKv, StoreConfig};

fn store(dir: &std::path::Path) -> Arc<MessageStore> {
    MessageStore::open_with_kv(StoreConfig::for_tests(dir), Arc::new(MemKv::new())).unwrap()
}

fn assignment(master: u64, epoch: u64, in_sync: &[u64], in_sync_epoch: u64) -> Assignment {
    Assignment {
        master_member: master,
        master_endpoint: format!("10.0.0.{master}:8081"),
        master_epoch: epoch,
        in_sync: in_sync.to_vec(),
        in_sync_epoch,
        lease_ms: 2_000,
        controller_leader: 1,
        hand_over_to: 0,
        beat_ms: 250,
    }
}

fn failover(election_priority: u32, min_in_sync_replicas: u32) -> FailoverSection {
    FailoverSection {
        election_priority,
        min_in_sync_replicas,
        ..FailoverSection::default()
    }
}

const ME: &str = "10.0.0.1:8081";

#[test]
fn static_mode_is_the_configured_role_for_good_with_a_lease_always_valid() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::fixed(Role::SyncMaster, 0, store(dir.path()));
    assert_eq!(m.role_view().role, MemberRole::Master { sync: true });
    assert!(m.lease_valid());
    assert_eq!(m.lease_remaining(), None, "static mode has no lease");
    assert!(m.check_writable().is_ok() && m.check_serving().is_ok());
    m.assign(&assignment(2, 5, &[2], 1), ME);
    assert_eq!(m.role(), Role::SyncMaster);
    assert_eq!(m.master_epoch(), 0);
    let slave = Membership::fixed(Role::Slave, 1, store(dir.path()));
    assert_eq!(slave.role(), Role::Slave);
    assert!(slave.committed_slaves().is_empty());
}

#[test]
fn a_controlled_member_is_fenced_until_assigned_and_follows_newer_epochs_only() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, &failover(3, 1), store(dir.path()));
    assert_eq!(m.role_view().role, MemberRole::Fenced);
    assert!(!m.lease_valid());
    let e = m.check_writable().unwrap_err().to_string();
    assert!(e.contains("fenced"), "{e}");
    let mut changes = m.changed();

    m.assign(&assignment(1, 2, &[1], 1), ME);
    assert_eq!(m.role_view().role, MemberRole::Master { sync: true });
    assert_eq!(m.master_epoch(), 2);
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    assert!(!m.lease_valid(), "no lease before a renewal");
    assert_eq!(m.lease_remaining(), Some(Duration::ZERO));
    m.renew_lease(BootInstant::now(), 2_000);
    assert!(m.lease_valid());
    let left = m.lease_remaining().unwrap();
    assert!(
        left > Duration::ZERO && left <= Duration::from_millis(2_000),
        "{left:?}"
    );
    // A lease counted from a beat sent long ago has already run out.
    let stale = Membership::controlled(1, &failover(3, 1), store(&dir.path().join("b")));
    stale.assign(&assignment(1, 2, &[1], 1), ME);
    stale.renew_lease(BootInstant::now().earlier_by(Duration::from_secs(3)), 2_000);
    assert!(!stale.lease_valid());
    assert_eq!(stale.lease_remaining(), Some(Duration::ZERO));

    // An older epoch changes nothing; a newer one naming another member demotes.
    m.assign(&assignment(2, 1, &[2], 1), ME);
    assert!(m.is_master());
    assert!(!changes.has_changed().unwrap());
    m.assign(&assignment(2, 3, &[2, 1], 4), ME);
    assert_eq!(
        m.role_view().role,
        MemberRole::Slave {
            master_endpoint: "10.0.0.2:8081".into()
        }
    );
    assert!(!m.lease_valid(), "a demotion ends the lease");
    m.renew_lease(BootInstant::now(), 2_000);
    assert!(!m.lease_valid(), "a slave takes no lease");
    let e = m.check_serving().unwrap_err().to_string();
    assert!(e.contains("slave of 10.0.0.2:8081"), "{e}");

    // The same epoch moves the committed set forward only.
    m.assign(&assignment(2, 3, &[2], 6), ME);
    assert_eq!(m.role_view().in_sync, BTreeSet::from([2]));
    m.assign(&assignment(2, 3, &[2, 1], 5), ME);
    assert_eq!(m.role_view().in_sync_epoch, 6);
    // An assignment naming another member at this broker's own endpoint fences it.
    let mut own = assignment(2, 4, &[2], 1);
    own.master_endpoint = ME.into();
    m.assign(&own, ME);
    assert_eq!(m.role_view().role, MemberRole::Fenced);
}

#[test]
fn the_lease_runs_from_the_beat_sent_and_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, &failover(0, 1), store(dir.path()));
    m.assign(&assignment(1, 1, &[1], 1), ME);
    let long_ago = BootInstant::now().earlier_by(Duration::from_secs(10));
    m.renew_lease(long_ago, 2_000);
    assert!(
        !m.lease_valid(),
        "a beat sent 10 s ago gives a lease over 8 s ago"
    );
    let e = m.check_serving().unwrap_err().to_string();
    assert!(e.contains("no valid lease"), "{e}");
    m.renew_lease(BootInstant::now(), 60_000);
    m.renew_lease(long_ago, 2_000);
    assert!(
        m.lease_valid(),
        "an older beat's answer does not shorten the lease"
    );
}

#[test]
fn a_master_that_stepped_down_holds_no_lease_of_its_epoch_again() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, &failover(0, 1), store(dir.path()));
    assert_eq!(
        m.step_down(),
        None,
        "a fenced member has nothing to step down from"
    );
    m.assign(&assignment(1, 3, &[1, 2], 1), ME);
    m.renew_lease(BootInstant::now(), 60_000);
    assert!(m.lease_valid() && !m.report().stepped_down);
    let mut beats = m.changed();
    beats.borrow_and_update();
    assert_eq!(m.step_down(), Some(3));
    assert!(beats.has_changed().unwrap(), "a beat goes out at once");
    assert!(!m.lease_valid(), "the lease ends now");
    let e = m.check_serving().unwrap_err().to_string();
    assert!(
        e.contains("handed its role of master (epoch 3) over"),
        "{e}"
    );
    m.renew_lease(BootInstant::now(), 60_000);
    assert!(!m.lease_valid(), "no lease of the epoch is taken again");
    let report = m.report();
    assert!(report.is_master && report.stepped_down, "{report:?}");
    // The successor's epoch makes it a slave; a later master epoch is a new role.
    m.assign(&assignment(2, 4, &[2], 2), ME);
    assert!(!m.report().stepped_down);
    m.assign(&assignment(1, 5, &[1], 3), ME);
    m.renew_lease(BootInstant::now(), 60_000);
    assert!(
        m.lease_valid(),
        "elected again in epoch 5, it holds leases of it"
    );
}

#[test]
fn an_operators_switch_asks_the_master_only_to_hand_over() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, &failover(0, 1), store(dir.path()));
    let wanted = m.hand_over_wanted();
    let mut asked = assignment(1, 3, &[1, 2], 1);
    asked.hand_over_to = 2;
    m.assign(&asked, ME);
    assert_eq!(*wanted.borrow(), 2);
    m.assign(&assignment(1, 3, &[1, 2], 1), ME);
    assert_eq!(*wanted.borrow(), 0, "the request ended");
    let slave = Membership::controlled(3, &failover(0, 1), store(dir.path()));
    slave.assign(&asked, "10.0.0.3:8081");
    assert_eq!(
        *slave.hand_over_wanted().borrow(),
        0,
        "a slave is never asked"
    );
}

#[tokio::test]
async fn held_calls_go_on_when_the_handover_ends() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, &failover(0, 1), store(dir.path()));
    m.set_handing_over(true);
    assert!(m.handing_over());
    let waiting = {
        let m = m.clone();
        tokio::spawn(async move { m.handover_settled().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished(), "held while the handover runs");
    m.set_handing_over(false);
    waiting.await.unwrap();
}

#[test]
fn ready_only_as_the_leased_master_or_a_committed_in_sync_slave() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = Membership::fixed(Role::Slave, 1, store(dir.path()));
    assert_eq!(fixed.readiness(), Ok(()), "static mode: always");
    let m = Membership::controlled(1, &failover(0, 1), store(&dir.path().join("c")));
    let why = m.readiness().unwrap_err();
    assert!(why.contains("waits for an assignment"), "{why}");
    m.assign(&assignment(1, 1, &[1], 1), ME);
    let why = m.readiness().unwrap_err();
    assert!(why.contains("no lease"), "{why}");
    m.renew_lease(BootInstant::now(), 60_000);
    assert_eq!(m.readiness(), Ok(()));
    let since = m.master_since_ms().expect("the master says since when");
    assert!(since > 0 && since <= apogee_proto::time::now_ms());
    assert_eq!(fixed.master_since_ms(), None, "static mode has no takeover");
    // Demoted: a copy outside the committed set is not ready until the set takes it in.
    m.assign(&assignment(2, 2, &[2], 1), ME);
    let why = m.readiness().unwrap_err();
    assert!(
        why.contains("not yet in the committed in-sync set {2}"),
        "{why}"
    );
    m.assign(&assignment(2, 2, &[2, 1], 2), ME);
    assert_eq!(m.readiness(), Ok(()));
    assert_eq!(m.master_since_ms(), None, "a slave is master since never");
}

#[test]
fn an_in_sync_slave_serves_consumers_from_its_copy_only_while_unlinked() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = Membership::fixed(Role::Slave, 1, store(dir.path()));
    assert!(fixed.check_consumable(false).is_ok(), "static mode: always");
    let m = Membership::controlled(1, &failover(0, 1), store(&dir.path().join("c")));
    let e = m.check_consumable(false).unwrap_err().to_string();
    assert!(e.contains("fenced"), "a fenced member serves nothing: {e}");
    // A slave outside the committed set may miss what the master acknowledged.
    m.assign(&assignment(2, 1, &[2], 1), ME);
    let e = m.check_consumable(false).unwrap_err().to_string();
    assert!(e.contains("slave of 10.0.0.2:8081"), "{e}");
    m.assign(&assignment(2, 1, &[2, 1], 2), ME);
    assert!(m.check_consumable(false).is_ok(), "in the set, unlinked");
    assert!(
        m.check_consumable(true).is_err(),
        "linked: consumers are the master's"
    );
    assert!(m.check_serving().is_err(), "writes still need the lease");
    // An old master whose lease ran out serves nothing, linked or not.
    m.assign(&assignment(1, 2, &[1, 2], 3), ME);
    assert!(m.check_consumable(false).is_err());
}

#[test]
fn min_in_sync_replicas_counts_the_committed_set_with_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, &failover(0, 2), store(dir.path()));
    m.assign(&assignment(1, 1, &[1], 1), ME);
    m.renew_lease(BootInstant::now(), 60_000);
    let e = m.check_writable().unwrap_err().to_string();
    assert!(e.contains("min_in_sync_replicas = 2"), "{e}");
    m.assign(&assignment(1, 1, &[1, 3], 2), ME);
    assert!(m.check_writable().is_ok());
    assert_eq!(m.committed_slaves(), BTreeSet::from([3]));
}

#[test]
fn the_report_carries_the_epoch_log_and_the_masters_measure() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.epochs().append(4, 0).unwrap();
    let m = Membership::controlled(1, &failover(7, 1), s.clone());
    let r = m.report();
    assert_eq!((r.master_epoch, r.last_log_epoch, r.priority), (0, 4, 7));
    assert!(!r.is_master && r.in_sync.is_empty());
    m.assign(&assignment(1, 5, &[1], 3), ME);
    let mut changes = m.changed();
    m.set_measured_in_sync(BTreeSet::from([2]));
    assert!(changes.has_changed().unwrap());
    let r = m.report();
    assert!(r.is_master);
    assert_eq!(
        (r.master_epoch, r.in_sync.clone(), r.in_sync_epoch),
        (5, vec![1, 2], 3)
    );
    assert_eq!(r.log_end, s.log_end_offset());
    changes.mark_unchanged();
    m.set_measured_in_sync(BTreeSet::from([1, 2]));
    assert!(!changes.has_changed().unwrap(), "the same set again");
}

// ---- the broker's transitions, driven by assignments ----------------------------------------

mod broker {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::produce::{Outgoing, Sender, Sent};
    use crate::services::{Broker, Foundation};
    use crate::topics::{MessageKind, TopicConfig};
    use apogee_proto::v2::{Encoding, MessageType};
    use apogee_tests::wait_until;

    const MY_ENDPOINT: &str = "10.0.0.1:8081";

    struct Member {
        _dir: tempfile::TempDir,
        broker: Arc<Broker>,
        roles: tokio::task::JoinHandle<()>,
    }

    impl Drop for Member {
        fn drop(&mut self) {
            self.broker.begin_shutdown();
            self.roles.abort();
        }
    }

    /// Member 1 of a controller-mode group, its role supervisor running.
    fn member(min_in_sync_replicas: u32) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            broker_name: "broker-a".into(),
            broker_id: 1,
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        config.store.segment_bytes = 1 << 20;
        config.store.preallocate_bytes = 0;
        config.failover.controller_mode = true;
        config.failover.min_in_sync_replicas = min_in_sync_replicas;
        config.replication.sync_timeout_ms = 30_000;
        let base = Foundation::in_memory(&config).unwrap();
        let broker = Broker::build(config, base).unwrap();
        broker
            .topics()
            .create(TopicConfig::new("orders", 1))
            .unwrap();
        let roles = broker.spawn_roles();
        Member {
            _dir: dir,
            broker,
            roles,
        }
    }

    fn order(id: &str) -> Outgoing {
        Outgoing {
            topic: "orders".into(),
            has_system_properties: true,
            message_id: id.into(),
            message_type: MessageType::Normal as i32,
            body_encoding: Encoding::Identity as i32,
            body: bytes::Bytes::from_static(b"body"),
            ..Outgoing::default()
        }
    }

    async fn send(broker: &Broker, id: &str) -> Result<Sent, ApogeeError> {
        let sender = Sender::new("producer-1", "10.0.0.7");
        broker.producer().send(vec![order(id)], &sender).await
    }

    /// Assigns `a` and waits until the store follows (writable for this member as master,
    /// a copy otherwise).
    async fn assign_and_wait(m: &Member, a: &Assignment) {
        m.broker.membership().assign(a, MY_ENDPOINT);
        if a.master_member == 1 {
            m.broker
                .membership()
                .renew_lease(BootInstant::now(), 60_000);
        }
        let store = m.broker.store().clone();
        let writable = a.master_member == 1;
        wait_until(
            Duration::from_secs(10),
            "the store to follow the role",
            || {
                let store = store.clone();
                async move {
                    match store.is_replica() {
                        r if r != writable => Ok(()),
                        r => Err(format!("replica: {r}")),
                    }
                }
            },
        )
        .await;
    }

    #[tokio::test]
    async fn a_controlled_broker_starts_fenced_and_refuses_sends_and_acks() {
        let m = member(1);
        assert!(m.broker.store().is_replica());
        let e = send(&m.broker, "A").await.unwrap_err().to_string();
        assert!(e.contains("fenced"), "{e}");
        let e = m.broker.consume().ack("g", "orders", "bogus").unwrap_err();
        assert!(e.to_string().contains("lease"), "{e}");
        // Ending a transaction is refused before the transaction is even looked up.
        let end = crate::txn::EndRequest {
            transaction_id: "no-such-transaction",
            topic: "",
            message_id: "",
            resolution: crate::txn::Resolution::Commit,
            by: crate::txn::ResolvedBy::Producer,
        };
        let e = m.broker.txns().end(end).await.unwrap_err().to_string();
        assert!(e.contains("fenced"), "{e}");
        assert_eq!(m.broker.store().log_end_offset(), 0);
    }

    #[tokio::test]
    async fn a_master_takes_sends_while_its_lease_runs_and_a_slave_takes_none() {
        let m = member(1);
        let membership = m.broker.membership().clone();
        membership.assign(&assignment(1, 1, &[1], 1), MY_ENDPOINT);
        // The promotion happens, but without a lease nothing is taken.
        let store = m.broker.store().clone();
        wait_until(Duration::from_secs(10), "the promotion", || {
            let store = store.clone();
            async move {
                (!store.is_replica())
                    .then_some(())
                    .ok_or_else(|| "a copy still".to_string())
            }
        })
        .await;
        let e = send(&m.broker, "A").await.unwrap_err().to_string();
        assert!(e.contains("no valid lease"), "{e}");
        assert_eq!(store.log_end_offset(), 0, "refused before the append");

        membership.renew_lease(BootInstant::now(), 60_000);
        send(&m.broker, "B").await.unwrap();
        let e = m.broker.consume().ack("g", "orders", "bogus").unwrap_err();
        assert!(
            !e.to_string().contains("lease"),
            "the lease lets acks through: {e}"
        );

        // A lease about to run out: once it has, sends are refused again.
        let short = member(1);
        let ms = short.broker.membership().clone();
        ms.assign(&assignment(1, 1, &[1], 1), MY_ENDPOINT);
        ms.renew_lease(BootInstant::now(), 200);
        wait_until(Duration::from_secs(10), "the lease to run out", || {
            let ms = ms.clone();
            async move {
                (!ms.lease_valid())
                    .then_some(())
                    .ok_or_else(|| "still valid".to_string())
            }
        })
        .await;
        let e = send(&short.broker, "C").await.unwrap_err().to_string();
        assert!(e.contains("no valid lease"), "{e}");

        // Demoted by a newer epoch naming another member: no sends, the store a copy.
        assign_and_wait(&m, &assignment(2, 2, &[2, 1], 1)).await;
        let e = send(&m.broker, "D").await.unwrap_err().to_string();
        assert!(e.contains("slave of 10.0.0.2:8081"), "{e}");
        assert_eq!(m.broker.replication().role(), Role::Slave);
    }

    #[tokio::test]
    async fn scheduled_deliveries_wait_while_the_masters_lease_has_run_out() {
        let m = member(1);
        m.broker
            .topics()
            .create(TopicConfig::new("later", 1).with_kinds(&[MessageKind::Delay]))
            .unwrap();
        let membership = m.broker.membership().clone();
        membership.assign(&assignment(1, 1, &[1], 1), MY_ENDPOINT);
        let store = m.broker.store().clone();
        wait_until(Duration::from_secs(10), "the promotion", || {
            let replica = store.is_replica();
            async move { (!replica).then_some(()).ok_or("a copy still".to_string()) }
        })
        .await;
        // A lease that ends before the message is due.
        membership.renew_lease(BootInstant::now(), 300);
        let due_ms = apogee_proto::time::now_ms() + 600;
        let scheduled = Outgoing {
            topic: "later".into(),
            message_type: MessageType::Delay as i32,
            delivery_timestamp: Some(apogee_proto::time::timestamp(due_ms)),
            ..order("S")
        };
        let sender = Sender::new("producer-1", "10.0.0.7");
        m.broker
            .producer()
            .send(vec![scheduled], &sender)
            .await
            .unwrap();
        // Past its due time, and past a pass of the loop, with no lease: not delivered.
        let scan = Duration::from_millis(m.broker.config().schedule.scan_interval_ms);
        tokio::time::sleep(Duration::from_millis(600) + 2 * scan).await;
        assert!(!membership.lease_valid());
        assert_eq!(m.broker.schedule().stats().delivered, 0);

        membership.renew_lease(BootInstant::now(), 60_000);
        let schedule = m.broker.schedule().clone();
        wait_until(Duration::from_secs(10), "the delivery", || {
            let delivered = schedule.stats().delivered;
            async move {
                (delivered == 1)
                    .then_some(())
                    .ok_or(format!("{delivered} delivered"))
            }
        })
        .await;
    }

    #[tokio::test]
    async fn each_promotion_records_its_epoch_and_start_offset() {
        let m = member(1);
        assign_and_wait(&m, &assignment(1, 1, &[1], 1)).await;
        let epochs = || m.broker.store().epochs().entries();
        assert_eq!(
            epochs(),
            vec![crate::store::EpochStart {
                epoch: 1,
                start_offset: 0
            }]
        );
        send(&m.broker, "A").await.unwrap();
        send(&m.broker, "B").await.unwrap();
        let end = m.broker.store().log_end_offset();
        assign_and_wait(&m, &assignment(2, 2, &[2], 1)).await;
        // An older epoch is ignored: still the slave of epoch 2.
        m.broker
            .membership()
            .assign(&assignment(1, 1, &[1], 1), MY_ENDPOINT);
        assert_eq!(m.broker.membership().master_epoch(), 2);
        assign_and_wait(&m, &assignment(1, 3, &[1], 1)).await;
        let starts: Vec<(u64, u64)> = epochs().iter().map(|e| (e.epoch, e.start_offset)).collect();
        assert_eq!(starts, vec![(1, 0), (3, end)]);
        assert_eq!(m.broker.membership().report().last_log_epoch, 3);
        send(&m.broker, "C").await.unwrap();
    }

    #[tokio::test]
    async fn a_send_waits_for_every_committed_in_sync_member() {
        let m = member(1);
        // The master alone in the committed set: acknowledged on its own write.
        assign_and_wait(&m, &assignment(1, 1, &[1], 1)).await;
        send(&m.broker, "A").await.unwrap();

        // Member 2 committed in sync: a send waits for its report.
        let rep = m.broker.replication().clone();
        let session = rep.slave_connected(2, "10.0.0.2:8081");
        let end = m.broker.store().log_end_offset();
        rep.slave_report(2, session, end, end);
        m.broker
            .membership()
            .assign(&assignment(1, 1, &[1, 2], 2), MY_ENDPOINT);
        let store = m.broker.store().clone();
        wait_until(
            Duration::from_secs(10),
            "sends to wait for member 2",
            || {
                let store = store.clone();
                async move {
                    store
                        .sync_replicas()
                        .then_some(())
                        .ok_or_else(|| "not yet".to_string())
                }
            },
        )
        .await;
        let broker = m.broker.clone();
        let pending = tokio::spawn(async move { send(&broker, "B").await });
        wait_until(Duration::from_secs(10), "the send to be written", || {
            let store = store.clone();
            async move {
                (store.log_end_offset() > end)
                    .then_some(())
                    .ok_or_else(|| "not written".to_string())
            }
        })
        .await;
        assert!(
            !pending.is_finished(),
            "acknowledged before member 2 had it"
        );
        let written = store.log_end_offset();
        rep.slave_report(2, session, written, written);
        let sent = pending.await.unwrap().unwrap();
        assert!(sent.not_replicated.is_none(), "{sent:?}");
        assert_eq!(
            m.broker.membership().report().in_sync,
            vec![1, 2],
            "the measure proposes member 2"
        );
    }

    #[tokio::test]
    async fn too_few_committed_in_sync_members_refuse_before_the_append() {
        let m = member(2);
        assign_and_wait(&m, &assignment(1, 1, &[1], 1)).await;
        let e = send(&m.broker, "A").await.unwrap_err().to_string();
        assert!(e.contains("min_in_sync_replicas = 2"), "{e}");
        assert_eq!(m.broker.store().log_end_offset(), 0);
    }
}

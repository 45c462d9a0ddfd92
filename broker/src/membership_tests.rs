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
    }
}

const ME: &str = "10.0.0.1:8081";

#[test]
fn static_mode_is_the_configured_role_for_good_with_a_lease_always_valid() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::fixed(Role::SyncMaster, 0, store(dir.path()));
    assert_eq!(m.role_view().role, MemberRole::Master { sync: true });
    assert!(m.lease_valid());
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
    let m = Membership::controlled(1, 3, 1, store(dir.path()));
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
    m.renew_lease(BootInstant::now(), 2_000);
    assert!(m.lease_valid());

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
    let m = Membership::controlled(1, 0, 1, store(dir.path()));
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
fn min_in_sync_replicas_counts_the_committed_set_with_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let m = Membership::controlled(1, 0, 2, store(dir.path()));
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
    let m = Membership::controlled(1, 7, 1, s.clone());
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

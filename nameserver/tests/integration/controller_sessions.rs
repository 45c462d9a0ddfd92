//! Broker sessions in controller mode against a NameServer with its controller embedded (a
//! single voter): every answer echoes its beat's seq; the beats' member reports reach the
//! controller, whose answers carry the assignment (the first member is elected at once and
//! alone gets a lease); when the master's session ends, the other member is elected once the
//! lease and margin passed, or at once when the master's report says it acknowledges only
//! what every in-sync member holds. An opening in controller mode with broker id 0 is refused.

use crate::common;

use apogee_nameserver::NameServerConfig;
use apogee_proto::cluster::registry_client::RegistryClient;
use apogee_proto::cluster::{Assignment, MemberReport, SessionAnswer, SessionBeat, SessionOpen};
use apogee_tests::wait_until;
use common::serve_on;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// One broker session: the beats sent and the answers read.
struct Session {
    beats: mpsc::Sender<SessionBeat>,
    answers: Streaming<SessionAnswer>,
    seq: u64,
}

fn opening(broker_id: i64) -> SessionBeat {
    SessionBeat {
        open: Some(SessionOpen {
            cluster_name: "c".into(),
            broker_name: "broker-a".into(),
            broker_id,
            endpoint: format!("127.0.0.1:{}", 30_000 + broker_id),
            instance_id: 7 + broker_id as u64,
            heartbeat_interval_ms: 1000,
            controller_mode: true,
        }),
        data_version: 1,
        member: Some(MemberReport::default()),
        seq: 1,
    }
}

/// The master's report of epoch 1: members 1 and 2 in sync.
fn master_report() -> MemberReport {
    MemberReport {
        master_epoch: 1,
        last_log_epoch: 1,
        log_end: 100,
        is_master: true,
        in_sync: vec![1, 2],
        in_sync_epoch: 1,
        ..MemberReport::default()
    }
}

/// A slave's report of epoch 1.
fn slave_report() -> MemberReport {
    MemberReport {
        master_epoch: 1,
        last_log_epoch: 1,
        log_end: 100,
        ..MemberReport::default()
    }
}

async fn open(address: &str, broker_id: i64) -> Result<Session, tonic::Status> {
    let mut client = RegistryClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let (beats, rx) = mpsc::channel(8);
    beats.send(opening(broker_id)).await.unwrap();
    let mut answers = client
        .broker_session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = answers.message().await?.expect("the opening's answer");
    assert_eq!(first.seq, 1, "{first:?}");
    Ok(Session {
        beats,
        answers,
        seq: 1,
    })
}

impl Session {
    /// Sends a beat and returns its answer's assignment, checking the seq is echoed.
    async fn beat(&mut self, report: &MemberReport) -> Option<Assignment> {
        self.seq += 1;
        let beat = SessionBeat {
            data_version: 1,
            member: Some(report.clone()),
            seq: self.seq,
            ..SessionBeat::default()
        };
        self.beats.send(beat).await.unwrap();
        let answer = self.answers.message().await.unwrap().expect("an answer");
        assert_eq!(answer.seq, self.seq, "{answer:?}");
        answer.assignment
    }

    /// Beats until an answer's assignment satisfies `wanted`.
    async fn beat_until(
        &mut self,
        report: &MemberReport,
        what: &str,
        wanted: impl Fn(&Assignment) -> bool,
    ) -> Assignment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let assignment = self.beat(report).await;
            if let Some(a) = assignment.as_ref().filter(|a| wanted(a)) {
                return a.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last: {assignment:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A NameServer with its controller embedded, granting leases of `lease_ms`; its address,
/// the sender that stops it and its task.
async fn controller_nameserver(dir: &tempfile::TempDir, lease_ms: u64) -> common::Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = NameServerConfig::default();
    config.controller.enabled = true;
    config.controller.data_dir = dir.path().join("controller").display().to_string();
    config.controller.lease_ms = lease_ms;
    config.controller.lease_margin_ms = 100;
    config.controller.member_timeout_ms = 300;
    let (address, stop, task) = serve_on(listener, config);
    let address = wait_until(Duration::from_secs(10), "the nameserver", || async {
        RegistryClient::connect(format!("http://{address}"))
            .await
            .map(|_| address.clone())
            .map_err(|e| e.to_string())
    })
    .await;
    (address, stop, task)
}

/// Opens the sessions of members 1 and 2: member 1 is elected with a lease of `lease_ms`, and
/// with `master_report` it measures both in sync, which the controller commits.
async fn master_and_slave(
    address: &str,
    lease_ms: u64,
    master_report: &MemberReport,
) -> (Session, Session) {
    let mut first = open(address, 1).await.unwrap();
    let elected = first
        .beat_until(
            &MemberReport::default(),
            "member 1 elected with a lease",
            |a| a.master_member == 1 && a.lease_ms == lease_ms,
        )
        .await;
    assert_eq!(elected.master_epoch, 1);
    assert_eq!(elected.master_endpoint, "127.0.0.1:30001");
    let mut second = open(address, 2).await.unwrap();
    let slave = second
        .beat_until(&slave_report(), "member 2's assignment", |a| {
            a.master_member == 1
        })
        .await;
    assert_eq!(slave.lease_ms, 0);
    first
        .beat_until(master_report, "members 1 and 2 in sync", |a| {
            a.in_sync == [1, 2]
        })
        .await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_mode_sessions_get_assignments_and_a_dead_master_is_replaced() {
    let dir = tempfile::TempDir::new().unwrap();
    let (address, stop, task) = controller_nameserver(&dir, 300).await;
    let refused = open(&address, 0).await.err().expect("broker id 0 refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("controller mode"), "{refused:?}");

    let (first, mut second) = master_and_slave(&address, 300, &master_report()).await;
    // The master's session ends: member 2 takes over after the lease and margin.
    drop(first);
    let replaced = second
        .beat_until(&slave_report(), "member 2 elected", |a| {
            a.master_member == 2 && a.lease_ms == 300
        })
        .await;
    assert_eq!(replaced.master_epoch, 2);
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_process_closed_its_session_is_replaced_without_waiting_out_its_lease() {
    // A lease far longer than beat_until's 20 s: waiting it out would fail the test.
    const LEASE_MS: u64 = 60_000;
    let dir = tempfile::TempDir::new().unwrap();
    let (address, stop, task) = controller_nameserver(&dir, LEASE_MS).await;
    let acking_on_every_in_sync = MemberReport {
        acks_need_every_in_sync: true,
        ..master_report()
    };
    let (mut first, mut second) =
        master_and_slave(&address, LEASE_MS, &acking_on_every_in_sync).await;
    // The master and the in-sync member are asked to beat 8 times per lease.
    let master = first.beat(&acking_on_every_in_sync).await.unwrap();
    let slave = second.beat(&slave_report()).await.unwrap();
    assert_eq!(
        (master.beat_ms, slave.beat_ms),
        (LEASE_MS / 8, LEASE_MS / 8)
    );
    // Its session closes from its side, as a killed process's does.
    drop(first);
    let replaced = second
        .beat_until(&slave_report(), "member 2 elected within the lease", |a| {
            a.master_member == 2 && a.lease_ms == LEASE_MS
        })
        .await;
    assert_eq!(replaced.master_epoch, 2);
    stop.send(()).unwrap();
    task.await.unwrap();
}

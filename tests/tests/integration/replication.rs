//! Replication within a broker group: what SYNC_MASTER and ASYNC_MASTER promise when slaves
//! and masters are killed (SIGKILL) or paused (SIGSTOP), reads and acknowledgements on a
//! slave while its master is down, and a slave whose log the master never wrote.

use apogee_proto::v2::{self, Code};
use apogee_tests::commitlog::{self, assert_log_prefix, logged_ids};
use apogee_tests::member_status::{status, wait_caught_up, wait_link};
use apogee_tests::process::TEARDOWN_MARKER;
use apogee_tests::{rpc, wait_until, BrokerSpec, Cluster};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "replicated";
const QUEUES: i32 = 4;
/// Small segments, so the streams cross segment rolls.
const SEGMENT_BYTES: &str = "1048576";

fn member(group: &str, id: i64, role: &str) -> BrokerSpec {
    BrokerSpec::member(group, id)
        .role(role)
        .env("STORE__SEGMENT_BYTES", SEGMENT_BYTES)
        .env("HEARTBEAT_INTERVAL_SECS", "1")
        .env("REPLICATION__RECONNECT_MS", "200")
}

/// (address, data dir) of a broker.
fn info(cluster: &Cluster, name: &str) -> (String, std::path::PathBuf) {
    let b = cluster.broker(name);
    (b.addr.clone(), b.data_dir.clone())
}

/// Outcome counts of a load run.
#[derive(Default)]
struct Load {
    /// Ids of sends answered OK.
    ok: Mutex<Vec<String>>,
    not_replicated: AtomicUsize,
    other: Mutex<Vec<String>>,
    attempted: AtomicUsize,
}

/// `tasks` senders against `addr` until `limit` sends were attempted or `stop` is set.
/// A transport error (a killed broker) ends that sender.
fn start_load(
    addr: &str,
    tasks: usize,
    limit: usize,
    stop: Arc<AtomicBool>,
    load: Arc<Load>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|t| {
            let (addr, stop, load) = (addr.to_string(), stop.clone(), load.clone());
            tokio::spawn(async move {
                let mut client = rpc::messaging(&addr);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst)
                    && load.attempted.fetch_add(1, Ordering::SeqCst) < limit
                {
                    let m = rpc::message(TOPIC, (n % QUEUES as usize) as i32, format!("t{t}-{n}"));
                    n += 1;
                    let id = rpc::id_of(&m);
                    let r = client
                        .send_message(v2::SendMessageRequest { messages: vec![m] })
                        .await;
                    let Ok(r) = r else { return };
                    let c = rpc::code(r.get_ref().status.as_ref());
                    if c == Code::Ok as i32 {
                        load.ok.lock().unwrap().push(id);
                    } else if c == Code::HaNotAvailable as i32
                        || c == Code::SlavePersistenceTimeout as i32
                    {
                        load.not_replicated.fetch_add(1, Ordering::SeqCst);
                    } else {
                        load.other.lock().unwrap().push(rpc::code_name(c));
                    }
                }
            })
        })
        .collect()
}

async fn wait_attempted(load: &Load, n: usize) {
    wait_until(Duration::from_secs(120), "sends to go on", || async {
        let done = load.attempted.load(Ordering::SeqCst);
        (done >= n)
            .then_some(())
            .ok_or(format!("{done} sends attempted"))
    })
    .await
}

async fn wait_ok(load: &Load, n: usize) {
    wait_until(
        Duration::from_secs(120),
        "sends to be acknowledged",
        || async {
            let ok = load.ok.lock().unwrap().len();
            (ok >= n)
                .then_some(())
                .ok_or(format!("{ok} sends acknowledged"))
        },
    )
    .await
}

async fn group_of(master: &str, slave: &str, role: &str) -> Cluster {
    let cluster = Cluster::builder()
        .broker(member("rg", 0, role))
        .broker(member("rg", 1, "slave"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let (m, s) = (
        cluster.broker(master).addr.clone(),
        cluster.broker(slave).addr.clone(),
    );
    // The slave is connected and in sync before the load starts.
    wait_until(
        Duration::from_secs(60),
        "the slave to be in sync",
        || async {
            let st = status(&m).await.ok_or("the master does not answer")?;
            st.slaves
                .iter()
                .any(|x| x.in_sync && x.broker_id == 1)
                .then_some(())
                .ok_or(format!("slaves: {:?}", st.slaves))
        },
    )
    .await;
    let _ = s;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_every_ok_send_is_on_the_slave_killed_and_restarted_twice() {
    let mut cluster = group_of("rg-0", "rg-1", "sync_master").await;
    let (master, slave) = (info(&cluster, "rg-0"), info(&cluster, "rg-1"));
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_load(&master.0, 8, 20_000, stop.clone(), load.clone());
    for at in [5_000, 12_000] {
        wait_attempted(&load, at).await;
        cluster.kill_broker("rg-1");
        // Down for a while: sends in flight time out, later ones find no slave in sync.
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.restart_broker("rg-1").await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let other = load.other.lock().unwrap().clone();
    assert!(other.is_empty(), "sends failed with {other:?}");
    wait_caught_up(&master.0, &slave.0).await;
    assert_log_prefix(&master.1, &slave.1);
    let on_slave = logged_ids(&slave.1);
    let ok = load.ok.lock().unwrap().clone();
    let missing: Vec<_> = ok.iter().filter(|id| !on_slave.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged sends are not on the slave, e.g. {:?}",
        missing.len(),
        ok.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "sync master: {} OK, {} stored but not replicated (slave down)",
        ok.len(),
        load.not_replicated.load(Ordering::SeqCst)
    );
}

/// Kills the master mid-load; returns (acknowledged ids, ids the slave serves).
async fn kill_master_mid_load(cluster: &mut Cluster) -> (Vec<String>, HashSet<String>) {
    let master = cluster.broker("rg-0").addr.clone();
    let slave = cluster.broker("rg-1").addr.clone();
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_load(&master, 8, usize::MAX, stop.clone(), load.clone());
    wait_ok(&load, 3_000).await;
    cluster.kill_broker("rg-0");
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let other = load.other.lock().unwrap().clone();
    assert!(other.is_empty(), "sends failed with {other:?}");
    // Read everything the slave serves (it keeps serving with its master down).
    let mut client = rpc::messaging(&slave);
    let mut served = HashSet::new();
    for q in 0..QUEUES {
        for m in rpc::pull_queue(&mut client, "verify", TOPIC, q).await {
            served.insert(rpc::id_of(&m));
        }
    }
    let ok = load.ok.lock().unwrap().clone();
    (ok, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_killed_mid_load_loses_no_acknowledged_message() {
    let mut cluster = group_of("rg-0", "rg-1", "sync_master").await;
    let (ok, served) = kill_master_mid_load(&mut cluster).await;
    let missing: Vec<_> = ok.iter().filter(|id| !served.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "the slave lacks {} of {} acknowledged messages, e.g. {:?}",
        missing.len(),
        ok.len(),
        &missing[..missing.len().min(5)]
    );
    cluster.restart_broker("rg-0").await;
    let (m, s) = (info(&cluster, "rg-0"), info(&cluster, "rg-1"));
    wait_caught_up(&m.0, &s.0).await;
    assert_log_prefix(&m.1, &s.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_master_killed_mid_load_reports_what_the_slave_lacked() {
    let mut cluster = group_of("rg-0", "rg-1", "async_master").await;
    let (ok, served) = kill_master_mid_load(&mut cluster).await;
    let missing = ok.iter().filter(|id| !served.contains(*id)).count();
    eprintln!(
        "async master killed mid-load: the slave lacked {missing} of {} acknowledged messages",
        ok.len()
    );
    cluster.restart_broker("rg-0").await;
    let (m, s) = (info(&cluster, "rg-0"), info(&cluster, "rg-1"));
    wait_caught_up(&m.0, &s.0).await;
    assert_log_prefix(&m.1, &s.1);
    // After the master's return the slave has every acknowledged message.
    let on_slave = logged_ids(&s.1);
    let still_missing: Vec<_> = ok.iter().filter(|id| !on_slave.contains(*id)).collect();
    assert!(
        still_missing.is_empty(),
        "after the master's return the slave (holding {} records) lacks {} of {} acknowledged messages, e.g. {:?}",
        on_slave.len(),
        still_missing.len(),
        ok.len(),
        &still_missing[..still_missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_master_with_a_paused_slave_answers_not_replicated_then_recovers() {
    let mut cluster = group_of("rg-0", "rg-1", "sync_master").await;
    let master = cluster.broker("rg-0").addr.clone();
    let client = rpc::messaging(&master);
    let send_one = move |n: usize| {
        let m = rpc::message(TOPIC, (n % 4) as i32, format!("p{n}"));
        let mut c = client.clone();
        async move {
            let started = Instant::now();
            let r = rpc::send(&mut c, vec![m]).await;
            (rpc::code(r.status.as_ref()), started.elapsed())
        }
    };
    // With the slave connected a send is answered OK (on a loaded machine the first sends
    // may still time out waiting for the slave's report): wait for an OK instead of taking
    // the first answer.
    let mut n = 0;
    wait_until(
        Duration::from_secs(30),
        "a send answered OK with the slave connected",
        || {
            n += 1;
            let sent = send_one(n);
            async move {
                let (code, _) = sent.await;
                (code == Code::Ok as i32)
                    .then_some(())
                    .ok_or(format!("answered {}", rpc::code_name(code)))
            }
        },
    )
    .await;

    cluster.pause_broker("rg-1");
    let paused = Instant::now();
    let mut codes = Vec::new();
    n += 1;
    while paused.elapsed() < Duration::from_secs(10) {
        let (code, took) = send_one(n).await;
        n += 1;
        // Never a hang: at most the 3 s sync timeout plus a wide margin for a loaded machine.
        assert!(took < Duration::from_secs(15), "a send took {took:?}");
        codes.push(code);
    }
    cluster.resume_broker("rg-1");
    let allowed = [
        Code::Ok as i32,
        Code::HaNotAvailable as i32,
        Code::SlavePersistenceTimeout as i32,
    ];
    let names: Vec<_> = codes.iter().map(|&c| rpc::code_name(c)).collect();
    assert!(codes.iter().all(|c| allowed.contains(c)), "{names:?}");
    assert!(
        codes.iter().any(|&c| c != Code::Ok as i32),
        "no send during the pause was answered 'not replicated': {names:?}"
    );
    // Recovers by itself: sends are OK again once the slave caught up.
    let mut next = n;
    wait_until(Duration::from_secs(60), "sends to be OK again", || {
        next += 1;
        let f = send_one(next);
        async move {
            let c = f.await.0;
            (c == Code::Ok as i32)
                .then_some(())
                .ok_or(rpc::code_name(c))
        }
    })
    .await;
    // A send made to the slave is passed to its master (slave_serving.rs has the details).
    let mut slave = rpc::messaging(&cluster.broker("rg-1").addr);
    let r = rpc::send(&mut slave, vec![rpc::message(TOPIC, 0, "to the slave")]).await;
    assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
}

/// A failed test's printed logs end where it failed: the teardown freezes every member
/// before it kills any, so the slave does not log its master's kill. Killed one after the
/// other, the slave logged "replication from the master stopped ... h2 protocol error:
/// error reading a body from connection" (and nothing on the master, killed first), which
/// read as a stream broken under load when a test had failed for another reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_teardown_leaves_no_member_logging_the_kill_of_another() {
    let mut cluster = group_of("rg-0", "rg-1", "async_master").await;
    cluster.freeze_all();
    cluster.kill_broker("rg-0");
    // A running slave logs a broken stream within milliseconds; a frozen one never does.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = cluster.broker_log("rg-1");
    assert!(
        log.contains("replicating from the master"),
        "the slave never replicated:\n{log}"
    );
    assert!(
        log.trim_end().ends_with(TEARDOWN_MARKER),
        "the slave logged after the teardown froze it:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_on_the_slave_while_the_master_is_down_are_not_delivered_again() {
    let mut cluster = group_of("rg-0", "rg-1", "async_master").await;
    let (master, slave) = (
        cluster.broker("rg-0").addr.clone(),
        cluster.broker("rg-1").addr.clone(),
    );
    let mut client = rpc::messaging(&master);
    let mut sent = HashSet::new();
    for n in 0..200 {
        let m = rpc::message(TOPIC, n % QUEUES, format!("m{n}"));
        sent.insert(rpc::id_of(&m));
        let r = rpc::send(&mut client, vec![m]).await;
        assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
    }
    wait_caught_up(&master, &slave).await;
    cluster.kill_broker("rg-0");
    // Until the slave has seen its master go, it passes receives on to it.
    wait_link(&slave, false).await;

    // The group consumes everything from the slave and acknowledges it there.
    let group = "handback-group";
    let mut on_slave = rpc::messaging(&slave);
    let got: HashSet<String> = rpc::drain(&mut on_slave, group, TOPIC, Duration::from_secs(2))
        .await
        .iter()
        .map(rpc::id_of)
        .collect();
    assert_eq!(got, sent, "the slave served every message once");

    cluster.restart_broker("rg-0").await;
    // Back on the master: nothing of what was acknowledged on the slave comes again.
    let mut client = rpc::messaging(&master);
    let again = rpc::drain(&mut client, group, TOPIC, Duration::from_secs(5)).await;
    let again: Vec<String> = again.iter().map(rpc::id_of).collect();
    assert!(
        again.is_empty(),
        "delivered again after the master returned: {again:?}"
    );
    // And the group goes on with new messages.
    let m = rpc::message(TOPIC, 0, "after");
    let id = rpc::id_of(&m);
    rpc::send(&mut client, vec![m]).await;
    let after = rpc::drain(&mut client, group, TOPIC, Duration::from_secs(2)).await;
    assert_eq!(after.iter().map(rpc::id_of).collect::<Vec<_>>(), vec![id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slave_with_records_the_master_never_wrote_truncates_and_catches_up() {
    let mut cluster = Cluster::builder()
        .broker(member("dg", 0, "async_master"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let master = cluster.broker("dg-0").addr.clone();
    let client = rpc::messaging(&master);
    let send = |body: String, q: i32| {
        let m = rpc::message(TOPIC, q, body);
        let id = rpc::id_of(&m);
        let mut c = client.clone();
        async move {
            let r = rpc::send(&mut c, vec![m]).await;
            assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
            id
        }
    };
    let mut common = HashSet::new();
    for n in 0..100 {
        common.insert(send(format!("a{n}"), n % QUEUES).await);
    }
    // A copy of the master's data as it is now...
    cluster.kill_broker("dg-0");
    let copy = cluster.dir().join("diverged");
    commitlog::copy_dir(&cluster.broker("dg-0").data_dir, &copy);
    cluster.restart_broker("dg-0").await;
    let mut after = HashSet::new();
    for n in 0..50 {
        after.insert(send(format!("b{n}"), n % QUEUES).await);
    }
    // ... gets records of its own as another group's master, which "dg" never wrote.
    cluster
        .add_broker(BrokerSpec::member("rogue", 0).data_dir(&copy))
        .await;
    let mut rogue = rpc::messaging(&cluster.broker("rogue-0").addr);
    let mut foreign = HashSet::new();
    for n in 0..30 {
        let m = rpc::message(TOPIC, n % QUEUES, format!("c{n}"));
        foreign.insert(rpc::id_of(&m));
        let r = rpc::send(&mut rogue, vec![m]).await;
        assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32, "{r:?}");
    }
    cluster.remove_broker("rogue-0");

    // Started as dg's slave on that data, it truncates to the common prefix and catches up.
    cluster
        .add_broker(member("dg", 1, "slave").data_dir(&copy))
        .await;
    let slave = cluster.broker("dg-1").addr.clone();
    wait_caught_up(&master, &slave).await;
    assert_log_prefix(&cluster.broker("dg-0").data_dir, &copy);
    let ids = logged_ids(&copy);
    assert!(common.iter().chain(&after).all(|id| ids.contains(id)));
    assert!(foreign.iter().all(|id| !ids.contains(id)));
    let log = cluster.broker_log("dg-1");
    assert!(log.contains("truncating to the common prefix"), "{log}");
    // Its index serves the master's messages, not the foreign ones.
    let mut on_slave = rpc::messaging(&slave);
    let mut served = HashSet::new();
    for q in 0..QUEUES {
        for m in rpc::pull_queue(&mut on_slave, "verify", TOPIC, q).await {
            served.insert(rpc::id_of(&m));
        }
    }
    let expected: HashSet<String> = common.union(&after).cloned().collect();
    assert_eq!(served, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_master_gone_consumers_read_from_the_slave_and_producers_use_other_groups() {
    use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
    let mut cluster = Cluster::builder()
        .nameserver_env("BROKER_EXPIRY_SECS", "3")
        .broker(member("rg", 0, "async_master"))
        .broker(member("rg", 1, "slave"))
        .broker(member("other", 0, "async_master"))
        .start()
        .await;
    cluster.create_topic(TOPIC, QUEUES).await;
    let (master, slave) = (info(&cluster, "rg-0").0, info(&cluster, "rg-1").0);
    let mut client = rpc::messaging(&master);
    let mut expected = HashSet::new();
    for n in 0..40 {
        let m = rpc::message(TOPIC, n % QUEUES, format!("on-rg-{n}"));
        expected.insert(rpc::id_of(&m));
        let r = rpc::send(&mut client, vec![m]).await;
        assert_eq!(rpc::code(r.status.as_ref()), Code::Ok as i32);
    }
    wait_caught_up(&master, &slave).await;
    cluster.kill_broker("rg-0");
    let registry = rpc::registry(cluster.ns_addr());
    wait_until(
        Duration::from_secs(60),
        "the NameServer to drop rg's master",
        || {
            let mut r = registry.clone();
            async move {
                let info = r
                    .get_cluster_info(apogee_proto::cluster::GetClusterInfoRequest {})
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                let rg = info.groups.iter().find(|g| g.broker_name == "rg");
                match rg {
                    Some(g) if g.members.iter().all(|m| m.broker_id != 0) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;

    // Producers get the other group's queues only.
    let producer = Producer::connect(cluster.client_config())
        .await
        .expect("producer");
    for n in 0..20 {
        let r = producer
            .send(Message::new(TOPIC, format!("on-other-{n}")))
            .await
            .expect("send with rg's master gone");
        assert_eq!(r.broker_name, "other");
        expected.insert(r.message_id);
    }
    // Consumers read both groups: rg from its slave.
    let subscription = vec![(TOPIC.to_string(), FilterExpression::default())];
    let consumer = SimpleConsumer::connect(cluster.client_config(), "via-routes", subscription)
        .await
        .expect("consumer");
    let mut got = HashSet::new();
    let mut from_rg = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < expected.len() && Instant::now() < deadline {
        let batch = consumer
            .receive(TOPIC, 32, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .expect("receive");
        for m in &batch {
            consumer.ack(m).await.expect("ack on the slave");
            from_rg += usize::from(m.broker_name == "rg");
            got.insert(m.message_id.clone());
        }
    }
    assert_eq!(got, expected);
    assert_eq!(from_rg, 40, "rg's messages come from its slave");
}

//! apogee-client across an automatic failover, without a restart: a controller-mode group of
//! two members, the client's Producer and SimpleConsumer working while the master is
//! SIGKILLed. The client fetches the route again after a failed call (a member it cannot
//! reach, a refusal from a member that is not the master), so the same objects reach the
//! new master once the controller has elected it; every acknowledged message is received.

use apogee_client::{FilterExpression, Message, Producer, SimpleConsumer};
use apogee_tests::failover::{assert_all_logged, start_group_of_two, StartedGroup};
use apogee_tests::wait_until;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GROUP: &str = "cfo";
const TOPIC: &str = "client-failover";
/// The pause of a task after a failed call (no spinning while the group has no master).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Events with their times.
type Log = Arc<Mutex<Vec<(String, Instant)>>>;

fn ids(log: &Log) -> BTreeSet<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect()
}

fn after(log: &Log, t: Instant) -> Vec<(String, Duration)> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > t)
        .map(|(e, at)| (e.clone(), *at - t))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apogee_client_follows_a_failover_without_a_restart() {
    let StartedGroup {
        mut cluster,
        master: old,
        slave: new,
        ..
    } = start_group_of_two(GROUP, TOPIC, 4).await;
    let producer = Arc::new(Producer::connect(cluster.client_config()).await.unwrap());
    let subscription = vec![(TOPIC.to_string(), FilterExpression::default())];
    let consumer = Arc::new(
        SimpleConsumer::connect(cluster.client_config(), "client-failover", subscription)
            .await
            .unwrap(),
    );

    let (acked, send_errors, received, receive_errors): (Log, Log, Log, Log) = Default::default();
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, acked, errors, stop) = (
            producer.clone(),
            acked.clone(),
            send_errors.clone(),
            stop_sending.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                match producer.send(Message::new(TOPIC, format!("m-{n}"))).await {
                    Ok(r) => acked.lock().unwrap().push((r.message_id, Instant::now())),
                    Err(e) => {
                        errors.lock().unwrap().push((e.to_string(), Instant::now()));
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        })
    };
    let receiver = {
        let (consumer, received, errors, stop) = (
            consumer.clone(),
            received.clone(),
            receive_errors.clone(),
            Arc::clone(&stop_receiving),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let batch = consumer
                    .receive(TOPIC, 16, Duration::from_secs(5), Duration::from_secs(1))
                    .await;
                match batch {
                    Ok(batch) => {
                        for m in &batch {
                            received
                                .lock()
                                .unwrap()
                                .push((m.message_id.clone(), Instant::now()));
                            // A failed ack: the message comes back after 5 s.
                            let _ = consumer.ack(m).await;
                        }
                    }
                    Err(e) => {
                        errors.lock().unwrap().push((e.to_string(), Instant::now()));
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
        })
    };
    wait_until(
        Duration::from_secs(60),
        "sends and receives before the kill",
        || async {
            let (a, r) = (ids(&acked).len(), ids(&received).len());
            (a >= 100 && r >= 50)
                .then_some(())
                .ok_or(format!("{a} acknowledged, {r} received"))
        },
    )
    .await;

    cluster.kill_broker(&old);
    let killed_at = Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the same producer's sends to be acknowledged after the kill",
        || async {
            let n = after(&acked, killed_at).len();
            (n >= 100).then_some(()).ok_or(format!(
                "{n} acknowledged since the kill; the last failure: {:?}",
                send_errors.lock().unwrap().last()
            ))
        },
    )
    .await;
    stop_sending.store(true, Ordering::SeqCst);
    sender.await.expect("the sender task panicked");
    let all_acked = ids(&acked);
    wait_until(
        Duration::from_secs(60),
        "the same consumer to receive every acknowledged message",
        || async {
            let missing = all_acked.difference(&ids(&received)).count();
            (missing == 0).then_some(()).ok_or(format!(
                "{missing} of {} not received; the last failure: {:?}",
                all_acked.len(),
                receive_errors.lock().unwrap().last()
            ))
        },
    )
    .await;
    stop_receiving.store(true, Ordering::SeqCst);
    receiver.await.expect("the receiver task panicked");
    let acked_list: Vec<String> = all_acked.iter().cloned().collect();
    assert_all_logged(
        &acked_list,
        &cluster.broker(&new).data_dir,
        "the new master",
    );

    let first_ack = after(&acked, killed_at)[0].1;
    let first_receive = after(&received, killed_at).iter().map(|(_, d)| *d).min();
    let failed_sends = after(&send_errors, killed_at);
    let failed_receives = after(&receive_errors, killed_at);
    eprintln!(
        "apogee-client across a SIGKILL of the master: {} acknowledged, every one received; \
         first acknowledged send {} ms after the kill, first received message {:?} ms after; \
         since the kill {} sends failed (the first: {:?}, the last at {:?}) and {} receives \
         failed (the first: {:?})",
        all_acked.len(),
        first_ack.as_millis(),
        first_receive.map(|d| d.as_millis()),
        failed_sends.len(),
        failed_sends.first().map(|(e, _)| e),
        failed_sends.last().map(|(_, d)| d),
        failed_receives.len(),
        failed_receives.first().map(|(e, _)| e),
    );
    // A route kept after a failed call (a read-only one while the group had no master, say)
    // would hold sends back until it expired.
    assert!(
        first_ack < apogee_client::route::ROUTE_TTL,
        "the first send after the kill was acknowledged {first_ack:?} after it: the client \
         waited for its cached route to expire"
    );
    assert!(
        failed_sends.iter().all(|(_, d)| *d <= first_ack),
        "a send failed after the new master answered: the client kept a stale route: {:?}",
        failed_sends.last()
    );
}

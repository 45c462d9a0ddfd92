//! The push consumer's receive loops. A topic loop looks at the topic's
//! route every [`ASSIGNMENT_INTERVAL`] and keeps one broker loop per broker
//! group that has a readable queue (restarting it when the group's endpoint
//! changes, retiring it when the group leaves the route).
//!
//! A broker loop is either busy or idle. Busy: it takes every free slot (up
//! to the receive batch size the servers granted), receives without waiting,
//! and hands each message one slot. Idle (the last receive found nothing):
//! it takes one slot and long-polls. A message found makes it busy again;
//! slots not filled are freed at once. When there are more broker loops than
//! slots, idle polls are kept short ([`CROWDED_POLL`]) so that a loop with
//! messages is not kept waiting behind idle ones for a whole long poll.

use super::Shared;
use crate::route::BrokerTarget;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often a topic loop looks for broker groups joining or leaving.
pub(super) const ASSIGNMENT_INTERVAL: Duration = Duration::from_secs(5);
/// Longest idle poll when broker loops outnumber slots.
pub(super) const CROWDED_POLL: Duration = Duration::from_secs(2);
/// Pause after an idle poll that came back empty long before its time (a
/// server granting short polls), so the loop does not spin.
const EMPTY_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause after failed receives.
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);

struct BrokerLoop {
    endpoint: String,
    retire: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// Keeps one broker loop per broker group of `topic` until shutdown.
pub(super) async fn topic_loop(shared: Arc<Shared>, topic: String) {
    let mut loops: HashMap<String, BrokerLoop> = HashMap::new();
    loop {
        match shared.consumer.core().route(&topic).await {
            Ok(route) => reconcile(&shared, &topic, &mut loops, route.readable_brokers()),
            Err(e) => tracing::debug!(topic, error = %e, "push consumer: no route"),
        }
        tokio::select! {
            biased;
            _ = shared.stopped() => break,
            _ = tokio::time::sleep(ASSIGNMENT_INTERVAL) => {}
        }
    }
    for (_, l) in loops {
        l.retire.store(true, Ordering::Relaxed);
        let _ = l.task.await;
    }
}

fn reconcile(
    shared: &Arc<Shared>,
    topic: &str,
    loops: &mut HashMap<String, BrokerLoop>,
    targets: Vec<BrokerTarget>,
) {
    let wanted: HashMap<&str, &BrokerTarget> = targets
        .iter()
        .map(|t| (t.broker_name.as_str(), t))
        .collect();
    loops.retain(|name, l| {
        let keep = !l.task.is_finished()
            && wanted
                .get(name.as_str())
                .is_some_and(|t| t.endpoint == l.endpoint);
        if !keep {
            l.retire.store(true, Ordering::Relaxed);
        }
        keep
    });
    for t in targets.iter() {
        if loops.contains_key(&t.broker_name) {
            continue;
        }
        let retire = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(broker_loop(
            shared.clone(),
            topic.to_string(),
            t.clone(),
            retire.clone(),
        ));
        loops.insert(
            t.broker_name.clone(),
            BrokerLoop {
                endpoint: t.endpoint.clone(),
                retire,
                task,
            },
        );
    }
}

/// Counts a running broker loop for as long as it lives.
struct Running(Arc<Shared>);

impl Running {
    fn new(shared: &Arc<Shared>) -> Running {
        shared.loops.fetch_add(1, Ordering::Relaxed);
        Running(shared.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.loops.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long an idle poll waits.
pub(super) fn idle_wait(long_poll: Duration, loops: usize, slots: usize) -> Duration {
    if loops > slots {
        long_poll.min(CROWDED_POLL)
    } else {
        long_poll
    }
}

/// The pause after `failures` failed receives in a row.
pub(super) fn error_pause(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(16))).min(MAX_ERROR_PAUSE)
}

async fn broker_loop(
    shared: Arc<Shared>,
    topic: String,
    target: BrokerTarget,
    retire: Arc<AtomicBool>,
) {
    let _running = Running::new(&shared);
    let mut busy = true;
    let mut failures = 0u32;
    while !shared.stopping() && !retire.load(Ordering::Relaxed) {
        let learned = shared.learned();
        let want = if busy { learned.batch as usize } else { 1 };
        let mut slots = tokio::select! {
            biased;
            _ = shared.stopped() => break,
            s = shared.slots.take_up_to(want) => s,
        };
        if slots.is_empty() {
            break;
        }
        let wait = if busy {
            Duration::ZERO
        } else {
            let loops = shared.loops.load(Ordering::Relaxed);
            idle_wait(learned.long_poll, loops, shared.slots.total())
        };
        let started = Instant::now();
        let receive = shared.consumer.receive_once(
            &target,
            &topic,
            slots.len() as u32,
            shared.invisible,
            wait,
        );
        let (messages, err) = tokio::select! {
            biased;
            _ = shared.stopped() => break,
            r = receive => r,
        };
        let found = !messages.is_empty();
        for m in messages {
            let slot = match slots.pop() {
                Some(s) => s,
                // The broker sent more than asked for: wait for a slot.
                None => match shared.slots.take_one().await {
                    Some(s) => s,
                    None => break,
                },
            };
            shared.dispatch(m, slot);
        }
        drop(slots);
        if let Some(e) = err {
            failures += 1;
            tracing::debug!(topic, broker = %target.broker_name, error = %e, failures, "push consumer: receive failed");
            pause(&shared, error_pause(failures)).await;
        } else {
            failures = 0;
            if !found && !busy && (wait.is_zero() || started.elapsed() < wait / 2) {
                pause(&shared, EMPTY_PAUSE).await;
            }
        }
        busy = found;
    }
}

async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        biased;
        _ = shared.stopped() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_polls_are_short_only_when_loops_outnumber_slots() {
        let long = Duration::from_secs(30);
        assert_eq!(idle_wait(long, 2, 16), long);
        assert_eq!(idle_wait(long, 16, 16), long);
        assert_eq!(idle_wait(long, 3, 2), CROWDED_POLL);
        assert_eq!(
            idle_wait(Duration::from_secs(1), 3, 2),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn error_pauses_grow_and_are_capped() {
        assert_eq!(error_pause(1), Duration::from_millis(200));
        assert!(error_pause(3) > error_pause(2));
        assert_eq!(error_pause(40), MAX_ERROR_PAUSE);
    }
}

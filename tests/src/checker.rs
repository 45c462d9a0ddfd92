//! A checker for runs with faults, in the style of OpenMessaging Chaos' QueueChecker.
//!
//! Producers and consumers record into one [`Checker`] while a run goes on: every send
//! attempt (message key, message group, the broker group that stored it, when, and its
//! outcome: [`Outcome::Acknowledged`], [`Outcome::Failed`] or [`Outcome::Unknown`] when the
//! client cannot tell whether it was stored), every received message (key, message group,
//! broker group, when, which consumer), every receive call that failed (which consumer,
//! when), and the faults the test injected (kind, member,
//! the broker group it hits, when). Times are offsets from the checker's creation, so a
//! test can also write a synthetic timeline.
//!
//! After the run, [`Checker::report`] judges the history:
//! - **lost**: acknowledged and never received;
//! - **unexpected**: received but never sent (no send attempt has its key);
//! - **duplicated**: keys received more than once (at-least-once allows it; counted);
//! - **order violations**: per message group (FIFO), a message received for the first time
//!   after a message of the same group that was acknowledged later;
//! - **per fault**, the time from the fault to the first acknowledged send and to the first
//!   received message after it, of the fault's broker group when it names one (a received
//!   message's group is the one its consumer saw, else the one its send was stored on);
//!   and what it cost the clients within its window (to the end of the load): the send and
//!   receive calls they saw fail, and the longest time one producer went without an
//!   acknowledged send and one consumer without a message (`cost`).
//!
//! - **lease violations**: a send acknowledged or a message handed out by a master after
//!   the lease it held when it was cut off from the controller ended (the test records the
//!   isolation with [`Checker::record_isolation`]; every event carries the endpoint that
//!   served it when the client says).
//!
//! [`Summary`] aggregates the reports of many rounds per fault kind (median, p99, worst).

mod cost;
mod lease;
mod summary;

pub use cost::ClientCost;
pub use lease::{Isolation, LeaseViolation, Served, LEASE_AND_MARGIN};
pub use summary::{Spread, Summary};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a send attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The broker answered OK: the message must be received.
    Acknowledged,
    /// The broker (or the client) said it was not stored.
    Failed,
    /// Stored or not, nobody can tell (a timeout, a broken connection, stored on a master
    /// without its slave's copy): it may be received, it need not.
    Unknown,
}

/// One send attempt.
#[derive(Clone, Debug)]
pub struct SendEvent {
    /// The message's key (unique per message in a run).
    pub key: String,
    /// Its message group (FIFO), if any.
    pub message_group: Option<String>,
    /// The broker group that stored it, when the client says.
    pub broker_group: Option<String>,
    /// Which producer sent it.
    pub producer: String,
    /// When the outcome was known.
    pub at: Duration,
    pub outcome: Outcome,
    /// The endpoint of the broker that answered, when the client says.
    pub served_by: Option<String>,
}

/// One message handed to a consumer.
#[derive(Clone, Debug)]
pub struct ReceiveEvent {
    pub key: String,
    pub message_group: Option<String>,
    /// The broker group it came from, when the client says.
    pub broker_group: Option<String>,
    /// Which consumer received it.
    pub consumer: String,
    pub at: Duration,
    /// The endpoint of the broker that handed it out, when the client says.
    pub served_by: Option<String>,
}

/// One receive call that failed (a consumer's error, not an empty answer).
#[derive(Clone, Debug)]
pub struct ReceiveFailure {
    /// Which consumer called.
    pub consumer: String,
    /// When it saw the error.
    pub at: Duration,
}

/// One injected fault.
#[derive(Clone, Debug)]
pub struct FaultEvent {
    /// What was done: `kill`, `pause`, `links-down`, ...
    pub kind: String,
    /// To which member (a process name).
    pub member: String,
    /// The broker group it hits, if it hits one.
    pub broker_group: Option<String>,
    pub at: Duration,
}

#[derive(Default)]
struct History {
    sends: Vec<SendEvent>,
    receives: Vec<ReceiveEvent>,
    receive_failures: Vec<ReceiveFailure>,
    faults: Vec<FaultEvent>,
    isolations: Vec<Isolation>,
}

/// The shared record of a run; share it as an `Arc<Checker>`.
pub struct Checker {
    start: Instant,
    history: Mutex<History>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    /// An empty history whose clock starts now.
    pub fn new() -> Checker {
        Checker {
            start: Instant::now(),
            history: Mutex::new(History::default()),
        }
    }

    /// The time since the checker was made, the clock every event is recorded on.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record_send(&self, event: SendEvent) {
        self.history().sends.push(event);
    }

    pub fn record_receive(&self, event: ReceiveEvent) {
        self.history().receives.push(event);
    }

    pub fn record_receive_failure(&self, failure: ReceiveFailure) {
        self.history().receive_failures.push(failure);
    }

    pub fn record_fault_event(&self, event: FaultEvent) {
        self.history().faults.push(event);
    }

    /// Records a fault of `kind` on `member` (of `broker_group`, if it hits one) now.
    pub fn record_fault(&self, kind: &str, member: &str, broker_group: Option<&str>) {
        let at = self.now();
        self.record_fault_event(FaultEvent {
            kind: kind.to_string(),
            member: member.to_string(),
            broker_group: broker_group.map(str::to_string),
            at,
        });
    }

    /// Records that master `member`, serving at `endpoint`, was cut off from the controller
    /// now: from `lease_and_margin` on (its lease, plus the time an answer sent just before
    /// the lease ended may take to reach a client) until
    /// [`Checker::record_isolation_healed`], no send may be acknowledged by it and no message
    /// handed out by it.
    pub fn record_isolation(&self, member: &str, endpoint: &str, lease_and_margin: Duration) {
        let at = self.now();
        self.history().isolations.push(Isolation {
            member: member.to_string(),
            endpoint: endpoint.to_string(),
            at,
            lease_ended: at + lease_and_margin,
            healed: None,
        });
    }

    /// Records that `member`'s isolation ended now (it may serve again, as whatever role the
    /// controller gives it).
    pub fn record_isolation_healed(&self, member: &str) {
        let now = self.now();
        let mut history = self.history();
        for i in history.isolations.iter_mut() {
            if i.member == member && i.healed.is_none() {
                i.healed = Some(now);
            }
        }
    }

    /// Acknowledged sends so far (of `broker_group` when given) whose outcome came at or
    /// after `since`.
    pub fn acknowledged_since(&self, since: Duration, broker_group: Option<&str>) -> usize {
        self.history()
            .sends
            .iter()
            .filter(|s| {
                s.outcome == Outcome::Acknowledged
                    && s.at >= since
                    && (broker_group.is_none() || s.broker_group.as_deref() == broker_group)
            })
            .count()
    }

    /// The time from `since` to the first acknowledged send after it, of `broker_group`
    /// and by `producer` when given (`None`: none yet).
    pub fn first_write_after(
        &self,
        since: Duration,
        broker_group: Option<&str>,
        producer: Option<&str>,
    ) -> Option<Duration> {
        first_write(&self.history(), since, broker_group, producer)
    }

    /// The time from `since` to the first message received after it, of `broker_group`
    /// and by `consumer` when given (`None`: none yet).
    pub fn first_read_after(
        &self,
        since: Duration,
        broker_group: Option<&str>,
        consumer: Option<&str>,
    ) -> Option<Duration> {
        let history = self.history();
        let sends = best_sends(&history.sends);
        first_read(&history, &sends, since, broker_group, consumer)
    }

    /// Every send attempt so far, in the order they were recorded.
    pub fn sends(&self) -> Vec<SendEvent> {
        self.history().sends.clone()
    }

    /// How many acknowledged messages have not been received yet.
    pub fn missing(&self) -> usize {
        self.report().lost.len()
    }

    /// How many acknowledged messages stored on `broker_group` have not been received yet
    /// (what a consumer of that group can still read).
    pub fn unread(&self, broker_group: &str) -> usize {
        let history = self.history();
        let received: std::collections::HashSet<&str> =
            history.receives.iter().map(|r| r.key.as_str()).collect();
        best_sends(&history.sends)
            .values()
            .filter(|s| {
                s.outcome == Outcome::Acknowledged
                    && s.broker_group.as_deref() == Some(broker_group)
                    && !received.contains(s.key.as_str())
            })
            .count()
    }

    /// Judges the history so far.
    pub fn report(&self) -> Report {
        Report::of(&self.history())
    }
}

/// A message received for the first time after one of its group that was sent after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderViolation {
    pub message_group: String,
    /// The message received out of order.
    pub key: String,
    /// The later-sent message of the group that was received before it.
    pub after: String,
}

/// How long after one fault writes and reads went on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecovery {
    pub kind: String,
    pub member: String,
    pub broker_group: Option<String>,
    pub at: Duration,
    /// To the first acknowledged send after the fault (of its broker group); `None`: none.
    pub to_write: Option<Duration>,
    /// To the first received message after the fault (of its broker group); `None`: none.
    pub to_read: Option<Duration>,
    /// Within the fault's window (to the last send attempt of the run): the longest time one
    /// producer went without an acknowledged send (of its broker group). Where service went
    /// on for a while after the fault (a lease still running) the first write says little,
    /// this says how long writes stopped; `None`: the window is empty or no producer had a
    /// send acknowledged.
    pub write_pause: Option<Duration>,
    /// The same for each consumer and the messages it received.
    pub read_pause: Option<Duration>,
    /// Sends within the window not acknowledged (failed or unknown), of every producer.
    pub failed_sends: usize,
    /// Receive calls that failed within the window, of every consumer.
    pub failed_receives: usize,
    /// Per client (producer or consumer) with a failed call or a pause: its failed calls and
    /// longest pause within the window.
    pub clients: BTreeMap<String, ClientCost>,
}

/// What a history shows.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Send attempts.
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Messages handed to consumers, redeliveries included.
    pub receipts: usize,
    /// Receive calls that failed.
    pub failed_receives: usize,
    /// Distinct keys received.
    pub received: usize,
    /// Acknowledged and never received, sorted.
    pub lost: Vec<String>,
    /// Received but never sent, sorted.
    pub unexpected: Vec<String>,
    /// Keys received more than once.
    pub duplicated: usize,
    /// Receipts beyond the first of each key.
    pub redeliveries: usize,
    /// Keys whose send failed or is unknown but that were received.
    pub unacknowledged_received: usize,
    pub order_violations: Vec<OrderViolation>,
    pub faults: Vec<FaultRecovery>,
    /// Sends acknowledged and messages handed out by an isolated master after its lease
    /// ended.
    pub lease_violations: Vec<LeaseViolation>,
}

impl Report {
    fn of(history: &History) -> Report {
        let mut report = Report {
            attempted: history.sends.len(),
            receipts: history.receives.len(),
            failed_receives: history.receive_failures.len(),
            ..Report::default()
        };
        for s in &history.sends {
            match s.outcome {
                Outcome::Acknowledged => report.acknowledged += 1,
                Outcome::Failed => report.failed += 1,
                Outcome::Unknown => report.unknown += 1,
            }
        }
        let sends = best_sends(&history.sends);
        let mut receipts: HashMap<&str, usize> = HashMap::new();
        for r in &history.receives {
            *receipts.entry(&r.key).or_default() += 1;
        }
        report.received = receipts.len();
        for (key, &n) in &receipts {
            if n > 1 {
                report.duplicated += 1;
                report.redeliveries += n - 1;
            }
            match sends.get(key) {
                None => report.unexpected.push(key.to_string()),
                Some(s) if s.outcome != Outcome::Acknowledged => {
                    report.unacknowledged_received += 1
                }
                Some(_) => {}
            }
        }
        report.lost = sends
            .values()
            .filter(|s| {
                s.outcome == Outcome::Acknowledged && !receipts.contains_key(s.key.as_str())
            })
            .map(|s| s.key.clone())
            .collect();
        report.lost.sort();
        report.unexpected.sort();
        report.order_violations = order_violations(history, &sends);
        report.faults = history
            .faults
            .iter()
            .map(|f| recovery(history, &sends, f))
            .collect();
        report.lease_violations = lease::violations(&history.isolations, history);
        report
    }
}

/// The best outcome per key: a key acknowledged once counts as acknowledged.
fn best_sends(all: &[SendEvent]) -> HashMap<&str, &SendEvent> {
    let mut sends: HashMap<&str, &SendEvent> = HashMap::new();
    for s in all {
        let better = sends.get(s.key.as_str()).is_none_or(|prev| {
            prev.outcome != Outcome::Acknowledged && s.outcome == Outcome::Acknowledged
        });
        if better {
            sends.insert(&s.key, s);
        }
    }
    sends
}

/// Per message group: acknowledged sends in the order they were acknowledged, then each
/// key's first receipt in time order; a receipt of a key sent before the latest one
/// already received is a violation.
fn order_violations(history: &History, sends: &HashMap<&str, &SendEvent>) -> Vec<OrderViolation> {
    let mut acked: Vec<&SendEvent> = sends
        .values()
        .filter(|s| s.outcome == Outcome::Acknowledged && s.message_group.is_some())
        .copied()
        .collect();
    acked.sort_by_key(|s| s.at);
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut counters: HashMap<&str, usize> = HashMap::new();
    for s in &acked {
        let group = s.message_group.as_deref().unwrap_or_default();
        let n = counters.entry(group).or_default();
        position.insert(&s.key, *n);
        *n += 1;
    }
    let mut receives: Vec<&ReceiveEvent> = history.receives.iter().collect();
    receives.sort_by_key(|r| r.at);
    // Per group: the highest position received so far and its key.
    let mut highest: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut violations = Vec::new();
    for r in receives {
        if !seen.insert(&r.key) {
            continue;
        }
        let (Some(&pos), Some(send)) = (position.get(r.key.as_str()), sends.get(r.key.as_str()))
        else {
            continue;
        };
        let group = send.message_group.as_deref().unwrap_or_default();
        match highest.get(group) {
            Some(&(top, top_key)) if pos < top => violations.push(OrderViolation {
                message_group: group.to_string(),
                key: r.key.clone(),
                after: top_key.to_string(),
            }),
            _ => {
                highest.insert(group, (pos, &r.key));
            }
        }
    }
    violations
}

/// The time from `since` to the first acknowledged send after it, of `group` and by
/// `producer` when given; what an isolated master served while isolated does not count
/// (the group has not recovered while only the master cut off from it answers).
fn first_write(
    history: &History,
    since: Duration,
    group: Option<&str>,
    producer: Option<&str>,
) -> Option<Duration> {
    history
        .sends
        .iter()
        .filter(|s| {
            s.outcome == Outcome::Acknowledged
                && s.at >= since
                && (group.is_none() || s.broker_group.as_deref() == group)
                && (producer.is_none() || Some(s.producer.as_str()) == producer)
                && !lease::served_while_isolated(&history.isolations, s.served_by.as_deref(), s.at)
        })
        .map(|s| s.at - since)
        .min()
}

/// The time from `since` to the first message received after it, of `group` (the one its
/// consumer saw, else the one its send was stored on) and by `consumer` when given; what an
/// isolated master handed out while isolated does not count.
fn first_read(
    history: &History,
    sends: &HashMap<&str, &SendEvent>,
    since: Duration,
    group: Option<&str>,
    consumer: Option<&str>,
) -> Option<Duration> {
    history
        .receives
        .iter()
        .filter(|r| {
            let g = r.broker_group.as_deref().or_else(|| {
                sends
                    .get(r.key.as_str())
                    .and_then(|s| s.broker_group.as_deref())
            });
            r.at >= since
                && (group.is_none() || g == group)
                && (consumer.is_none() || Some(r.consumer.as_str()) == consumer)
                && !lease::served_while_isolated(&history.isolations, r.served_by.as_deref(), r.at)
        })
        .map(|r| r.at - since)
        .min()
}

/// The times from `fault` to the first acknowledged send and first receipt after it, and
/// what it cost within its window.
fn recovery(
    history: &History,
    sends: &HashMap<&str, &SendEvent>,
    fault: &FaultEvent,
) -> FaultRecovery {
    let group = fault.broker_group.as_deref();
    let window = cost::Window::from_fault(history, fault.at);
    let cost = cost::within(history, sends, window, group);
    FaultRecovery {
        kind: fault.kind.clone(),
        member: fault.member.clone(),
        broker_group: fault.broker_group.clone(),
        at: fault.at,
        to_write: first_write(history, fault.at, group, None),
        to_read: first_read(history, sends, fault.at, group, None),
        write_pause: cost.write_pause,
        read_pause: cost.read_pause,
        failed_sends: cost.failed_sends,
        failed_receives: cost.failed_receives,
        clients: cost.clients,
    }
}

/// At most this many keys of a list are printed.
const SHOWN_KEYS: usize = 8;

/// `keys`, the first [`SHOWN_KEYS`] of them and how many more.
fn some_keys(keys: &[String]) -> String {
    let shown = keys[..keys.len().min(SHOWN_KEYS)].join(", ");
    if keys.len() > SHOWN_KEYS {
        format!("{shown}, ... ({} more)", keys.len() - SHOWN_KEYS)
    } else {
        shown
    }
}

/// A duration in seconds with milliseconds, or `never`.
pub(crate) fn seconds(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_string(),
        |d| format!("{:.3} s", d.as_secs_f64()),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sends: {} attempted, {} acknowledged, {} failed, {} unknown",
            self.attempted, self.acknowledged, self.failed, self.unknown
        )?;
        writeln!(
            f,
            "receipts: {} ({} distinct keys, {} duplicated, {} redeliveries, {} of unacknowledged sends), {} failed receive calls",
            self.receipts,
            self.received,
            self.duplicated,
            self.redeliveries,
            self.unacknowledged_received,
            self.failed_receives
        )?;
        writeln!(f, "lost: {}", self.lost.len())?;
        if !self.lost.is_empty() {
            writeln!(f, "  {}", some_keys(&self.lost))?;
        }
        writeln!(f, "unexpected: {}", self.unexpected.len())?;
        if !self.unexpected.is_empty() {
            writeln!(f, "  {}", some_keys(&self.unexpected))?;
        }
        writeln!(f, "order violations: {}", self.order_violations.len())?;
        for v in self.order_violations.iter().take(SHOWN_KEYS) {
            writeln!(
                f,
                "  group {}: {} after {}",
                v.message_group, v.key, v.after
            )?;
        }
        writeln!(f, "lease violations: {}", self.lease_violations.len())?;
        for v in self.lease_violations.iter().take(SHOWN_KEYS) {
            writeln!(f, "  {v}")?;
        }
        for r in &self.faults {
            writeln!(
                f,
                "fault {} on {}{} at {}: first write after {}, first read after {}, \
                 writes paused at most {}, reads paused at most {}, \
                 {} failed sends, {} failed receives",
                r.kind,
                r.member,
                r.broker_group
                    .as_deref()
                    .map(|g| format!(" (group {g})"))
                    .unwrap_or_default(),
                seconds(Some(r.at)),
                seconds(r.to_write),
                seconds(r.to_read),
                seconds(r.write_pause),
                seconds(r.read_pause),
                r.failed_sends,
                r.failed_receives
            )?;
            for (client, cost) in &r.clients {
                writeln!(
                    f,
                    "  {client}: {} failed calls, paused at most {}",
                    cost.failed,
                    seconds(cost.pause)
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

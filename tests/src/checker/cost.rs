//! What a fault cost the clients within its window: from the fault to the last send attempt
//! of the run (when the round stopped its producers, at the end of the fault's hold and the
//! load after it).
//!
//! - **failed sends**: send attempts whose outcome came within the window and was not an
//!   acknowledgement ([`Outcome::Failed`] or [`Outcome::Unknown`]: the client saw the call
//!   fail, whatever it did next), of every producer (a failed send does not say which broker
//!   group it was for);
//! - **failed receives**: receive calls that failed within the window, of every consumer;
//! - **write pause**: the longest time one producer went without an acknowledged send (of
//!   the fault's broker group, when it names one) within the window. A pause that began
//!   before the fault counts from that producer's last acknowledgement before it, and one
//!   still going at the window's end counts to the end. Producers that never had a send of
//!   the group acknowledged are not counted (the official crate does not say which group
//!   stored a message);
//! - **read pause**: the same for each consumer and the messages it received (a message's
//!   group is the one its consumer saw, else the one its send was stored on).
//!
//! Each client's failed calls and longest pause are kept too ([`ClientCost`]): which client
//! paid. What an isolated master served while isolated counts as neither an acknowledgement
//! nor a receipt (its group has not recovered while only the master cut off from it answers).

use super::{lease, History, Outcome, SendEvent};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A fault's window on the checker's clock; `end` before `start` when nothing was sent
/// after the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub start: Duration,
    pub end: Duration,
}

impl Window {
    /// The window of a fault at `at`: to the last send attempt recorded.
    pub fn from_fault(history: &History, at: Duration) -> Window {
        let end = history.sends.iter().map(|s| s.at).max().unwrap_or_default();
        Window { start: at, end }
    }

    fn is_empty(&self) -> bool {
        self.end < self.start
    }

    fn holds(&self, at: Duration) -> bool {
        self.start <= at && at <= self.end
    }
}

/// What one fault cost within its window.
pub(super) struct Cost {
    pub failed_sends: usize,
    pub failed_receives: usize,
    pub write_pause: Option<Duration>,
    pub read_pause: Option<Duration>,
    pub clients: BTreeMap<String, ClientCost>,
}

/// What one fault cost one client (a producer or a consumer) within its window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCost {
    /// Its calls that failed: sends not acknowledged, or receive calls.
    pub failed: usize,
    /// Its longest pause: without an acknowledged send (a producer) or a message (a
    /// consumer) of the fault's group; `None`: it had none of the group.
    pub pause: Option<Duration>,
}

/// The cost of a fault of broker group `group` (every group: `None`) within `window`.
pub(super) fn within(
    history: &History,
    sends: &HashMap<&str, &SendEvent>,
    window: Window,
    group: Option<&str>,
) -> Cost {
    let mut clients: BTreeMap<String, ClientCost> = BTreeMap::new();
    let mut failed = |client: &str| clients.entry(client.to_string()).or_default().failed += 1;
    let (mut failed_sends, mut failed_receives) = (0, 0);
    for s in &history.sends {
        if s.outcome != Outcome::Acknowledged && window.holds(s.at) {
            failed(&s.producer);
            failed_sends += 1;
        }
    }
    for f in &history.receive_failures {
        if window.holds(f.at) {
            failed(&f.consumer);
            failed_receives += 1;
        }
    }
    let served = |by: Option<&str>, at| !lease::served_while_isolated(&history.isolations, by, at);
    let acknowledged = history.sends.iter().filter(|s| {
        s.outcome == Outcome::Acknowledged
            && (group.is_none() || s.broker_group.as_deref() == group)
            && served(s.served_by.as_deref(), s.at)
    });
    let received = history.receives.iter().filter(|r| {
        let g = r.broker_group.as_deref().or_else(|| {
            sends
                .get(r.key.as_str())
                .and_then(|s| s.broker_group.as_deref())
        });
        (group.is_none() || g == group) && served(r.served_by.as_deref(), r.at)
    });
    let write_pauses = pauses(acknowledged.map(|s| (s.producer.as_str(), s.at)), window);
    let read_pauses = pauses(received.map(|r| (r.consumer.as_str(), r.at)), window);
    for (client, pause) in write_pauses.iter().chain(&read_pauses) {
        clients.entry(client.to_string()).or_default().pause = Some(*pause);
    }
    Cost {
        failed_sends,
        failed_receives,
        write_pause: write_pauses.into_values().max(),
        read_pause: read_pauses.into_values().max(),
        clients,
    }
}

/// Per client of `events` (client, when), the longest time within `window` it went without
/// an event; empty when the window is.
fn pauses<'a>(
    events: impl Iterator<Item = (&'a str, Duration)>,
    window: Window,
) -> BTreeMap<&'a str, Duration> {
    if window.is_empty() {
        return BTreeMap::new();
    }
    let mut per_client: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (client, at) in events {
        per_client.entry(client).or_default().push(at);
    }
    per_client
        .into_iter()
        .map(|(client, mut times)| {
            times.sort();
            // From the last event at or before the window's start (else the start), through
            // every event within it, to its end.
            let before = times
                .iter()
                .rev()
                .find(|t| **t <= window.start)
                .copied()
                .unwrap_or(window.start);
            let within = times
                .iter()
                .copied()
                .filter(|t| window.start < *t && *t <= window.end);
            let mut previous = before;
            let mut longest = Duration::ZERO;
            for at in within.chain([window.end]) {
                longest = longest.max(at - previous);
                previous = at;
            }
            (client, longest)
        })
        .collect()
}

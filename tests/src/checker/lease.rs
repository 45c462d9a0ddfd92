//! The lease rule, judged from the clients' side: a master cut off from the controller
//! holds its lease at most `lease_ms` (2 s by default) after its last renewal, which it sent
//! before the cut; after that it acknowledges no send and hands out no message. Every send
//! and receipt whose client names the endpoint that served it is checked against the
//! isolations a test recorded: one served by an isolated master's endpoint after its lease
//! ended and before the isolation was healed is a violation.
//!
//! A client's clock is late on the broker's: an answer sent just before the lease ended is
//! recorded when it arrives. [`LEASE_AND_MARGIN`] allows for that (one second on top of the
//! default lease).
//!
//! What a client cannot see: a slave forwards sends and receives to its master and answers
//! for it, so an event served through a slave names the slave. A client that calls the
//! isolated master directly (a stale route, the official crate's fixed endpoints) names it.

use super::{seconds, History, Outcome};
use std::fmt;
use std::time::Duration;

/// The controller's default lease (2 s) and a margin of 1 s for answers in flight.
pub const LEASE_AND_MARGIN: Duration = Duration::from_secs(3);

/// A master cut off from the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolation {
    /// Its process name.
    pub member: String,
    /// The endpoint it serves clients at.
    pub endpoint: String,
    /// When it was cut off.
    pub at: Duration,
    /// From when on it must serve nothing (its lease, and the margin, ended).
    pub lease_ended: Duration,
    /// When the isolation ended (`None`: not yet).
    pub healed: Option<Duration>,
}

/// What an isolated master did after its lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// It acknowledged a send.
    Acknowledged,
    /// It handed out a message.
    HandedOut,
}

/// One send acknowledged or message handed out by an isolated master after its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseViolation {
    pub member: String,
    pub endpoint: String,
    pub served: Served,
    /// The message's key.
    pub key: String,
    /// When the client saw it.
    pub at: Duration,
    /// How long after the isolation.
    pub after_isolation: Duration,
}

impl fmt::Display for LeaseViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.served {
            Served::Acknowledged => "acknowledged",
            Served::HandedOut => "handed out",
        };
        write!(
            f,
            "{} ({}) {what} {} at {}, {} after it was cut off",
            self.member,
            self.endpoint,
            self.key,
            seconds(Some(self.at)),
            seconds(Some(self.after_isolation))
        )
    }
}

impl Isolation {
    /// Whether an event at `at` served by `endpoint` breaks the lease rule.
    fn forbids(&self, endpoint: Option<&str>, at: Duration) -> bool {
        endpoint == Some(self.endpoint.as_str())
            && at >= self.lease_ended
            && self.healed.is_none_or(|healed| at < healed)
    }

    fn violation(&self, served: Served, key: &str, at: Duration) -> LeaseViolation {
        LeaseViolation {
            member: self.member.clone(),
            endpoint: self.endpoint.clone(),
            served,
            key: key.to_string(),
            at,
            after_isolation: at - self.at,
        }
    }
}

/// Whether an event at `at` was served by the endpoint of a master of `isolations` while it
/// was isolated (lease or not).
pub(super) fn served_while_isolated(
    isolations: &[Isolation],
    endpoint: Option<&str>,
    at: Duration,
) -> bool {
    isolations.iter().any(|i| {
        endpoint == Some(i.endpoint.as_str())
            && at >= i.at
            && i.healed.is_none_or(|healed| at < healed)
    })
}

/// Every acknowledgement and receipt of `history` that one of `isolations` forbids, in time
/// order.
pub(super) fn violations(isolations: &[Isolation], history: &History) -> Vec<LeaseViolation> {
    let mut found = Vec::new();
    for i in isolations {
        for s in &history.sends {
            if s.outcome == Outcome::Acknowledged && i.forbids(s.served_by.as_deref(), s.at) {
                found.push(i.violation(Served::Acknowledged, &s.key, s.at));
            }
        }
        for r in &history.receives {
            if i.forbids(r.served_by.as_deref(), r.at) {
                found.push(i.violation(Served::HandedOut, &r.key, r.at));
            }
        }
    }
    found.sort_by_key(|v| v.at);
    found
}

#[cfg(test)]
mod tests {
    use crate::checker::{Checker, Isolation, Outcome, ReceiveEvent, SendEvent, Served};
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ack(c: &Checker, key: &str, by: Option<&str>, at: u64) {
        c.record_send(SendEvent {
            key: key.into(),
            message_group: None,
            broker_group: Some("a".into()),
            producer: "p".into(),
            at: ms(at),
            outcome: Outcome::Acknowledged,
            served_by: by.map(str::to_string),
        });
    }

    fn hand_out(c: &Checker, key: &str, by: Option<&str>, at: u64) {
        c.record_receive(ReceiveEvent {
            key: key.into(),
            message_group: None,
            broker_group: Some("a".into()),
            consumer: "c".into(),
            at: ms(at),
            served_by: by.map(str::to_string),
        });
    }

    #[test]
    fn recording_an_isolation_and_its_heal_sets_the_window() {
        let c = Checker::new();
        c.record_isolation("a-1", "e1", ms(3000));
        c.record_isolation_healed("a-1");
        let i = c.history().isolations[0].clone();
        assert_eq!(i.lease_ended, i.at + ms(3000));
        assert!(i.healed.is_some_and(|h| h >= i.at), "{i:?}");
    }

    #[test]
    fn only_what_the_isolated_master_served_between_its_lease_end_and_the_heal_violates() {
        let c = Checker::new();
        c.history().isolations.push(Isolation {
            member: "a-1".into(),
            endpoint: "198.18.0.5:10911".into(),
            at: ms(1_000),
            lease_ended: ms(4_000),
            healed: Some(ms(11_000)),
        });
        let at = |offset: u64| 1_000 + offset;
        let old = Some("198.18.0.5:10911");
        let new = Some("198.18.0.6:10911");
        ack(&c, "during-lease", old, at(2_900));
        ack(&c, "after-lease", old, at(3_000));
        ack(&c, "on-the-new-master", new, at(4_000));
        ack(&c, "unknown-endpoint", None, at(4_000));
        hand_out(&c, "handed-after-lease", old, at(9_999));
        hand_out(&c, "after-the-heal", old, at(10_000));
        c.record_send(SendEvent {
            key: "refused".into(),
            message_group: None,
            broker_group: None,
            producer: "p".into(),
            at: ms(at(5_000)),
            outcome: Outcome::Failed,
            served_by: old.map(str::to_string),
        });
        let r = c.report();
        let found: Vec<(&str, Served)> = r
            .lease_violations
            .iter()
            .map(|v| (v.key.as_str(), v.served))
            .collect();
        assert_eq!(
            found,
            [
                ("after-lease", Served::Acknowledged),
                ("handed-after-lease", Served::HandedOut)
            ]
        );
        assert_eq!(r.lease_violations[0].after_isolation, ms(3_000));
        let text = r.to_string();
        assert!(text.contains("lease violations: 2\n"), "{text}");
        assert!(
            text.contains("a-1 (198.18.0.5:10911) acknowledged after-lease"),
            "{text}"
        );
    }

    #[test]
    fn what_the_isolated_master_served_does_not_count_as_its_group_recovering() {
        let c = Checker::new();
        c.history().isolations.push(Isolation {
            member: "a-1".into(),
            endpoint: "old".into(),
            at: ms(1_000),
            lease_ended: ms(4_000),
            healed: None,
        });
        c.record_fault_event(crate::checker::FaultEvent {
            kind: "master-cut-from-controller".into(),
            member: "a-1".into(),
            broker_group: Some("a".into()),
            at: ms(1_000),
        });
        ack(&c, "on-the-old", Some("old"), 1_500);
        hand_out(&c, "from-the-old", Some("old"), 1_600);
        ack(&c, "on-the-new", Some("new"), 4_000);
        hand_out(&c, "from-the-new", Some("new"), 4_500);
        let f = &c.report().faults[0];
        assert_eq!((f.to_write, f.to_read), (Some(ms(3_000)), Some(ms(3_500))));
    }

    #[test]
    fn an_isolation_not_healed_lasts_to_the_end_of_the_run() {
        let c = Checker::new();
        c.record_isolation("a-1", "e1", ms(3000));
        let cut = c.history().isolations[0].at;
        let at = (cut + ms(60_000)).as_millis() as u64;
        hand_out(&c, "late", Some("e1"), at);
        assert_eq!(c.report().lease_violations.len(), 1);
        assert!(c.report().lease_violations[0].key == "late");
    }
}

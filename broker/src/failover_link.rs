//! A member's side of the controller protocol (controller mode, `failover.controller_mode`).
//!
//! The controller needs no connection of its own: a broker already keeps a session with
//! every NameServer (`registration.rs`) and beats on it. In controller mode every beat
//! carries the member's [`MemberReport`] and a sequence number; the NameServer whose
//! controller leads answers with the group's [`Assignment`] (who is master, in which epoch,
//! the committed in-sync set) and, to the master, a lease counted from when the answered
//! beat was sent. This module keeps the send instants of the beats in flight
//! ([`BeatClock`]) and hands what an answer says to the member's state
//! ([`ControllerMember`], implemented by the broker's membership service).

use crate::config::Role;
use crate::membership::{BootInstant, Membership};
use apogee_proto::cluster::{Assignment, BrokerRole, MemberReport, SessionAnswer};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::watch;

/// The clock beats are timed with: the lease's (it counts time suspended).
type Instant = BootInstant;

/// Beats remembered for their send instants. Answers come back in order, one per beat; a
/// NameServer further behind than this is taken as not answering (the session's silence
/// check ends it first).
pub const BEATS_REMEMBERED: usize = 64;

/// What the broker's sessions need of its membership in controller mode.
pub trait ControllerMember: Send + Sync + 'static {
    /// What the next beat reports.
    fn report(&self) -> MemberReport;
    /// The controller's decision for the group, as a leader's answer carried it.
    fn assign(&self, assignment: &Assignment);
    /// A lease of `lease_ms` granted for the beat sent at `beat_sent`.
    fn renew_lease(&self, beat_sent: Instant, lease_ms: u64);
    /// The role and master epoch a registration names.
    fn registered_role(&self) -> (BrokerRole, u64);
    /// Marked changed whenever the report or the role changes: a beat (and, for a role
    /// change, a registration) goes out at once instead of at the next tick.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The broker's [`Membership`] as the sessions see it; `endpoint` is the broker's advertised
/// endpoint (an assignment naming another member there cannot be followed).
pub fn controller_member(
    membership: Arc<Membership>,
    endpoint: String,
) -> Arc<dyn ControllerMember> {
    Arc::new(MembershipLink {
        membership,
        endpoint,
    })
}

struct MembershipLink {
    membership: Arc<Membership>,
    endpoint: String,
}

impl ControllerMember for MembershipLink {
    fn report(&self) -> MemberReport {
        self.membership.report()
    }

    fn assign(&self, assignment: &Assignment) {
        self.membership.assign(assignment, &self.endpoint);
    }

    fn renew_lease(&self, beat_sent: Instant, lease_ms: u64) {
        self.membership.renew_lease(beat_sent, lease_ms);
    }

    fn registered_role(&self) -> (BrokerRole, u64) {
        let view = self.membership.role_view();
        (Role::from(&view.role).into(), view.master_epoch)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.membership.changed()
    }
}

/// The send instants of the beats of one session not answered yet, by sequence number.
#[derive(Debug, Default)]
pub struct BeatClock {
    next_seq: u64,
    in_flight: VecDeque<(u64, Instant)>,
}

impl BeatClock {
    /// Numbers a beat sent now (from 1) and remembers when.
    pub fn sent(&mut self, now: Instant) -> u64 {
        self.next_seq += 1;
        if self.in_flight.len() == BEATS_REMEMBERED {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back((self.next_seq, now));
        self.next_seq
    }

    /// When the beat `seq` was sent, forgetting it and every earlier one (answers come in
    /// order). None for a beat not sent on this session or forgotten.
    pub fn answered(&mut self, seq: u64) -> Option<Instant> {
        while let Some(&(first, at)) = self.in_flight.front() {
            if first > seq {
                return None;
            }
            self.in_flight.pop_front();
            if first == seq {
                return Some(at);
            }
        }
        None
    }
}

/// Hands what `answer` says to `member`: the assignment, then the lease (counted from when
/// the answered beat was sent: an answer to a beat this session does not know grants
/// nothing).
pub fn take_answer(member: &dyn ControllerMember, clock: &mut BeatClock, answer: &SessionAnswer) {
    let sent = clock.answered(answer.seq);
    let Some(assignment) = &answer.assignment else {
        return;
    };
    member.assign(assignment);
    if let (Some(sent), lease_ms @ 1..) = (sent, assignment.lease_ms) {
        member.renew_lease(sent, lease_ms);
    }
}

/// The shortest beat interval the controller can ask for (it asks for an eighth of the
/// lease, which its settings keep far longer).
const SHORTEST_BEAT: std::time::Duration = std::time::Duration::from_millis(50);

/// The beat interval of a session whose controller asked for a beat every `beat_ms` (0: as
/// configured): the configured interval, or the asked one when that is shorter. The master's
/// lease then does not run out between two beats, and an in-sync member hears of its
/// election within one, whatever the broker's settings.
pub fn beat_period(configured: std::time::Duration, beat_ms: u64) -> std::time::Duration {
    if beat_ms == 0 {
        return configured;
    }
    configured.min(std::time::Duration::from_millis(beat_ms).max(SHORTEST_BEAT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorded {
        assigned: Mutex<Vec<u64>>,
        leases: Mutex<Vec<(Instant, u64)>>,
    }

    impl ControllerMember for Recorded {
        fn report(&self) -> MemberReport {
            MemberReport::default()
        }
        fn assign(&self, assignment: &Assignment) {
            self.assigned.lock().push(assignment.master_epoch);
        }
        fn renew_lease(&self, beat_sent: Instant, lease_ms: u64) {
            self.leases.lock().push((beat_sent, lease_ms));
        }
        fn registered_role(&self) -> (BrokerRole, u64) {
            (BrokerRole::Slave, 0)
        }
        fn changes(&self) -> watch::Receiver<u64> {
            watch::channel(0).1
        }
    }

    fn answer(seq: u64, epoch: u64, lease_ms: u64) -> SessionAnswer {
        SessionAnswer {
            seq,
            assignment: Some(Assignment {
                master_epoch: epoch,
                lease_ms,
                ..Assignment::default()
            }),
            ..SessionAnswer::default()
        }
    }

    #[test]
    fn a_lease_counts_from_the_sending_of_the_beat_it_answers() {
        let t0 = Instant::now();
        let mut clock = BeatClock::default();
        let t1 = t0.later_by(Duration::from_secs(1));
        let (first, second) = (clock.sent(t0), clock.sent(t1));
        assert_eq!((first, second), (1, 2));
        let member = Recorded::default();
        take_answer(&member, &mut clock, &answer(second, 3, 2000));
        assert_eq!(*member.leases.lock(), vec![(t1, 2000)]);
        // The answer to beat 2 forgot beat 1: a late answer to it grants nothing.
        take_answer(&member, &mut clock, &answer(first, 3, 2000));
        assert_eq!(member.leases.lock().len(), 1);
        assert_eq!(*member.assigned.lock(), vec![3, 3]);
    }

    #[test]
    fn no_lease_without_one_granted_or_for_an_unknown_beat() {
        let mut clock = BeatClock::default();
        let seq = clock.sent(Instant::now());
        let member = Recorded::default();
        take_answer(&member, &mut clock, &answer(seq, 1, 0));
        take_answer(&member, &mut clock, &answer(seq + 5, 1, 2000));
        assert!(member.leases.lock().is_empty());
        // A follower's answer (no assignment) changes nothing.
        let plain = SessionAnswer {
            seq: clock.sent(Instant::now()),
            ..SessionAnswer::default()
        };
        take_answer(&member, &mut clock, &plain);
        assert_eq!(*member.assigned.lock(), vec![1, 1]);
    }

    #[test]
    fn the_clock_remembers_a_bounded_number_of_beats() {
        let t0 = Instant::now();
        let mut clock = BeatClock::default();
        for _ in 0..BEATS_REMEMBERED + 10 {
            clock.sent(t0);
        }
        assert_eq!(clock.in_flight.len(), BEATS_REMEMBERED);
        assert_eq!(clock.answered(1), None, "the oldest beats are forgotten");
        let last = (BEATS_REMEMBERED + 10) as u64;
        assert_eq!(clock.answered(last), Some(t0));
        assert!(clock.in_flight.is_empty());
    }

    #[test]
    fn the_controller_shortens_the_beat_interval_it_asks_for() {
        let second = Duration::from_secs(1);
        assert_eq!(beat_period(second, 0), second, "not asked: as configured");
        assert_eq!(beat_period(second, 250), Duration::from_millis(250));
        assert_eq!(
            beat_period(Duration::from_millis(200), 250),
            Duration::from_millis(200),
            "a shorter configured interval stays"
        );
        assert_eq!(
            beat_period(second, 10),
            Duration::from_millis(50),
            "bounded below"
        );
    }
}

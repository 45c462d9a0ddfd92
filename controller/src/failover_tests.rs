//! The failover rules with time passed in: registration and in-sync proposals from beats,
//! leases only to the master and only on a valid ticket, and the election timing.

use super::*;
use crate::state::{Command, CommandResult, ControllerState, Refusal};

const GROUP: &str = "broker-a";
const LEASE: Duration = Duration::from_millis(2000);
const MARGIN: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(2000);

fn timings() -> FailoverTimings {
    FailoverTimings {
        lease: LEASE,
        lease_margin: MARGIN,
        member_timeout: TIMEOUT,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn address(member: MemberId) -> String {
    format!("127.0.0.1:{}", 10_000 + member)
}

fn beat(member: MemberId, report: MemberReport) -> MemberBeat {
    MemberBeat {
        group: GROUP.into(),
        member,
        address: address(member),
        report,
        via: NAMESERVER_A,
    }
}

/// The NameServers beats come through.
const NAMESERVER_A: NameServerId = 0xa;
const NAMESERVER_B: NameServerId = 0xb;

fn slave_report(master_epoch: u64, log_end: u64) -> MemberReport {
    MemberReport {
        master_epoch,
        last_log_epoch: master_epoch,
        log_end,
        priority: 0,
        ..MemberReport::default()
    }
}

fn master_report(master_epoch: u64, in_sync_epoch: u64, in_sync: &[MemberId]) -> MemberReport {
    MemberReport {
        is_master: true,
        in_sync: in_sync.to_vec(),
        in_sync_epoch,
        ..slave_report(master_epoch, 100)
    }
}

/// Applies `commands` to `state`, returning the results.
fn apply(state: &mut ControllerState, commands: &[Command]) -> Vec<CommandResult> {
    commands.iter().map(|c| state.apply(c)).collect()
}

/// A state with members 1 and 2 registered and 1 master of epoch 1 with both in sync, and
/// a failover table leading since `t0` that heard both at `t0`.
fn group_with_master(t0: Instant) -> (ControllerState, Failover) {
    let mut state = ControllerState::default();
    let mut failover = Failover::new(timings());
    failover.observe_leadership(Some(1), t0);
    for member in [1, 2] {
        let commands = failover.on_beat(&state, &beat(member, slave_report(0, 0)), t0);
        apply(&mut state, &commands);
    }
    apply(
        &mut state,
        &[
            Command::Elect {
                group: GROUP.into(),
                alive: BTreeSet::from([1]),
                reports: vec![],
                allow_unclean: false,
            },
            Command::ChangeInSync {
                group: GROUP.into(),
                master: 1,
                master_epoch: 1,
                in_sync_epoch: 1,
                in_sync: BTreeSet::from([1, 2]),
            },
        ],
    );
    (state, failover)
}

#[test]
fn first_beat_registers_and_a_known_member_is_not_registered_again() {
    let t0 = Instant::now();
    let mut state = ControllerState::default();
    let mut failover = Failover::new(timings());
    let commands = failover.on_beat(&state, &beat(1, slave_report(0, 0)), t0);
    assert_eq!(
        commands,
        vec![Command::Register {
            group: GROUP.into(),
            member: 1,
            address: address(1),
            priority: 0,
        }]
    );
    apply(&mut state, &commands);
    assert_eq!(
        failover.on_beat(&state, &beat(1, slave_report(0, 0)), t0 + ms(1000)),
        vec![]
    );
}

#[test]
fn an_address_or_priority_change_registers_again() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let mut moved = beat(2, slave_report(1, 0));
    moved.address = "127.0.0.1:20000".into();
    assert_eq!(
        failover.on_beat(&state, &moved, t0),
        vec![Command::Register {
            group: GROUP.into(),
            member: 2,
            address: "127.0.0.1:20000".into(),
            priority: 0,
        }]
    );
    let mut reprioritized = beat(2, slave_report(1, 0));
    reprioritized.report.priority = 3;
    assert!(matches!(
        failover.on_beat(&state, &reprioritized, t0).as_slice(),
        [Command::Register { priority: 3, .. }]
    ));
}

#[test]
fn in_sync_changes_are_proposed_only_by_the_master_on_the_current_epochs() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    // The state: master 1 of epoch 1, in sync {1, 2} of in-sync epoch 2.
    let shrink = master_report(1, 2, &[1]);
    assert_eq!(
        failover.on_beat(&state, &beat(1, shrink.clone()), t0),
        vec![Command::ChangeInSync {
            group: GROUP.into(),
            master: 1,
            master_epoch: 1,
            in_sync_epoch: 2,
            in_sync: BTreeSet::from([1]),
        }]
    );
    let cases: [(MemberId, MemberReport, &str); 6] = [
        (1, master_report(1, 2, &[1, 2]), "the committed set"),
        (2, master_report(1, 2, &[2]), "not the state's master"),
        (
            1,
            MemberReport {
                is_master: false,
                ..shrink.clone()
            },
            "not acting as master",
        ),
        (1, master_report(0, 2, &[1]), "an older master epoch"),
        (1, master_report(1, 1, &[1]), "an older in-sync epoch"),
        (1, master_report(1, 2, &[2]), "a set without the master"),
    ];
    for (member, report, case) in cases {
        assert_eq!(
            failover.on_beat(&state, &beat(member, report), t0),
            vec![],
            "{case}"
        );
    }
    // Members the group does not hold are left out of a proposal.
    assert!(matches!(
        failover.on_beat(&state, &beat(1, master_report(1, 2, &[1, 9])), t0).as_slice(),
        [Command::ChangeInSync { in_sync, .. }] if *in_sync == BTreeSet::from([1])
    ));
}

#[test]
fn a_lease_goes_only_to_the_master_and_is_recorded() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let ticket = failover.grant_ticket(GROUP, t0);
    let to_master = failover.assignment(&state, GROUP, 1, ticket, 7, t0);
    assert_eq!(
        to_master,
        Assignment {
            master_member: 1,
            master_endpoint: address(1),
            master_epoch: 1,
            in_sync: vec![1, 2],
            in_sync_epoch: 2,
            lease_ms: 2000,
            controller_leader: 7,
            hand_over_to: 0,
            beat_ms: 250,
        }
    );
    let to_slave = failover.assignment(&state, GROUP, 2, ticket, 7, t0);
    assert_eq!(to_slave.lease_ms, 0);
    assert_eq!(to_slave.master_member, 1);
    let status = failover.status(&state, t0 + ms(300));
    assert_eq!(status.groups[0].last_grant_age, Some(ms(300)));
    // A node that does not lead grants nothing.
    failover.observe_leadership(None, t0);
    let ticket = failover.grant_ticket(GROUP, t0);
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, t0)
            .lease_ms,
        0
    );
}

#[test]
fn no_lease_on_a_ticket_an_election_overtook() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let ticket = failover.grant_ticket(GROUP, t0);
    // The master goes silent and, a lease + margin later, an election starts before the
    // answer built on the older ticket is made.
    let later = t0 + LEASE + MARGIN;
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), later);
    assert!(failover.election_for(&state, GROUP, later, false).is_some());
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, later)
            .lease_ms,
        0
    );
    // Nor on a ticket taken while it is in flight.
    let during = failover.grant_ticket(GROUP, later);
    failover.election_written(GROUP, None, later);
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, during, 7, later)
            .lease_ms,
        0
    );
    // Its outcome is unknown: no lease for a lease + margin, then again.
    let blocked = failover.grant_ticket(GROUP, later + ms(100));
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, blocked, 7, later)
            .lease_ms,
        0
    );
    let after = later + LEASE + MARGIN;
    let ticket = failover.grant_ticket(GROUP, after);
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, after)
            .lease_ms,
        2000
    );
}

#[test]
fn no_election_while_the_master_is_alive() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let mut now = t0;
    for _ in 0..10 {
        now += ms(1000);
        failover.on_beat(&state, &beat(1, master_report(1, 2, &[1, 2])), now);
        failover.on_beat(&state, &beat(2, slave_report(1, 100)), now);
        assert_eq!(failover.elections(&state, now, false), vec![]);
    }
}

#[test]
fn no_election_before_a_lease_and_margin_after_the_last_grant() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    // Leading for long enough; the last grant to the master at t0 + 5 s.
    let granted = t0 + ms(5000);
    failover.on_beat(&state, &beat(1, master_report(1, 2, &[1, 2])), granted);
    let ticket = failover.grant_ticket(GROUP, granted);
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, granted)
            .lease_ms,
        2000
    );
    let mut now = granted;
    // The master is not alive after the member timeout; member 2 beats on.
    while now < granted + LEASE + MARGIN - ms(100) {
        now += ms(100);
        failover.on_beat(&state, &beat(2, slave_report(1, 100)), now);
        assert_eq!(failover.elections(&state, now, false), vec![], "{now:?}");
    }
    now = granted + LEASE + MARGIN;
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), now);
    assert_eq!(failover.elections(&state, now, false).len(), 1);
}

#[test]
fn no_election_before_a_lease_and_margin_after_becoming_leader() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    // A new term at t0 + 10 s: no grant of its own to the master, whose session ended.
    let elected = t0 + ms(10_000);
    failover.observe_leadership(Some(2), elected);
    failover.member_gone(GROUP, 1, NAMESERVER_A, SessionEnd::Lost);
    let just_before = elected + LEASE + MARGIN - ms(1);
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), just_before);
    assert_eq!(failover.elections(&state, just_before, false), vec![]);
    let at = elected + LEASE + MARGIN;
    assert_eq!(
        failover.elections(&state, at, false),
        vec![Command::Elect {
            group: GROUP.into(),
            alive: BTreeSet::from([2]),
            reports: vec![crate::state::MemberReport {
                member: 2,
                last_epoch: 1,
                log_end: 100,
            }],
            allow_unclean: false,
        }]
    );
}

#[test]
fn losing_leadership_forgets_the_grants_and_stops_elections() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let ticket = failover.grant_ticket(GROUP, t0);
    failover.assignment(&state, GROUP, 1, ticket, 7, t0);
    failover.observe_leadership(None, t0 + ms(10));
    let late = t0 + ms(60_000);
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), late);
    assert_eq!(failover.elections(&state, late, false), vec![]);
    assert!(!failover.status(&state, late).leading);
    assert_eq!(failover.status(&state, late).groups[0].last_grant_age, None);
}

#[test]
fn a_dead_master_is_replaced_by_an_alive_member_and_the_election_recorded() {
    let t0 = Instant::now();
    let (mut state, mut failover) = group_with_master(t0);
    let now = t0 + ms(5000);
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), now);
    let commands = failover.elections(&state, now, false);
    assert!(matches!(
        commands.as_slice(),
        [Command::Elect { alive, .. }] if *alive == BTreeSet::from([2])
    ));
    // In flight: not asked again.
    assert_eq!(failover.elections(&state, now + ms(200), false), vec![]);
    let results = apply(&mut state, &commands);
    failover.election_written(GROUP, Some(&results[0]), now + ms(10));
    let status = failover.status(&state, now + ms(1010));
    let group = &status.groups[0];
    assert_eq!((group.master, group.master_epoch), (Some(2), 2));
    let (ago, record) = group.last_election.clone().expect("recorded");
    assert_eq!(ago, ms(1000));
    assert_eq!(
        (record.old_master, record.master, record.unclean),
        (Some(1), 2, false)
    );
}

#[test]
fn a_new_group_elects_its_first_master_at_once() {
    let t0 = Instant::now();
    let mut state = ControllerState::default();
    let mut failover = Failover::new(timings());
    failover.observe_leadership(Some(1), t0);
    let commands = failover.on_beat(&state, &beat(1, slave_report(0, 0)), t0);
    apply(&mut state, &commands);
    let elections = failover.elections(&state, t0, false);
    assert!(matches!(
        elections.as_slice(),
        [Command::Elect { alive, .. }] if *alive == BTreeSet::from([1])
    ));
    assert!(matches!(
        apply(&mut state, &elections)[0],
        CommandResult::Elected {
            master: 1,
            master_epoch: 1,
            ..
        }
    ));
}

#[test]
fn a_refused_election_is_not_asked_again_on_the_same_facts() {
    let t0 = Instant::now();
    let (mut state, mut failover) = group_with_master(t0);
    // Member 3 joins, out of sync; 1 and 2 die.
    let commands = failover.on_beat(&state, &beat(3, slave_report(1, 10)), t0);
    apply(&mut state, &commands);
    let mut now = t0 + ms(5000);
    failover.on_beat(&state, &beat(3, slave_report(1, 10)), now);
    let first = failover.elections(&state, now, false);
    assert_eq!(first.len(), 1);
    let results = apply(&mut state, &first);
    assert!(matches!(
        results[0],
        CommandResult::Refused(Refusal::NoInSyncCandidate { .. })
    ));
    failover.election_written(GROUP, Some(&results[0]), now);
    for _ in 0..20 {
        now += ms(200);
        failover.on_beat(&state, &beat(3, slave_report(1, 10)), now);
        assert_eq!(failover.elections(&state, now, false), vec![]);
    }
    // New facts: member 2, in sync, is back; the election is asked for again.
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), now);
    let again = failover.elections(&state, now, false);
    assert!(matches!(
        again.as_slice(),
        [Command::Elect { alive, .. }] if *alive == BTreeSet::from([2, 3])
    ));
}

#[test]
fn a_member_whose_session_ended_is_not_alive_until_it_beats_again() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), t0);
    assert_eq!(
        failover.status(&state, t0).groups[0].alive,
        BTreeSet::from([1, 2])
    );
    failover.member_gone(GROUP, 2, NAMESERVER_A, SessionEnd::Lost);
    assert_eq!(
        failover.status(&state, t0).groups[0].alive,
        BTreeSet::from([1])
    );
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), t0 + ms(10));
    assert_eq!(
        failover.status(&state, t0 + ms(10)).groups[0].alive,
        BTreeSet::from([1, 2])
    );
    // Silence for the member timeout ends it too.
    assert_eq!(
        failover.status(&state, t0 + TIMEOUT + ms(10)).groups[0].alive,
        BTreeSet::new()
    );
}

#[test]
fn the_table_holds_at_most_the_group_limit_of_members() {
    let t0 = Instant::now();
    let state = ControllerState::default();
    let mut failover = Failover::new(timings());
    for member in 1..=MAX_MEMBERS_PER_GROUP as u64 {
        assert_eq!(
            failover
                .on_beat(&state, &beat(member, slave_report(0, 0)), t0)
                .len(),
            1
        );
    }
    let extra = MAX_MEMBERS_PER_GROUP as u64 + 1;
    assert_eq!(
        failover.on_beat(&state, &beat(extra, slave_report(0, 0)), t0),
        vec![]
    );
    // Once the others are silent (and the state holds none of them), there is room.
    let later = t0 + TIMEOUT;
    assert_eq!(
        failover
            .on_beat(&state, &beat(extra, slave_report(0, 0)), later)
            .len(),
        1
    );
}

#[test]
fn a_planned_election_stops_grants_and_waits_out_the_masters_lease() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let granted = t0 + ms(5000);
    let ticket = failover.grant_ticket(GROUP, granted);
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, granted)
            .lease_ms,
        2000
    );
    assert_eq!(failover.begin_planned_election(&state, GROUP, 2), Some(()));
    // In flight: neither a second one nor an election of the failure detector.
    assert_eq!(failover.begin_planned_election(&state, GROUP, 2), None);
    assert_eq!(
        failover.election_for(&state, GROUP, granted + ms(60_000), false),
        None
    );
    // No lease to the master from now on, on an older ticket or a new one.
    let during = failover.grant_ticket(GROUP, granted);
    for ticket in [ticket, during] {
        assert_eq!(
            failover
                .assignment(&state, GROUP, 1, ticket, 7, granted)
                .lease_ms,
            0
        );
    }
    assert_eq!(
        failover.planned_election_ready_at(&state, GROUP, granted),
        Some(granted + LEASE + MARGIN)
    );
    // A new leader waits a lease + margin from its start as well.
    failover.observe_leadership(Some(2), granted + ms(100));
    assert_eq!(
        failover.planned_election_ready_at(&state, GROUP, granted + ms(100)),
        Some(granted + ms(100) + LEASE + MARGIN)
    );
    failover.observe_leadership(None, granted + ms(200));
    assert_eq!(
        failover.planned_election_ready_at(&state, GROUP, granted),
        None
    );
}

fn stepped_down(master_epoch: u64) -> MemberReport {
    MemberReport {
        stepped_down: true,
        ..master_report(master_epoch, 2, &[1, 2])
    }
}

#[test]
fn a_planned_election_asks_the_master_to_hand_over_and_is_ready_once_it_stepped_down() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    let now = t0 + ms(5000);
    let ticket = failover.grant_ticket(GROUP, now);
    let before = failover.assignment(&state, GROUP, 1, ticket, 7, now);
    assert_eq!((before.lease_ms, before.hand_over_to), (2000, 0));
    assert_eq!(failover.begin_planned_election(&state, GROUP, 2), Some(()));
    // The master is asked to hand over to member 2; the slave is not.
    let ticket = failover.grant_ticket(GROUP, now);
    let asked = failover.assignment(&state, GROUP, 1, ticket, 7, now);
    assert_eq!((asked.lease_ms, asked.hand_over_to), (0, 2));
    assert_eq!(
        failover
            .assignment(&state, GROUP, 2, ticket, 7, now)
            .hand_over_to,
        0
    );
    // Until it steps down, a lease + margin after the last grant.
    assert_eq!(
        failover.planned_election_ready_at(&state, GROUP, now),
        Some(now + LEASE + MARGIN)
    );
    // A stepped-down report of an older epoch is not this one's.
    failover.on_beat(&state, &beat(1, stepped_down(0)), now + ms(10));
    assert_eq!(
        failover.planned_election_ready_at(&state, GROUP, now + ms(10)),
        Some(now + LEASE + MARGIN)
    );
    failover.on_beat(&state, &beat(1, stepped_down(1)), now + ms(20));
    assert_eq!(
        failover.planned_election_ready_at(&state, GROUP, now + ms(20)),
        Some(now + ms(20)),
        "at once"
    );
    // Its outcome ends the request.
    let elected = CommandResult::Elected {
        master: 2,
        master_epoch: 2,
        in_sync_epoch: 3,
        unclean: false,
    };
    failover.election_written(GROUP, Some(&elected), now + ms(30));
    let ticket = failover.grant_ticket(GROUP, now + ms(30));
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, now + ms(30))
            .hand_over_to,
        0
    );
}

#[test]
fn a_master_that_stepped_down_is_replaced_at_once_by_another_member() {
    let t0 = Instant::now();
    let (mut state, mut failover) = group_with_master(t0);
    let now = t0 + ms(5000);
    let ticket = failover.grant_ticket(GROUP, now);
    assert_eq!(
        failover
            .assignment(&state, GROUP, 1, ticket, 7, now)
            .lease_ms,
        2000
    );
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), now);
    // Its beat asks for no in-sync change, however its set differs.
    let report = MemberReport {
        in_sync: vec![1],
        ..stepped_down(1)
    };
    assert_eq!(failover.on_beat(&state, &beat(1, report), now), vec![]);
    // Alive and just granted a lease, yet replaced now: it holds no lease of its epoch.
    let command = failover
        .election_for(&state, GROUP, now + ms(1), false)
        .expect("an election at once");
    match &command {
        Command::Elect { alive, .. } => assert_eq!(alive, &BTreeSet::from([2])),
        other => panic!("{other:?}"),
    }
    let results = apply(&mut state, &[command]);
    assert!(
        matches!(results[0], CommandResult::Elected { master: 2, .. }),
        "{results:?}"
    );
}

/// The master of `group_with_master`, beating at `at` with the acknowledgement rule
/// `every_in_sync`, and given a lease then; member 2 beats too.
fn master_leased(
    state: &ControllerState,
    failover: &mut Failover,
    at: Instant,
    every_in_sync: bool,
) {
    let report = MemberReport {
        acks_need_every_in_sync: every_in_sync,
        ..master_report(1, 2, &[1, 2])
    };
    failover.on_beat(state, &beat(1, report), at);
    failover.on_beat(state, &beat(2, slave_report(1, 100)), at);
    let ticket = failover.grant_ticket(GROUP, at);
    assert_eq!(
        failover.assignment(state, GROUP, 1, ticket, 7, at).lease_ms,
        2000
    );
}

fn elects(commands: &[Command], member: MemberId) -> bool {
    matches!(commands, [Command::Elect { alive, allow_unclean: false, .. }] if *alive == BTreeSet::from([member]))
}

#[test]
fn a_master_that_exited_acknowledging_on_every_in_sync_member_is_replaced_at_once() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    master_leased(&state, &mut failover, t0, true);
    let killed = t0 + ms(100);
    failover.member_gone(GROUP, 1, NAMESERVER_A, SessionEnd::ClosedByMember);
    // Its lease runs for 1.9 s more, and no election waits for it.
    assert!(elects(&failover.elections(&state, killed, false), 2));
}

#[test]
fn a_master_acknowledging_on_fewer_members_waits_out_its_lease_though_it_exited() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    master_leased(&state, &mut failover, t0, false);
    failover.member_gone(GROUP, 1, NAMESERVER_A, SessionEnd::ClosedByMember);
    let just_before = t0 + LEASE + MARGIN - ms(1);
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), just_before);
    assert_eq!(failover.elections(&state, just_before, false), vec![]);
    assert!(elects(
        &failover.elections(&state, t0 + LEASE + MARGIN, false),
        2
    ));
}

#[test]
fn a_session_gone_silent_or_ended_by_its_nameserver_proves_no_exit() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    master_leased(&state, &mut failover, t0, true);
    failover.member_gone(GROUP, 1, NAMESERVER_A, SessionEnd::Lost);
    let later = t0 + ms(100);
    assert_eq!(
        failover.elections(&state, later, false),
        vec![],
        "a lease is running"
    );
    let just_before = t0 + LEASE + MARGIN - ms(1);
    failover.on_beat(&state, &beat(2, slave_report(1, 100)), just_before);
    assert_eq!(failover.elections(&state, just_before, false), vec![]);
}

#[test]
fn a_master_still_beating_through_another_nameserver_is_alive_until_every_session_closed() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    master_leased(&state, &mut failover, t0, true);
    let through_b = MemberBeat {
        via: NAMESERVER_B,
        ..beat(
            1,
            MemberReport {
                acks_need_every_in_sync: true,
                ..master_report(1, 2, &[1, 2])
            },
        )
    };
    failover.on_beat(&state, &through_b, t0 + ms(10));
    // A connection to one NameServer broke: the master beats on through the other.
    failover.member_gone(GROUP, 1, NAMESERVER_A, SessionEnd::ClosedByMember);
    let now = t0 + ms(20);
    assert_eq!(
        failover.status(&state, now).groups[0].alive,
        BTreeSet::from([1, 2])
    );
    assert_eq!(failover.elections(&state, now, false), vec![]);
    // Both closed: it exited.
    failover.member_gone(GROUP, 1, NAMESERVER_B, SessionEnd::ClosedByMember);
    assert!(elects(&failover.elections(&state, now, false), 2));
}

#[test]
fn a_session_silent_past_the_member_timeout_neither_keeps_a_master_alive_nor_proves_its_exit() {
    let t0 = Instant::now();
    let (state, mut failover) = group_with_master(t0);
    master_leased(&state, &mut failover, t0, true);
    // Through B long ago (a NameServer since stopped without telling), through A now.
    let stale_b = MemberBeat {
        via: NAMESERVER_B,
        ..beat(1, master_report(1, 2, &[1, 2]))
    };
    failover.on_beat(&state, &stale_b, t0);
    let now = t0 + TIMEOUT + ms(500);
    master_leased(&state, &mut failover, now, true);
    failover.member_gone(GROUP, 1, NAMESERVER_A, SessionEnd::ClosedByMember);
    assert!(elects(&failover.elections(&state, now + ms(1), false), 2));
}

#[test]
fn the_master_and_the_in_sync_members_are_asked_to_beat_eight_times_a_lease() {
    let t0 = Instant::now();
    let (mut state, mut failover) = group_with_master(t0);
    let commands = failover.on_beat(&state, &beat(3, slave_report(1, 0)), t0);
    apply(&mut state, &commands);
    let asked = |failover: &mut Failover, member| {
        let ticket = failover.grant_ticket(GROUP, t0);
        failover
            .assignment(&state, GROUP, member, ticket, 7, t0)
            .beat_ms
    };
    let eighth = (LEASE / BEATS_PER_LEASE).as_millis() as u64;
    assert_eq!(asked(&mut failover, 1), eighth, "the master");
    assert_eq!(asked(&mut failover, 2), eighth, "an in-sync member");
    assert_eq!(
        asked(&mut failover, 3),
        0,
        "a member out of the in-sync set: as configured"
    );
}

//! The state machine's rules, one test each (no Raft: commands applied to a state in memory).

use super::*;

const G: &str = "broker-a";

fn register(state: &mut ControllerState, member: MemberId, priority: u32) -> CommandResult {
    state.apply(&Command::Register {
        group: G.into(),
        member,
        address: format!("127.0.0.1:{}", 10900 + member),
        priority,
    })
}

fn alive(members: &[MemberId]) -> BTreeSet<MemberId> {
    members.iter().copied().collect()
}

fn report(member: MemberId, last_epoch: u64, log_end: u64) -> MemberReport {
    MemberReport {
        member,
        last_epoch,
        log_end,
    }
}

fn elect(
    state: &mut ControllerState,
    alive_members: &[MemberId],
    reports: Vec<MemberReport>,
    allow_unclean: bool,
) -> CommandResult {
    state.apply(&Command::Elect {
        group: G.into(),
        alive: alive(alive_members),
        reports,
        allow_unclean,
    })
}

fn change_in_sync(
    state: &mut ControllerState,
    master: MemberId,
    members: &[MemberId],
) -> CommandResult {
    let group = state.group(G).unwrap();
    let (master_epoch, in_sync_epoch) = (group.master_epoch, group.in_sync_epoch);
    state.apply(&Command::ChangeInSync {
        group: G.into(),
        master,
        master_epoch,
        in_sync_epoch,
        in_sync: alive(members),
    })
}

/// A group of members 1, 2, 3 (priority 255) with 1 elected master and all three in sync.
fn group_of_three() -> ControllerState {
    let mut state = ControllerState::default();
    for m in [1, 2, 3] {
        register(&mut state, m, DEFAULT_PRIORITY);
    }
    assert!(matches!(
        elect(&mut state, &[1], vec![], false),
        CommandResult::Elected { master: 1, .. }
    ));
    assert!(matches!(
        change_in_sync(&mut state, 1, &[1, 2, 3]),
        CommandResult::InSyncChanged { .. }
    ));
    state
}

fn refusal(result: CommandResult) -> Refusal {
    match result {
        CommandResult::Refused(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn register_adds_then_updates_and_keeps_reports() {
    let mut state = ControllerState::default();
    assert_eq!(
        register(&mut state, 7, 3),
        CommandResult::Registered {
            member: 7,
            added: true
        }
    );
    state
        .groups
        .get_mut(G)
        .unwrap()
        .members
        .get_mut(&7)
        .unwrap()
        .log_end = 500;
    assert_eq!(
        state.apply(&Command::Register {
            group: G.into(),
            member: 7,
            address: "10.0.0.9:10911".into(),
            priority: 1,
        }),
        CommandResult::Registered {
            member: 7,
            added: false
        }
    );
    let member = &state.group(G).unwrap().members[&7];
    assert_eq!(member.address, "10.0.0.9:10911");
    assert_eq!(member.priority, 1);
    assert_eq!(
        member.log_end, 500,
        "a re-registration keeps the log report"
    );
}

#[test]
fn register_refuses_bad_names_addresses_and_too_many_members() {
    let mut state = ControllerState::default();
    let bad_group = |g: &str| Command::Register {
        group: g.into(),
        member: 1,
        address: "127.0.0.1:1".into(),
        priority: 0,
    };
    for g in ["", "a b", "a/b", &"x".repeat(MAX_GROUP_NAME_BYTES + 1)] {
        assert!(matches!(
            refusal(state.apply(&bad_group(g))),
            Refusal::InvalidGroup(_)
        ));
    }
    assert!(matches!(
        state.apply(&bad_group(&"x".repeat(MAX_GROUP_NAME_BYTES))),
        CommandResult::Registered { .. }
    ));
    state.groups.clear();
    for address in [
        "no-port",
        "",
        &format!("{}:1", "h".repeat(MAX_ADDRESS_BYTES)),
    ] {
        let result = state.apply(&Command::Register {
            group: G.into(),
            member: 1,
            address: address.into(),
            priority: 0,
        });
        assert!(matches!(
            refusal(result),
            Refusal::InvalidAddress { member: 1, .. }
        ));
    }
    for m in 0..MAX_MEMBERS_PER_GROUP as MemberId {
        assert!(matches!(
            register(&mut state, m, 0),
            CommandResult::Registered { .. }
        ));
    }
    let before = state.clone();
    assert_eq!(
        refusal(register(&mut state, 99, 0)),
        Refusal::TooManyMembers
    );
    assert_eq!(state, before, "a refused command changes nothing");
}

#[test]
fn register_refuses_a_group_past_the_group_limit() {
    let mut state = ControllerState::default();
    for g in 0..MAX_GROUPS {
        state.groups.insert(format!("g{g}"), GroupState::default());
    }
    assert_eq!(refusal(register(&mut state, 1, 0)), Refusal::TooManyGroups);
    assert!(state.group(G).is_none());
}

#[test]
fn first_election_of_a_new_group_is_clean_among_all_alive_members() {
    let mut state = ControllerState::default();
    for m in [1, 2] {
        register(&mut state, m, DEFAULT_PRIORITY);
    }
    assert_eq!(
        elect(&mut state, &[2], vec![], false),
        CommandResult::Elected {
            master: 2,
            master_epoch: 1,
            in_sync_epoch: 1,
            unclean: false
        }
    );
    let group = state.group(G).unwrap();
    assert_eq!(group.master, Some(2));
    assert_eq!(
        group.in_sync,
        alive(&[2]),
        "a new master's in-sync set is itself"
    );
}

#[test]
fn no_election_while_the_master_is_alive() {
    let mut state = group_of_three();
    let before = state.clone();
    assert_eq!(
        refusal(elect(&mut state, &[1, 2, 3], vec![], false)),
        Refusal::MasterStillAlive(1)
    );
    assert_eq!(state, before);
}

#[test]
fn election_chooses_by_epoch_then_log_end_then_priority_then_id() {
    // (what decides, member 3's priority if re-registered, alive, (member, epoch, log end)
    // reports, the member elected)
    let cases = [
        (
            "epoch beats log end",
            None,
            [2, 3],
            [(2, 1, 900), (3, 2, 100)],
            3,
        ),
        (
            "same epoch: log end",
            None,
            [2, 3],
            [(2, 1, 900), (3, 1, 100)],
            2,
        ),
        (
            "then the lower priority value",
            Some(1),
            [2, 3],
            [(2, 1, 900), (3, 1, 900)],
            3,
        ),
        (
            "all equal: the lower member id",
            None,
            [3, 2],
            [(2, 1, 900), (3, 1, 900)],
            2,
        ),
    ];
    for (what, priority_of_3, alive, reports, expected) in cases {
        let mut state = group_of_three();
        if let Some(priority) = priority_of_3 {
            register(&mut state, 3, priority);
        }
        let reports = reports
            .iter()
            .map(|&(member, epoch, log_end)| report(member, epoch, log_end))
            .collect();
        let result = elect(&mut state, &alive, reports, false);
        assert!(
            matches!(result, CommandResult::Elected { master, .. } if master == expected),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn election_records_the_reports_it_was_given() {
    let mut state = group_of_three();
    elect(&mut state, &[2, 3], vec![report(2, 1, 900)], false);
    let member = &state.group(G).unwrap().members[&2];
    assert_eq!((member.last_epoch, member.log_end), (1, 900));
}

#[test]
fn election_never_chooses_outside_the_in_sync_set_without_unclean() {
    let mut state = group_of_three();
    change_in_sync(&mut state, 1, &[1, 2]);
    // 3 is far ahead by its report but not in sync: 2 wins.
    let result = elect(&mut state, &[2, 3], vec![report(3, 9, 10_000)], false);
    assert!(
        matches!(
            result,
            CommandResult::Elected {
                master: 2,
                unclean: false,
                ..
            }
        ),
        "{result:?}"
    );
}

#[test]
fn no_election_among_an_empty_alive_in_sync_set_without_unclean() {
    let mut state = group_of_three();
    change_in_sync(&mut state, 1, &[1]);
    let before = state.clone();
    assert_eq!(
        refusal(elect(&mut state, &[2, 3], vec![], false)),
        Refusal::NoInSyncCandidate {
            in_sync: alive(&[1])
        }
    );
    assert_eq!(state, before);
    assert_eq!(
        refusal(elect(&mut state, &[], vec![], false)),
        Refusal::NoAliveMember
    );
    assert_eq!(
        refusal(elect(&mut state, &[], vec![], true)),
        Refusal::NoAliveMember
    );
}

#[test]
fn unclean_election_chooses_outside_the_set_and_says_so() {
    let mut state = group_of_three();
    change_in_sync(&mut state, 1, &[1]);
    let result = elect(
        &mut state,
        &[2, 3],
        vec![report(2, 1, 50), report(3, 1, 70)],
        true,
    );
    assert_eq!(
        result,
        CommandResult::Elected {
            master: 3,
            master_epoch: 2,
            in_sync_epoch: 4,
            unclean: true
        }
    );
}

#[test]
fn unclean_allowed_still_prefers_an_in_sync_member() {
    let mut state = group_of_three();
    change_in_sync(&mut state, 1, &[1, 2]);
    let result = elect(&mut state, &[2, 3], vec![report(3, 5, 9_999)], true);
    assert!(
        matches!(
            result,
            CommandResult::Elected {
                master: 2,
                unclean: false,
                ..
            }
        ),
        "{result:?}"
    );
}

#[test]
fn in_sync_change_from_an_older_master_epoch_is_refused() {
    let mut state = group_of_three();
    // 1 dies, 2 becomes master at epoch 2; 1's late report of epoch 1 must not land.
    elect(&mut state, &[2, 3], vec![], false);
    let group = state.group(G).unwrap().clone();
    let late = Command::ChangeInSync {
        group: G.into(),
        master: 1,
        master_epoch: 1,
        in_sync_epoch: group.in_sync_epoch,
        in_sync: alive(&[1, 3]),
    };
    assert_eq!(
        refusal(state.apply(&late)),
        Refusal::StaleMasterEpoch {
            sent: 1,
            current: 2
        }
    );
    assert_eq!(state.group(G).unwrap(), &group);
}

#[test]
fn in_sync_change_based_on_an_older_in_sync_epoch_is_refused() {
    let mut state = group_of_three();
    let group = state.group(G).unwrap().clone();
    let based_on_old = Command::ChangeInSync {
        group: G.into(),
        master: 1,
        master_epoch: group.master_epoch,
        in_sync_epoch: group.in_sync_epoch - 1,
        in_sync: alive(&[1]),
    };
    assert_eq!(
        refusal(state.apply(&based_on_old)),
        Refusal::StaleInSyncEpoch {
            sent: group.in_sync_epoch - 1,
            current: group.in_sync_epoch
        }
    );
}

#[test]
fn in_sync_change_must_come_from_the_master_and_hold_it_and_known_members() {
    let mut state = group_of_three();
    assert_eq!(
        refusal(change_in_sync(&mut state, 2, &[1, 2])),
        Refusal::NotMaster {
            sent: 2,
            current: Some(1)
        }
    );
    assert_eq!(
        refusal(change_in_sync(&mut state, 1, &[2, 3])),
        Refusal::InSyncWithoutMaster(1)
    );
    assert_eq!(
        refusal(change_in_sync(&mut state, 1, &[1, 8])),
        Refusal::UnknownMember(8)
    );
    assert_eq!(
        change_in_sync(&mut state, 1, &[1, 3]),
        CommandResult::InSyncChanged { in_sync_epoch: 3 }
    );
    assert_eq!(state.group(G).unwrap().in_sync, alive(&[1, 3]));
}

#[test]
fn planned_election_needs_an_in_sync_member_that_is_not_master() {
    let mut state = group_of_three();
    change_in_sync(&mut state, 1, &[1, 2]);
    assert_eq!(
        refusal(state.apply(&Command::ElectNamed {
            group: G.into(),
            member: 3
        })),
        Refusal::NotInSync(3)
    );
    assert_eq!(
        refusal(state.apply(&Command::ElectNamed {
            group: G.into(),
            member: 1
        })),
        Refusal::AlreadyMaster(1)
    );
    assert_eq!(
        refusal(state.apply(&Command::ElectNamed {
            group: G.into(),
            member: 5
        })),
        Refusal::UnknownMember(5)
    );
    let result = state.apply(&Command::ElectNamed {
        group: G.into(),
        member: 2,
    });
    assert!(
        matches!(
            result,
            CommandResult::Elected {
                master: 2,
                master_epoch: 2,
                unclean: false,
                ..
            }
        ),
        "{result:?}"
    );
}

#[test]
fn remove_refuses_the_master_and_shrinks_the_in_sync_set() {
    let mut state = group_of_three();
    assert_eq!(
        refusal(state.apply(&Command::Remove {
            group: G.into(),
            member: 1
        })),
        Refusal::MemberIsMaster(1)
    );
    let epoch = state.group(G).unwrap().in_sync_epoch;
    assert_eq!(
        state.apply(&Command::Remove {
            group: G.into(),
            member: 3
        }),
        CommandResult::Removed {
            in_sync_epoch: epoch + 1
        }
    );
    let group = state.group(G).unwrap();
    assert!(!group.members.contains_key(&3));
    assert_eq!(group.in_sync, alive(&[1, 2]));
    assert_eq!(
        refusal(state.apply(&Command::Remove {
            group: G.into(),
            member: 3
        })),
        Refusal::UnknownMember(3)
    );
}

#[test]
fn commands_on_an_unknown_group_are_refused() {
    let mut state = ControllerState::default();
    assert_eq!(
        refusal(state.apply(&Command::ElectNamed {
            group: "nope".into(),
            member: 1
        })),
        Refusal::UnknownGroup("nope".into())
    );
    assert!(state.groups.is_empty());
}

#[test]
fn epochs_strictly_increase_over_a_run_of_changes() {
    let mut state = group_of_three();
    let mut last = (0, 0);
    let mut check = |state: &ControllerState| {
        let g = state.group(G).unwrap();
        let now = (g.master_epoch, g.in_sync_epoch);
        assert!(now.0 >= last.0 && now.1 > last.1, "{last:?} -> {now:?}");
        last = now;
    };
    check(&state);
    let mut master = 1;
    for round in 0..6u64 {
        change_in_sync(&mut state, master, &[1, 2, 3]);
        check(&state);
        let others: Vec<MemberId> = [1, 2, 3].into_iter().filter(|m| *m != master).collect();
        let next = others[(round % 2) as usize];
        let result = elect(
            &mut state,
            &others,
            vec![report(next, 100 + round, 0)],
            false,
        );
        let CommandResult::Elected {
            master: chosen,
            master_epoch,
            ..
        } = result
        else {
            panic!("{result:?}")
        };
        assert_eq!((chosen, master_epoch), (next, round + 2));
        check(&state);
        master = chosen;
    }
}

#[test]
fn the_state_round_trips_through_json() {
    let state = group_of_three();
    let json = serde_json::to_vec(&state).unwrap();
    assert_eq!(
        serde_json::from_slice::<ControllerState>(&json).unwrap(),
        state
    );
}

//! The plan of `cluster rolling-restart`, from controller states made here (no servers): the
//! order (slaves by member id, the master last, group after group), the refusals, and the
//! command's arguments.

use super::*;
use crate::cli::tests::parse;
use crate::cli::{ClusterCommand, Command};
use crate::controller::ControllerMemberView;

/// Group `name` with `members`, master `master` (0: none) and in-sync set `in_sync`.
fn group(name: &str, members: &[u64], master: u64, in_sync: &[u64]) -> ControllerGroupView {
    ControllerGroupView {
        broker: name.into(),
        master: (master != 0).then_some(master),
        master_epoch: 3,
        in_sync: in_sync.to_vec(),
        in_sync_epoch: 5,
        members: members
            .iter()
            .map(|&id| ControllerMemberView {
                broker: name.into(),
                member_id: id,
                address: format!("{name}-{id}:10911"),
                priority: 0,
                last_epoch: 3,
                log_end: 100,
                is_master: id == master,
                in_sync: in_sync.contains(&id),
            })
            .collect(),
    }
}

fn status(groups: Vec<ControllerGroupView>) -> ControllerStatusView {
    ControllerStatusView {
        node_id: 1,
        leader_id: Some(1),
        is_leader: true,
        term: 2,
        last_applied_index: Some(10),
        last_applied_term: 2,
        stale: false,
        stale_reason: None,
        groups,
    }
}

/// The plan as (group, member, action) in order.
fn order(steps: &[PlannedStep]) -> Vec<(&str, u64, Action)> {
    steps
        .iter()
        .map(|s| (s.group.as_str(), s.member, s.action))
        .collect()
}

#[test]
fn slaves_go_first_by_member_id_and_the_master_last_after_a_switch() {
    let s = status(vec![group("a", &[3, 1, 2], 2, &[1, 2, 3])]);
    let steps = plan(&s, &[]).unwrap();
    assert_eq!(
        order(&steps),
        vec![
            ("a", 1, Action::Restart),
            ("a", 3, Action::Restart),
            ("a", 2, Action::SwitchThenRestart)
        ]
    );
    assert_eq!(
        steps.iter().map(|s| s.order).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        (steps[0].role, steps[2].role, steps[2].address.as_str()),
        ("slave", "master", "a-2:10911")
    );
}

#[test]
fn groups_go_one_after_another_by_name_or_in_the_order_named() {
    let s = status(vec![
        group("b", &[1, 2], 1, &[1, 2]),
        group("a", &[1, 2], 2, &[1, 2]),
    ]);
    let all = plan(&s, &[]).unwrap();
    assert_eq!(
        order(&all),
        vec![
            ("a", 1, Action::Restart),
            ("a", 2, Action::SwitchThenRestart),
            ("b", 2, Action::Restart),
            ("b", 1, Action::SwitchThenRestart),
        ]
    );
    let named = plan(&s, &["b".into(), "a".into(), "b".into()]).unwrap();
    assert_eq!(
        named.iter().map(|s| s.group.as_str()).collect::<Vec<_>>(),
        vec!["b", "b", "a", "a"],
        "the named order, each group once"
    );
    let one = plan(&s, &["b".into()]).unwrap();
    assert_eq!(
        order(&one),
        vec![
            ("b", 2, Action::Restart),
            ("b", 1, Action::SwitchThenRestart)
        ]
    );
}

#[test]
fn the_next_member_skips_those_restarted_and_follows_a_changed_master() {
    let g = group("a", &[1, 2, 3], 1, &[1, 2, 3]);
    assert_eq!(next_member(&g, &[]), Some((2, Action::Restart)));
    assert_eq!(next_member(&g, &[2]), Some((3, Action::Restart)));
    assert_eq!(
        next_member(&g, &[2, 3]),
        Some((1, Action::SwitchThenRestart))
    );
    assert_eq!(next_member(&g, &[2, 3, 1]), None);
    // Member 2, restarted, became master meanwhile: member 1 is a slave now and goes next,
    // and nothing is left after it.
    let changed = group("a", &[1, 2, 3], 2, &[1, 2, 3]);
    assert_eq!(next_member(&changed, &[2, 3]), Some((1, Action::Restart)));
    assert_eq!(next_member(&changed, &[2, 3, 1]), None);
}

#[test]
fn a_group_without_a_full_in_sync_set_is_refused_before_anything_runs() {
    let s = status(vec![
        group("a", &[1, 2], 1, &[1, 2]),
        group("b", &[1, 2, 3], 1, &[1, 3]),
    ]);
    let e = plan(&s, &[]).unwrap_err();
    assert!(
        e.contains("broker group b's in-sync set is not full (member(s) 2 not in sync)")
            && e.contains("last in-sync copy"),
        "{e}"
    );
    // Only the group named is checked.
    assert_eq!(plan(&s, &["a".into()]).unwrap().len(), 2);
}

#[test]
fn a_group_without_a_master_or_of_one_member_is_refused() {
    let e = plan(&status(vec![group("a", &[1, 2], 0, &[])]), &[]).unwrap_err();
    assert!(e.contains("broker group a has no master"), "{e}");
    let e = plan(&status(vec![group("a", &[1], 1, &[1])]), &[]).unwrap_err();
    assert!(
        e.contains("broker group a has a single member") && e.contains("stops the group's writes"),
        "{e}"
    );
}

#[test]
fn an_unknown_group_an_unconfirmed_state_or_no_group_is_refused() {
    let s = status(vec![
        group("b", &[1, 2], 1, &[1, 2]),
        group("a", &[1, 2], 1, &[1, 2]),
    ]);
    let e = plan(&s, &["x".into()]).unwrap_err();
    assert_eq!(e, "the controller holds no broker group x (it holds: a, b)");
    let mut stale = s.clone();
    stale.stale = true;
    stale.stale_reason = Some("no leader".into());
    let e = plan(&stale, &[]).unwrap_err();
    assert!(e.contains("not confirmed by its leader (no leader)"), "{e}");
    let e = plan(&status(Vec::new()), &[]).unwrap_err();
    assert!(e.contains("no broker group in controller mode"), "{e}");
}

#[test]
fn the_plan_renders_as_a_table_with_each_action_in_words() {
    let s = status(vec![group("a", &[1, 2], 1, &[1, 2])]);
    let text = crate::output::render_list(&plan(&s, &[]).unwrap(), crate::output::Format::Table);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ORDER") && lines[0].contains("ACTION"),
        "{text}"
    );
    assert!(
        lines[1].contains("a-2:10911") && lines[1].contains("slave"),
        "{text}"
    );
    assert!(
        lines[2].contains("switch the master to an in-sync member"),
        "{text}"
    );
    let json = crate::output::render_list(&plan(&s, &[]).unwrap(), crate::output::Format::Json);
    assert!(
        json.contains("\"action\": \"switch_then_restart\""),
        "{json}"
    );
}

#[test]
fn the_command_takes_a_restart_command_groups_a_timeout_and_dry_run() {
    let cli = parse(&[
        "cluster",
        "rolling-restart",
        "--restart-command",
        "systemctl restart apogee",
        "--group",
        "a",
        "--group",
        "b",
        "--dry-run",
    ])
    .unwrap();
    let Command::Cluster(ClusterCommand::RollingRestart(args)) = &cli.command else {
        panic!("not rolling-restart: {:?}", cli.command)
    };
    let spec = args.spec();
    assert_eq!(spec.restart_command, "systemctl restart apogee");
    assert_eq!(spec.groups, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(spec.timeout_per_member, Duration::from_secs(120));
    assert!(args.dry_run);
    let cli = parse(&[
        "cluster",
        "rolling-restart",
        "--restart-command",
        "x",
        "--timeout-per-member",
        "30",
    ])
    .unwrap();
    let Command::Cluster(ClusterCommand::RollingRestart(args)) = &cli.command else {
        panic!("not rolling-restart")
    };
    assert_eq!(args.spec().timeout_per_member, Duration::from_secs(30));
    assert!(!args.dry_run && args.groups.is_empty());
    for bad in [
        &["cluster", "rolling-restart"][..],
        &["cluster", "rolling-restart", "--restart-command", " "],
        &[
            "cluster",
            "rolling-restart",
            "--restart-command",
            "x",
            "--timeout-per-member",
            "0",
        ],
        &[
            "cluster",
            "rolling-restart",
            "--restart-command",
            "x",
            "--group",
            "a b",
        ],
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
    }
}

//! The checker's judgements on synthetic histories.
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn send(c: &Checker, key: &str, group: Option<&str>, at: u64, outcome: Outcome) {
    c.record_send(SendEvent {
        key: key.into(),
        message_group: None,
        broker_group: group.map(str::to_string),
        producer: "p".into(),
        at: ms(at),
        outcome,
        served_by: None,
    });
}

fn fifo_send(c: &Checker, key: &str, message_group: &str, at: u64) {
    c.record_send(SendEvent {
        key: key.into(),
        message_group: Some(message_group.into()),
        broker_group: Some("a".into()),
        producer: "p".into(),
        at: ms(at),
        outcome: Outcome::Acknowledged,
        served_by: None,
    });
}

fn receive(c: &Checker, key: &str, group: Option<&str>, at: u64) {
    c.record_receive(ReceiveEvent {
        key: key.into(),
        message_group: None,
        broker_group: group.map(str::to_string),
        consumer: "c".into(),
        at: ms(at),
        served_by: None,
    });
}

#[test]
fn a_clean_run_reports_nothing_wrong() {
    let c = Checker::new();
    for i in 0..10 {
        send(&c, &format!("k{i}"), Some("a"), i, Outcome::Acknowledged);
        receive(&c, &format!("k{i}"), Some("a"), 100 + i);
    }
    let r = c.report();
    assert_eq!(
        (r.attempted, r.acknowledged, r.received, r.receipts),
        (10, 10, 10, 10)
    );
    assert!(r.lost.is_empty() && r.unexpected.is_empty());
    assert_eq!((r.duplicated, r.redeliveries), (0, 0));
    assert!(r.order_violations.is_empty());
    assert_eq!(c.missing(), 0);
}

#[test]
fn a_planted_loss_is_reported_and_unacknowledged_sends_are_not_lost() {
    let c = Checker::new();
    send(&c, "kept", Some("a"), 1, Outcome::Acknowledged);
    send(&c, "dropped", Some("a"), 2, Outcome::Acknowledged);
    send(&c, "failed", Some("a"), 3, Outcome::Failed);
    send(&c, "maybe", Some("a"), 4, Outcome::Unknown);
    send(&c, "maybe-too", Some("a"), 5, Outcome::Unknown);
    receive(&c, "kept", None, 10);
    receive(&c, "maybe-too", None, 11);
    let r = c.report();
    assert_eq!(r.lost, vec!["dropped".to_string()]);
    assert_eq!((r.acknowledged, r.failed, r.unknown), (2, 1, 2));
    assert_eq!(r.unacknowledged_received, 1);
    assert!(r.unexpected.is_empty());
    assert!(r.to_string().contains("lost: 1\n  dropped\n"), "{r}");
}

#[test]
fn a_retried_key_acknowledged_once_counts_as_acknowledged() {
    let c = Checker::new();
    send(&c, "k", Some("a"), 1, Outcome::Unknown);
    send(&c, "k", Some("b"), 2, Outcome::Acknowledged);
    assert_eq!(c.report().lost, vec!["k".to_string()]);
    receive(&c, "k", None, 3);
    let r = c.report();
    assert!(r.lost.is_empty());
    assert_eq!(r.unacknowledged_received, 0);
}

#[test]
fn a_planted_duplicate_is_counted() {
    let c = Checker::new();
    send(&c, "once", None, 1, Outcome::Acknowledged);
    send(&c, "twice", None, 2, Outcome::Acknowledged);
    send(&c, "thrice", None, 3, Outcome::Acknowledged);
    receive(&c, "once", None, 10);
    for at in [11, 12] {
        receive(&c, "twice", None, at);
    }
    for at in [13, 14, 15] {
        receive(&c, "thrice", None, at);
    }
    let r = c.report();
    assert_eq!(
        (r.duplicated, r.redeliveries, r.received, r.receipts),
        (2, 3, 3, 6)
    );
    assert!(r.lost.is_empty());
}

#[test]
fn a_message_never_sent_is_unexpected() {
    let c = Checker::new();
    send(&c, "k1", None, 1, Outcome::Acknowledged);
    receive(&c, "k1", None, 2);
    receive(&c, "ghost", None, 3);
    let r = c.report();
    assert_eq!(r.unexpected, vec!["ghost".to_string()]);
    assert!(r.to_string().contains("unexpected: 1\n  ghost\n"), "{r}");
}

#[test]
fn fifo_order_violations_are_found_per_message_group() {
    let c = Checker::new();
    for (i, key) in ["g1-0", "g1-1", "g1-2"].iter().enumerate() {
        fifo_send(&c, key, "g1", i as u64);
    }
    for (i, key) in ["g2-0", "g2-1"].iter().enumerate() {
        fifo_send(&c, key, "g2", 10 + i as u64);
    }
    // g1: 0, 2, 1 (1 is out of order); g2: in order, interleaved with g1; a
    // redelivery of g1-0 afterwards is not a violation.
    for (at, key) in [
        (20, "g1-0"),
        (21, "g2-0"),
        (22, "g1-2"),
        (23, "g2-1"),
        (24, "g1-1"),
        (25, "g1-0"),
    ] {
        c.record_receive(ReceiveEvent {
            key: key.into(),
            message_group: None,
            broker_group: None,
            consumer: "c".into(),
            at: ms(at),
            served_by: None,
        });
    }
    let r = c.report();
    assert_eq!(
        r.order_violations,
        vec![OrderViolation {
            message_group: "g1".into(),
            key: "g1-1".into(),
            after: "g1-2".into(),
        }]
    );
    assert_eq!(r.duplicated, 1);
}

#[test]
fn fault_to_recovery_times_follow_the_affected_group() {
    let c = Checker::new();
    // Group a's master dies at 1000 ms; group b goes on; a is read again (from its
    // slave) at 3500 ms and written again at 6000 ms.
    send(&c, "a-before", Some("a"), 900, Outcome::Acknowledged);
    send(&c, "b-1", Some("b"), 1100, Outcome::Acknowledged);
    send(&c, "a-failed", Some("a"), 1500, Outcome::Failed);
    receive(&c, "b-1", Some("b"), 1200);
    // A receipt without its broker group takes its send's.
    receive(&c, "a-before", None, 3500);
    send(&c, "a-after", Some("a"), 6000, Outcome::Acknowledged);
    for (kind, group) in [
        ("kill", Some("a")),
        ("links-down", None),
        ("pause", Some("c")),
    ] {
        c.record_fault_event(FaultEvent {
            kind: kind.into(),
            member: "m".into(),
            broker_group: group.map(str::to_string),
            at: ms(1000),
        });
    }
    let r = c.report();
    let times: Vec<_> = r.faults.iter().map(|f| (f.to_write, f.to_read)).collect();
    assert_eq!(
        times,
        vec![
            (Some(ms(5000)), Some(ms(2500))),
            (Some(ms(100)), Some(ms(200))),
            (None, None),
        ]
    );
    let text = r.to_string();
    assert!(
        text.contains("fault kill on m (group a) at 1.000 s: first write after 5.000 s, first read after 2.500 s"),
        "{text}"
    );
    assert!(
        text.contains("first write after never, first read after never"),
        "{text}"
    );
}

#[test]
fn first_read_and_write_after_a_time_are_per_client_and_group() {
    let c = Checker::new();
    send(&c, "a1", Some("a"), 100, Outcome::Acknowledged);
    send(&c, "b1", Some("b"), 150, Outcome::Acknowledged);
    send(&c, "a2", Some("a"), 400, Outcome::Failed);
    send(&c, "a3", Some("a"), 700, Outcome::Acknowledged);
    receive(&c, "b1", Some("b"), 300);
    // Consumer "other" reads a's message without knowing its group: its send's.
    c.record_receive(ReceiveEvent {
        key: "a1".into(),
        message_group: None,
        broker_group: None,
        consumer: "other".into(),
        at: ms(900),
        served_by: None,
    });
    receive(&c, "a3", Some("a"), 1200);
    assert_eq!(c.first_write_after(ms(200), Some("a"), None), Some(ms(500)));
    assert_eq!(c.first_write_after(ms(200), Some("b"), None), None);
    assert_eq!(c.first_write_after(ms(0), None, Some("p")), Some(ms(100)));
    assert_eq!(c.first_write_after(ms(0), None, Some("q")), None);
    assert_eq!(c.first_read_after(ms(200), Some("a"), None), Some(ms(700)));
    assert_eq!(
        c.first_read_after(ms(200), Some("a"), Some("c")),
        Some(ms(1000))
    );
    assert_eq!(c.first_read_after(ms(200), Some("b"), Some("other")), None);
    assert_eq!(c.first_read_after(ms(1300), None, None), None);
}

#[test]
fn unread_counts_the_acknowledged_messages_of_a_group_not_received_yet() {
    let c = Checker::new();
    send(&c, "a1", Some("a"), 1, Outcome::Acknowledged);
    send(&c, "a2", Some("a"), 2, Outcome::Acknowledged);
    send(&c, "a3", Some("a"), 3, Outcome::Failed);
    send(&c, "b1", Some("b"), 4, Outcome::Acknowledged);
    receive(&c, "a1", Some("a"), 5);
    assert_eq!(c.unread("a"), 1);
    assert_eq!(c.unread("b"), 1);
    assert_eq!(c.unread("c"), 0);
}

#[test]
fn acknowledged_since_counts_a_window_of_one_group() {
    let c = Checker::new();
    send(&c, "a1", Some("a"), 5, Outcome::Acknowledged);
    send(&c, "b1", Some("b"), 5, Outcome::Acknowledged);
    send(&c, "b2", Some("b"), 20, Outcome::Acknowledged);
    send(&c, "b3", Some("b"), 21, Outcome::Failed);
    assert_eq!(c.acknowledged_since(ms(10), Some("b")), 1);
    assert_eq!(c.acknowledged_since(ms(0), None), 3);
    let failed: Vec<String> = c
        .sends()
        .into_iter()
        .filter(|s| s.outcome != Outcome::Acknowledged)
        .map(|s| s.key)
        .collect();
    assert_eq!(failed, vec!["b3".to_string()]);
}

#[test]
fn the_longest_write_pause_of_a_group_runs_through_the_faults_window() {
    let c = Checker::new();
    // The old master's lease runs on for a while (acks at 1100 and 1900 ms), then writes
    // stop until the new master takes them at 4900 ms and go on.
    send(&c, "a-0", Some("a"), 900, Outcome::Acknowledged);
    for (key, at) in [("a-1", 1100), ("a-2", 1900), ("a-3", 4900), ("a-4", 5000)] {
        send(&c, key, Some("a"), at, Outcome::Acknowledged);
    }
    send(&c, "a-failed", Some("a"), 3000, Outcome::Failed);
    send(&c, "b-1", Some("b"), 3000, Outcome::Acknowledged);
    for (kind, group, at) in [("cut", Some("a"), 1000), ("late", Some("a"), 6000)] {
        c.record_fault_event(FaultEvent {
            kind: kind.into(),
            member: "m".into(),
            broker_group: group.map(str::to_string),
            at: ms(at),
        });
    }
    let r = c.report();
    let pauses: Vec<_> = r
        .faults
        .iter()
        .map(|f| (f.to_write, f.write_pause))
        .collect();
    assert_eq!(
        pauses,
        vec![(Some(ms(100)), Some(ms(3000))), (None, None)],
        "the first write says 0.1 s; writes stopped for 3 s; the late fault's window is empty"
    );
    assert_eq!(
        r.faults.iter().map(|f| f.failed_sends).collect::<Vec<_>>(),
        [1, 0]
    );
    assert!(
        r.to_string().contains("writes paused at most 3.000 s"),
        "{r}"
    );
}

/// An acknowledged send of producer `producer` of no broker group at `at` ms.
fn ack_of(c: &Checker, producer: &str, key: &str, at: u64) {
    sent_by(c, producer, key, at, Outcome::Acknowledged);
}

fn sent_by(c: &Checker, producer: &str, key: &str, at: u64, outcome: Outcome) {
    c.record_send(SendEvent {
        key: key.into(),
        message_group: None,
        broker_group: None,
        producer: producer.into(),
        at: ms(at),
        outcome,
        served_by: None,
    });
}

fn received_by(c: &Checker, consumer: &str, key: &str, at: u64) {
    c.record_receive(ReceiveEvent {
        key: key.into(),
        message_group: None,
        broker_group: None,
        consumer: consumer.into(),
        at: ms(at),
        served_by: None,
    });
}

fn receive_failed(c: &Checker, consumer: &str, at: u64) {
    c.record_receive_failure(ReceiveFailure {
        consumer: consumer.into(),
        at: ms(at),
    });
}

#[test]
fn a_faults_cost_is_each_clients_longest_pause_and_the_calls_failed_in_its_window() {
    let c = Checker::new();
    // Producer "steady" is acknowledged every 100 ms from 0 to 4000 ms: its last send
    // closes the window. Producer "stalled" is acknowledged at 900 ms, fails twice, and is
    // acknowledged again at 2600 and 3000 ms: 1.7 s without an acknowledgement. A failure
    // before the fault is not the fault's.
    for at in (0..=4000).step_by(100) {
        ack_of(&c, "steady", &format!("s{at}"), at);
    }
    ack_of(&c, "stalled", "t1", 500);
    sent_by(&c, "stalled", "t2", 800, Outcome::Failed);
    ack_of(&c, "stalled", "t3", 900);
    sent_by(&c, "stalled", "t4", 1200, Outcome::Failed);
    sent_by(&c, "stalled", "t5", 1500, Outcome::Unknown);
    ack_of(&c, "stalled", "t6", 2600);
    ack_of(&c, "stalled", "t7", 3000);
    // Consumer "slow" gets a message at 950 ms and the next at 3100 ms (2.15 s), one at
    // 3900 ms, and one in the drain after the window, which does not end its last pause
    // there; "quick" gets one every 200 ms up to 3800 ms.
    received_by(&c, "slow", "s900", 950);
    received_by(&c, "slow", "s1000", 3100);
    received_by(&c, "slow", "s1100", 3900);
    received_by(&c, "slow", "s1200", 6000);
    for at in (1000..=3800).step_by(200) {
        received_by(&c, "quick", &format!("s{}", at - 1000), at);
    }
    for at in [500, 1100, 2000, 4500] {
        receive_failed(&c, "slow", at);
    }
    c.record_fault_event(FaultEvent {
        kind: "controller-leader-pause".into(),
        member: "ns-0".into(),
        broker_group: None,
        at: ms(1000),
    });
    let r = c.report();
    let f = &r.faults[0];
    assert_eq!(
        (f.write_pause, f.read_pause),
        (Some(ms(1700)), Some(ms(2150))),
        "the worst producer's and the worst consumer's pause, not all clients' together"
    );
    assert_eq!(
        (f.failed_sends, f.failed_receives),
        (2, 2),
        "only the calls within the window"
    );
    assert_eq!(r.failed_receives, 4, "{r}");
    let cost = |failed, pause| ClientCost {
        failed,
        pause: Some(ms(pause)),
    };
    let clients: Vec<(&str, ClientCost)> = f
        .clients
        .iter()
        .map(|(c, cost)| (c.as_str(), cost.clone()))
        .collect();
    assert_eq!(
        clients,
        [
            ("quick", cost(0, 200)),
            ("slow", cost(2, 2150)),
            ("stalled", cost(2, 1700)),
            ("steady", cost(0, 100)),
        ],
        "which client paid"
    );
    let text = r.to_string();
    assert!(
        text.contains("writes paused at most 1.700 s, reads paused at most 2.150 s, 2 failed sends, 2 failed receives"),
        "{text}"
    );
    assert!(text.contains("4 failed receive calls"), "{text}");
    assert!(
        text.contains("  stalled: 2 failed calls, paused at most 1.700 s\n"),
        "{text}"
    );
}

#[test]
fn a_pause_begun_before_the_fault_or_lasting_to_the_windows_end_counts_whole() {
    let c = Checker::new();
    // Acknowledged at 100 ms, then nothing until 1500 ms: the fault at 1000 ms finds a
    // pause begun 0.9 s before it. Then nothing after 2000 ms until the last send at
    // 4500 ms (failed): 2.5 s to the window's end.
    ack_of(&c, "p", "k1", 100);
    ack_of(&c, "p", "k2", 1500);
    ack_of(&c, "p", "k3", 2000);
    sent_by(&c, "p", "k4", 4500, Outcome::Failed);
    received_by(&c, "c", "k1", 200);
    for (kind, at) in [("early", 1000), ("late", 4000)] {
        c.record_fault_event(FaultEvent {
            kind: kind.into(),
            member: "m".into(),
            broker_group: None,
            at: ms(at),
        });
    }
    let r = c.report();
    let costs: Vec<_> = r
        .faults
        .iter()
        .map(|f| (f.write_pause, f.read_pause, f.failed_sends))
        .collect();
    assert_eq!(
        costs,
        [
            (Some(ms(2500)), Some(ms(4300)), 1),
            (Some(ms(2500)), Some(ms(4300)), 1)
        ],
        "{r}"
    );
}

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
fn the_longest_write_pause_counts_from_the_fault_to_the_last_acknowledged_send() {
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
        "the first write says 0.1 s; writes stopped for 3 s"
    );
    assert!(
        r.to_string().contains("writes paused at most 3.000 s"),
        "{r}"
    );
}

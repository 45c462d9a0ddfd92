use super::*;
use apogee_proto::error::ok_status;

fn entry(id: &str, offset: i64, status: v2::Status) -> v2::SendResultEntry {
    v2::SendResultEntry {
        status: Some(status),
        message_id: id.into(),
        offset,
        ..Default::default()
    }
}

#[test]
fn receipts_follow_request_order() {
    let resp = v2::SendMessageResponse {
        status: Some(ok_status()),
        entries: vec![entry("A", 10, ok_status()), entry("", 11, ok_status())],
    };
    let ids = vec!["A".to_string(), "B".to_string()];
    let r = receipts(resp, &ids, 3, "broker-a").unwrap();
    assert_eq!(r[0].0.offset, 10);
    assert_eq!(r[1].0.message_id, "B");
    assert_eq!(
        (r[1].0.queue_id, r[1].0.broker_name.as_str()),
        (3, "broker-a")
    );
    assert_eq!(r[1].1, "");
}

#[test]
fn failed_statuses_and_short_answers_are_errors() {
    let bad = ApogeeError::TooManyRequests("slow down".into()).to_status();
    let resp = v2::SendMessageResponse {
        status: Some(bad.clone()),
        entries: vec![],
    };
    let e = receipts(resp, &["A".to_string()], 0, "b").unwrap_err();
    assert!(e.is_retryable());
    let resp = v2::SendMessageResponse {
        status: Some(ok_status()),
        entries: vec![],
    };
    assert!(matches!(
        receipts(resp, &["A".to_string()], 0, "b"),
        Err(ClientError::Transport(_))
    ));
    let resp = v2::SendMessageResponse {
        status: Some(v2::Status {
            code: v2::Code::MultipleResults as i32,
            message: String::new(),
        }),
        entries: vec![entry(
            "A",
            1,
            ApogeeError::IllegalTopic("x".into()).to_status(),
        )],
    };
    let e = receipts(resp, &["A".to_string()], 0, "b").unwrap_err();
    assert_eq!(e.code(), Some(v2::Code::IllegalTopic));
}

#[test]
fn batches_are_checked_before_sending() {
    assert!(matches!(check_batch(&[], 10), Err(ClientError::Config(_))));
    let mixed = [Message::new("A", "1"), Message::new("B", "1")];
    assert!(matches!(
        check_batch(&mixed, 10),
        Err(ClientError::Config(_))
    ));
    let empty_body = [Message::new("A", "1"), Message::new("A", "")];
    assert_eq!(
        check_batch(&empty_body, 10).unwrap_err().code(),
        Some(v2::Code::MessageBodyEmpty)
    );
    let ok = [Message::new("A", "1"), Message::new("A", "2")];
    assert_eq!(check_batch(&ok, 10).unwrap(), "A");
}

#[test]
fn fifo_messages_of_one_group_go_to_one_queue() {
    use crate::route::tests::queue;
    use v2::Permission::ReadWrite;
    let queues = vec![
        queue("b", 1, 0, ReadWrite),
        queue("a", 0, 0, ReadWrite),
        queue("b", 0, 0, ReadWrite),
        queue("a", 1, 0, ReadWrite),
    ];
    let mut shuffled = queues.clone();
    shuffled.reverse();
    let place = |qs: &[v2::MessageQueue], g: &str| {
        let q = fifo_queue(qs, g).unwrap();
        (broker_name(q).to_string(), q.id)
    };
    let mut used = std::collections::BTreeSet::new();
    for i in 0..64 {
        let g = format!("order-{i}");
        let first = place(&queues, &g);
        assert_eq!(place(&queues, &g), first, "same group, same queue");
        assert_eq!(place(&shuffled, &g), first, "route order does not matter");
        used.insert(first);
    }
    assert_eq!(used.len(), 4, "groups spread over every queue: {used:?}");
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c, "the hash is FNV-1a");
    assert!(fifo_queue(&[], "g").is_none());
}

#[test]
fn stored_but_not_replicated_is_never_resent() {
    for (error, timed_out) in [
        (
            ApogeeError::NotReplicated("no slave is in sync".into()),
            false,
        ),
        (
            ApogeeError::SlavePersistenceTimeout("no slave confirmed it".into()),
            true,
        ),
    ] {
        let status = error.to_status();
        let resp = v2::SendMessageResponse {
            status: Some(status.clone()),
            entries: vec![entry("A", 7, status)],
        };
        let e = receipts(resp, &["A".to_string()], 2, "rg").unwrap_err();
        assert!(e.is_stored_not_replicated(), "{e:?}");
        assert!(!may_resend(&e), "{e:?}");
        assert_eq!(
            matches!(
                e,
                ClientError::Server(ApogeeError::SlavePersistenceTimeout(_))
            ),
            timed_out
        );
        let text = e.to_string();
        assert!(
            text.starts_with("stored on the master")
                && text.contains("message A (queue 2, offset 7) on broker rg"),
            "{text}"
        );
        assert_eq!(text.matches("stored on the master").count(), 1, "{text}");
    }
    // The code alone, however it was decoded, is never resent either.
    let decoded =
        ClientError::check(Some(&ApogeeError::NotReplicated("x".into()).to_status())).unwrap_err();
    assert!(
        decoded.is_retryable(),
        "HA_NOT_AVAILABLE decodes as retryable"
    );
    assert!(!may_resend(&decoded));
    // Failures that stored nothing still are: among them HA_NOT_AVAILABLE refusals of a
    // member that is not the master now (a slave, a master without its lease).
    assert!(may_resend(&ClientError::Timeout));
    for refusal in [
        "broker broker-a id 1 is a slave and its master is not reachable".to_string(),
        "member 1 is the master of epoch 2 but holds no valid lease from the controller"
            .to_string(),
    ] {
        let status = ApogeeError::Unavailable(refusal.clone()).to_status();
        assert_eq!(status.code, Code::HaNotAvailable as i32);
        let resp = v2::SendMessageResponse {
            status: Some(status.clone()),
            entries: vec![entry("A", 0, status.clone())],
        };
        let e = receipts(resp, &["A".to_string()], 2, "rg").unwrap_err();
        assert!(!e.is_stored_not_replicated(), "{e:?}");
        assert!(may_resend(&e), "{refusal}: {e:?}");
        let decoded = ClientError::check(Some(&status)).unwrap_err();
        assert!(may_resend(&decoded), "{refusal}: {decoded:?}");
    }
    assert!(may_resend(&ClientError::Server(
        ApogeeError::TooManyRequests("x".into())
    )));
    assert!(!may_resend(&ClientError::Server(
        ApogeeError::IllegalTopic("x".into())
    )));
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_millis(20));
    assert!(backoff(3) > backoff(2));
    assert_eq!(backoff(30), Duration::from_millis(640));
}

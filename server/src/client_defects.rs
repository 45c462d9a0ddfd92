//! Requests of official RocketMQ clients that a known client defect garbles, put right where
//! they arrive (the NameServer's access point and the broker both call this), so the
//! application's intent is served with the client unchanged. Each repair names the client's
//! code that causes it and applies only to the shape that code produces.

use apogee_proto::v2::{LiteSubscriptionAction, SyncLiteSubscriptionRequest};

/// The header official clients name their language in.
const LANGUAGE_HEADER: &str = "x-mq-language";

/// Puts right the PARTIAL_ADD of rocketmq-python-client (5.1.2 and the releases with lite
/// consumers before it): `LiteTopicSubscriptionManager.subscribe_lite(lite_topic)`
/// (`rocketmq/v5/client/lite_topic_subscription_manager.py`) passes the name itself to
/// `__sync_lite_subscription_req`, whose `req.lite_topic_set.extend(lite_topics)` extends
/// the repeated field with the string's characters: `subscribe_lite("chat-7")` asks for the
/// lite topics "c", "h", "a", "t", "-", "7". The client records "chat-7" and names it only
/// in its periodic COMPLETE_ADD, 30 s later, so until then nothing it subscribed is
/// delivered, and a group starting at the end of a lite topic then skips what was sent
/// meanwhile (its LitePushConsumer received nothing of a test's 30 messages in 60 s).
///
/// That method is the client's only PARTIAL_ADD and sends one name per call, so a Python
/// client's PARTIAL_ADD of two or more entries that are each one character long is that
/// name's characters, in order (a repeated field keeps its order): they are joined back into
/// the name. Any other request, and every request of other clients, is left as it is.
/// Returns whether the request was changed.
pub fn repair_lite_sync(request: &mut tonic::Request<SyncLiteSubscriptionRequest>) -> bool {
    let python = request
        .metadata()
        .get(LANGUAGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.eq_ignore_ascii_case("PYTHON"));
    let req = request.get_mut();
    let split_name = python
        && req.action == LiteSubscriptionAction::PartialAdd as i32
        && req.lite_topic_set.len() > 1
        && req.lite_topic_set.iter().all(|c| c.chars().count() == 1);
    if !split_name {
        return false;
    }
    let name: String = req.lite_topic_set.concat();
    tracing::debug!(
        lite_topic = %name,
        "a Python client's PARTIAL_ADD carried the name's characters as lite topics: joined"
    );
    req.lite_topic_set = vec![name];
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        language: Option<&str>,
        action: LiteSubscriptionAction,
        names: &[&str],
    ) -> tonic::Request<SyncLiteSubscriptionRequest> {
        let mut r = tonic::Request::new(SyncLiteSubscriptionRequest {
            action: action as i32,
            lite_topic_set: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        });
        if let Some(l) = language {
            r.metadata_mut()
                .insert(LANGUAGE_HEADER, l.parse().expect("header"));
        }
        r
    }

    #[test]
    fn a_python_partial_add_of_characters_becomes_the_name() {
        let mut r = request(
            Some("PYTHON"),
            LiteSubscriptionAction::PartialAdd,
            &["c", "h", "a", "t", "-", "7", "é"],
        );
        assert!(repair_lite_sync(&mut r));
        assert_eq!(r.get_ref().lite_topic_set, vec!["chat-7é".to_string()]);
    }

    #[test]
    fn everything_else_is_left_as_it_is() {
        use LiteSubscriptionAction::{CompleteAdd, PartialAdd, PartialRemove};
        let (py, java) = (Some("PYTHON"), Some("JAVA"));
        let cases = [
            // Another client may subscribe several one-character names at once.
            (java, PartialAdd, &["a", "b"][..]),
            (None, PartialAdd, &["a", "b"][..]),
            // The Python client's other requests name whole names.
            (py, CompleteAdd, &["a", "b"][..]),
            (py, PartialRemove, &["a", "b"][..]),
            // A fixed client's PARTIAL_ADD: one whole name, or a one-character name.
            (py, PartialAdd, &["chat-7"][..]),
            (py, PartialAdd, &["a"][..]),
            (py, PartialAdd, &["ab", "c"][..]),
        ];
        for (language, action, names) in cases {
            let mut r = request(language, action, names);
            assert!(
                !repair_lite_sync(&mut r),
                "{language:?} {action:?} {names:?}"
            );
            assert_eq!(r.get_ref().lite_topic_set, names, "{language:?} {action:?}");
        }
    }
}

//! Priority messages (RocketMQ's RIP-80) on the consume side: the order a receive serves a
//! PRIORITY topic's queues in.
//!
//! The producer stores priority `p` in queue `min(p, queue_count - 1)`
//! (`crate::produce::priority`), so a queue is a priority level. A receive of a group without
//! `priority_off` on a topic that accepts PRIORITY pops the queues from the highest level down
//! (`[priority] order = "lowest_first"` flips it), whatever queue the client named: a pop
//! fills its batch from the first queue with something ready before it looks at the next, so
//! with a backlog higher priorities are handed out first, FIFO within one level. Redeliveries
//! stay in their queue (pop semantics: a retry is the same queue entry becoming visible again)
//! and so keep their priority; a queue's due retries come before its new messages.
//!
//! Lower levels get nothing while higher ones keep having messages ready (starvation, as in
//! RocketMQ). The order holds per broker (group): a topic on several broker groups has one
//! order on each, none across them. Pull consumers (PullMessage, by offset) are not affected,
//! and a `priority_off` group (or any topic that does not accept PRIORITY) keeps the plain
//! rotation that starts at the queue the receive named.

use crate::config::PriorityOrder;
use crate::topics::{MessageKind, TopicConfig};
use apogee_proto::group::GroupConfig;

/// Whether receives of `group` on `topic` are served by priority.
pub fn serves_by_priority(topic: &TopicConfig, group: &GroupConfig) -> bool {
    !group.priority_off && topic.accepts(MessageKind::Priority)
}

/// The queues a receive pops, in order: by priority level (`order`) when
/// [`serves_by_priority`], else `planned` (the plain rotation from the named queue).
pub fn receive_order(
    topic: &TopicConfig,
    group: &GroupConfig,
    order: PriorityOrder,
    planned: Vec<u32>,
) -> Vec<u32> {
    if !serves_by_priority(topic, group) {
        return planned;
    }
    match order {
        PriorityOrder::HighestFirst => topic.queue_ids().rev().collect(),
        PriorityOrder::LowestFirst => topic.queue_ids().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::tests::message;
    use crate::consume::{ConsumeEngine, Delivery, MessageFilter, PopRequest};
    use crate::produce::priority::{queue_of, record_property};
    use crate::store::{MessageStore, StoreConfig};
    use std::sync::Arc;

    fn topic(queues: u32, kinds: &[MessageKind]) -> TopicConfig {
        TopicConfig::new("urgent", queues).with_kinds(kinds)
    }

    fn group(priority_off: bool) -> GroupConfig {
        GroupConfig {
            priority_off,
            ..GroupConfig::with_defaults("g")
        }
    }

    /// A store holding, on `queue_count` queues, `per` messages of each priority 0-9 sent
    /// in rounds (0, 1, ..., 9, 0, 1, ...), each in its priority's queue; bodies `p<p>-<n>`.
    async fn backlog(dir: &std::path::Path, queue_count: u32, per: usize) -> Arc<MessageStore> {
        let store = MessageStore::open(StoreConfig::for_tests(dir)).unwrap();
        let mut msgs = Vec::new();
        for n in 0..per {
            for p in 0..10 {
                let queue = queue_of(p, queue_count);
                let mut m = message("urgent", queue, None, &format!("p{p}-{n}"));
                m.message_type = apogee_proto::v2::MessageType::Priority as u8;
                m.internal.push(record_property(p));
                msgs.push(m);
            }
        }
        store.append(msgs).await.unwrap();
        store
    }

    /// Everything a group gets by receives of `batch` (acking each), in order.
    fn drain(
        engine: &ConsumeEngine,
        group: &GroupConfig,
        queues: &[u32],
        batch: usize,
    ) -> Vec<String> {
        let filter = MessageFilter::from_expression(None).unwrap();
        let mut out = Vec::new();
        loop {
            let got = pop(engine, group, queues, &filter, batch, 1_000);
            if got.is_empty() {
                return out;
            }
            for d in &got {
                engine
                    .ack(&group.name, "urgent", &d.receipt_handle)
                    .unwrap();
                out.push(String::from_utf8(d.message.msg.body.to_vec()).unwrap());
            }
        }
    }

    fn pop(
        engine: &ConsumeEngine,
        group: &GroupConfig,
        queues: &[u32],
        filter: &MessageFilter,
        max: usize,
        now_ms: i64,
    ) -> Vec<Delivery> {
        let req = PopRequest {
            group,
            topic: "urgent",
            queue_ids: queues,
            filter,
            max,
            invisible_ms: 10_000,
            renew_until_ms: None,
            attempt_id: None,
            client_id: "c",
            start_after_ms: None,
        };
        engine.pop(&req, now_ms).unwrap()
    }

    /// The priority levels of `bodies` (`p<p>-<n>`), and whether each level is in send order.
    fn levels(bodies: &[String]) -> (Vec<u32>, bool) {
        let parsed: Vec<(u32, usize)> = bodies
            .iter()
            .map(|b| {
                let (p, n) = b[1..].split_once('-').unwrap();
                (p.parse().unwrap(), n.parse().unwrap())
            })
            .collect();
        let mut fifo = true;
        for p in 0..10 {
            let ns: Vec<usize> = parsed.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
            fifo &= ns.windows(2).all(|w| w[0] < w[1]);
        }
        (parsed.iter().map(|x| x.0).collect(), fifo)
    }

    #[test]
    fn the_order_is_by_level_only_for_priority_topics_and_groups_that_want_it() {
        let planned = vec![3, 4, 0, 1, 2];
        let prio = topic(5, &[MessageKind::Priority]);
        let order = |t: &TopicConfig, off: bool, o: PriorityOrder| {
            receive_order(t, &group(off), o, planned.clone())
        };
        assert_eq!(
            order(&prio, false, PriorityOrder::HighestFirst),
            vec![4, 3, 2, 1, 0]
        );
        assert_eq!(
            order(&prio, false, PriorityOrder::LowestFirst),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(order(&prio, true, PriorityOrder::HighestFirst), planned);
        let normal = topic(5, &[MessageKind::Normal]);
        assert_eq!(order(&normal, false, PriorityOrder::HighestFirst), planned);
    }

    #[tokio::test]
    async fn a_backlog_of_ten_priorities_on_ten_queues_comes_out_highest_first_fifo_within_one() {
        let dir = tempfile::tempdir().unwrap();
        let engine = ConsumeEngine::open(backlog(dir.path(), 10, 20).await).unwrap();
        let t = topic(10, &[MessageKind::Priority]);
        let g = group(false);
        let queues = receive_order(&t, &g, PriorityOrder::HighestFirst, vec![0]);
        let got = drain(&engine, &g, &queues, 7);
        assert_eq!(got.len(), 200);
        let (levels, fifo) = levels(&got);
        let expected: Vec<u32> = (0..10).rev().flat_map(|p| [p; 20]).collect();
        assert_eq!(levels, expected);
        assert!(fifo, "FIFO within one priority: {got:?}");
    }

    #[tokio::test]
    async fn on_eight_queues_priorities_seven_to_nine_share_the_top_level() {
        let dir = tempfile::tempdir().unwrap();
        let engine = ConsumeEngine::open(backlog(dir.path(), 8, 5).await).unwrap();
        let t = topic(8, &[MessageKind::Priority]);
        let g = group(false);
        let queues = receive_order(&t, &g, PriorityOrder::HighestFirst, vec![0]);
        let got = drain(&engine, &g, &queues, 4);
        let (levels, fifo) = levels(&got);
        assert!(fifo);
        // The first 15 are 7, 8 and 9 in send order (rounds of 7, 8, 9), then 6 down to 0.
        let top: Vec<u32> = (0..5).flat_map(|_| [7, 8, 9]).collect();
        assert_eq!(levels[..15], top[..]);
        let rest: Vec<u32> = (0..7).rev().flat_map(|p| [p; 5]).collect();
        assert_eq!(levels[15..], rest[..]);
    }

    #[tokio::test]
    async fn a_priority_off_group_gets_the_plain_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let engine = ConsumeEngine::open(backlog(dir.path(), 10, 3).await).unwrap();
        let t = topic(10, &[MessageKind::Priority]);
        let g = group(true);
        let planned: Vec<u32> = (0..10).collect();
        let queues = receive_order(&t, &g, PriorityOrder::HighestFirst, planned);
        let (levels, _) = levels(&drain(&engine, &g, &queues, 3));
        let expected: Vec<u32> = (0..10).flat_map(|p| [p; 3]).collect();
        assert_eq!(levels, expected, "queue 0 first, as the receive named it");
    }

    #[tokio::test]
    async fn a_redelivery_keeps_its_priority() {
        let dir = tempfile::tempdir().unwrap();
        let engine = ConsumeEngine::open(backlog(dir.path(), 10, 1).await).unwrap();
        let t = topic(10, &[MessageKind::Priority]);
        let g = group(false);
        let queues = receive_order(&t, &g, PriorityOrder::HighestFirst, vec![0]);
        let filter = MessageFilter::from_expression(None).unwrap();
        let first = pop(&engine, &g, &queues, &filter, 1, 1_000);
        assert_eq!(&first[0].message.msg.body[..], b"p9-0");
        // Not acked: once its invisible time and backoff pass it is served before priority 8.
        let later = 1_000 + 10_000 + 3_600_000;
        let again = pop(&engine, &g, &queues, &filter, 2, later);
        let bodies: Vec<&[u8]> = again.iter().map(|d| &d.message.msg.body[..]).collect();
        assert_eq!(bodies, vec![&b"p9-0"[..], &b"p8-0"[..]]);
        assert_eq!(again[0].attempt, 2);
    }
}

//! Queue locks of ordered remoting consumers (LOCK_BATCH_MQ, UNLOCK_BATCH_MQ).
//!
//! A RocketMQ 4 push consumer that consumes in order (`MessageListenerOrderly`) locks each
//! queue rebalancing gave it before it consumes it, and renews its locks every 20 s: one
//! client of a group at a time consumes a queue, also while two clients' views of the
//! rebalance differ. [`QueueLocks`] keeps, per consumer group, which client holds which
//! queue and when it last locked it. A lock not renewed for [`LOCK_LIFETIME`] (RocketMQ's
//! `REBALANCE_LOCK_MAX_LIVE_TIME`, 60 s) is free: a client that died without unlocking
//! holds nothing after a minute. A lock held by another live client is not granted.
//!
//! Bodies (RocketMQ's JSON): a lock request `{"consumerGroup","clientId","mqSet":[{"topic",
//! "brokerName","queueId"}]}` is answered `{"lockOKMQSet":[...]}` with the queues the
//! client holds now; an unlock request has the same shape (often sent oneway) and is
//! answered SUCCESS. The table lives in memory only: after a restart, clients lock again
//! within their 20 s renewal.

use super::offsets::authorize_sub;
pub use crate::remoting_state::locks::*;
use crate::services::Broker;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_server::remoting::Caller;
use std::collections::BTreeSet;

/// A lock or unlock request's body, checked: a group, a client and at most
/// [`MAX_QUEUES_PER_REQUEST`] queues, each of which the caller may consume as the group.
fn checked_body(
    caller: &Caller,
    request: &RemotingCommand,
) -> Result<LockRequestBody, Box<RemotingCommand>> {
    let body: LockRequestBody = serde_json::from_slice(&request.body).map_err(|e| {
        Box::new(RemotingCommand::error(
            request,
            response::INVALID_PARAMETER,
            format!("the queue lock body is not valid JSON of its kind: {e}"),
        ))
    })?;
    let invalid = |why: String| {
        Box::new(RemotingCommand::error(
            request,
            response::INVALID_PARAMETER,
            why,
        ))
    };
    if body.consumer_group.is_empty() {
        return Err(invalid("the queue lock body names no consumerGroup".into()));
    }
    if body.client_id.is_empty() {
        return Err(invalid("the queue lock body names no clientId".into()));
    }
    if body.mq_set.len() > MAX_QUEUES_PER_REQUEST {
        return Err(invalid(format!(
            "the queue lock body names {} queues; at most {MAX_QUEUES_PER_REQUEST} are taken",
            body.mq_set.len()
        )));
    }
    let group = body.consumer_group.as_str();
    let mut allowed = caller.authorize(&[(ResourceKind::Group, group)], Action::Sub);
    let topics: BTreeSet<&str> = body.mq_set.iter().map(|q| q.topic.as_str()).collect();
    for topic in topics {
        allowed = allowed.and_then(|()| authorize_sub(caller, Some(group), topic));
    }
    match allowed {
        Ok(()) => Ok(body),
        Err(e) => Err(Box::new(RemotingCommand::refusal(request, &e))),
    }
}

/// LOCK_BATCH_MQ: the queues of the body the client holds after the call.
pub fn lock_batch(broker: &Broker, caller: &Caller, request: &RemotingCommand) -> RemotingCommand {
    let body = match checked_body(caller, request) {
        Ok(b) => b,
        Err(answer) => return *answer,
    };
    let locked = broker
        .queue_locks()
        .lock(&body.consumer_group, &body.client_id, &body.mq_set);
    answer_locked(request, locked)
}

/// The SUCCESS answer naming `locked`.
fn answer_locked(request: &RemotingCommand, locked: Vec<RemoteQueue>) -> RemotingCommand {
    match serde_json::to_vec(&LockAnswerBody { locked }) {
        Ok(json) => RemotingCommand::success(request).with_body(json),
        Err(e) => RemotingCommand::error(request, response::SYSTEM_ERROR, e.to_string()),
    }
}

/// UNLOCK_BATCH_MQ: releases the client's locks on the body's queues.
pub fn unlock_batch(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let body = match checked_body(caller, request) {
        Ok(b) => b,
        Err(answer) => return *answer,
    };
    broker
        .queue_locks()
        .unlock(&body.consumer_group, &body.client_id, &body.mq_set);
    RemotingCommand::success(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn q(topic: &str, id: i32) -> RemoteQueue {
        RemoteQueue {
            topic: topic.into(),
            broker_name: "broker-a".into(),
            queue_id: id,
        }
    }

    #[test]
    fn a_queue_is_held_by_one_client_until_it_unlocks_or_stops_renewing() {
        let locks = QueueLocks::new();
        let t0 = Instant::now();
        let both = [q("t", 0), q("t", 1)];
        assert_eq!(locks.lock_at("g", "c1", &both, t0), both);
        // c2 gets neither while c1 holds them; c1 renews.
        assert!(locks
            .lock_at("g", "c2", &both, t0 + Duration::from_secs(30))
            .is_empty());
        assert_eq!(
            locks.lock_at("g", "c1", &both[..1], t0 + Duration::from_secs(50)),
            [q("t", 0)]
        );
        // Queue 1 was last locked at t0: free at t0 + 60 s; queue 0 renewed at 50 s is not.
        let later = t0 + LOCK_LIFETIME;
        assert_eq!(locks.lock_at("g", "c2", &both, later), [q("t", 1)]);
        assert_eq!(
            locks.holder_at("g", &q("t", 0), later).as_deref(),
            Some("c1")
        );
        // An unlock by another client releases nothing; by the holder, the queue.
        locks.unlock("g", "c2", &both[..1]);
        assert_eq!(
            locks.holder_at("g", &q("t", 0), later).as_deref(),
            Some("c1")
        );
        locks.unlock("g", "c1", &both);
        assert_eq!(locks.lock_at("g", "c2", &both, later), both);
    }

    #[test]
    fn groups_do_not_share_locks_and_empty_groups_are_dropped() {
        let locks = QueueLocks::new();
        let t0 = Instant::now();
        assert_eq!(locks.lock_at("g1", "c1", &[q("t", 0)], t0), [q("t", 0)]);
        assert_eq!(locks.lock_at("g2", "c2", &[q("t", 0)], t0), [q("t", 0)]);
        locks.unlock("g1", "c1", &[q("t", 0)]);
        locks.unlock("g2", "c2", &[q("t", 0)]);
        assert!(locks.is_empty());
        // Expired locks leave with the next lock call of their group.
        locks.lock_at("g1", "c1", &[q("t", 0)], t0);
        locks.lock_at("g1", "c1", &[], t0 + LOCK_LIFETIME);
        assert!(locks.is_empty());
    }

    fn request(code: i32, body: &str) -> RemotingCommand {
        RemotingCommand::request(code).with_body(body.to_string())
    }

    #[test]
    fn bodies_are_read_as_rocketmq_writes_them_and_checked() {
        use apogee_proto::remoting::codes::request::LOCK_BATCH_MQ;
        let caller = Caller::default();
        let java = r#"{"consumerGroup":"g","clientId":"10.0.0.1@1","onlyThisBroker":false,
            "mqSet":[{"brokerName":"broker-a","queueId":3,"topic":"t"}]}"#;
        let body = checked_body(&caller, &request(LOCK_BATCH_MQ, java)).unwrap();
        assert_eq!(body.consumer_group, "g");
        assert_eq!(body.client_id, "10.0.0.1@1");
        assert_eq!(body.mq_set, [q("t", 3)]);
        for bad in [
            "not json",
            r#"{"clientId":"c","mqSet":[]}"#,
            r#"{"consumerGroup":"g","mqSet":[]}"#,
        ] {
            let answer = checked_body(&caller, &request(LOCK_BATCH_MQ, bad)).unwrap_err();
            assert_eq!(answer.code, response::INVALID_PARAMETER, "{bad}");
        }
        let many: Vec<RemoteQueue> = (0..=MAX_QUEUES_PER_REQUEST as i32)
            .map(|i| q("t", i))
            .collect();
        let too_many = serde_json::json!({"consumerGroup": "g", "clientId": "c", "mqSet": many});
        let answer =
            checked_body(&caller, &request(LOCK_BATCH_MQ, &too_many.to_string())).unwrap_err();
        assert!(answer.remark.unwrap().contains("8192"));
    }

    #[tokio::test]
    async fn lock_and_unlock_requests_go_through_the_brokers_table() {
        use apogee_proto::remoting::codes::request::{LOCK_BATCH_MQ, UNLOCK_BATCH_MQ};
        let t = crate::remoting::send::tests::test_remote();
        let caller = Caller::default();
        let body = |client: &str| {
            format!(
                r#"{{"consumerGroup":"g","clientId":"{client}","mqSet":[{{"topic":"orders","brokerName":"broker-a","queueId":0}}]}}"#
            )
        };
        let locked = |answer: RemotingCommand| {
            assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
            let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            v["lockOKMQSet"].as_array().unwrap().len()
        };
        assert_eq!(
            locked(lock_batch(
                &t.broker,
                &caller,
                &request(LOCK_BATCH_MQ, &body("c1"))
            )),
            1
        );
        assert_eq!(
            locked(lock_batch(
                &t.broker,
                &caller,
                &request(LOCK_BATCH_MQ, &body("c2"))
            )),
            0
        );
        let unlocked = unlock_batch(&t.broker, &caller, &request(UNLOCK_BATCH_MQ, &body("c1")));
        assert_eq!(unlocked.code, response::SUCCESS);
        assert_eq!(
            locked(lock_batch(
                &t.broker,
                &caller,
                &request(LOCK_BATCH_MQ, &body("c2"))
            )),
            1
        );
    }

    #[test]
    fn the_answer_names_the_locked_queues_as_rocketmq_reads_them() {
        let answer = answer_locked(&RemotingCommand::request(41), vec![q("t", 1)]);
        assert_eq!(answer.code, response::SUCCESS);
        assert_eq!(
            std::str::from_utf8(&answer.body).unwrap(),
            r#"{"lockOKMQSet":[{"topic":"t","brokerName":"broker-a","queueId":1}]}"#
        );
    }
}

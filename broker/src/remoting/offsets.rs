//! Remoting's offset requests: a consumer group's committed offset per queue
//! (QUERY_CONSUMER_OFFSET, UPDATE_CONSUMER_OFFSET) and a queue's offsets by position or time
//! (GET_MIN_OFFSET, GET_MAX_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP, GET_EARLIEST_MSG_STORETIME).
//! Each reads its arguments and calls one function of `crate::consume::offsets`, the same
//! the gRPC offset requests call, so a group's offsets are shared by both protocols.

use super::args::{self, BadArgument};
use crate::actions::QueuePosition;
use crate::services::Broker;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::ApogeeError;
use apogee_server::remoting::Caller;

/// Whether `caller` may consume `topic` (as `group`, when one is named): a group's retry
/// and dead-letter topics are the group's to read.
pub(crate) fn authorize_sub(
    caller: &Caller,
    group: Option<&str>,
    topic: &str,
) -> Result<(), ApogeeError> {
    let mut resources = Vec::with_capacity(2);
    if let Some(g) = group {
        resources.push((ResourceKind::Group, g));
    }
    if !apogee_proto::names::is_system_topic(topic) {
        resources.push((ResourceKind::Topic, topic));
    }
    caller.authorize(&resources, Action::Sub)
}

/// A request's queue (topic, queueId), checked against the topic.
fn queue_of<'r>(
    broker: &Broker,
    request: &'r RemotingCommand,
) -> Result<Result<(&'r str, u32), ApogeeError>, BadArgument> {
    let topic = args::string(request, "topic")?;
    let queue_id: i64 = args::required(request, "queueId")?;
    Ok(broker.checked_queue(topic, queue_id).map(|q| (topic, q)))
}

macro_rules! arg {
    ($request:expr, $read:expr) => {
        match $read {
            Ok(v) => v,
            Err(e) => return e.answer($request),
        }
    };
}

macro_rules! or_refuse {
    ($request:expr, $result:expr) => {
        match $result {
            Ok(v) => v,
            Err(e) => return RemotingCommand::refusal($request, &e),
        }
    };
}

/// A queue's checked arguments, after the caller's right to read it as `group` (the
/// refusal's answer otherwise).
fn readable_queue<'r>(
    broker: &Broker,
    caller: &Caller,
    request: &'r RemotingCommand,
    group: Option<&str>,
) -> Result<(&'r str, u32), Box<RemotingCommand>> {
    let (topic, queue) = match queue_of(broker, request) {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => return Err(Box::new(RemotingCommand::refusal(request, &e))),
        Err(e) => return Err(Box::new(e.answer(request))),
    };
    if let Err(e) = authorize_sub(caller, group, topic) {
        return Err(Box::new(RemotingCommand::refusal(request, &e)));
    }
    Ok((topic, queue))
}

fn with_offset(request: &RemotingCommand, offset: u64) -> RemotingCommand {
    RemotingCommand::success(request).with_ext("offset", offset)
}

/// QUERY_CONSUMER_OFFSET (consumerGroup, topic, queueId): the group's committed offset,
/// QUERY_NOT_FOUND when it has none for the queue.
pub fn query_consumer_offset(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let group = arg!(request, args::string(request, "consumerGroup"));
    let (topic, queue) = match readable_queue(broker, caller, request, Some(group)) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    match or_refuse!(request, broker.committed_offset(group, topic, queue)) {
        Some(offset) => with_offset(request, offset),
        None => RemotingCommand::error(
            request,
            response::QUERY_NOT_FOUND,
            format!("group {group} has no offset for {topic} queue {queue}"),
        ),
    }
}

/// UPDATE_CONSUMER_OFFSET (consumerGroup, topic, queueId, commitOffset; often oneway).
pub fn update_consumer_offset(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let group = arg!(request, args::string(request, "consumerGroup"));
    let offset: i64 = arg!(request, args::required(request, "commitOffset"));
    let (topic, queue) = match readable_queue(broker, caller, request, Some(group)) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    or_refuse!(request, broker.commit_offset(group, topic, queue, offset));
    RemotingCommand::success(request)
}

/// GET_MIN_OFFSET (topic, queueId): the queue's oldest stored offset.
pub fn min_offset(broker: &Broker, caller: &Caller, request: &RemotingCommand) -> RemotingCommand {
    let (topic, queue) = match readable_queue(broker, caller, request, None) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    let min = or_refuse!(
        request,
        broker.offset_at(topic, queue, QueuePosition::Beginning)
    );
    with_offset(request, min)
}

/// GET_MAX_OFFSET (topic, queueId): the offset the queue's next message will get.
pub fn max_offset(broker: &Broker, caller: &Caller, request: &RemotingCommand) -> RemotingCommand {
    let (topic, queue) = match readable_queue(broker, caller, request, None) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    let end = or_refuse!(request, broker.offset_at(topic, queue, QueuePosition::End));
    with_offset(request, end)
}

/// SEARCH_OFFSET_BY_TIMESTAMP (topic, queueId, timestamp): the first offset stored at or
/// after the time (the queue's end when none is).
pub fn search_offset_by_timestamp(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let timestamp: i64 = arg!(request, args::required(request, "timestamp"));
    let (topic, queue) = match readable_queue(broker, caller, request, None) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    let position = QueuePosition::Time(timestamp);
    let offset = or_refuse!(request, broker.offset_at(topic, queue, position));
    with_offset(request, offset)
}

/// GET_EARLIEST_MSG_STORETIME (topic, queueId): the store time of the queue's oldest
/// message, -1 for an empty queue (as RocketMQ answers).
pub fn earliest_store_time(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let (topic, queue) = match readable_queue(broker, caller, request, None) {
        Ok(q) => q,
        Err(answer) => return *answer,
    };
    let time = or_refuse!(request, broker.earliest_store_time(topic, queue));
    RemotingCommand::success(request).with_ext("timestamp", time.unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remoting::clients::tests::{remote, GROUP, TOPIC};
    use apogee_proto::remoting::codes::request as code;

    fn queue_request(code: i32, queue: i64) -> RemotingCommand {
        RemotingCommand::request(code)
            .with_ext("topic", TOPIC)
            .with_ext("queueId", queue)
    }

    fn offset_of(answer: &RemotingCommand) -> i64 {
        assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
        answer.ext("offset").unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn a_group_commits_and_reads_its_offset_shared_with_grpc() {
        let r = remote(2);
        r.store(1, "a", 5).await;
        let c = Caller::default();
        let query = queue_request(code::QUERY_CONSUMER_OFFSET, 1).with_ext("consumerGroup", GROUP);
        let none = query_consumer_offset(&r.broker, &c, &query);
        assert_eq!(none.code, response::QUERY_NOT_FOUND);
        let update = queue_request(code::UPDATE_CONSUMER_OFFSET, 1)
            .with_ext("consumerGroup", GROUP)
            .with_ext("commitOffset", 3);
        assert_eq!(
            update_consumer_offset(&r.broker, &c, &update).code,
            response::SUCCESS
        );
        assert_eq!(offset_of(&query_consumer_offset(&r.broker, &c, &query)), 3);
        // The same offset the gRPC GetOffset reads.
        assert_eq!(r.broker.committed_offset(GROUP, TOPIC, 1).unwrap(), Some(3));
        let other_queue =
            queue_request(code::QUERY_CONSUMER_OFFSET, 0).with_ext("consumerGroup", GROUP);
        assert_eq!(
            query_consumer_offset(&r.broker, &c, &other_queue).code,
            response::QUERY_NOT_FOUND
        );
        let beyond = queue_request(code::UPDATE_CONSUMER_OFFSET, 1)
            .with_ext("consumerGroup", GROUP)
            .with_ext("commitOffset", 6);
        assert_eq!(
            update_consumer_offset(&r.broker, &c, &beyond).code,
            response::INVALID_PARAMETER
        );
        assert_eq!(offset_of(&query_consumer_offset(&r.broker, &c, &query)), 3);
    }

    #[tokio::test]
    async fn queue_offsets_by_position_and_time() {
        let r = remote(2);
        let c = Caller::default();
        let min = |q| min_offset(&r.broker, &c, &queue_request(code::GET_MIN_OFFSET, q));
        let max = |q| max_offset(&r.broker, &c, &queue_request(code::GET_MAX_OFFSET, q));
        let earliest = |q| {
            let a = earliest_store_time(
                &r.broker,
                &c,
                &queue_request(code::GET_EARLIEST_MSG_STORETIME, q),
            );
            assert_eq!(a.code, response::SUCCESS);
            a.ext("timestamp").unwrap().parse::<i64>().unwrap()
        };
        assert_eq!((offset_of(&min(0)), offset_of(&max(0))), (0, 0));
        assert_eq!(earliest(0), -1, "an empty queue");
        let before = apogee_proto::time::now_ms();
        r.store(0, "a", 4).await;
        assert_eq!((offset_of(&min(0)), offset_of(&max(0))), (0, 4));
        let first = earliest(0);
        assert!(first >= before, "{first} >= {before}");
        let search = |ts: i64| {
            search_offset_by_timestamp(
                &r.broker,
                &c,
                &queue_request(code::SEARCH_OFFSET_BY_TIMESTAMP, 0).with_ext("timestamp", ts),
            )
        };
        assert_eq!(offset_of(&search(0)), 0);
        assert_eq!(offset_of(&search(first)), 0);
        assert_eq!(offset_of(&search(i64::MAX)), 4, "after everything: the end");
    }

    #[tokio::test]
    async fn bad_queues_and_arguments_are_refused() {
        let r = remote(2);
        let c = Caller::default();
        let no_queue = min_offset(&r.broker, &c, &queue_request(code::GET_MIN_OFFSET, 2));
        assert_eq!(no_queue.code, response::INVALID_PARAMETER);
        assert!(no_queue.remark.unwrap().contains("2 queues"));
        let no_topic = max_offset(
            &r.broker,
            &c,
            &RemotingCommand::request(code::GET_MAX_OFFSET)
                .with_ext("topic", "nothing")
                .with_ext("queueId", 0),
        );
        assert_eq!(no_topic.code, response::TOPIC_NOT_EXIST);
        let no_id = max_offset(
            &r.broker,
            &c,
            &RemotingCommand::request(code::GET_MAX_OFFSET).with_ext("topic", TOPIC),
        );
        assert_eq!(no_id.code, response::INVALID_PARAMETER);
        assert!(no_id.remark.unwrap().contains("queueId"));
        let no_group = query_consumer_offset(
            &r.broker,
            &c,
            &queue_request(code::QUERY_CONSUMER_OFFSET, 0),
        );
        assert!(no_group.remark.unwrap().contains("consumerGroup"));
    }
}

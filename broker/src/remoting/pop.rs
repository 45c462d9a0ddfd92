//! POP_MESSAGE, ACK_MESSAGE and CHANGE_MESSAGE_INVISIBLETIME: the pop consumption of
//! RocketMQ 5.x remoting clients, served by the same consume engine as gRPC's
//! ReceiveMessage, AckMessage and ChangeInvisibleDuration (`crate::consume`), so a message is
//! in flight for a group whichever protocol popped it.
//!
//! A popped message carries its "extra info" in the `POP_CK` property; the client sends it
//! back on ack and change-invisible. It is RocketMQ's space-separated list, whose positions
//! the clients read: 0 checkpoint offset (here the message's queue offset), 1 pop time,
//! 2 invisible time, 3 revive queue id (always 0), 4 topic kind (0 normal, 1 retry),
//! 5 broker name, 6 queue id, 7 queue offset, 8 retry generation (0; the Rust client parses
//! it as a number, the Java client ignores it); position [`HANDLE_POSITION`] is Apogee's own
//! receipt handle, which names the delivery to the consume engine.
//!
//! An empty pop is answered PULL_NOT_FOUND (what RocketMQ answers when the poll time passes
//! with nothing), with the pop headers all the same (the clients decode them either way).

use super::args;
use super::offsets::authorize_sub;
use super::pull::filter_of;
use crate::actions::{Answered, PopOrder, QueueChoice};
use crate::consume::Delivery;
use crate::services::Broker;
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::time::now_ms;
use apogee_proto::ApogeeError;
use apogee_server::remoting::{Caller, RemotingConnection};
use bytes::BytesMut;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The message property that carries a popped message's extra info.
pub const POP_CK: &str = "POP_CK";

/// The position of Apogee's receipt handle in the extra info.
pub const HANDLE_POSITION: usize = 9;

/// The revive queue id every answer names (Apogee keeps no revive topic).
const REVIVE_QID: i32 = 0;

/// The extra info of a message popped from `queue_id` of `topic` at `offset`.
pub fn extra_info(
    topic: &str,
    broker_name: &str,
    queue_id: u32,
    offset: u64,
    pop_time_ms: i64,
    invisible_ms: i64,
    handle: &str,
) -> String {
    let kind = if topic.starts_with(apogee_proto::names::RETRY_PREFIX) {
        "1"
    } else {
        "0"
    };
    format!(
        "{offset} {pop_time_ms} {invisible_ms} {REVIVE_QID} {kind} {broker_name} {queue_id} {offset} 0 {handle}"
    )
}

/// The receipt handle in an extra info a client sent back.
pub fn handle_of(extra_info: &str) -> Result<&str, ApogeeError> {
    extra_info
        .split(' ')
        .nth(HANDLE_POSITION)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            ApogeeError::InvalidReceiptHandle(format!(
                "extraInfo {extra_info:?} does not carry the receipt handle this broker gave \
                 (position {HANDLE_POSITION}); ack or change the message of its latest pop"
            ))
        })
}

/// A pop request's arguments.
struct PopArgs<'r> {
    group: &'r str,
    topic: &'r str,
    queue_id: i64,
    max_messages: i64,
    invisible_ms: i64,
    poll_ms: i64,
    expression_type: &'r str,
    expression: &'r str,
    order: bool,
}

impl<'r> PopArgs<'r> {
    fn read(request: &'r RemotingCommand) -> Result<PopArgs<'r>, args::BadArgument> {
        Ok(PopArgs {
            group: args::string(request, "consumerGroup")?,
            topic: args::string(request, "topic")?,
            queue_id: args::optional(request, "queueId")?.unwrap_or(-1),
            max_messages: args::required(request, "maxMsgNums")?,
            invisible_ms: args::required(request, "invisibleTime")?,
            poll_ms: args::optional(request, "pollTime")?.unwrap_or(0),
            expression_type: request.ext("expType").unwrap_or("TAG"),
            expression: request.ext("exp").unwrap_or("*"),
            order: args::optional(request, "order")?.unwrap_or(false),
        })
    }
}

/// POP_MESSAGE: the pop action ([`Broker::pop`]) for the request.
pub async fn pop_message(
    broker: &Broker,
    conn: &Arc<RemotingConnection>,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let a = match PopArgs::read(request) {
        Ok(a) => a,
        Err(e) => return e.answer(request),
    };
    let client = conn.peer_text();
    let order = (|| {
        if a.poll_ms < 0 {
            return Err(ApogeeError::IllegalPollingTime(format!(
                "pollTime {} ms is negative",
                a.poll_ms
            )));
        }
        authorize_sub(caller, Some(a.group), a.topic)?;
        Ok(PopOrder {
            group: a.group,
            topic: a.topic,
            queues: match a.queue_id {
                id if id >= 0 => QueueChoice::Only(id),
                _ => QueueChoice::Turning,
            },
            filter: filter_of(a.expression_type, a.expression)?,
            batch: a.max_messages,
            invisible_ms: Some(a.invisible_ms),
            auto_renew: false,
            attempt_id: None,
            client_id: client,
            wait: Duration::from_millis(a.poll_ms as u64),
        })
    })();
    let popped = match order {
        Ok(order) => broker.pop(&order).await,
        Err(e) => Err(e),
    };
    let header = |code: i32, pop_time: i64, remark: Option<String>| {
        RemotingCommand::response_to(request, code, remark)
            .with_ext("popTime", pop_time)
            .with_ext("invisibleTime", a.invisible_ms)
            .with_ext("reviveQid", REVIVE_QID)
    };
    match popped {
        Ok(p) if p.deliveries.is_empty() => header(
            response::PULL_NOT_FOUND,
            p.at_ms,
            Some("no new message within the poll time".into()),
        )
        .with_ext("restNum", 0),
        Ok(p) => answer_found(broker, conn, request, &a, &p.deliveries, p.at_ms, header),
        // A restarted master waiting for its slave's consume state has nothing to hand out yet.
        Err(ApogeeError::MessageNotFound(why)) => {
            header(response::PULL_NOT_FOUND, now_ms(), Some(why)).with_ext("restNum", 0)
        }
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// The answer carrying `deliveries`, popped at `pop_time`.
fn answer_found(
    broker: &Broker,
    conn: &RemotingConnection,
    request: &RemotingCommand,
    a: &PopArgs<'_>,
    deliveries: &[Delivery],
    pop_time: i64,
    header: impl Fn(i32, i64, Option<String>) -> RemotingCommand,
) -> RemotingCommand {
    let broker_name = &broker.config().broker_name;
    let mut body = BytesMut::new();
    // Per queue: the offsets popped, in order.
    let mut by_queue: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut order_counts = Vec::new();
    let kind = if a.topic.starts_with(apogee_proto::names::RETRY_PREFIX) {
        1
    } else {
        0
    };
    for d in deliveries {
        let stored = &d.message;
        let queue = stored.msg.queue_id;
        by_queue.entry(queue).or_default().push(stored.queue_offset);
        order_counts.push(format!(
            "{kind} qo{queue}%{} {}",
            stored.queue_offset,
            d.attempt.saturating_sub(1)
        ));
        let mut ext = super::convert::to_message_ext(stored, conn.local());
        ext.reconsume_times = d.attempt.saturating_sub(1) as i32;
        ext.properties.insert(
            POP_CK.into(),
            extra_info(
                a.topic,
                broker_name,
                queue,
                stored.queue_offset,
                pop_time,
                d.invisible_ms,
                &d.receipt_handle,
            ),
        );
        if let Err(e) = ext.encode(&mut body) {
            return RemotingCommand::error(
                request,
                response::SYSTEM_ERROR,
                format!(
                    "message at offset {} cannot be encoded: {e}",
                    stored.queue_offset
                ),
            );
        }
    }
    let mut start_offsets = Vec::new();
    let mut msg_offsets = Vec::new();
    let mut rest = 0u64;
    for (queue, offsets) in &by_queue {
        let first = offsets.iter().min().copied().unwrap_or(0);
        let last = offsets.iter().max().copied().unwrap_or(0);
        start_offsets.push(format!("{kind} {queue} {first}"));
        let list: Vec<String> = offsets.iter().map(u64::to_string).collect();
        msg_offsets.push(format!("{kind} {queue} {}", list.join(",")));
        if let Ok((_, end)) = broker.queue_bounds(a.topic, *queue) {
            rest += end.saturating_sub(last + 1);
        }
    }
    let mut answer = header(response::SUCCESS, pop_time, None)
        .with_ext("restNum", rest)
        .with_ext("startOffsetInfo", start_offsets.join(";"))
        .with_ext("msgOffsetInfo", msg_offsets.join(";"));
    if a.order {
        answer = answer.with_ext("orderCountInfo", order_counts.join(";"));
    }
    answer.with_body(body.freeze())
}

/// ACK_MESSAGE (consumerGroup, topic, queueId, extraInfo, offset): the delivery named by the
/// extra info's receipt handle is done. NO_MESSAGE when it is no longer in flight by that
/// handle (acked already, or delivered again since).
pub fn ack_message(broker: &Broker, caller: &Caller, request: &RemotingCommand) -> RemotingCommand {
    let result = (|| {
        let group = args::string(request, "consumerGroup").map_err(bad)?;
        let topic = args::string(request, "topic").map_err(bad)?;
        let extra = args::string(request, "extraInfo").map_err(bad)?;
        authorize_sub(caller, Some(group), topic)?;
        broker.ack(&Answered {
            group,
            topic,
            lite_topic: None,
            receipt_handle: handle_of(extra)?,
        })
    })();
    match result {
        Ok(()) => RemotingCommand::success(request),
        Err(e) => not_in_flight_or_refused(request, &e),
    }
}

/// CHANGE_MESSAGE_INVISIBLETIME (consumerGroup, topic, queueId, extraInfo, offset,
/// invisibleTime): the delivery becomes visible again `invisibleTime` ms from now. The answer
/// carries popTime, invisibleTime and reviveQid, and the new extraInfo (the old one's handle
/// is stale from now on).
pub fn change_invisible_time(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let now = now_ms();
    let result = (|| {
        let group = args::string(request, "consumerGroup").map_err(bad)?;
        let topic = args::string(request, "topic").map_err(bad)?;
        let extra = args::string(request, "extraInfo").map_err(bad)?;
        let queue_id: i64 = args::required(request, "queueId").map_err(bad)?;
        let offset: i64 = args::required(request, "offset").map_err(bad)?;
        let invisible_ms: i64 = args::required(request, "invisibleTime").map_err(bad)?;
        if queue_id < 0 || offset < 0 {
            return Err(ApogeeError::BadRequest(format!(
                "queueId {queue_id} and offset {offset} cannot be negative"
            )));
        }
        authorize_sub(caller, Some(group), topic)?;
        let delivery = Answered {
            group,
            topic,
            lite_topic: None,
            receipt_handle: handle_of(extra)?,
        };
        let handle = broker.change_invisible(&delivery, invisible_ms, false)?;
        Ok((
            extra_info(
                topic,
                &broker.config().broker_name,
                queue_id as u32,
                offset as u64,
                now,
                invisible_ms,
                &handle,
            ),
            invisible_ms,
        ))
    })();
    match result {
        Ok((extra, invisible_ms)) => RemotingCommand::success(request)
            .with_ext("popTime", now)
            .with_ext("invisibleTime", invisible_ms)
            .with_ext("reviveQid", REVIVE_QID)
            .with_ext("extraInfo", extra),
        Err(e) => not_in_flight_or_refused(request, &e),
    }
}

fn bad(e: args::BadArgument) -> ApogeeError {
    ApogeeError::BadRequest(e.0)
}

/// A stale or foreign handle is NO_MESSAGE (RocketMQ's answer to an ack of a message no
/// longer in flight); anything else its own code.
fn not_in_flight_or_refused(request: &RemotingCommand, e: &ApogeeError) -> RemotingCommand {
    match e {
        ApogeeError::InvalidReceiptHandle(why) => {
            RemotingCommand::error(request, response::NO_MESSAGE, why.clone())
        }
        e => RemotingCommand::refusal(request, e),
    }
}

#[cfg(test)]
#[path = "pop_tests.rs"]
mod tests;

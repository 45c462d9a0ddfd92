//! PULL_MESSAGE: a remoting consumer reads a queue from the offset it keeps (push
//! consumers, whose client library pulls, and pull consumers alike), through the same
//! domain pull as gRPC's PullMessage (`crate::consume::pull`). LITE_PULL_MESSAGE (the Java
//! client's DefaultLitePullConsumer) is the same request under another code, served alike.
//!
//! The request's `sysFlag` bits: 1 commit (store `commitOffset` as the group's offset
//! first), 2 suspend (hold the request up to `suspendTimeoutMillis`, capped at
//! [`MAX_SUSPEND_MS`], until something is appended: long polling), 4 subscription (the
//! request carries its filter in `subscription` and `expressionType`; without it the
//! filter is the one the group's members declared in their heartbeats, as a push
//! consumer relies on), 8 class filter (refused: Apogee filters by tag or SQL92 only).
//!
//! The answer: SUCCESS with the messages in RocketMQ's stored-message layout; PULL_NOT_FOUND
//! when nothing came before the suspend time ended; PULL_RETRY_IMMEDIATELY when the filter
//! passed none of a batch read (the consumer pulls again from the next offset);
//! PULL_OFFSET_MOVED for an offset outside the queue, with the offset to continue from.
//! Every answer carries `nextBeginOffset`, `minOffset`, `maxOffset` and
//! `suggestWhichBrokerId` 0 (pull from the master).

use super::args;
use super::offsets::authorize_sub;
use crate::actions::PullOrder;
use crate::consume::filter::SqlFilter;
use crate::consume::pull::Pulled;
use crate::consume::MessageFilter;
use crate::services::Broker;
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::ApogeeError;
use apogee_server::remoting::{Caller, RemotingConnection};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;

/// Bits of a pull request's `sysFlag`.
pub mod sys_flag {
    pub const COMMIT_OFFSET: i32 = 1;
    pub const SUSPEND: i32 = 2;
    pub const SUBSCRIPTION: i32 = 4;
    pub const CLASS_FILTER: i32 = 8;
}

/// The longest a suspended pull is held (clients ask for 15 s by default, and time the
/// request out at 30 s).
pub const MAX_SUSPEND_MS: u64 = 30_000;

/// How long a pull with `sys_flag` asking to be held `suspend_ms` waits for a message.
pub fn suspend_of(sys_flag: i32, suspend_ms: i64) -> Duration {
    if sys_flag & sys_flag::SUSPEND == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis((suspend_ms.max(0) as u64).min(MAX_SUSPEND_MS))
}

/// The filter of an expression of `expression_type` (`TAG`, the default, or `SQL92`).
pub fn filter_of(expression_type: &str, expression: &str) -> Result<MessageFilter, ApogeeError> {
    if expression_type.eq_ignore_ascii_case("SQL92") {
        Ok(MessageFilter::Sql(Arc::new(SqlFilter::parse(expression)?)))
    } else if expression_type.is_empty() || expression_type.eq_ignore_ascii_case("TAG") {
        MessageFilter::parse_tags(expression)
    } else {
        Err(ApogeeError::IllegalFilterExpression(format!(
            "expression type {expression_type} is not supported (TAG or SQL92)"
        )))
    }
}

/// The request's arguments.
struct PullArgs<'r> {
    group: &'r str,
    topic: &'r str,
    queue_id: i64,
    offset: i64,
    max_messages: i64,
    sys_flag: i32,
    commit_offset: i64,
    suspend_ms: i64,
}

impl<'r> PullArgs<'r> {
    fn read(request: &'r RemotingCommand) -> Result<PullArgs<'r>, args::BadArgument> {
        Ok(PullArgs {
            group: args::string(request, "consumerGroup")?,
            topic: args::string(request, "topic")?,
            queue_id: args::required(request, "queueId")?,
            offset: args::required(request, "queueOffset")?,
            max_messages: args::optional(request, "maxMsgNums")?.unwrap_or(0),
            sys_flag: args::optional(request, "sysFlag")?.unwrap_or(0),
            commit_offset: args::optional(request, "commitOffset")?.unwrap_or(-1),
            suspend_ms: args::optional(request, "suspendTimeoutMillis")?.unwrap_or(0),
        })
    }
}

/// PULL_MESSAGE: the pull action ([`Broker::pull`]) for the request.
pub async fn pull_message(
    broker: &Broker,
    conn: &Arc<RemotingConnection>,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let a = match PullArgs::read(request) {
        Ok(a) => a,
        Err(e) => return e.answer(request),
    };
    let checked = (|| {
        authorize_sub(caller, Some(a.group), a.topic)?;
        if a.sys_flag & sys_flag::CLASS_FILTER != 0 {
            return Err(ApogeeError::IllegalFilterExpression(
                "class filters are not supported (TAG or SQL92)".into(),
            ));
        }
        Ok(())
    })();
    if let Err(e) = checked {
        return RemotingCommand::refusal(request, &e);
    }
    let filter = match request_filter(broker, request, &a) {
        Ok(f) => f,
        Err(answer) => return *answer,
    };
    let client = conn.peer_text();
    let order = PullOrder {
        group: a.group,
        topic: a.topic,
        queue_id: a.queue_id,
        offset: a.offset,
        batch: a.max_messages,
        filter: &filter,
        wait: suspend_of(a.sys_flag, a.suspend_ms),
        exact_offset: true,
        commit_offset: (a.sys_flag & sys_flag::COMMIT_OFFSET != 0).then_some(a.commit_offset),
        client_id: client,
    };
    let (queue, pulled) = match broker.pull(&order).await {
        Ok(p) => (p.queue, p.pulled),
        Err(e) => return RemotingCommand::refusal(request, &e),
    };
    let (min, max) = match broker.queue_bounds(a.topic, queue) {
        Ok(b) => b,
        Err(e) => return RemotingCommand::refusal(request, &e),
    };
    let answer = |code: i32, next: u64, remark: Option<String>| {
        RemotingCommand::response_to(request, code, remark)
            .with_ext("nextBeginOffset", next)
            .with_ext("minOffset", min)
            .with_ext("maxOffset", max)
            .with_ext("suggestWhichBrokerId", 0)
    };
    match pulled {
        Pulled::OutOfRange { oldest, end } => {
            let next = if a.offset < oldest as i64 {
                oldest
            } else {
                end
            };
            answer(
                response::PULL_OFFSET_MOVED,
                next,
                Some(format!(
                    "offset {} is outside the queue's {oldest}..{end}",
                    a.offset
                )),
            )
        }
        Pulled::NothingNew { next_offset } => answer(
            response::PULL_NOT_FOUND,
            next_offset,
            Some("no new message".into()),
        ),
        Pulled::Read {
            matching,
            next_offset,
        } if matching.is_empty() => answer(
            response::PULL_RETRY_IMMEDIATELY,
            next_offset,
            Some("the filter matched none of the messages read".into()),
        ),
        Pulled::Read {
            matching,
            next_offset,
        } => {
            let mut body = BytesMut::new();
            for m in &matching {
                let ext = super::convert::to_message_ext(m, conn.local());
                if let Err(e) = ext.encode(&mut body) {
                    return RemotingCommand::error(
                        request,
                        response::SYSTEM_ERROR,
                        format!(
                            "message at offset {} cannot be encoded: {e}",
                            m.queue_offset
                        ),
                    );
                }
            }
            answer(response::SUCCESS, next_offset, None).with_body(body.freeze())
        }
    }
}

/// The request's filter: its own with the subscription bit, else the one the group's
/// members declared for the topic in their heartbeats (SUBSCRIPTION_NOT_EXIST when none did).
fn request_filter(
    broker: &Broker,
    request: &RemotingCommand,
    a: &PullArgs<'_>,
) -> Result<MessageFilter, Box<RemotingCommand>> {
    let parsed = if a.sys_flag & sys_flag::SUBSCRIPTION != 0 {
        let expression = request.ext("subscription").unwrap_or("*");
        let kind = request.ext("expressionType").unwrap_or("TAG");
        filter_of(kind, expression)
    } else {
        match broker.remoting_clients().subscription(a.group, a.topic) {
            Some(s) => filter_of(&s.expression_type, &s.expression),
            None => {
                return Err(Box::new(RemotingCommand::error(
                    request,
                    response::SUBSCRIPTION_NOT_EXIST,
                    format!(
                        "no member of group {} declared a subscription of {} in its heartbeat",
                        a.group, a.topic
                    ),
                )))
            }
        }
    };
    parsed.map_err(|e| Box::new(RemotingCommand::refusal(request, &e)))
}

#[cfg(test)]
#[path = "pull_tests.rs"]
mod tests;

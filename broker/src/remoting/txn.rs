//! Transactions of remoting producers: END_TRANSACTION decoded for the end-transaction
//! action ([`Broker::end_transaction`], which has the rules: the transaction named by its
//! `transactionId` or its `commitLogOffset`, the caller allowed to publish to its topic), and
//! the check-back pushed to a remoting producer of the message's producer group
//! ([`RemotingCheckBacks`], the transactions' [`ProducerCheckBack`]).

use super::args;
use super::convert::to_message_ext;
use super::send::client_id;
use crate::actions::TransactionEnding;
use crate::services::Broker;
use crate::txn::producers::{CheckBack, ProducerCheckBack};
use crate::txn::Resolution;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::remoting::codes::{request as req, response};
use apogee_proto::remoting::message::{offset_message_id, property, sys_flag};
use apogee_proto::remoting::RemotingCommand;
use apogee_server::remoting::{Caller, RemotingConnection};
use bytes::BytesMut;
use std::sync::Arc;

/// `commitOrRollback` of a commit (RocketMQ's TRANSACTION_COMMIT_TYPE).
pub const COMMIT: i32 = sys_flag::TRANSACTION_COMMIT;
/// `commitOrRollback` of a rollback (TRANSACTION_ROLLBACK_TYPE).
pub const ROLLBACK: i32 = sys_flag::TRANSACTION_ROLLBACK;
/// `commitOrRollback` of "unknown" (TRANSACTION_NOT_TYPE).
pub const UNKNOWN: i32 = sys_flag::TRANSACTION_NOT_TYPE;

/// The resolution a `commitOrRollback` value asks for.
pub fn resolution_of(value: i32) -> Option<Resolution> {
    match value {
        COMMIT => Some(Resolution::Commit),
        ROLLBACK => Some(Resolution::Rollback),
        UNKNOWN => Some(Resolution::Unknown),
        _ => None,
    }
}

/// Answers END_TRANSACTION (RocketMQ clients send it oneway: the answer is for the others).
/// Its `msgId` is not looked at: clients fill it with an id of their own, and RocketMQ's
/// broker does not check it either.
pub async fn end_transaction(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let value: i32 = match args::required(request, "commitOrRollback") {
        Ok(v) => v,
        Err(bad) => return bad.answer(request),
    };
    let Some(resolution) = resolution_of(value) else {
        return RemotingCommand::error(
            request,
            response::INVALID_PARAMETER,
            format!("commitOrRollback {value} is none of 0, 8 and 12"),
        );
    };
    let half_log_offset: Option<i64> = match args::optional(request, "commitLogOffset") {
        Ok(offset) => offset,
        Err(bad) => return bad.answer(request),
    };
    let ending = TransactionEnding {
        transaction_id: request.ext("transactionId").unwrap_or(""),
        half_log_offset: half_log_offset.and_then(|o| u64::try_from(o).ok()),
        topic: "",
        message_id: "",
        resolution,
        from_check: matches!(
            args::optional::<bool>(request, "fromTransactionCheck"),
            Ok(Some(true))
        ),
    };
    let may_publish = |topic: &str| caller.authorize(&[(ResourceKind::Topic, topic)], Action::Pub);
    match broker.end_transaction(&ending, may_publish).await {
        Ok(_) => RemotingCommand::success(request),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

/// The check-back of `check` as CHECK_TRANSACTION_STATE to a client reached over `conn`:
/// the half message as it would be published, in the stored-message layout.
pub fn check_request(check: &CheckBack<'_>, conn: &RemotingConnection) -> RemotingCommand {
    let store_host = conn.local();
    let stored = check.message;
    let mut ext = to_message_ext(stored, store_host);
    ext.sys_flag |= sys_flag::TRANSACTION_PREPARED;
    ext.properties
        .insert(property::TRAN_MSG.into(), "true".into());
    ext.properties
        .insert(property::TRANSACTION_ID.into(), check.transaction_id.into());
    ext.properties.insert(
        property::TRAN_PREPARED_QUEUE_OFFSET.into(),
        stored.queue_offset.to_string(),
    );
    let mut body = BytesMut::new();
    if let Err(e) = ext.encode(&mut body) {
        tracing::warn!(error = %e, "a check-back's message does not encode");
    }
    let log_offset = stored.log_offset as i64;
    RemotingCommand::request(req::CHECK_TRANSACTION_STATE)
        .with_ext("tranStateTableOffset", stored.queue_offset)
        .with_ext("commitLogOffset", log_offset)
        .with_ext("msgId", &stored.msg.message_id)
        .with_ext("transactionId", check.transaction_id)
        .with_ext("offsetMsgId", offset_message_id(store_host, log_offset))
        .with_ext("topic", &stored.msg.topic)
        .with_body(body.freeze())
}

/// The live connections of a producer group's remoting clients, most recently heard from
/// first (the remoting clients' table answers it).
pub type ProducersOf = dyn Fn(&str) -> Vec<Arc<RemotingConnection>> + Send + Sync;

/// The transactions' check-backs to remoting producers, by producer group.
pub struct RemotingCheckBacks {
    producers_of: Box<ProducersOf>,
}

impl RemotingCheckBacks {
    pub fn new(
        producers_of: impl Fn(&str) -> Vec<Arc<RemotingConnection>> + Send + Sync + 'static,
    ) -> RemotingCheckBacks {
        RemotingCheckBacks {
            producers_of: Box::new(producers_of),
        }
    }
}

impl ProducerCheckBack for RemotingCheckBacks {
    fn check_back(&self, check: &CheckBack<'_>) -> Option<String> {
        let mut producers = (self.producers_of)(check.producer_group);
        // The connection that sent the half message first (its client id is group@peer).
        producers.sort_by_key(|conn| {
            client_id(check.producer_group, conn.peer_text()) != check.preferred_producer
        });
        for conn in producers {
            match conn.send_oneway(check_request(check, &conn)) {
                Ok(()) => return Some(client_id(check.producer_group, conn.peer_text())),
                Err(e) => tracing::debug!(error = %e, "check-back not pushed"),
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;

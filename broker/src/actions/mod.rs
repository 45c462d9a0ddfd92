//! The broker's actions: one method of [`Broker`] per thing a client asks for, whatever the
//! transport. The gRPC services (`crate::grpc`) and the remoting handlers (`crate::remoting`)
//! decode a request, check the caller's identity, call one action and encode its outcome;
//! the rules live here, once:
//!
//! - [`Broker::pop`] (gRPC ReceiveMessage, remoting POP_MESSAGE): the topic must be readable
//!   on this broker, the group is resolved (created on first use where allowed), a restarted
//!   master first takes back its slave's consume state (the handback gate), a PRIORITY topic
//!   is served highest queue first, a LITE parent pops the client's ready lite queues, and the
//!   wait is a long poll holding one of the broker's waiting places.
//! - [`Broker::pull`] (gRPC PullMessage, remoting PULL_MESSAGE and LITE_PULL_MESSAGE): the
//!   same readability and group rules, then a read of one queue from an offset, long-polled.
//! - [`Broker::ack`], [`Broker::change_invisible`], [`Broker::dead_letter`] (AckMessage,
//!   ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue; ACK_MESSAGE,
//!   CHANGE_MESSAGE_INVISIBLETIME): a consumer's answer to a delivery, named by its receipt
//!   handle (and a lite message's lite topic).
//! - [`Broker::delete_topic`]: a topic's config, consume state and index, safe against a
//!   crash at any point (`topics`).
//! - [`Broker::send`] (SendMessage; SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE): one
//!   request's messages stored through the producer service and counted.
//! - [`Broker::end_transaction`] (EndTransaction; END_TRANSACTION): a half message's commit
//!   or rollback, or a check-back's answer: the transaction named, the caller allowed to
//!   publish to its topic (`transactions`).
//! - [`Broker::send_back`], [`Broker::send_to_retry`] (CONSUMER_SEND_MSG_BACK, a send to a
//!   retry topic): a failed message's retry or dead-letter copy (`retry`).
//! - [`Broker::offset_at`], [`Broker::committed_offset`], [`Broker::commit_offset`] and the
//!   other queue offsets (`offsets`).
//! - [`Broker::client_seen`], [`Broker::client_gone`], [`Broker::join_consumer_group`],
//!   [`Broker::recall`], [`Broker::route`] (`clients`).
//! - [`Broker::readable_topic`], [`Broker::message_at`]: the queries both need.
//!
//! An action takes an order of plain values (no protobuf, no remoting header) and answers
//! with domain values or an [`ApogeeError`], which each transport maps to its own status.

pub mod admin;
mod answer;
mod clients;
mod lite;
mod lookup;
mod offsets;
mod pop;
mod pop_lite;
mod pop_order;
mod pull;
pub(crate) mod retry;
mod send;
mod topics;
mod transactions;

pub use answer::Answered;
pub use lite::LiteSubscriptionChange;
pub use offsets::QueuePosition;
pub use pop::Popped;
pub use pop_order::{PopOrder, QueueChoice};
pub use pull::{PullOrder, PulledQueue};
pub use transactions::TransactionEnding;

use crate::services::Broker;
use crate::topics::TopicConfig;
use apogee_proto::{limits, ApogeeError};
use std::sync::Arc;

impl Broker {
    /// The config of `topic` when consumers may read it on this broker: it exists and its
    /// permission includes reading (FORBIDDEN otherwise, NO_PERMISSION over remoting, as
    /// RocketMQ answers a read of a write-only topic).
    pub fn readable_topic(&self, topic: &str) -> Result<Arc<TopicConfig>, ApogeeError> {
        limits::validate_topic(topic)?;
        let config = self
            .topics()
            .get_shared(topic)
            .ok_or_else(|| ApogeeError::TopicNotFound(topic.to_string()))?;
        if !config.permission.readable() {
            return Err(ApogeeError::Forbidden(format!(
                "topic {topic} is not readable on this broker (its permission is {})",
                config.permission.name()
            )));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_answer;
#[cfg(test)]
mod tests_order;
#[cfg(test)]
mod tests_send;
#[cfg(test)]
mod tests_txn;

//! The operator's actions (the broker's side of `apogee.cluster.v1.Admin`): what the Admin
//! service's handlers (`crate::grpc::admin*`) decode a request into and encode the answer of.
//! Every rule and every step that spans services lives here; the handlers keep only the
//! wire: decoding, the caller's name for the log, and turning these answers into messages.
//!
//! - `topics`: create, update and list topics, and the queues of one
//!   ([`Broker::create_topic`], [`Broker::update_topic`], [`Broker::list_topics`],
//!   [`Broker::topic_queues`]); deletion is [`Broker::delete_topic`] of the core.
//! - `groups`: create, update, delete, list (with lag) and describe consumer groups, and the
//!   move of a group's offsets ([`Broker::reset_group_offset`]).
//! - `group_reads`: a group's consume stats (progress per queue and consume rate), its
//!   connected clients with their subscriptions, and every group's acknowledged offsets, as
//!   RocketMQ's tools read them ([`Broker::consume_stats`], [`Broker::group_connections`],
//!   [`Broker::all_consumer_offsets`]).
//! - `status`: this broker's identity, log, tables and replication state
//!   ([`Broker::broker_status`]).
//! - `messages`: messages by id, by key and by queue, dead letters and their resend.
//! - `lite`: the lite topics of a LITE parent, listed and described.
//! - `upserts`: topics and groups made or changed by one request, and deleted where they
//!   are, as RocketMQ's admin requests ask ([`Broker::upsert_topic`],
//!   [`Broker::remove_group`] ...); the slave's refusal of every such change
//!   ([`Broker::refuse_on_slave`]).
//! - `ops`: connected clients, the effective config and runtime settings, transactions,
//!   scheduled messages and the traffic history.
//! - `runtime`: this broker's running figures as monitoring tools read them
//!   ([`Broker::runtime_figures`]).
//!
//! Answers are plain Rust values; where a service already answers in the wire's shape
//! (transactions, scheduled messages, slaves, clients, runtime settings, the traffic
//! history) that value is passed on as it is.

mod group_reads;
mod groups;
mod lite;
mod messages;
mod ops;
mod runtime;
mod status;
mod topics;
mod upserts;

pub use group_reads::{
    ClientVersion, ConsumerOffsetTable, GroupConnection, GroupConnections, GroupConsumeStats,
    GroupSubscription, QueueConsumeStats,
};
pub use groups::{GroupDescription, ListedGroup, OffsetReset, OffsetTarget, QueueMove};
pub use lite::{LiteGroupState, LiteTopicPage, LiteTopicState};
pub use messages::{DeadLetterRecord, MessageRecord, QueueRead, ResentLetter};
pub use ops::{EffectiveConfig, ScheduledListing};
pub use runtime::RuntimeFigures;
pub use status::{LinkView, LogOffsets, StatusSnapshot};
pub use topics::QueueState;
pub use upserts::{TopicUpsert, Upserted};

#[cfg(test)]
mod tests;

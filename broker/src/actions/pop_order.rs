//! What a consumer asks a pop for ([`PopOrder`]) and the order once the pop action
//! (`super::pop`) checked it ([`PopPlan`]), which both ways of popping take: a topic's
//! queues and a lite client's ready lite queues (`super::pop_lite`).

use crate::consume::MessageFilter;
use apogee_proto::group::GroupConfig;
use std::sync::Arc;
use std::time::Duration;

/// The queues of the topic a pop looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueChoice {
    /// This queue only; a queue the topic does not have is refused.
    Only(i64),
    /// Every queue, this one first (the first queue when the topic has no such queue).
    StartingAt(i64),
    /// Every queue, from one that turns with the time, so that no queue is always last.
    Turning,
}

/// What a consumer asks a pop for.
#[derive(Debug)]
pub struct PopOrder<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub queues: QueueChoice,
    pub filter: MessageFilter,
    /// Most messages to take: 1..=`limits::MAX_RECEIVE_BATCH`.
    pub batch: i64,
    /// How long a taken message stays invisible; `None` only with `auto_renew`, which then
    /// takes the broker's renewal period.
    pub invisible_ms: Option<i64>,
    /// A push consumer's pop: the broker renews the invisible time until the message is
    /// answered, at most `consume.max_auto_renew_ms`.
    pub auto_renew: bool,
    /// The client's id of this attempt: a repeat gets the same deliveries.
    pub attempt_id: Option<&'a str>,
    /// The popping client, owner of its auto-renewed deliveries and of its lite subscriptions.
    pub client_id: &'a str,
    /// How long to wait for a message when there is none (the transport has shortened it to
    /// its client's deadline); at most `limits::MAX_LONG_POLLING_MS` is held.
    pub wait: Duration,
}

/// A checked pop order with the group it pops for.
pub(super) struct PopPlan<'a> {
    pub order: &'a PopOrder<'a>,
    pub group: Arc<GroupConfig>,
    pub start_after_ms: Option<i64>,
    pub queues: Vec<u32>,
    pub invisible_ms: i64,
    pub auto_renew_ms: Option<i64>,
}

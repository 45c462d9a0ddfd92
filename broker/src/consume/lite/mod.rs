//! Lite topics on the consume side (RocketMQ's RIP-83): who subscribes which lite topic, and
//! which of a client's lite topics have something to hand out.
//!
//! A lite consumer group is bound to one LITE parent topic (`GroupConfig.lite`). Its clients
//! send SyncLiteSubscription (`crate::grpc::lite`) to name the lite topics they want; the
//! [`LiteRegistry`] keeps, per client, its set and a ready set ([`LiteClient`]), and per
//! (group, lite queue) its subscribers, registered as an append listener of that lite queue in
//! the store's wake-ups (`crate::store::wakeups`). An append to a subscribed lite queue marks
//! it ready for each subscriber and wakes that client's long polls through its one `Notify`:
//! no scan of all lite topics, no wake-up of every consumer of a parent. A ReceiveMessage of a
//! lite client on the parent (`crate::grpc::receive`) takes its ready lite queues round-robin
//! and pops each through the consume engine (topic = the lite queue, queue 0), which hands a
//! lite queue out as one message group: one delivery in flight, strictly in order
//! (`super::queue`). Acks and nacks mark the lite queue ready again; a delivery in flight
//! makes its subscribers look again when it comes due.
//!
//! Clients lose their subscriptions with COMPLETE_REMOVE, NotifyClientTermination, their
//! Telemetry stream with this broker closing, or no sync for `lite.subscription_idle_secs`.
//! In exclusive mode a new subscriber of a lite topic evicts the others of its group, which
//! are sent NotifyUnsubscribeLiteCommand on their Telemetry stream with this broker (a client
//! whose Telemetry stream is open elsewhere only is not told; the official Python client
//! 5.1.2 opens Telemetry with the brokers of its routes and ignores the command). An expired
//! lite topic leaves every set and its subscribers are told the same way.
//!
//! Memory is bounded by the subscriptions: a lite topic nobody subscribes has nothing here.

mod client;
mod position;
mod registry;
#[cfg(test)]
mod tests;

pub use client::{LiteClient, QueueName};
pub use registry::{
    LiteCounters, LiteRegistry, SessionCheck, SyncAction, SyncRequest, UnsubscribeNotifier,
};

/// Where a lite consumer group starts in a lite topic (the protocol's `OffsetOption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOffset {
    /// Where the group is; a group with no position there starts at the messages stored
    /// after the subscription (RocketMQ's LAST: keep the consumer offset, initialised at the
    /// queue's end).
    Last,
    /// The first message still stored.
    Min,
    /// The end: only messages stored from now on.
    Max,
    /// This queue offset (kept within what is stored).
    Offset(u64),
    /// N messages back from the group's position (from the end when it has none).
    TailN(u64),
    /// The first message stored at or after this time (Unix ms).
    Timestamp(i64),
}

impl StartOffset {
    /// The protocol's option; negative offsets and counts are refused.
    pub fn from_v2(
        option: &apogee_proto::v2::OffsetOption,
    ) -> Result<Option<StartOffset>, apogee_proto::ApogeeError> {
        use apogee_proto::v2::offset_option::{OffsetType, Policy};
        let bad = |what: &str, v: i64| {
            apogee_proto::ApogeeError::BadRequest(format!("offset_option {what} {v} is negative"))
        };
        Ok(match option.offset_type {
            None => None,
            Some(OffsetType::Policy(p)) => Some(match Policy::try_from(p) {
                Ok(Policy::Min) => StartOffset::Min,
                Ok(Policy::Max) => StartOffset::Max,
                _ => StartOffset::Last,
            }),
            Some(OffsetType::Offset(o)) if o < 0 => return Err(bad("offset", o)),
            Some(OffsetType::Offset(o)) => Some(StartOffset::Offset(o as u64)),
            Some(OffsetType::TailN(n)) if n < 0 => return Err(bad("tail_n", n)),
            Some(OffsetType::TailN(n)) => Some(StartOffset::TailN(n as u64)),
            Some(OffsetType::Timestamp(t)) => Some(StartOffset::Timestamp(t)),
        })
    }
}

//! Consumption: what each consumer group has been handed and what it has
//! acknowledged (RocketMQ 5 "pop" semantics, used by SimpleConsumer and by
//! push consumers alike).
//!
//! - [`state`]: the consume engine. Per (group, topic, queue) the next offset
//!   to hand out and the deliveries in flight, each invisible to the group
//!   until acked or until its invisible time and the group's backoff are
//!   over, when it is delivered again with its attempt raised. FIFO groups
//!   get one message per message group at a time, in queue order. Persisted
//!   in the index database (the values are `crate::store::values`'s, the keys
//!   `crate::store::keys`'s),
//!   so progress and in-flight deliveries survive restarts.
//! - `queue_state`: one queue's state, and reading it from its rows in the index.
//! - `queue`: a pop, and each queue's part of it (retries, FIFO turns).
//! - [`dead_letter`]: deliveries past the group's attempts go to `%DLQ%<group>`.
//! - [`background`]: the task that renews auto-renew deliveries and
//!   dead-letters expired ones.
//! - [`clients`]: which clients are alive (auto-renew deliveries follow them).
//! - `reload`: re-reading queues and the receipt secret from the index (a slave following
//!   its master's replicated state, a master adopting a slave's handback).
//! - [`long_poll`]: the wait of ReceiveMessage and PullMessage for something to hand out.
//! - [`pull`]: reading a queue from a consumer's own offset (gRPC PullMessage, remoting
//!   PULL_MESSAGE); [`offsets`]: the offsets such consumers commit, a queue's bounds by time.
//! - [`reset`]: moving a group's position in a queue (reset-offset).
//! - [`lag`]: how far behind a group is in every queue of the topics it consumes,
//!   including the queues it never received from (counted from where it would start).
//! - [`receipt`]: signed receipt handles naming one delivery.
//! - [`filter`]: tag and SQL92 filters.
//! - [`lite`]: lite topics' subscriptions and per-client ready sets (RIP-83).

pub mod background;
pub mod clients;
pub mod dead_letter;
pub mod filter;
pub mod lag;
pub mod lite;
pub mod long_poll;
pub mod offsets;
pub mod priority;
pub mod pull;
mod queue;
mod queue_state;
pub mod receipt;
mod reload;
pub mod reset;
pub mod state;

pub use filter::MessageFilter;
pub use lag::QueueLag;
pub use receipt::{Receipt, ReceiptSigner};
pub use state::{ConsumeEngine, Delivery, Expired, PopRequest, QueueProgress, ServingGate};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_groups;
#[cfg(test)]
mod tests_lag;

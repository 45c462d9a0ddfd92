//! Consumption: what each consumer group has been handed and what it has
//! acknowledged (RocketMQ 5 "pop" semantics, used by SimpleConsumer and by
//! push consumers alike).
//!
//! - [`state`]: per (group, topic, queue) the next offset to hand out and the
//!   deliveries in flight, each invisible to the group until acked or until
//!   its invisible duration ends, when it is delivered again with its
//!   delivery attempt raised. Persisted in the index database, so acked
//!   progress and in-flight deliveries survive restarts.
//! - [`receipt`]: signed receipt handles naming one delivery.
//! - [`filter`]: tag filters.

pub mod filter;
pub mod receipt;
pub mod state;

pub use filter::TagFilter;
pub use receipt::{Receipt, ReceiptSigner};
pub use state::{ConsumeEngine, Delivery, PopRequest};

#[cfg(test)]
mod tests;

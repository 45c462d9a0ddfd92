//! apogee-client: Apogee's Rust client, speaking the RocketMQ 5 gRPC
//! protocol (`apache.rocketmq.v2`) to NameServers (routes, settings) and
//! brokers (send, receive, ack).
//!
//! - [`Producer`]: sends single messages and same-topic batches, picking
//!   writable queues round-robin and retrying on another broker.
//! - [`Transaction`]: a transactional send (one half message, then commit
//!   or rollback); a [`TransactionChecker`] registered with
//!   [`ProducerBuilder::transaction_checker`] answers the brokers'
//!   check-backs. See [`transaction`].
//! - [`SimpleConsumer`]: receives, acks and changes the invisible duration
//!   of messages for a consumer group.
//! - [`PushConsumer`]: hands each message of its subscriptions to a
//!   listener with bounded concurrency; acks on success, nacks with the
//!   group's backoff on failure, renews invisibility for slow handlers,
//!   keeps message-group order in FIFO mode, and shuts down gracefully.
//! - [`LiteSimpleConsumer`] and [`LitePushConsumer`]: consumers of lite topics under one
//!   LITE parent topic, subscribed one by one (see [`lite_consumer`]).
//! - [`ClientConfig`] and [`ClientError`]: configuration and errors; [`ClientTls`]: TLS to
//!   the servers (`ClientConfig::with_tls`).
//! - [`transport`]: channels, request metadata and address helpers, also
//!   useful for other gRPC services (the admin CLI uses them).
//!
//! ```no_run
//! # async fn demo() -> apogee_client::Result<()> {
//! use apogee_client::{ClientConfig, Message, Producer};
//! let producer = Producer::connect(ClientConfig::new("127.0.0.1:9876")).await?;
//! let receipt = producer.send(Message::builder("orders", "hello").tag("new").build()).await?;
//! println!("{} stored at offset {}", receipt.message_id, receipt.offset);
//! # Ok(()) }
//! ```

mod access_point;
pub mod config;
mod consumer;
mod core;
pub mod end_on_data;
pub mod error;
pub mod lite_consumer;
mod message;
mod producer;
mod push_consumer;
mod remoting;
pub mod route;
mod telemetry;
pub mod transaction;
pub mod transport;

pub use access_point::{FailoverChannel, Unreachable};
pub use apogee_proto::tls::ClientTls;
pub use config::{ClientConfig, SendTransport};
pub use consumer::{GroupCreated, SimpleConsumer};
pub use error::{ClientError, Result};
pub use lite_consumer::{LiteOffset, LiteSimpleConsumer, LiteSimpleConsumerBuilder};
pub use message::{FilterExpression, FilterKind, Message, MessageBuilder, ReceivedMessage};
pub use producer::{Producer, ProducerBuilder, SendReceipt};
pub use push_consumer::{
    BackoffPolicy, ConsumeResult, LitePushConsumer, LitePushConsumerBuilder, PushConsumer,
    PushConsumerBuilder,
};
pub use transaction::{
    Transaction, TransactionCheck, TransactionChecker, TransactionReceipt, TransactionResolution,
};

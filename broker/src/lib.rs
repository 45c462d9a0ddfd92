//! apogee-broker: a RocketMQ-style broker.
//!
//! - [`store`]: the commit log (segment files, the truth) and its RocksDB
//!   index (consume queues, ids, keys, offsets, configs), with recovery.
//! - [`topics`]: the topics this broker group hosts, each a [`topic_config::TopicConfig`];
//!   [`groups`]: its consumer groups.
//! - [`consume`]: consumer groups' progress (pop / ack / invisible time).
//! - [`produce`]: the producer side: a send's validation, admission, routing and append.
//! - [`txn`]: transactional (half) messages; [`schedule`]: scheduled delivery.
//! - [`v2_message`]: stored messages as the v2 messages clients receive.
//! - [`dead_letters`]: a group's dead-letter topic, read and resent by operators.
//! - [`actions`]: the broker's actions (pop, pull, ...), one per thing a client asks for,
//!   whatever the transport; every rule of an action lives behind it.
//! - [`grpc`]: the client protocol (`apache.rocketmq.v2`) and admin service.
//! - [`remoting`]: the same services for RocketMQ's remoting clients (4.x);
//!   [`remoting_state`]: the remoting clients' table and queue locks the broker holds.
//! - [`metrics`]: the Prometheus metrics and readiness of the operations endpoint.
//! - [`membership`]: the broker's role (master, slave, fenced), master epoch and lease;
//!   `handover`: when a master hands its role over (SIGTERM, an operator's switch).
//! - [`quotas`]: send rates per client and topic, the cap on waiting receives.
//! - [`registration`]: registration with the NameServers.
//! - [`replication`]: master/slave replication of the log and the consume state.
//! - [`runtime_config`]: the allow-list of settings changed while running.
//! - [`services`]: the composition root, [`Broker`], and the one function building its
//!   services; [`server`]: the steps of running a broker; [`config`]: the configuration.

pub mod access;
pub mod actions;
pub mod config;
pub mod consume;
pub mod dead_letters;
pub mod failover_link;
pub mod groups;
pub mod grpc;
mod handover;
pub mod lite_topics;
pub mod membership;
pub mod metrics;
pub mod produce;
pub mod quotas;
pub mod registration;
pub mod remoting;
pub mod remoting_state;
pub mod replication;
pub mod runtime_config;
pub mod schedule;
pub mod server;
pub mod services;
pub mod store;
pub mod tier;
pub mod topic_config;
pub mod topics;
pub mod txn;
pub mod v2_message;

pub use config::BrokerConfig;
pub use server::{serve, serve_with, StartOptions};
pub use services::{Broker, BrokerError};

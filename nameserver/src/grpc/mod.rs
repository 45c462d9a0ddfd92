//! The NameServer's gRPC services: [`registry`] (brokers register and
//! keep a [`broker_session`]), [`admin`] (administration passed on to brokers) and
//! [`access_point`] (the RocketMQ 5 clients' MessagingService subset), plus
//! [`route`], which turns the broker table into protocol queues, and
//! [`transactions`] and [`schedule`], which route transaction and scheduled-message calls to
//! the broker holding them (over [`brokers`]), and [`lite`], which forwards lite
//! subscriptions to the master hosting their parent topic; [`admin_topics`] changes topics,
//! [`admin_messages`] answers message queries and dead-letter operations by asking the
//! brokers, [`admin_groups`] fans consumer-group operations out to them, [`admin_controller`]
//! answers the embedded controller's status and planned elections, [`admin_traffic`] adds
//! up the brokers' traffic histories. Every call to
//! several brokers goes through [`fan_out`].

pub mod access_point;
pub mod admin;
pub mod admin_access;
pub mod admin_controller;
pub mod admin_groups;
pub mod admin_messages;
pub mod admin_ops;
pub mod admin_topics;
pub mod admin_traffic;
pub mod broker_session;
pub mod brokers;
pub mod fan_out;
pub mod lite;
pub mod registry;
pub mod route;
pub mod schedule;
pub mod transactions;

pub use access_point::AccessPoint;
pub use admin::AdminService;
pub use brokers::BrokerChannels;
pub use registry::RegistryService;

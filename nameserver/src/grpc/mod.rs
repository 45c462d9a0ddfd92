//! The NameServer's gRPC services: [`registry`] (brokers register and
//! heartbeat), [`admin`] (topic administration fanned out to brokers) and
//! [`access_point`] (the RocketMQ 5 clients' MessagingService subset), plus
//! [`route`], which turns the broker table into protocol queues, and
//! [`transactions`], which routes transaction calls to the broker holding them.

pub mod access_point;
pub mod admin;
pub mod registry;
pub mod route;
pub mod transactions;

pub use access_point::AccessPoint;
pub use admin::AdminService;
pub use registry::RegistryService;

//! apogee-admin: the admin library the `apogee` CLI (apogee-tools) and the web console
//! (apogee-console) both call. Typed calls to a NameServer's Registry and Admin services and
//! the client library's producer and consumer, taking plain option structs and returning
//! serializable rows; no command line here (the CLI's arguments are turned into these
//! structs in apogee-tools).
//!
//! - [`admin`]: the [`admin::Admin`] connection, topics and the cluster; [`views`]: their
//!   rows; [`topic_status`]: per queue of a topic.
//! - [`broker_status`]: a broker's status and the replication columns of the cluster list,
//!   asked of the brokers; [`replication_view`]: their rows.
//! - [`controller`]: the NameServers' controller of automatic failover (status, planned
//!   elections).
//! - [`traffic`]: messages in and out per topic and group over the last hour; [`clients`]:
//!   the connected producers and consumers.
//! - [`group`]: consumer groups (create, update, delete, list, describe, lag);
//!   [`group_views`]: their rows; [`reset_offset`]: moving a group's offsets.
//! - [`lite`]: a LITE parent's lite topics.
//! - [`txn`]: listing and resolving transactions.
//! - [`schedule`]: scheduled sends, recalls and the waiting messages.
//! - [`message_query`]: messages by id, key or queue offset; [`dlq`]: dead letters.
//! - [`access`]: users and ACL entries.
//! - [`messaging`]: sending (plain and transactional) and consuming.
//! - [`output`]: tables and JSON.
//! - [`spelling`]: the enums named in words (a permission, a topic type, a format ...).
//! - [`duration`]: the one parser of durations ("1500ms", "30s", "5m").
//! - [`error`]: the error type and its exit codes.

pub mod access;
pub mod admin;
pub mod broker_status;
pub mod clients;
pub mod controller;
pub mod dlq;
pub mod duration;
pub mod error;
pub mod group;
pub mod group_views;
pub mod lite;
pub mod message_query;
pub mod messaging;
pub mod output;
pub mod replication_view;
pub mod reset_offset;
pub mod schedule;
pub mod spelling;
pub mod tier;
pub mod topic_status;
pub mod traffic;
pub mod txn;
pub mod views;

pub use error::{ToolError, ToolResult};

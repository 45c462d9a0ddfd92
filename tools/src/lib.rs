//! apogee-tools: the admin library behind the `apogee` CLI.
//!
//! - [`admin`]: topic and cluster administration over a NameServer's
//!   Registry and Admin services.
//! - [`broker_status`]: `broker status` and the replication columns of `cluster list`,
//!   asked of the brokers; [`replication_view`]: their rows.
//! - [`broker_config`]: `broker config get|set`, asked of a broker.
//! - [`controller`]: `controller status` and `broker elect`, asked of the NameServers'
//!   controller of automatic failover.
//! - [`clients`]: `clients list`, the connected producers and consumers.
//! - [`traffic`]: `stats traffic`, messages in and out per topic and group over the last
//!   hour.
//! - [`reset_offset`]: `group reset-offset` (a dry-run plan unless `--execute`).
//! - [`txn`]: listing and resolving transactions (`apogee txn ...`).
//! - [`schedule`]: scheduled sends, `message recall` and `schedule list`.
//! - [`message_query`]: `message get|find|print`; [`dlq`]: `dlq list|resend`.
//! - [`group`]: consumer groups (`group create|update|delete|list|describe`).
//! - [`access`]: users and ACL entries (`user create|update|delete|list`,
//!   `acl grant|revoke|list`).
//! - [`messaging`]: `send` (plain and transactional) and `consume` over the
//!   client library; [`lite_consume`]: `consume --lite-topic`.
//! - [`bench`]: `apogee bench produce` and `bench consume` load generators.
//! - [`config_import`]: `config import`, a RocketMQ broker.conf into broker TOML;
//!   [`rocketmq_state`]: `config import-state`, a RocketMQ broker's topics, groups, offsets and
//!   accounts onto a running cluster (a plan, then `--apply`).
//! - [`output`]: tables and JSON; [`views`]: the admin result rows.
//! - [`credentials`]: the global credential flags every request is signed with.
//! - [`tls_args`]: the global TLS flags every connection uses (and the hint when a
//!   plain-text run meets a TLS server).
//! - [`duration`]: the one parser of every duration flag.
//! - [`cli`]: the clap definitions and the command dispatcher; [`cli_messaging`]: the
//!   arguments of `send` and `consume`; [`mqadmin`]: mqadmin's command names and short
//!   options, rewritten into Apogee's.

pub mod access;
pub mod admin;
pub mod bench;
pub mod broker_config;
pub mod broker_status;
pub mod cli;
pub mod cli_messaging;
pub mod clients;
pub mod config_import;
pub mod controller;
pub mod credentials;
pub mod dlq;
pub mod duration;
pub mod error;
pub mod group;
pub mod group_views;
pub mod lite;
pub mod lite_consume;
pub mod message_query;
pub mod messaging;
pub mod mqadmin;
pub mod output;
pub mod replication_view;
pub mod reset_offset;
pub mod rocketmq_state;
pub mod schedule;
pub mod tls_args;
pub mod topic_status;
pub mod traffic;
pub mod txn;
pub mod views;

pub use error::{ToolError, ToolResult};

//! apogee-tools: the `apogee` CLI over the admin library (apogee-admin): its arguments, their
//! conversion into the library's option structs, the command dispatch and the benchmarks.
//!
//! - [`cli`]: the clap definitions and the command dispatcher; [`cli_messaging`]: the
//!   arguments of `send` and `consume`; [`mqadmin`]: mqadmin's command names and short
//!   options, rewritten into Apogee's.
//! - [`cli_group`]: `group ...` (with `reset-offset`); [`cli_access`]: `user ...` and
//!   `acl ...`; [`cli_cluster`]: `broker ...` and `controller ...`; [`cli_message`]:
//!   `message get|find|print`; [`cli_dlq`]: `dlq list|resend`; [`cli_stats`]:
//!   `stats traffic`; [`rolling_restart`] and [`rolling_restart_run`]: `cluster
//!   rolling-restart`, its plan and its run.
//! - [`broker_config`]: `broker config get|set`, asked of a broker.
//! - [`consume`]: `consume`, receiving and printing; [`cli_clients`]: `clients list`; [`cli_lite`]: `lite list|describe`; [`lite_consume`]:
//!   `consume --lite-topic`.
//! - [`bench`]: `apogee bench produce` and `bench consume` load generators.
//! - [`config_import`]: `config import`, a RocketMQ broker.conf into broker TOML;
//!   [`rocketmq_state`]: `config import-state`, a RocketMQ broker's topics, groups, offsets and
//!   accounts onto a running cluster (a plan, then `--apply`).
//! - [`credentials`]: the global credential flags every request is signed with.
//! - [`tls_args`]: the global TLS flags every connection uses (and the hint when a
//!   plain-text run meets a TLS server).
//! - [`spelled_arg`]: flags taking one of the admin library's named enums.
//!
//! The admin library's modules the commands use are re-exported under their own names.

pub use apogee_admin::{
    admin, broker_status, controller, duration, error, group, message_query, messaging, output,
    schedule, tier,
};

pub mod bench;
pub mod broker_config;
pub mod cli;
pub mod cli_access;
pub mod cli_clients;
pub mod cli_cluster;
pub mod cli_dlq;
pub mod cli_group;
pub mod cli_lite;
pub mod cli_message;
pub mod cli_messaging;
pub mod cli_stats;
pub mod config_import;
pub mod consume;
pub mod credentials;
pub mod lite_consume;
pub mod mqadmin;
pub mod rocketmq_state;
pub mod rolling_restart;
pub mod rolling_restart_run;
pub mod spelled_arg;
pub mod tls_args;

pub use error::{ToolError, ToolResult};

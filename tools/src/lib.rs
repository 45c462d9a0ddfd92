//! apogee-tools: the admin library behind the `apogee` CLI.
//!
//! - [`admin`]: topic and cluster administration over a NameServer's
//!   Registry and Admin services.
//! - [`txn`]: listing and resolving transactions (`apogee txn ...`).
//! - [`schedule`]: scheduled sends, `message recall` and `schedule list`.
//! - [`messaging`]: `send` (plain and transactional) and `consume` over the
//!   client library.
//! - [`bench`]: the produce benchmark (plain or transactional).
//! - [`output`]: tables and JSON; [`views`]: the admin result rows.
//! - [`cli`]: the clap definitions and the command dispatcher.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod error;
pub mod messaging;
pub mod output;
pub mod schedule;
pub mod txn;
pub mod views;

pub use error::{ToolError, ToolResult};

//! Check-backs to producers of other protocols: the checker asks a live gRPC producer over
//! Telemetry itself; a transport that knows other producers (the remoting protocol's
//! producer groups) plugs in a [`ProducerCheckBack`] with
//! [`Transactions::set_producer_check_back`](super::Transactions::set_producer_check_back),
//! so this domain code names no transport.

use crate::store::StoredMessage;

/// One check-back to push.
#[derive(Clone, Copy, Debug)]
pub struct CheckBack<'a> {
    pub transaction_id: &'a str,
    /// The half message as it would be published: its real topic and queue, with the half
    /// record's commit-log and queue offsets.
    pub message: &'a StoredMessage,
    /// The producer group the message names (its `PGROUP` property).
    pub producer_group: &'a str,
    /// The client id that sent the half message (preferred when it is still connected).
    pub preferred_producer: &'a str,
}

/// Pushes a check-back to a live producer of a group; returns who was asked, `None` when no
/// producer of the group is reachable.
pub trait ProducerCheckBack: Send + Sync {
    fn check_back(&self, check: &CheckBack<'_>) -> Option<String>;
}

//! [`Broker::end_transaction`]: a producer's commit or rollback of a half message this broker
//! holds, or its answer to a check-back (gRPC EndTransaction, remoting END_TRANSACTION),
//! whichever transport it came over. The work is the transactions service's
//! (`crate::txn`); the rules around it live here, once:
//!
//! - **Which transaction** an ending names: its transaction id when that is one of this
//!   broker's (the send's answer carries it over both transports, and RocketMQ's Java client
//!   and its Rust port send it back after a send and after a check-back alike); otherwise the
//!   half message at the commit-log offset the request gives (remoting's `commitLogOffset`,
//!   the offset message id of the send's answer); otherwise INVALID_TRANSACTION_ID.
//! - **The serving gate first**: a broker that may not end transactions now (controller mode
//!   without the lease) refuses before it looks the transaction up, as RocketMQ's broker
//!   answers a slave's END_TRANSACTION before anything else. The remoting handler used to
//!   look the transaction up first; both transports now follow RocketMQ's order.
//! - **Permission**: the caller must be allowed to publish to the transaction's real topic.
//!   The remoting handler checked that topic; gRPC checked only the topic the request named
//!   (which may be empty). Both now check the transaction's own topic, as RocketMQ checks the
//!   topic of the message it ends.
//! - **What the request names** must be the transaction's: a topic or a message id it names
//!   (gRPC's `topic` and `message_id`; remoting names neither: RocketMQ's broker does not
//!   check its `msgId`, which clients fill with an id of their own).
//! - **Who ends it**: a check-back's answer (gRPC source SERVER_CHECK, remoting
//!   `fromTransactionCheck`) or the producer, recorded with the outcome.
//!
//! The outcome rules (a repeat answers OK with no second record, the opposite outcome is
//! PRECONDITION_FAILED, "unknown" changes nothing), the replication wait and the commit and
//! rollback counts of the metrics are the transactions service's.

use crate::services::Broker;
use crate::store::record::internal;
use crate::txn::{EndRequest, Resolution, ResolvedBy};
use apogee_proto::cluster::TransactionInfo;
use apogee_proto::{names, txn_id, ApogeeError};

/// What an ending asks for, as either transport decoded it.
#[derive(Clone, Copy, Debug)]
pub struct TransactionEnding<'a> {
    /// The transaction id the request names ("" when it names none).
    pub transaction_id: &'a str,
    /// The commit-log offset of the half message, where the request gives one (remoting's
    /// `commitLogOffset`); looked at only when the id is not one of this broker's.
    pub half_log_offset: Option<u64>,
    /// The real topic the request names; checked when not empty.
    pub topic: &'a str,
    /// The message id the request names; checked when not empty.
    pub message_id: &'a str,
    pub resolution: Resolution,
    /// The answer to a check-back, not the producer's own ending.
    pub from_check: bool,
}

impl Broker {
    /// Ends the transaction `ending` names once `authorize` allows the caller to publish to
    /// its real topic (the module doc has the rules); returns the transaction as it stands
    /// afterwards.
    pub async fn end_transaction(
        &self,
        ending: &TransactionEnding<'_>,
        authorize: impl FnOnce(&str) -> Result<(), ApogeeError>,
    ) -> Result<TransactionInfo, ApogeeError> {
        let ended = async {
            self.txns().check_gate()?;
            let id = self.transaction_named(ending)?;
            authorize(&self.txns().topic_of(&id)?)?;
            self.txns()
                .end(EndRequest {
                    transaction_id: &id,
                    topic: ending.topic,
                    message_id: ending.message_id,
                    resolution: ending.resolution,
                    by: if ending.from_check {
                        ResolvedBy::CheckBack
                    } else {
                        ResolvedBy::Producer
                    },
                })
                .await
        }
        .await;
        if let Err(e) = &ended {
            tracing::debug!(error = %e, ?ending, "an ending of a transaction refused");
        }
        ended
    }

    /// The id of the transaction `ending` names (see the module doc).
    fn transaction_named(&self, ending: &TransactionEnding<'_>) -> Result<String, ApogeeError> {
        let broker_name = self.config().broker_name.as_str();
        let id = ending.transaction_id;
        if !id.is_empty() && txn_id::broker_of(id) == Some(broker_name) {
            return Ok(id.to_string());
        }
        if let Some(offset) = ending.half_log_offset {
            let half = self.message_at(offset)?;
            let named = half
                .as_ref()
                .filter(|h| h.msg.topic == names::HALF_TOPIC)
                .and_then(|h| h.msg.internal(internal::TXN_ID));
            if let Some(id) = named {
                return Ok(id.to_string());
            }
        }
        Err(ApogeeError::InvalidTransactionId(
            match ending.half_log_offset {
                None if id.is_empty() => "a transaction id is required".to_string(),
                None => format!("{id:?} is not a transaction of broker {broker_name}"),
                Some(offset) => format!(
                    "neither the transaction id {id:?} nor the commit-log offset {offset} names a \
                 transaction of broker {broker_name}"
                ),
            },
        ))
    }
}

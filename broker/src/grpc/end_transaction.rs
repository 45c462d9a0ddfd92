//! EndTransaction: a producer's (or a check-back answer's) commit or rollback of a half
//! message this broker holds, decoded for the end-transaction action
//! ([`Broker::end_transaction`], which has the rules).

use crate::actions::TransactionEnding;
use crate::services::Broker;
use crate::txn::Resolution;
use apogee_proto::auth::acl::{authorize, Action, ResourceKind};
use apogee_proto::v2::{self, TransactionResolution, TransactionSource};
use apogee_proto::ApogeeError;
use tonic::Request;

/// Ends the transaction `request` names; its caller must be allowed to publish to the
/// transaction's topic.
pub async fn end(
    broker: &Broker,
    request: &Request<v2::EndTransactionRequest>,
) -> Result<(), ApogeeError> {
    let req = request.get_ref();
    let resolution = match TransactionResolution::try_from(req.resolution) {
        Ok(TransactionResolution::Commit) => Resolution::Commit,
        Ok(TransactionResolution::Rollback) => Resolution::Rollback,
        // What clients send for "still unknown" (some send nothing at all).
        Ok(TransactionResolution::Unspecified) => Resolution::Unknown,
        Err(_) => {
            return Err(ApogeeError::BadRequest(format!(
                "unknown transaction resolution {}",
                req.resolution
            )))
        }
    };
    let ending = TransactionEnding {
        transaction_id: &req.transaction_id,
        half_log_offset: None,
        topic: req.topic.as_ref().map_or("", |t| t.name.as_str()),
        message_id: &req.message_id,
        resolution,
        from_check: req.source == TransactionSource::SourceServerCheck as i32,
    };
    let may_publish =
        |topic: &str| authorize(request, &[(ResourceKind::Topic, topic)], Action::Pub);
    broker
        .end_transaction(&ending, may_publish)
        .await
        .map(|_| ())
}

//! EndTransaction: a producer's (or a check-back answer's) commit or rollback of a half
//! message this broker holds. The work is `crate::txn`; this maps the request onto it.

use crate::services::Broker;
use crate::txn::{EndRequest, Resolution, ResolvedBy};
use apogee_proto::v2::{self, TransactionResolution, TransactionSource};
use apogee_proto::ApogeeError;

pub async fn end(broker: &Broker, req: v2::EndTransactionRequest) -> Result<(), ApogeeError> {
    if req.transaction_id.is_empty() {
        return Err(ApogeeError::InvalidTransactionId(
            "transaction_id is required".into(),
        ));
    }
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
    let by = match TransactionSource::try_from(req.source) {
        Ok(TransactionSource::SourceServerCheck) => ResolvedBy::CheckBack,
        _ => ResolvedBy::Producer,
    };
    broker
        .txns()
        .end(EndRequest {
            transaction_id: &req.transaction_id,
            topic: req.topic.as_ref().map_or("", |t| t.name.as_str()),
            message_id: &req.message_id,
            resolution,
            by,
        })
        .await
        .map(|_| ())
}

//! Transactions seen from a NameServer. It keeps no transaction state: a transaction id names
//! the broker group holding the half message (`apogee_proto::txn_id`), so an EndTransaction
//! sent to the access point (some official clients send it there, and check-back answers of
//! the Rust client go there) is forwarded to that group's live master, and so is an operator's
//! resolve. Listing asks every group's master and merges the answers.

use super::brokers::{master_of, BrokerChannels};
use super::fan_out::{every_master, fan_out};
use crate::registry::Registry;
use apogee_proto::cluster::{
    ListTransactionsRequest, ResolveTransactionRequest, ResolveTransactionResponse, TransactionInfo,
};
use apogee_proto::v2::{EndTransactionRequest, EndTransactionResponse};
use apogee_proto::{txn_id, ApogeeError};
use tonic::Status;

/// The live master of the broker group that holds `transaction_id`.
pub fn master_for(registry: &Registry, transaction_id: &str) -> Result<String, ApogeeError> {
    let broker = txn_id::broker_of(transaction_id).ok_or_else(|| {
        ApogeeError::InvalidTransactionId(format!(
            "{transaction_id:?} is not a transaction id issued by an Apogee broker"
        ))
    })?;
    master_of(registry, broker, &format!("transaction {transaction_id}"))
}

/// Forwards an EndTransaction to the broker that holds the half message; the answer is that
/// broker's status.
pub async fn forward_end(
    registry: &Registry,
    channels: &BrokerChannels,
    req: EndTransactionRequest,
) -> Result<EndTransactionResponse, ApogeeError> {
    let master = master_for(registry, &req.transaction_id)?;
    tracing::debug!(txn = %req.transaction_id, broker = %master, "forwarding EndTransaction");
    let mut client = channels.messaging(&master)?;
    channels
        .bounded(&master, client.end_transaction(req))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| ApogeeError::Unavailable(format!("broker {master}: {}", e.message())))
}

/// An operator's resolve, sent to the broker that holds the transaction.
pub async fn resolve(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ResolveTransactionRequest,
) -> Result<ResolveTransactionResponse, Status> {
    let master = master_for(registry, &req.transaction_id)?;
    let mut client = channels.admin(&master)?;
    let answer = channels.bounded(&master, client.resolve_transaction(req));
    Ok(answer.await?.into_inner())
}

/// Every live master's transactions, merged (oldest first). Fails naming the groups that could
/// not answer, so an operator never mistakes a partial list for the whole.
pub async fn list(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ListTransactionsRequest,
) -> Result<Vec<TransactionInfo>, Status> {
    let answers = fan_out(
        channels,
        every_master(registry),
        "ListTransactions",
        |mut c| {
            let req = req.clone();
            async move { c.list_transactions(req).await }
        },
    )
    .await
    .answers()?;
    let mut all: Vec<TransactionInfo> = answers
        .into_iter()
        .flat_map(|(_, r)| r.transactions)
        .collect();
    all.sort_by(|a, b| {
        (a.store_timestamp_ms, &a.transaction_id).cmp(&(b.store_timestamp_ms, &b.transaction_id))
    });
    Ok(all)
}

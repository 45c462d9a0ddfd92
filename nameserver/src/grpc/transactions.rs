//! Transactions seen from a NameServer. It keeps no transaction state: a transaction id names
//! the broker group holding the half message (`apogee_proto::txn_id`), so an EndTransaction
//! sent to the access point (some official clients send it there, and check-back answers of
//! the Rust client go there) is forwarded to that group's live master, and so is an operator's
//! resolve. Listing asks every group's master and merges the answers.

use crate::endpoint;
use crate::registry::Registry;
use apogee_proto::cluster::admin_client::AdminClient;
use apogee_proto::cluster::{
    ListTransactionsRequest, ResolveTransactionRequest, ResolveTransactionResponse, TransactionInfo,
};
use apogee_proto::v2::messaging_service_client::MessagingServiceClient;
use apogee_proto::v2::{EndTransactionRequest, EndTransactionResponse};
use apogee_proto::{limits, txn_id, ApogeeError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Status;

/// How long a forwarded call may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Channels to brokers, reused across forwarded calls (a channel reconnects by itself).
#[derive(Default)]
pub struct BrokerChannels {
    by_endpoint: Mutex<HashMap<String, Channel>>,
}

impl BrokerChannels {
    pub fn channel(&self, broker_endpoint: &str) -> Result<Channel, ApogeeError> {
        if let Some(c) = self.by_endpoint.lock().get(broker_endpoint) {
            return Ok(c.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(endpoint::uri(broker_endpoint))
            .map_err(|e| {
                ApogeeError::Internal(format!("bad broker endpoint {broker_endpoint}: {e}"))
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FORWARD_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        self.by_endpoint
            .lock()
            .insert(broker_endpoint.to_string(), channel.clone());
        Ok(channel)
    }
}

/// The live master of the broker group that holds `transaction_id`.
pub fn master_for(registry: &Registry, transaction_id: &str) -> Result<String, ApogeeError> {
    let broker = txn_id::broker_of(transaction_id).ok_or_else(|| {
        ApogeeError::InvalidTransactionId(format!(
            "{transaction_id:?} is not a transaction id issued by an Apogee broker"
        ))
    })?;
    registry
        .admin_targets("")
        .into_iter()
        .find(|t| t.group.broker_name == broker)
        .and_then(|t| t.master_endpoint)
        .ok_or_else(|| {
            ApogeeError::Unavailable(format!(
                "broker group {broker}, which holds transaction {transaction_id}, has no live master"
            ))
        })
}

/// Forwards an EndTransaction to the broker that holds the half message; the answer is that
/// broker's status.
pub async fn forward_end(
    registry: &Registry,
    channels: &BrokerChannels,
    req: EndTransactionRequest,
) -> Result<EndTransactionResponse, ApogeeError> {
    let master = master_for(registry, &req.transaction_id)?;
    let mut client = MessagingServiceClient::new(channels.channel(&master)?);
    tracing::debug!(txn = %req.transaction_id, broker = %master, "forwarding EndTransaction");
    client
        .end_transaction(req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| ApogeeError::Unavailable(format!("broker {master}: {}", e.message())))
}

fn admin(channels: &BrokerChannels, master: &str) -> Result<AdminClient<Channel>, ApogeeError> {
    Ok(AdminClient::new(channels.channel(master)?)
        .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES))
}

/// An operator's resolve, sent to the broker that holds the transaction.
pub async fn resolve(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ResolveTransactionRequest,
) -> Result<ResolveTransactionResponse, Status> {
    let master = master_for(registry, &req.transaction_id)?;
    Ok(admin(channels, &master)?
        .resolve_transaction(req)
        .await?
        .into_inner())
}

/// Every live master's transactions, merged (oldest first). Fails naming the groups that could
/// not answer, so an operator never mistakes a partial list for the whole.
pub async fn list(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ListTransactionsRequest,
) -> Result<Vec<TransactionInfo>, Status> {
    let masters: Vec<(String, String)> = registry
        .admin_targets("")
        .into_iter()
        .filter_map(|t| t.master_endpoint.map(|e| (t.group.broker_name, e)))
        .collect();
    let calls = masters.iter().map(|(name, endpoint)| {
        let req = req.clone();
        async move {
            let result = match admin(channels, endpoint) {
                Ok(mut client) => client.list_transactions(req).await.map(|r| r.into_inner()),
                Err(e) => Err(e.into()),
            };
            (name, result)
        }
    });
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for (name, result) in futures::future::join_all(calls).await {
        match result {
            Ok(r) => all.extend(r.transactions),
            Err(e) => failed.push(format!("{name}: {}", e.message())),
        }
    }
    if !failed.is_empty() {
        return Err(Status::unavailable(format!(
            "could not list the transactions of {}",
            failed.join("; ")
        )));
    }
    all.sort_by(|a, b| {
        (a.store_timestamp_ms, &a.transaction_id).cmp(&(b.store_timestamp_ms, &b.transaction_id))
    });
    Ok(all)
}

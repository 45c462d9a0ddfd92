//! Calls from a NameServer to brokers, shared by everything it routes or fans out without
//! keeping state: reusable channels, the live master of a group named by a routed id
//! (`apogee_proto::routed_id`: transaction ids, recall handles), and "ask every master, merge
//! the answers".

use crate::registry::{GroupKey, Registry};
use apogee_proto::auth::cluster_calls::{ClusterSigner, SignedChannel};
use apogee_proto::cluster::admin_client::AdminClient;
use apogee_proto::tls::{self, ClientTls};
use apogee_proto::v2::messaging_service_client::MessagingServiceClient;
use apogee_proto::{limits, ApogeeError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// How long a forwarded call may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Channels to brokers, reused across forwarded calls (a channel reconnects by itself).
#[derive(Default)]
pub struct BrokerChannels {
    by_endpoint: Mutex<HashMap<String, Channel>>,
    /// Signs every call with the cluster proof (brokers checking credentials admit it).
    signer: ClusterSigner,
    /// TLS to the brokers (`tls.ca_file`, and this server's certificate with
    /// `tls.cluster_mtls`); none: plain text.
    tls: Option<ClientTls>,
}

impl BrokerChannels {
    /// Channels whose calls carry the proof of `secret` (none without one), over TLS with
    /// `tls` (none: plain text).
    pub fn new(
        secret: Option<apogee_proto::cluster_auth::ClusterSecret>,
        tls: Option<ClientTls>,
    ) -> Self {
        BrokerChannels {
            signer: ClusterSigner::new(secret),
            tls,
            ..BrokerChannels::default()
        }
    }

    /// The endpoint of a broker, with this server's TLS settings.
    pub fn endpoint(&self, broker_endpoint: &str) -> Result<Endpoint, ApogeeError> {
        tls::endpoint(broker_endpoint, self.tls.as_ref())
            .map_err(|e| ApogeeError::Internal(format!("bad broker endpoint: {e}")))
    }

    pub fn channel(&self, broker_endpoint: &str) -> Result<Channel, ApogeeError> {
        if let Some(c) = self.by_endpoint.lock().get(broker_endpoint) {
            return Ok(c.clone());
        }
        let channel = self
            .endpoint(broker_endpoint)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FORWARD_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        self.by_endpoint
            .lock()
            .insert(broker_endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    /// What signs the calls of these channels.
    pub fn signer(&self) -> &ClusterSigner {
        &self.signer
    }

    /// The MessagingService of a broker.
    pub fn messaging(
        &self,
        endpoint: &str,
    ) -> Result<MessagingServiceClient<SignedChannel>, ApogeeError> {
        Ok(MessagingServiceClient::new(
            self.signer.wrap(self.channel(endpoint)?),
        ))
    }

    /// The Admin service of a broker.
    pub fn admin(&self, endpoint: &str) -> Result<AdminClient<SignedChannel>, ApogeeError> {
        Ok(AdminClient::new(self.signer.wrap(self.channel(endpoint)?))
            .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES))
    }
}

/// The live master of broker group `broker` (`what` names the thing it holds, for the error).
pub fn master_of(registry: &Registry, broker: &str, what: &str) -> Result<String, ApogeeError> {
    registry
        .admin_targets("")
        .into_iter()
        .find(|t| t.group.broker_name == broker)
        .and_then(|t| t.master_endpoint)
        .ok_or_else(|| {
            ApogeeError::Unavailable(format!(
                "broker group {broker}, which holds {what}, has no live master"
            ))
        })
}

/// Calls `call` on every live master's Admin service at once; returns each broker group with
/// its answer.
pub async fn each_master<T, F, Fut>(
    registry: &Registry,
    channels: &BrokerChannels,
    call: F,
) -> Vec<(GroupKey, Result<T, Status>)>
where
    F: Fn(AdminClient<SignedChannel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let masters: Vec<(GroupKey, String)> = registry
        .admin_targets("")
        .into_iter()
        .filter_map(|t| t.master_endpoint.map(|e| (t.group, e)))
        .collect();
    call_each(masters, channels, call).await
}

/// Calls `call` on the Admin service of each `(name, endpoint)` at once; returns each name
/// with its answer.
pub async fn call_each<K, T, F, Fut>(
    targets: Vec<(K, String)>,
    channels: &BrokerChannels,
    call: F,
) -> Vec<(K, Result<T, Status>)>
where
    F: Fn(AdminClient<SignedChannel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let calls = targets.into_iter().map(|(name, endpoint)| {
        let client = channels.admin(&endpoint);
        let call = &call;
        async move {
            let result = match client {
                Ok(client) => call(client).await.map(tonic::Response::into_inner),
                Err(e) => Err(e.into()),
            };
            (name, result)
        }
    });
    futures::future::join_all(calls).await
}

/// Calls `call` on every live master's Admin service at once and collects the answers. Fails
/// naming the groups that could not answer (`what` says what was asked), so an operator never
/// mistakes a partial answer for the whole.
pub async fn ask_every_master<T, F, Fut>(
    registry: &Registry,
    channels: &BrokerChannels,
    what: &str,
    call: F,
) -> Result<Vec<T>, Status>
where
    F: Fn(AdminClient<SignedChannel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut all = Vec::new();
    let mut failed = Vec::new();
    for (name, result) in each_master(registry, channels, call).await {
        match result {
            Ok(r) => all.push(r),
            Err(e) => failed.push(format!("{}: {}", name.broker_name, e.message())),
        }
    }
    if !failed.is_empty() {
        return Err(Status::unavailable(format!(
            "could not {what} of {}",
            failed.join("; ")
        )));
    }
    Ok(all)
}

//! Calls from a NameServer to brokers, shared by everything it routes or fans out without
//! keeping state: reusable channels, each call on them bounded by one timeout, and the live
//! master of a group named by a routed id (`apogee_proto::routed_id`: transaction ids, recall
//! handles). Calls to several brokers at once go through [`super::fan_out`].

use crate::registry::Registry;
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

/// How long one call to a broker may take (a forwarded call, or one broker's part of a
/// fan-out), connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Channels to brokers, reused across calls (a channel reconnects by itself).
pub struct BrokerChannels {
    by_endpoint: Mutex<HashMap<String, Channel>>,
    /// Signs every call with the cluster proof (brokers checking credentials admit it).
    signer: ClusterSigner,
    /// TLS to the brokers (`tls.ca_file`, and this server's certificate with
    /// `tls.cluster_mtls`); none: plain text.
    tls: Option<ClientTls>,
    /// How long one call may take ([`CALL_TIMEOUT`]).
    call_timeout: Duration,
}

impl Default for BrokerChannels {
    fn default() -> Self {
        BrokerChannels {
            by_endpoint: Mutex::default(),
            signer: ClusterSigner::default(),
            tls: None,
            call_timeout: CALL_TIMEOUT,
        }
    }
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

    /// Bounds every call to `timeout` instead of [`CALL_TIMEOUT`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long one call may take.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// `call` to the broker at `endpoint`, failing with DEADLINE_EXCEEDED past the call
    /// timeout. Every call a NameServer makes to a broker is bounded so.
    pub async fn bounded<T>(
        &self,
        endpoint: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        bounded(endpoint, self.call_timeout, call).await
    }

    /// The cached channel to a broker (connected on first use; its calls are not bounded by
    /// the channel: use [`Self::bounded`]).
    pub fn channel(&self, broker_endpoint: &str) -> Result<Channel, ApogeeError> {
        if let Some(c) = self.by_endpoint.lock().get(broker_endpoint) {
            return Ok(c.clone());
        }
        let channel = self
            .endpoint(broker_endpoint)?
            .connect_timeout(CONNECT_TIMEOUT)
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

/// `call` to the broker at `endpoint`, failing with DEADLINE_EXCEEDED past `timeout`.
pub async fn bounded<T>(
    endpoint: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "no answer from {endpoint} within {} ms",
                timeout.as_millis()
            )))
        })
}

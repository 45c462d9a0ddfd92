//! The calling side of cluster trust for channels: a NameServer's calls to brokers (admin
//! fan-out, forwarded EndTransaction and RecallMessage) carry the cluster proof on every
//! request, so a broker that checks credentials admits them as [`super::Identity::Cluster`].

use crate::cluster_auth::ClusterSecret;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds the cluster proof to every request when a secret is set (nothing otherwise).
#[derive(Clone, Debug, Default)]
pub struct ClusterSigner(Option<ClusterSecret>);

/// A channel whose requests carry the cluster proof.
pub type SignedChannel = InterceptedService<Channel, ClusterSigner>;

impl ClusterSigner {
    pub fn new(secret: Option<ClusterSecret>) -> ClusterSigner {
        ClusterSigner(secret)
    }

    /// `channel` with every request signed.
    pub fn wrap(&self, channel: Channel) -> SignedChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl tonic::service::Interceptor for ClusterSigner {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.0 {
            secret.sign(&mut request);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn requests_carry_a_valid_proof_only_with_a_secret() {
        let secret = ClusterSecret::new(b"0123456789abcdef-secret").unwrap();
        let signed = ClusterSigner::new(Some(secret.clone()))
            .call(tonic::Request::new(()))
            .unwrap();
        let proof = signed.metadata().get(crate::cluster_auth::HEADER).unwrap();
        let now = crate::time::now_ms();
        assert!(secret.verify(proof.to_str().ok(), now).is_ok());
        let plain = ClusterSigner::default()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(plain.metadata().get(crate::cluster_auth::HEADER).is_none());
    }
}

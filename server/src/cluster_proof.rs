//! The server side of the cluster proof ([`apogee_proto::cluster_auth`]): a call that must
//! come from another server of the cluster (a registration, a replication stream, a relayed
//! check-back) is refused UNAUTHENTICATED without a valid proof, and the refusal logged with
//! the caller's address.

use apogee_proto::cluster_auth::{ClusterSecret, HEADER};

/// On a server: `Ok` when no secret is set or the request proves it; else UNAUTHENTICATED,
/// logged with the peer and `what` the caller tried.
pub fn check<T>(
    secret: Option<&ClusterSecret>,
    request: &tonic::Request<T>,
    what: &str,
) -> Result<(), tonic::Status> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let proof = request.metadata().get(HEADER).and_then(|v| v.to_str().ok());
    secret
        .verify(proof, apogee_proto::time::now_ms())
        .map_err(|why| {
            let peer = crate::telemetry::peer_address(request);
            tracing::warn!(%peer, "refused {what}: {why}");
            tonic::Status::unauthenticated(format!("{what} refused: {why}"))
        })
}

//! apogee-proto: the one crate that owns Apogee's wire protocols.
//!
//! - [`v2`]: the RocketMQ 5 client protocol (`apache.rocketmq.v2`), generated
//!   from our own .proto files under `proto/apache/rocketmq/v2/`.
//! - [`cluster`]: Apogee's cluster-internal protocol (`apogee.cluster.v1`):
//!   registry, admin and replication.
//! - [`error`]: the internal error type and its single mapping to the
//!   protocol's `Code` and to `tonic::Status`.
//! - [`cluster_auth`]: the shared-secret proof brokers and slaves give NameServers and masters;
//!   [`cluster_mtls`]: the same calls refused without a verified client certificate.
//! - [`tls`]: certificates and keys from PEM files, the servers' reloadable TLS, outbound
//!   channels with or without TLS; [`net`]: accepting connections (TLS handshakes included).
//! - [`auth`]: client authentication (the `MQv2-HMAC-SHA1` signature, the known access keys,
//!   and, with feature `ops`, the guard both servers put in front of their services).
//! - [`limits`] and [`names`]: the limits and naming rules every process
//!   shares (topic and group names, body sizes, system topics).
//! - [`message_id`]: RocketMQ-style 17-byte message ids.
//! - [`time`]: conversions between protobuf time types and Rust ones.
//! - [`stdout`]: printing the servers' `--check-config` output, a closed pipe included.
//! - [`routed_id`] and [`txn_id`]: ids that name the broker group holding their subject.
//! - [`delay_level`]: the 18 classic delay levels.
//! - `ops` (feature `ops`, for the servers): the HTTP endpoint with Prometheus
//!   metrics, liveness and readiness, and the layer timing gRPC calls; `rpc_span` (feature
//!   `ops`): the layer opening a `tracing` span per gRPC call (method, peer, client, identity).
//! - [`group`]: consumer-group configuration (delivery attempts, backoff, FIFO);
//!   [`group_convert`]: its wire form.

/// Generated code, nested as its protobuf packages are (the cluster
/// protocol refers to v2 types by their package path).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod generated {
    pub mod apache {
        pub mod rocketmq {
            pub mod v2 {
                tonic::include_proto!("apache.rocketmq.v2");
            }
        }
    }
    pub mod apogee {
        pub mod cluster {
            pub mod v1 {
                tonic::include_proto!("apogee.cluster.v1");
            }
        }
    }
}

pub use generated::apache::rocketmq::v2;
pub use generated::apogee::cluster::v1 as cluster;

pub mod auth;
pub mod cluster_auth;
pub mod cluster_mtls;
pub mod delay_level;
pub mod error;
pub mod group;
pub mod group_convert;
pub mod limits;
pub mod message_id;
pub mod names;
pub mod net;
#[cfg(feature = "ops")]
pub mod ops;
pub mod routed_id;
#[cfg(feature = "ops")]
pub mod rpc_span;
pub mod serve;
pub mod settings;
pub mod stdout;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod txn_id;

pub use error::ApogeeError;

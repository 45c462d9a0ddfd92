//! apogee-proto: the one crate that owns Apogee's wire protocols (what both ends of a
//! connection need; what only servers run is apogee-server's).
//!
//! - [`v2`]: the RocketMQ 5 client protocol (`apache.rocketmq.v2`), generated
//!   from our own .proto files under `proto/apache/rocketmq/v2/`.
//! - [`cluster`]: Apogee's cluster-internal protocol (`apogee.cluster.v1`):
//!   registry, admin and replication.
//! - [`controller`]: the controllers' Raft messages (`apogee.controller.v1`, opaque payloads
//!   apogee-controller encodes).
//! - [`error`]: the internal error type and its single mapping to the
//!   protocol's `Code` and to `tonic::Status`.
//! - [`cluster_auth`]: the shared-secret proof brokers and slaves give NameServers and masters.
//! - [`tls`]: certificates and keys from PEM files, outbound channels with or without TLS.
//! - [`auth`]: client authentication (the `MQv2-HMAC-SHA1` signature, the known access keys
//!   and the ACL model).
//! - [`limits`] and [`names`]: the limits and naming rules every process
//!   shares (topic and group names, body sizes, system topics).
//! - [`remoting`]: the RocketMQ remoting protocol of 4.x clients (frames, codes, messages).
//! - [`message_id`]: RocketMQ-style 17-byte message ids.
//! - [`time`]: conversions between protobuf time types and Rust ones.
//! - [`routed_id`] and [`txn_id`]: ids that name the broker group holding their subject.
//! - [`delay_level`]: the 18 classic delay levels.
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
        pub mod controller {
            pub mod v1 {
                tonic::include_proto!("apogee.controller.v1");
            }
        }
    }
}

pub use generated::apache::rocketmq::v2;
pub use generated::apogee::cluster::v1 as cluster;
pub use generated::apogee::controller::v1 as controller;

pub mod auth;
pub mod cluster_auth;
pub mod delay_level;
pub mod error;
pub mod group;
pub mod group_convert;
pub mod limits;
pub mod message_id;
pub mod names;
pub mod remoting;
pub mod routed_id;
pub mod time;
pub mod tls;
pub mod txn_id;

pub use error::ApogeeError;

//! Sends over RocketMQ's remoting protocol: the client side of the frames
//! [`apogee_proto::remoting`] defines, for a producer configured with
//! [`SendTransport::Remoting`](crate::config::SendTransport).
//!
//! - `link`: one TCP connection per server, requests multiplexed by `opaque`, frames of many
//!   callers written together.
//! - `sender`: routes from the NameServers (GET_ROUTEINFO_BY_TOPIC), queue choice, the send
//!   requests and their answers, resends.
//!
//! Apogee's servers serve remoting on their gRPC port (unless configured with a port of
//! their own, which the NameServer's routes then name), so the NameServer addresses of the
//! client's config serve both.

mod link;
mod sender;

pub(crate) use sender::{carries, RemotingSends};

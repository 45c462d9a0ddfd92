//! The RocketMQ remoting protocol (the TCP protocol of RocketMQ 4.x clients and of 5.x
//! remoting clients), beside the gRPC protocol of [`crate::v2`].
//!
//! A frame is an int32 total length (not counting itself), an int32 whose top byte is the
//! header's serialization ([`Serialization::Json`] 0 or [`Serialization::Binary`] 1, RocketMQ's
//! own) and whose low 24 bits are the header's length, the header, then the body. The header
//! carries a request or response code, the sender's language and version, an `opaque` that
//! pairs a response with its request, flags (bit 0 response, bit 1 oneway), a remark and
//! string extension fields (a request's arguments). A response is encoded in the
//! serialization of its request.
//!
//! - [`command`]: [`RemotingCommand`], one decoded frame, with its [`ExtFields`].
//! - [`codes`]: the request and response codes Apogee serves or answers with.
//! - `frame`: the frame and header codecs with their size limits.
//! - `message`: RocketMQ's message encodings (the stored-message layout pull responses and
//!   batches carry, the properties string).
//! - [`signature`]: RocketMQ's ACL signature on a request.
//! - [`route`]: a topic's route as the NameServer answers GET_ROUTEINFO_BY_TOPIC.

pub mod codes;
pub mod command;
mod ext_fields;
pub mod frame;
pub mod message;
pub mod route;
pub mod signature;

pub use command::{RemotingCommand, Serialization};
pub use ext_fields::ExtFields;

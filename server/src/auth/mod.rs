//! What only servers do with client authentication (the signing side, the known access keys
//! and the ACL model are apogee-proto's `auth`):
//!
//! - [`guard`]: the tower layer in front of every gRPC service of a server that admits a call
//!   (user credentials or a cluster proof) or refuses it, and hands the handlers an
//!   [`apogee_proto::auth::Identity`].
//! - [`guarded`]: the per-request ACL check of a call's resources, for the handlers.

pub mod guard;
pub mod guarded;

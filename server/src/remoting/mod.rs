//! Serving the RocketMQ remoting protocol (RocketMQ 4.x clients) beside gRPC, on the same
//! listener: the first bytes of a connection tell an HTTP/2 preface (gRPC) from a remoting
//! frame ([`apogee_proto::remoting`]), and each goes to its own codec. A server that serves
//! remoting hands the bootstrap a [`RemotingService`]; each decoded request reaches it with
//! its [`RemotingConnection`] (to push requests back to that client: check-backs, rebalance
//! notices) and its [`Caller`] (who signed it, for the handler's ACL check).
//!
//! [`RemotingSection`] is the `[remoting]` section both servers' configs have.

use apogee_proto::auth::acl::{AclSet, Action, ResourceKind};
use apogee_proto::auth::Identity;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::ApogeeError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The `[remoting]` section of both servers' configs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemotingSection {
    /// Serve remoting clients (on `listen`, beside gRPC, unless `listen` here names a port of
    /// its own).
    pub enabled: bool,
    /// A listener of remoting's own (host:port), or "" to share the gRPC listener. With one,
    /// a broker registers this address as its remoting address.
    pub listen: String,
    /// Also listen on the broker's port minus 2, the "VIP channel" (brokers only). Off by
    /// default: RocketMQ's Java client sends there only with `vipChannelEnabled`, on by
    /// default before 4.5.1; turn this on for such clients rather than changing them.
    pub vip_channel: bool,
    /// The largest frame accepted (RocketMQ's `frameMaxLength`, 16 MiB); a longer one
    /// closes the connection before it is buffered.
    pub max_frame_bytes: usize,
}

impl Default for RemotingSection {
    fn default() -> Self {
        RemotingSection {
            enabled: true,
            listen: String::new(),
            vip_channel: false,
            max_frame_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The smallest `max_frame_bytes` (a broker also needs it above its `max_body_bytes`).
pub const MIN_FRAME_BYTES: usize = 64 * 1024;
/// The largest `max_frame_bytes`.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024 * 1024;

impl RemotingSection {
    /// Checks `listen` (host:port with a port of its own: a broker registers it for
    /// clients, so not 0) and the frame cap; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.listen.is_empty() {
            crate::listen_addr::check_listen("remoting.listen", &self.listen)?;
            if self.listen.ends_with(":0") {
                return Err(format!(
                    "remoting.listen = {:?} needs a fixed port: brokers register it for \
                     clients",
                    self.listen
                ));
            }
        }
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return Err(format!(
                "remoting.max_frame_bytes = {} is outside {MIN_FRAME_BYTES}..={MAX_FRAME_BYTES}",
                self.max_frame_bytes
            ));
        }
        Ok(())
    }
}

impl RemotingSection {
    /// A broker's check: a frame must hold its largest message (`max_body_bytes`), so such a
    /// send is refused by the broker with its reason, not by a closed connection.
    pub fn check_body_fits(&self, max_body_bytes: usize) -> Result<(), String> {
        if self.enabled && self.max_frame_bytes <= max_body_bytes {
            return Err(format!(
                "remoting.max_frame_bytes = {} must be above max_body_bytes = {max_body_bytes}",
                self.max_frame_bytes
            ));
        }
        Ok(())
    }
}

/// A boxed future of a remoting answer.
pub type RemotingFuture = Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send>>;

/// What a server answers remoting requests with.
pub trait RemotingService: Send + Sync + 'static {
    /// Answers one request of `conn`, admitted as `caller`. `None` sends nothing (a oneway
    /// request's answer is dropped by the transport anyway). An unknown code is answered
    /// REQUEST_CODE_NOT_SUPPORTED by the service.
    fn call(
        &self,
        conn: &Arc<RemotingConnection>,
        caller: Caller,
        request: RemotingCommand,
    ) -> RemotingFuture;

    /// `conn` closed (the client went away or was refused).
    fn closed(&self, _conn: &Arc<RemotingConnection>) {}
}

/// Who sent a request: nobody in particular without authentication; otherwise the
/// identity whose signature was valid, with the ACL entries of the moment.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub identity: Option<Identity>,
    pub acls: Option<Arc<AclSet>>,
}

impl Caller {
    /// Whether the caller may do `action` on every resource (always, without
    /// authentication).
    pub fn authorize(
        &self,
        resources: &[(ResourceKind, &str)],
        action: Action,
    ) -> Result<(), ApogeeError> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        let acls = self.acls.clone().unwrap_or_default();
        for (kind, name) in resources {
            acls.permits(identity, *kind, name, action)?;
        }
        Ok(())
    }

    /// Whether the caller may use the admin requests.
    pub fn is_admin(&self) -> bool {
        self.identity.as_ref().is_none_or(Identity::is_admin)
    }
}

/// Why a request to a client was not answered.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the connection to {0} is closed")]
    Closed(SocketAddr),
    #[error("{0} has too many frames waiting to be written")]
    Backlogged(SocketAddr),
    #[error("{0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
}

/// One remoting client's connection, as handlers see it: who it is and a way to send it
/// requests of the server's own.
pub struct RemotingConnection {
    id: u64,
    peer: SocketAddr,
    /// `peer` written out once, for what names the client on every request (client ids,
    /// born hosts).
    peer_text: String,
    local: SocketAddr,
    /// Frames for the connection's writer (requests of the server's own).
    outbound: mpsc::Sender<RemotingCommand>,
    /// Requests sent to the client awaiting its response, by opaque.
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    next_opaque: AtomicI32,
    closed: AtomicBool,
}

impl RemotingConnection {
    /// A connection whose writer takes frames from the other end of `outbound`.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        outbound: mpsc::Sender<RemotingCommand>,
    ) -> RemotingConnection {
        RemotingConnection {
            id,
            peer,
            peer_text: peer.to_string(),
            local,
            outbound,
            pending: Mutex::new(HashMap::new()),
            next_opaque: AtomicI32::new(1),
            closed: AtomicBool::new(false),
        }
    }

    /// This process's number for the connection (unique while it runs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The client's address as text (`host:port`).
    pub fn peer_text(&self) -> &str {
        &self.peer_text
    }

    /// The server's address the client connected to.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.outbound.is_closed()
    }

    /// Sends `request` to the client as a oneway request (NOTIFY_CONSUMER_IDS_CHANGED,
    /// CHECK_TRANSACTION_STATE): no answer is awaited. Never waits: a client whose
    /// connection has too much unwritten is skipped.
    pub fn send_oneway(&self, mut request: RemotingCommand) -> Result<(), PushError> {
        request.flag |= apogee_proto::remoting::command::FLAG_ONEWAY;
        request.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        self.push(request)
    }

    /// Sends `request` to the client and waits up to `timeout` for its answer.
    pub async fn request(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, PushError> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        request.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(opaque, tx);
        if let Err(e) = self.push(request) {
            self.pending.lock().remove(&opaque);
            return Err(e);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(PushError::Closed(self.peer)),
            Err(_) => {
                self.pending.lock().remove(&opaque);
                Err(PushError::Timeout(self.peer, timeout))
            }
        }
    }

    /// A response from the client: completes the request it answers (false when none
    /// waits for it).
    pub fn complete(&self, response: RemotingCommand) -> bool {
        match self.pending.lock().remove(&response.opaque) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Marks the connection closed and fails every request awaiting an answer.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending.lock().clear();
    }

    fn push(&self, request: RemotingCommand) -> Result<(), PushError> {
        if self.is_closed() {
            return Err(PushError::Closed(self.peer));
        }
        self.outbound.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PushError::Backlogged(self.peer),
            mpsc::error::TrySendError::Closed(_) => PushError::Closed(self.peer),
        })
    }
}

#[cfg(test)]
mod section_tests {
    use super::*;

    #[test]
    fn the_section_is_checked_and_errors_name_the_key() {
        RemotingSection::default().validate().unwrap();
        let with = |listen: &str, max: usize| RemotingSection {
            listen: listen.into(),
            max_frame_bytes: max,
            ..RemotingSection::default()
        };
        with("127.0.0.1:10912", MIN_FRAME_BYTES).validate().unwrap();
        with("", MAX_FRAME_BYTES).validate().unwrap();
        for (bad, key) in [
            (with("nowhere", MIN_FRAME_BYTES), "remoting.listen"),
            (with("127.0.0.1:0", MIN_FRAME_BYTES), "fixed port"),
            (with("", MIN_FRAME_BYTES - 1), "remoting.max_frame_bytes"),
            (with("", MAX_FRAME_BYTES + 1), "remoting.max_frame_bytes"),
        ] {
            let err = bad.validate().unwrap_err();
            assert!(err.contains(key), "{err}");
        }
        let small = with("", MIN_FRAME_BYTES);
        small.check_body_fits(MIN_FRAME_BYTES - 1).unwrap();
        let err = small.check_body_fits(MIN_FRAME_BYTES).unwrap_err();
        assert!(err.contains("max_body_bytes"), "{err}");
    }
}

impl std::fmt::Debug for RemotingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotingConnection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

// The transport: RocketMQ's ACL signature, the connection's reader and writer, and the count
// of connections closed for a malformed frame.
pub mod auth;
pub mod connection;
pub mod malformed;

pub use auth::RemotingAuth;
pub use connection::RemotingServer;
pub use malformed::{register_malformed_frames_metric, MalformedFrames};

//! Serving one remoting connection: [`RemotingServer::serve`].
//!
//! One task per connection, with no task per request: it reads and decodes frames, starts
//! each request's [`RemotingService::call`] at once and polls every call in flight itself
//! (so a pull waiting for messages never holds up a send on the same connection), and
//! writes answers and the server's own requests ([`RemotingConnection::send_oneway`],
//! [`RemotingConnection::request`]) as they come, coalesced into as few writes as the
//! socket takes. At most [`MAX_IN_FLIGHT`] calls of one connection run at once, and
//! nothing more is read while more than [`MAX_UNWRITTEN_BYTES`] wait to be written: a
//! client that sends without reading its answers is slowed, not buffered without end.
//!
//! A frame with the response flag completes the server's request it answers; a oneway
//! request's answer is dropped. A malformed frame closes this connection only (logged at
//! debug with the peer, counted in [`RemotingServer::malformed_frames`]). On `stop` the
//! connection reads no more requests, lets the calls in flight finish for at most
//! [`DRAIN_TIMEOUT`], writes their answers and closes.

use super::auth::RemotingAuth;
use super::malformed::MalformedFrames;
use super::{RemotingConnection, RemotingService};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::frame::{self, FrameLimits};
use apogee_proto::remoting::RemotingCommand;
use bytes::{Buf, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

/// Calls of one connection running at once; the connection reads no further request
/// until one finishes.
pub const MAX_IN_FLIGHT: usize = 1024;
/// The server's own requests waiting for one connection's writer.
pub const OUTBOUND_CAPACITY: usize = 1024;
/// Bytes waiting to be written past which a connection reads no further request.
pub const MAX_UNWRITTEN_BYTES: usize = 4 * 1024 * 1024;
/// How long a stopping connection waits for its calls in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer's room for each read.
const READ_CHUNK: usize = 64 * 1024;

/// The connections' numbers ([`RemotingConnection::id`]).
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// What serves remoting connections: the service, the signature check and the limits.
pub struct RemotingServer {
    service: Arc<dyn RemotingService>,
    auth: RemotingAuth,
    limits: FrameLimits,
    max_in_flight: usize,
    malformed: MalformedFrames,
}

type Call = Pin<Box<dyn Future<Output = Option<RemotingCommand>> + Send>>;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed within a frame ({0} bytes of it read)")]
    Truncated(usize),
}

impl RemotingServer {
    pub fn new(
        service: Arc<dyn RemotingService>,
        auth: RemotingAuth,
        limits: FrameLimits,
    ) -> RemotingServer {
        RemotingServer {
            service,
            auth,
            limits,
            max_in_flight: MAX_IN_FLIGHT,
            malformed: MalformedFrames::default(),
        }
    }

    /// Counts the connections closed for a malformed frame in `frames` (shared with the
    /// server's metrics) instead of a count of its own.
    pub fn with_malformed_frames(mut self, frames: MalformedFrames) -> RemotingServer {
        self.malformed = frames;
        self
    }

    /// Caps the calls in flight per connection (tests).
    pub fn with_max_in_flight(mut self, max: usize) -> RemotingServer {
        self.max_in_flight = max.max(1);
        self
    }

    /// Connections closed for a malformed frame since the start.
    pub fn malformed_frames(&self) -> u64 {
        self.malformed.get()
    }

    /// Serves `io` (whose first bytes, already read, are `initial`) until the client closes
    /// it, a frame is malformed, or `stop` changes and the calls in flight are done.
    pub async fn serve<IO>(
        self: Arc<Self>,
        mut io: IO,
        initial: &[u8],
        peer: SocketAddr,
        local: SocketAddr,
        mut stop: watch::Receiver<()>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (outbound_tx, mut outbound) = mpsc::channel(OUTBOUND_CAPACITY);
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(RemotingConnection::new(id, peer, local, outbound_tx));
        let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
        rbuf.extend_from_slice(initial);
        let mut wbuf = BytesMut::new();
        let mut calls = FuturesUnordered::<Call>::new();
        let mut stopping = pin!(stop.changed());
        let mut drain: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut read_closed = false;
        let mut unflushed = false;
        let outcome: Result<(), Ended> = poll_fn(|cx| loop {
            let mut progress = false;
            if drain.is_none() && stopping.as_mut().poll(cx).is_ready() {
                drain = Some(Box::pin(tokio::time::sleep(DRAIN_TIMEOUT)));
            }
            while let Poll::Ready(Some(answer)) = calls.poll_next_unpin(cx) {
                if let Some(answer) = answer {
                    self.write(&answer, &mut wbuf, peer);
                }
            }
            while wbuf.len() < MAX_UNWRITTEN_BYTES {
                match outbound.poll_recv(cx) {
                    Poll::Ready(Some(request)) => self.write(&request, &mut wbuf, peer),
                    _ => break,
                }
            }
            while !wbuf.is_empty() {
                match Pin::new(&mut io).poll_write(cx, &wbuf) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::Error::from(
                            std::io::ErrorKind::WriteZero,
                        )
                        .into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        wbuf.advance(n);
                        unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => break,
                }
            }
            if unflushed && wbuf.is_empty() {
                match Pin::new(&mut io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => unflushed = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => {}
                }
            }
            let idle = calls.is_empty() && wbuf.is_empty() && !unflushed;
            if let Some(deadline) = drain.as_mut() {
                if idle || deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            } else if read_closed {
                if !rbuf.is_empty() {
                    return Poll::Ready(Err(Ended::Truncated(rbuf.len())));
                }
                if idle {
                    return Poll::Ready(Ok(()));
                }
            } else if calls.len() < self.max_in_flight && wbuf.len() < MAX_UNWRITTEN_BYTES {
                // Requests already read first, then more bytes.
                while calls.len() < self.max_in_flight {
                    match frame::decode(&mut rbuf, &self.limits) {
                        Ok(Some(command)) => {
                            self.dispatch(&conn, command, &mut calls, &mut wbuf, peer);
                            progress = true;
                        }
                        Ok(None) => break,
                        Err(e) => return Poll::Ready(Err(e.into())),
                    }
                }
                if calls.len() < self.max_in_flight && !progress {
                    if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    match tokio_util::io::poll_read_buf(Pin::new(&mut io), cx, &mut rbuf) {
                        Poll::Ready(Ok(0)) => {
                            read_closed = true;
                            progress = true;
                        }
                        Poll::Ready(Ok(_)) => progress = true,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                        Poll::Pending => {}
                    }
                }
            }
            if !progress {
                return Poll::Pending;
            }
        })
        .await;
        match outcome {
            Ok(()) => {}
            Err(Ended::Io(e)) => tracing::debug!(%peer, error = %e, "remoting connection"),
            Err(e) => {
                self.malformed.add_one();
                tracing::debug!(%peer, error = %e, "closing a remoting connection: bad frame");
            }
        }
        conn.close();
        self.service.closed(&conn);
    }

    /// Starts `command`: completes a request of ours, or calls the service (answered NO_PERMISSION
    /// when its signature fails).
    fn dispatch(
        &self,
        conn: &Arc<RemotingConnection>,
        command: RemotingCommand,
        calls: &mut FuturesUnordered<Call>,
        wbuf: &mut BytesMut,
        peer: SocketAddr,
    ) {
        if command.is_response() {
            conn.complete(command);
            return;
        }
        let oneway = command.is_oneway();
        match self.auth.admit(&command) {
            Ok(caller) => {
                let call = self.service.call(conn, caller, command);
                if oneway {
                    calls.push(Box::pin(call.map(|_| None)));
                } else {
                    calls.push(call);
                }
            }
            Err(remark) => {
                tracing::debug!(%peer, code = command.code, "remoting request refused: {remark}");
                if !oneway {
                    let answer = RemotingCommand::error(&command, response::NO_PERMISSION, remark);
                    self.write(&answer, wbuf, peer);
                }
            }
        }
    }

    fn write(&self, command: &RemotingCommand, wbuf: &mut BytesMut, peer: SocketAddr) {
        if let Err(e) = frame::encode(command, wbuf) {
            tracing::warn!(%peer, code = command.code, "a remoting frame was not sent: {e}");
        }
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;

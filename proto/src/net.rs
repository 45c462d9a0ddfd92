//! Accepting connections: every gRPC server Apogee runs (broker, NameServer,
//! standalone, and any listener added later) takes a [`Listener`], and the
//! stream of connections it yields has the socket options set on every
//! accepted socket, in this one place:
//!
//! - `TCP_NODELAY`: gRPC writes whole frames; with Nagle's algorithm on, a
//!   small reply waits for the peer's delayed ACK (about 40 ms on Linux).
//!   tonic sets it only on listeners it binds itself, not on an incoming
//!   stream handed to it, which is how Apogee serves (the caller binds, so
//!   port clashes are reported before anything starts).
//! - TCP keepalive ([`KEEPALIVE_IDLE`], [`KEEPALIVE_INTERVAL`],
//!   [`KEEPALIVE_RETRIES`]): a peer that vanished without a FIN (host down,
//!   cable cut) is noticed and its streams and long polls are released.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between unanswered probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// Called with every accepted socket after its options are set (tests use it
/// to check the options the server really applied).
pub type AcceptHook = Arc<dyn Fn(&TcpStream) + Send + Sync>;

/// A bound listener whose accepted connections get Apogee's socket options.
pub struct Listener {
    inner: TcpListener,
    hook: Option<AcceptHook>,
}

impl Listener {
    /// Binds `addr` (e.g. "127.0.0.1:9876").
    pub async fn bind(addr: &str) -> io::Result<Listener> {
        Ok(Listener::from(TcpListener::bind(addr).await?))
    }

    /// Adds a hook that sees each accepted socket.
    pub fn with_accept_hook(mut self, hook: AcceptHook) -> Listener {
        self.hook = Some(hook);
        self
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The stream of accepted connections, for `serve_with_incoming*`.
    pub fn incoming(self) -> Incoming {
        Incoming {
            listener: self.inner,
            hook: self.hook,
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(inner: TcpListener) -> Listener {
        Listener { inner, hook: None }
    }
}

/// Sets TCP_NODELAY and keepalive on an accepted socket. A failure is logged
/// and the connection kept: it still works, only slower or less watched.
pub fn tune_accepted(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "could not set TCP_NODELAY on an accepted connection");
    }
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::warn!(error = %e, "could not set TCP keepalive on an accepted connection");
    }
}

/// (TCP_NODELAY, SO_KEEPALIVE) as an accepted socket has them.
pub fn nodelay_and_keepalive(stream: &TcpStream) -> io::Result<(bool, bool)> {
    Ok((
        stream.nodelay()?,
        socket2::SockRef::from(stream).keepalive()?,
    ))
}

/// An accept hook that reports [`nodelay_and_keepalive`] of every accepted socket on the
/// returned channel: how tests check what a running server really applied.
pub fn reporting_hook() -> (AcceptHook, std::sync::mpsc::Receiver<(bool, bool)>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let hook: AcceptHook = Arc::new(move |s: &TcpStream| {
        if let (Ok(seen), Ok(tx)) = (nodelay_and_keepalive(s), tx.lock()) {
            let _ = tx.send(seen);
        }
    });
    (hook, rx)
}

/// Accepted connections with their options set; see [`Listener::incoming`].
pub struct Incoming {
    listener: TcpListener,
    hook: Option<AcceptHook>,
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.listener.poll_accept(cx) {
            Poll::Ready(Ok((stream, _peer))) => {
                tune_accepted(&stream);
                if let Some(hook) = &self.hook {
                    hook(&stream);
                }
                Poll::Ready(Some(Ok(stream)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_keepalive() {
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming();
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off");
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE is off");
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
    }

    #[tokio::test]
    async fn a_plain_tokio_accept_has_nodelay_off() {
        // The default this module exists to override: if the platform ever
        // turned it on by itself, the test above would prove nothing.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
    }
}

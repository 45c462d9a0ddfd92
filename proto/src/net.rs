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
//!
//! It also caps the connections one client address may hold open at once
//! ([`Listener::with_connection_cap`]): one over the cap is closed as soon as
//! it is accepted (a client cannot exhaust the server's file descriptors).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
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
    /// Most connections open at once per client IP address (0: no cap).
    cap: usize,
}

impl Listener {
    /// Binds `addr` (e.g. "127.0.0.1:9876").
    pub async fn bind(addr: &str) -> io::Result<Listener> {
        Ok(Listener::from(TcpListener::bind(addr).await?))
    }

    /// Caps the connections one client IP address may hold open at once (0: no cap).
    pub fn with_connection_cap(mut self, per_address: usize) -> Listener {
        self.cap = per_address;
        self
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
            cap: self.cap,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(inner: TcpListener) -> Listener {
        Listener {
            inner,
            hook: None,
            cap: 0,
        }
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

/// Connections open per client address.
type OpenCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A connection's place in its address's count.
struct Slot {
    ip: IpAddr,
    open: OpenCounts,
}

/// Accepted connections with their options set; see [`Listener::incoming`].
pub struct Incoming {
    listener: TcpListener,
    hook: Option<AcceptHook>,
    cap: usize,
    open: OpenCounts,
}

/// An accepted connection; it counts against its client address's cap until dropped.
pub struct Accepted {
    stream: TcpStream,
    slot: Option<Slot>,
}

impl Accepted {
    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut open = slot.open.lock();
            if let Some(n) = open.get_mut(&slot.ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&slot.ip);
                }
            }
        }
    }
}

impl Incoming {
    /// Takes a place for a connection from `peer` (`Ok(None)`: no cap to count against);
    /// `Err` when its address is at the cap.
    fn admit(&self, peer: SocketAddr) -> Result<Option<Slot>, ()> {
        if self.cap == 0 {
            return Ok(None);
        }
        let mut open = self.open.lock();
        let n = open.entry(peer.ip()).or_insert(0);
        if *n >= self.cap {
            return Err(());
        }
        *n += 1;
        Ok(Some(Slot {
            ip: peer.ip(),
            open: self.open.clone(),
        }))
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Accepted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    let Ok(slot) = self.admit(peer) else {
                        tracing::warn!(
                            %peer,
                            "closing a connection: {} holds its maximum of {} open connections",
                            peer.ip(),
                            self.cap
                        );
                        drop(stream);
                        continue;
                    };
                    tune_accepted(&stream);
                    if let Some(hook) = &self.hook {
                        hook(&stream);
                    }
                    return Poll::Ready(Some(Ok(Accepted { stream, slot })));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl tokio::io::AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The peer address of a request, as for a plain TCP stream.
impl tonic::transport::server::Connected for Accepted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
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
        let accepted = accepted.stream();
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is off");
        let sock = socket2::SockRef::from(accepted);
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

    #[tokio::test]
    async fn an_address_at_its_cap_has_further_connections_closed_until_one_ends() {
        use std::time::Duration;
        use tokio::io::AsyncReadExt;
        let listener = Listener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_connection_cap(2);
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming();
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let a1 = incoming.next().await.unwrap().unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let _a2 = incoming.next().await.unwrap().unwrap();
        // A third is closed by the listener as soon as it accepts it: the client reads EOF,
        // and the stream yields nothing.
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                _ = incoming.next() => panic!("a connection beyond the cap was handed out"),
                read = c3.read(&mut buf) => read,
            }
        })
        .await
        .expect("the connection over the cap is closed");
        assert!(matches!(outcome, Ok(0) | Err(_)), "{outcome:?}");
        // One ends: a place comes back.
        drop(a1);
        let _c4 = TcpStream::connect(addr).await.unwrap();
        let a4 = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("a place came back");
        assert!(matches!(a4, Some(Ok(_))));
    }
}

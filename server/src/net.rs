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
//!
//! With TLS ([`Listener::with_tls`]) every accepted connection does its handshake in a
//! task of its own ([`TlsIncoming`]), bounded by [`apogee_proto::tls::HANDSHAKE_TIMEOUT`], so a
//! slow or broken client never holds up the others; a connection is handed to the server
//! once its handshake is done, still counted against its address's cap.
//! [`crate::serve::serve`] serves on a listener, with TLS or without.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::tls::{Protocol, ServerTls};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

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
    /// Serve TLS with this.
    tls: Option<Arc<ServerTls>>,
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

    /// Serves TLS with `tls` (none: plain text).
    pub fn with_tls(mut self, tls: Option<Arc<ServerTls>>) -> Listener {
        self.tls = tls;
        self
    }

    /// Adds a hook that sees each accepted socket.
    pub fn with_accept_hook(mut self, hook: AcceptHook) -> Listener {
        self.hook = Some(hook);
        self
    }

    /// The cap of [`Listener::with_connection_cap`] (0: none).
    pub fn connection_cap(&self) -> usize {
        self.cap
    }

    /// The TLS it serves, if any.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
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
            tls: None,
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

impl Incoming {
    /// These connections after a TLS handshake with `tls`, for a listener of `protocol`.
    pub fn tls(self, tls: Arc<ServerTls>, protocol: Protocol) -> TlsIncoming {
        TlsIncoming {
            inner: self,
            tls,
            protocol,
            handshakes: JoinSet::new(),
            accepting: true,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Accepted connections that completed their TLS handshake; see [`Incoming::tls`].
pub struct TlsIncoming {
    inner: Incoming,
    tls: Arc<ServerTls>,
    protocol: Protocol,
    /// Handshakes under way, each in its own task.
    handshakes: JoinSet<Option<TlsStream<Accepted>>>,
    /// The listener has not ended.
    accepting: bool,
}

impl TlsIncoming {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One connection's handshake, with the acceptor current when it was accepted; `None`
/// (logged) when it fails or takes longer than the handshake timeout.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    conn: Accepted,
) -> Option<TlsStream<Accepted>> {
    let peer = conn.stream().peer_addr().ok();
    match tokio::time::timeout(apogee_proto::tls::HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(?peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsStream<Accepted>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // Take every connection waiting, starting its handshake.
        while this.accepting {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(conn))) => {
                    let acceptor = this.tls.acceptor(this.protocol);
                    this.handshakes.spawn(handshake(acceptor, conn));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.accepting = false,
                Poll::Pending => break,
            }
        }
        // Hand out a connection whose handshake is done.
        loop {
            return match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(stream)))) => Poll::Ready(Some(Ok(stream))),
                // Failed, timed out (logged) or its task panicked: the next one.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) if this.accepting => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
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

    /// A server certificate for 127.0.0.1 (self-signed) as files in `dir`, and its DER.
    fn tls_files(dir: &std::path::Path) -> (crate::tls::ServerTlsFiles, Vec<u8>) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert_file = dir.join("server.pem");
        let key_file = dir.join("server.key");
        std::fs::write(&cert_file, made.cert.pem()).unwrap();
        std::fs::write(&key_file, made.key_pair.serialize_pem()).unwrap();
        let files = crate::tls::ServerTlsFiles {
            cert_file,
            key_file,
            client_ca_file: None,
        };
        (files, made.cert.der().to_vec())
    }

    #[tokio::test]
    async fn a_stalled_handshake_does_not_hold_up_the_next_connection() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let (files, der) = tls_files(dir.path());
        let tls = ServerTls::load(files).unwrap();
        let listener = Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming().tls(tls, Protocol::Grpc);
        // The first client connects and never sends its hello; the second completes its
        // handshake, and is handed out while the first still waits.
        let _stalled = TcpStream::connect(addr).await.unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.into()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let client = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let ip = rustls_pki_types::ServerName::from(addr.ip());
            let mut tls = connector.connect(ip, tcp).await.unwrap();
            tls.write_all(b"x").await.unwrap();
            tls
        };
        let (served, _client) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(5), incoming.next()),
            client
        );
        let served = served
            .expect("the second connection is served")
            .unwrap()
            .unwrap();
        assert!(
            served.get_ref().0.stream().nodelay().unwrap(),
            "TCP_NODELAY is off"
        );
        let peer = tonic::transport::server::Connected::connect_info(&served);
        assert!(peer.get_ref().remote_addr().is_some(), "no peer address");
        assert!(
            peer.peer_certs().is_none(),
            "no client certificate was presented"
        );
    }

    #[tokio::test]
    async fn a_plain_text_client_gets_no_connection_from_a_tls_listener() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = tls_files(dir.path());
        let listener = Listener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .with_tls(Some(ServerTls::load(files).unwrap()));
        let addr = listener.local_addr().unwrap();
        let tls = listener.tls.clone().unwrap();
        let mut incoming = listener.incoming().tls(tls, Protocol::Grpc);
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                _ = incoming.next() => panic!("a plain-text connection was handed out"),
                read = plain.read_to_end(&mut buf) => read,
            }
        })
        .await
        .expect("the plain-text connection is closed");
        // The server answers with a TLS alert at most, then closes.
        assert!(outcome.is_err() || !buf.starts_with(b"HTTP"), "{buf:?}");
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

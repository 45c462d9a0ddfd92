//! Serving gRPC on a [`Listener`]: the accept loop every Apogee server runs, and the
//! task that serves one connection.
//!
//! Each accepted connection is served by one task, and that task also runs every request
//! stream of the connection. hyper's default is a task per stream: a request handed to
//! the runtime as a new task, and the connection's task woken again when the response is
//! ready. On tokio's multi-threaded runtime each of those hand-offs wakes an idle worker
//! (a futex wake and a context switch on the other core) to steal a task that is often done
//! before the other worker gets to it; at one request in flight that was two wake-ups a
//! request, about a third of the broker's CPU (docs/PERFORMANCE.md). Here the connection's
//! task polls its streams itself: a wake-up of a stream or of the connection while the task
//! is running only marks it to poll again, and the task is scheduled only when nothing of
//! its own is left to do. Streams of one connection are polled one after another, so a
//! handler must not block its thread; separate connections still run on separate workers.
//!
//! Per request, as tonic's own server does: the connection's peer information
//! (`request.remote_addr()`, `request.peer_certs()`), the client's `grpc-timeout`
//! (a call still running at its deadline is answered DEADLINE_EXCEEDED), and errors of
//! the service answered as gRPC statuses. On `signal` the listener is closed, every
//! connection is told to finish (HTTP/2 GOAWAY: streams in flight complete, no new ones
//! start), and [`serve`] returns when all are closed.
//!
//! [`serve_listeners`] also serves the RocketMQ remoting protocol ([`crate::remoting`]) on
//! the listeners that say so ([`Serving`]). On a listener shared with gRPC, a connection's
//! protocol is told by its first bytes: the HTTP/2 preface (`PRI `) is gRPC, replayed to
//! the code above by a small rewind wrapper (no copy, no task of its own), anything else is
//! a remoting frame; under TLS, a handshake that agreed on ALPN `h2` is gRPC without a look,
//! one without ALPN (remoting clients send none) is told by its decrypted first bytes.

use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tonic::codegen::http;
use tonic::service::RecoverError;
use tonic::transport::server::Connected;

use crate::net::{Accepted, Listener};
use crate::remoting::RemotingServer;
use crate::tls::Protocol;
use std::net::SocketAddr;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Rounds of polling a connection and its streams in one run of its task before it makes
/// way for other tasks (it is scheduled again at once if it still has work).
const ROUNDS_PER_RUN: usize = 32;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// gRPC only.
    Grpc,
    /// gRPC and remoting, told apart by a connection's first bytes (or its ALPN).
    GrpcAndRemoting,
    /// Remoting only (a listener of remoting's own, the VIP channel).
    Remoting,
}

/// The first bytes of an HTTP/2 connection (of its preface); as a remoting frame length
/// they would be over any frame cap.
const HTTP2_PREFACE_START: &[u8; 4] = b"PRI ";

/// Serves `service` on `listener` (TLS when it has it) until `signal` completes, then
/// closes every connection gracefully and returns once they are all closed.
pub async fn serve<S, B>(service: S, listener: Listener, signal: impl Future<Output = ()>)
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_listeners(service, vec![(listener, Serving::Grpc)], None, signal).await
}

/// Serves each listener as it says (`remoting` answers the remoting connections) until
/// `signal` completes; then every listener stops accepting, every connection is told to
/// finish (gRPC: GOAWAY; remoting: no further request is read, the calls in flight get at
/// most [`crate::remoting::connection::DRAIN_TIMEOUT`]), and this returns once all are closed.
pub async fn serve_listeners<S, B>(
    service: S,
    listeners: Vec<(Listener, Serving)>,
    remoting: Option<Arc<RemotingServer>>,
    signal: impl Future<Output = ()>,
) where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = RecoverError::new(Deadline(service));
    let (stop_tx, stop_rx) = watch::channel(());
    let (halt_tx, halt_rx) = watch::channel(());
    {
        let loops = futures::future::join_all(listeners.into_iter().map(|(listener, serving)| {
            let remoting = match serving {
                Serving::Grpc => None,
                _ => remoting.clone(),
            };
            let ctx = AcceptContext {
                serving,
                remoting,
                stop: stop_rx.clone(),
            };
            let halt = halt_rx.clone();
            let service = service.clone();
            async move {
                match listener.tls() {
                    None => accept_loop(service, listener.incoming(), ctx, halt).await,
                    Some(tls) => {
                        let incoming = listener.incoming().tls(tls, Protocol::Grpc);
                        accept_loop(service, incoming, ctx, halt).await
                    }
                }
            }
        }));
        let mut loops = pin!(loops);
        tokio::select! {
            _ = &mut loops => {}
            _ = signal => {
                let _ = halt_tx.send(());
                loops.await;
            }
        }
    }
    // The listening sockets are closed (the loops are done) before the drain, so a new
    // client is refused at once instead of waiting on a server that has stopped.
    let _ = stop_tx.send(());
    drop(stop_rx);
    stop_tx.closed().await;
}

/// What each connection of one listener is served with.
struct AcceptContext {
    serving: Serving,
    remoting: Option<Arc<RemotingServer>>,
    stop: watch::Receiver<()>,
}

async fn accept_loop<S, B, IO>(
    service: S,
    incoming: impl tokio_stream::Stream<Item = std::io::Result<IO>>,
    ctx: AcceptContext,
    mut halt: watch::Receiver<()>,
) where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<B>,
            Error = BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Connected + ConnectionFacts + Unpin + Send + 'static,
{
    let mut incoming = pin!(incoming);
    let mut halted = pin!(halt.changed());
    loop {
        let io = tokio::select! {
            _ = &mut halted => break,
            io = incoming.next() => match io {
                Some(Ok(io)) => io,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "accepting a connection");
                    continue;
                }
                None => break,
            },
        };
        let stop = ctx.stop.clone();
        match (ctx.serving, &ctx.remoting) {
            (Serving::Remoting, Some(remoting)) => {
                let Some((peer, local)) = io.addresses() else {
                    continue;
                };
                tokio::spawn(remoting.clone().serve(io, &[], peer, local, stop));
            }
            (Serving::GrpcAndRemoting, Some(remoting)) => {
                let service = PeerService {
                    info: io.connect_info(),
                    inner: service.clone(),
                };
                tokio::spawn(serve_either(io, service, remoting.clone(), stop));
            }
            _ => {
                let service = PeerService {
                    info: io.connect_info(),
                    inner: service.clone(),
                };
                tokio::spawn(serve_connection(io, service, stop));
            }
        }
    }
}

/// What the accept path needs of a connection beyond its bytes.
pub trait ConnectionFacts {
    /// (peer, local) addresses.
    fn addresses(&self) -> Option<(SocketAddr, SocketAddr)>;
    /// The TLS handshake agreed on HTTP/2 (ALPN `h2`): gRPC without looking further.
    fn negotiated_h2(&self) -> bool;
}

impl ConnectionFacts for Accepted {
    fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        Some((
            self.stream().peer_addr().ok()?,
            self.stream().local_addr().ok()?,
        ))
    }

    fn negotiated_h2(&self) -> bool {
        false
    }
}

impl ConnectionFacts for tokio_rustls::server::TlsStream<Accepted> {
    fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.get_ref().0.addresses()
    }

    fn negotiated_h2(&self) -> bool {
        self.get_ref().1.alpn_protocol() == Some(b"h2")
    }
}

/// Serves a connection of a listener with both protocols: gRPC when its TLS handshake
/// agreed on `h2` or its first bytes are HTTP/2's preface (replayed to the gRPC code),
/// remoting otherwise.
async fn serve_either<IO, S, B>(
    mut io: IO,
    service: S,
    remoting: Arc<RemotingServer>,
    mut stop: watch::Receiver<()>,
) where
    IO: AsyncRead + AsyncWrite + ConnectionFacts + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = BoxError,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 4];
    let mut read = 0;
    if !io.negotiated_h2() {
        // Until the bytes read differ from the preface's, or 4 of them match it.
        while read < first.len() && first[..read] == HTTP2_PREFACE_START[..read] {
            tokio::select! {
                n = io.read(&mut first[read..]) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n,
                },
                _ = stop.changed() => return,
            }
        }
        if first[..read] != HTTP2_PREFACE_START[..read] {
            let Some((peer, local)) = io.addresses() else {
                return;
            };
            return remoting.serve(io, &first[..read], peer, local, stop).await;
        }
    }
    let io = Rewind {
        first,
        replayed: 4 - read,
        inner: io,
    };
    serve_connection(io, service, stop).await
}

/// A connection whose first bytes, read to tell the protocol, are read again first.
struct Rewind<IO> {
    first: [u8; 4],
    /// How much of `first` has been read again (4: all of it, or nothing to replay).
    replayed: usize,
    inner: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.first.len() {
            let n = (this.first.len() - this.replayed).min(buf.remaining());
            buf.put_slice(&this.first[this.replayed..this.replayed + n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves one connection and its streams until the peer closes it (or, after `stop`
/// changes, until its streams in flight are done).
async fn serve_connection<IO, S, B>(io: IO, service: S, mut stop: watch::Receiver<()>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = BoxError,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let shared = Arc::new(ConnectionWakeups::default());
    let mut builder = hyper::server::conn::http2::Builder::new(StreamSpawner(shared.clone()));
    builder.timer(hyper_util::rt::TokioTimer::new());
    builder.max_frame_size(apogee_proto::limits::HTTP2_MAX_FRAME_BYTES);
    let mut conn = pin!(builder.serve_connection(hyper_util::rt::TokioIo::new(io), service));
    let mut stopping = pin!(stop.changed());
    let mut stop_seen = false;
    let mut streams = FuturesUnordered::<BoxFuture<()>>::new();
    let mut conn_done = false;
    let inner_waker = Waker::from(shared.clone());
    poll_fn(|cx| {
        shared.task.register(cx.waker());
        shared.polling.store(true, Ordering::SeqCst);
        let mut inner = Context::from_waker(&inner_waker);
        for _ in 0..ROUNDS_PER_RUN {
            shared.woken.store(false, Ordering::SeqCst);
            if !stop_seen && stopping.as_mut().poll(&mut inner).is_ready() {
                stop_seen = true;
                conn.as_mut().graceful_shutdown();
            }
            if !conn_done {
                if let Poll::Ready(result) = conn.as_mut().poll(&mut inner) {
                    conn_done = true;
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "serving a connection");
                    }
                }
            }
            streams.extend(shared.spawned.lock().drain(..));
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(&mut inner) {}
            if conn_done && streams.is_empty() {
                shared.polling.store(false, Ordering::SeqCst);
                return Poll::Ready(());
            }
            if !shared.woken.load(Ordering::SeqCst) {
                break;
            }
        }
        shared.polling.store(false, Ordering::SeqCst);
        // Woken after the last check (by another thread), or out of rounds: run again.
        if shared.woken.load(Ordering::SeqCst) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
}

/// What the wake-ups of a connection's task and its streams share.
#[derive(Default)]
struct ConnectionWakeups {
    /// Streams hyper started since the task last looked.
    spawned: parking_lot::Mutex<Vec<BoxFuture<()>>>,
    /// Something (the connection, a stream, a new stream) was woken.
    woken: AtomicBool,
    /// The task is polling: a wake-up only sets `woken`, the task looks again itself.
    polling: AtomicBool,
    /// The connection's task, woken when it is not polling.
    task: AtomicWaker,
}

impl Wake for ConnectionWakeups {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.task.wake();
        }
    }
}

/// hyper's executor for a connection's streams: it hands them to the connection's task.
#[derive(Clone)]
struct StreamSpawner(Arc<ConnectionWakeups>);

impl<F> hyper::rt::Executor<F> for StreamSpawner
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.0.spawned.lock().push(Box::pin(stream));
        Wake::wake_by_ref(&self.0);
    }
}

/// The service as one connection sees it: every request carries the connection's peer
/// information, as `request.remote_addr()` and `request.peer_certs()` expect.
struct PeerService<S, T> {
    inner: S,
    info: T,
}

impl<S, T, B> hyper::service::Service<http::Request<hyper::body::Incoming>> for PeerService<S, T>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<B>,
            Error = BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Response = http::Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<Result<http::Response<B>, BoxError>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let mut request = request.map(tonic::body::Body::new);
        request.extensions_mut().insert(self.info.clone());
        let mut service = self.inner.clone();
        Box::pin(async move {
            poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(request).await
        })
    }
}

/// Ends a call at the deadline its client sent (`grpc-timeout`) with DEADLINE_EXCEEDED.
#[derive(Clone)]
struct Deadline<S>(S);

impl<S, B> tower_service::Service<http::Request<tonic::body::Body>> for Deadline<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<Result<http::Response<B>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let deadline = request.headers().get("grpc-timeout").and_then(grpc_timeout);
        let call = self.0.call(request);
        Box::pin(async move {
            match deadline {
                None => call.await.map_err(Into::into),
                Some(limit) => match tokio::time::timeout(limit, call).await {
                    Ok(result) => result.map_err(Into::into),
                    Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                        "the call's deadline ({} ms, grpc-timeout) passed",
                        limit.as_millis()
                    ))
                    .into()),
                },
            }
        })
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n); `None` when
/// it is not one (the call then runs without a deadline, as with no header).
pub fn grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let unit = text.chars().last()?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    /// Answers every call with an empty OK response after `delay`.
    #[derive(Clone)]
    struct Slow {
        delay: Duration,
    }

    impl tower_service::Service<http::Request<tonic::body::Body>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new(tonic::body::Body::empty()))
            })
        }
    }

    async fn call_with_timeout(delay: Duration, timeout: Option<&str>) -> http::HeaderMap {
        let mut service = RecoverError::new(Deadline(Slow { delay }));
        let mut request = http::Request::new(tonic::body::Body::empty());
        if let Some(t) = timeout {
            request
                .headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_str(t).unwrap());
        }
        let response = service.call(request).await.unwrap();
        response.headers().clone()
    }

    #[tokio::test]
    async fn a_call_past_its_grpc_timeout_is_answered_deadline_exceeded() {
        let late = call_with_timeout(Duration::from_secs(30), Some("50m")).await;
        assert_eq!(late.get("grpc-status").unwrap(), "4", "{late:?}");
        // In time, or with no deadline at all: the service's own answer.
        let in_time = call_with_timeout(Duration::from_millis(10), Some("20S")).await;
        assert!(in_time.get("grpc-status").is_none(), "{in_time:?}");
        let no_deadline = call_with_timeout(Duration::from_millis(200), None).await;
        assert!(no_deadline.get("grpc-status").is_none(), "{no_deadline:?}");
    }

    /// The server's first SETTINGS frame after an HTTP/2 client preface, as (id, value) pairs.
    async fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // empty SETTINGS
        let mut header = [0u8; 9];
        tcp.read_exact(&mut header).await.unwrap();
        assert_eq!(
            header[3], 4,
            "the server's first frame is SETTINGS: {header:?}"
        );
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn servers_accept_http2_frames_up_to_the_frame_limit() {
        let listener = crate::net::Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            Slow {
                delay: Duration::ZERO,
            },
            listener,
            std::future::pending(),
        ));
        let settings = server_settings(addr).await;
        server.abort();
        // SETTINGS_MAX_FRAME_SIZE (0x5), raised from HTTP/2's 16 KiB.
        assert!(
            settings.contains(&(0x5, apogee_proto::limits::HTTP2_MAX_FRAME_BYTES)),
            "{settings:?}"
        );
    }

    fn parse(text: &str) -> Option<Duration> {
        grpc_timeout(&http::HeaderValue::from_str(text).unwrap())
    }

    #[test]
    fn grpc_timeout_reads_every_unit_and_refuses_the_rest() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("250u"), Some(Duration::from_micros(250)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "10"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

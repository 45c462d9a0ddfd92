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

use crate::net::Listener;
use crate::tls::Protocol;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Rounds of polling a connection and its streams in one run of its task before it makes
/// way for other tasks (it is scheduled again at once if it still has work).
const ROUNDS_PER_RUN: usize = 32;

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
    let service = RecoverError::new(Deadline(service));
    match listener.tls() {
        None => accept_loop(service, listener.incoming(), signal).await,
        Some(tls) => {
            let incoming = listener.incoming().tls(tls, Protocol::Grpc);
            accept_loop(service, incoming, signal).await
        }
    }
}

async fn accept_loop<S, B, IO>(
    service: S,
    incoming: impl tokio_stream::Stream<Item = std::io::Result<IO>>,
    signal: impl Future<Output = ()>,
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
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(());
    {
        // Dropped when the loop ends: the listening socket closes before the drain, so a
        // new client is refused at once instead of waiting on a server that has stopped.
        let mut incoming = pin!(incoming);
        let mut signal = pin!(signal);
        loop {
            let io = tokio::select! {
                _ = &mut signal => break,
                io = incoming.next() => match io {
                    Some(Ok(io)) => io,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "accepting a connection");
                        continue;
                    }
                    None => break,
                },
            };
            let service = PeerService {
                info: io.connect_info(),
                inner: service.clone(),
            };
            tokio::spawn(serve_connection(io, service, stop_rx.clone()));
        }
    }
    let _ = stop_tx.send(());
    drop(stop_rx);
    stop_tx.closed().await;
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

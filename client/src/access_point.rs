//! The client's access points (its NameServers) and the order to ask them in:
//! the one that answered last comes first, and one whose last call failed at
//! the transport level is put last for [`DOWN_FOR`], so a dead NameServer costs
//! one failed attempt per period rather than one per route lookup. Every
//! access point stays in the order: when all the others fail, a NameServer
//! marked down is still tried.
//!
//! The producer and consumers ask the NameServers in that order call by call (a route
//! query names the access point it was sent to). [`FailoverChannel`] is the same order
//! as one gRPC channel, for callers whose requests are the same whichever NameServer
//! takes them (the admin CLI): it connects to the first NameServer that accepts a
//! connection and sends every call there. A NameServer that cannot be reached (refused,
//! connect timeout, failed TLS handshake) is skipped before anything is sent to it, so
//! no request is sent twice; an answer, whatever its status, is never retried elsewhere.

use crate::transport::endpoint;
use crate::{ClientError, ClientTls};
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// How long an access point that failed is asked only after the others.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// The NameServers of one client and what it learned about them.
pub(crate) struct AccessPoints {
    addrs: Vec<String>,
    state: Mutex<State>,
}

struct State {
    /// Index of the access point that answered last.
    preferred: usize,
    /// Per access point: asked only after the others until then.
    down_until: Vec<Option<Instant>>,
}

impl AccessPoints {
    pub(crate) fn new(addrs: Vec<String>) -> Self {
        let n = addrs.len();
        AccessPoints {
            addrs,
            state: Mutex::new(State {
                preferred: 0,
                down_until: vec![None; n],
            }),
        }
    }

    /// The access points in the order to try them now.
    pub(crate) fn order(&self) -> Vec<&str> {
        self.order_at(Instant::now())
    }

    fn order_at(&self, now: Instant) -> Vec<&str> {
        let state = self.state.lock();
        let n = self.addrs.len();
        let rotated = (0..n).map(|i| (state.preferred + i) % n);
        let (up, down): (Vec<usize>, Vec<usize>) =
            rotated.partition(|&i| state.down_until[i].is_none_or(|t| now >= t));
        up.into_iter()
            .chain(down)
            .map(|i| self.addrs[i].as_str())
            .collect()
    }

    /// `addr` answered: it is asked first from now on.
    pub(crate) fn answered(&self, addr: &str) {
        if let Some(i) = self.index(addr) {
            let mut state = self.state.lock();
            state.preferred = i;
            state.down_until[i] = None;
        }
    }

    /// `addr` could not be reached: it is asked last for [`DOWN_FOR`].
    pub(crate) fn unreachable(&self, addr: &str) {
        self.unreachable_at(addr, Instant::now());
    }

    fn unreachable_at(&self, addr: &str, now: Instant) {
        if let Some(i) = self.index(addr) {
            self.state.lock().down_until[i] = Some(now + DOWN_FOR);
        }
    }

    fn index(&self, addr: &str) -> Option<usize> {
        self.addrs.iter().position(|a| a == addr)
    }
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = <Channel as tower_service::Service<HttpRequest>>::Response;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One gRPC channel over several NameServers: each call goes to the NameServer connected
/// to, which is the first in [`AccessPoints`] order that accepted a connection. Cheap to
/// clone (clones share the connection and the order).
#[derive(Clone)]
pub struct FailoverChannel {
    shared: Arc<Failover>,
}

struct Failover {
    points: AccessPoints,
    /// Each access point's endpoint, in the configured order.
    endpoints: Vec<(String, Endpoint)>,
    /// The access point connected to and its channel; none until the first call, and
    /// again after the channel failed.
    connected: Mutex<Option<(String, Channel)>>,
    /// Held while connecting, so concurrent first calls make one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl FailoverChannel {
    /// A channel over `addrs` (`host:port` each, tried in this order first), connecting on
    /// its first call; each connection attempt gives up after `connect_timeout`. Over TLS
    /// with `tls`. Errors: no address, or one that is not `host:port`.
    pub fn new(
        addrs: &[String],
        connect_timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> crate::Result<FailoverChannel> {
        if addrs.is_empty() {
            return Err(ClientError::Config("no nameserver address given".into()));
        }
        let endpoints = addrs
            .iter()
            .map(|a| Ok((a.clone(), endpoint(a, connect_timeout, tls)?)))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(FailoverChannel {
            shared: Arc::new(Failover {
                points: AccessPoints::new(addrs.to_vec()),
                endpoints,
                connected: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The NameServer calls go to: the one connected to (or that answered last), else the
    /// first one to try.
    pub fn current(&self) -> String {
        self.shared.points.order()[0].to_string()
    }

    /// The channel of the NameServer connected to, connecting first when there is none:
    /// to each in order until one accepts. None accepting is an UNAVAILABLE status whose
    /// source is an [`Unreachable`] naming each and why.
    async fn channel(&self) -> Result<(String, Channel), tonic::Status> {
        let cached = self.shared.connected.lock().clone();
        if let Some(c) = cached {
            return Ok(c);
        }
        let _connecting = self.shared.connecting.lock().await;
        let cached = self.shared.connected.lock().clone();
        if let Some(c) = cached {
            return Ok(c);
        }
        let mut failures = Vec::new();
        for addr in self.shared.points.order() {
            let Some((_, endpoint)) = self.shared.endpoints.iter().find(|(a, _)| a == addr) else {
                continue;
            };
            match endpoint.connect().await {
                Ok(channel) => {
                    if !failures.is_empty() {
                        tracing::info!(nameserver = addr, skipped = ?failures, "connected to a later nameserver");
                    }
                    self.shared.points.answered(addr);
                    let c = (addr.to_string(), channel);
                    *self.shared.connected.lock() = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    let why = error_chain(&e);
                    tracing::debug!(nameserver = addr, error = %why, "cannot connect to nameserver");
                    self.shared.points.unreachable(addr);
                    failures.push((addr.to_string(), why));
                }
            }
        }
        Err(Unreachable { failures }.into_status())
    }

    /// The channel to `addr` failed a call: the next call connects anew (to the first
    /// NameServer in order that accepts, `addr` last).
    fn lost(&self, addr: &str) {
        self.shared.points.unreachable(addr);
        let mut connected = self.shared.connected.lock();
        if connected.as_ref().is_some_and(|(a, _)| a == addr) {
            *connected = None;
        }
    }
}

impl tower_service::Service<HttpRequest> for FailoverChannel {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is the connected channel's, awaited in the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (addr, mut channel) = this.channel().await.map_err(BoxError::from)?;
            let sent = async {
                futures::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(req).await
            };
            sent.await.map_err(|e| {
                this.lost(&addr);
                BoxError::from(e)
            })
        })
    }
}

/// No NameServer of a [`FailoverChannel`] accepted a connection: each one and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// `(host:port, the connection error)`, in the order they were tried.
    pub failures: Vec<(String, String)>,
}

impl Unreachable {
    /// The [`Unreachable`] behind a status a [`FailoverChannel`] call failed with.
    pub fn of(status: &tonic::Status) -> Option<&Unreachable> {
        let mut source = std::error::Error::source(status);
        while let Some(e) = source {
            if let Some(u) = e.downcast_ref::<Unreachable>() {
                return Some(u);
            }
            source = e.source();
        }
        None
    }

    fn into_status(self) -> tonic::Status {
        let mut status = tonic::Status::unavailable(self.to_string());
        status.set_source(Arc::new(self));
        status
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.failures.as_slice() {
            [(addr, why)] => write!(f, "cannot reach nameserver {addr}: {why}"),
            failures => {
                write!(f, "cannot reach any nameserver: ")?;
                for (i, (addr, why)) in failures.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{addr}: {why}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Unreachable {}

/// An error and its sources, `: `-separated, each said once (tonic's "transport error"
/// wrapper adds nothing).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> AccessPoints {
        AccessPoints::new(vec!["a:1".into(), "b:2".into(), "c:3".into()])
    }

    #[test]
    fn the_configured_order_until_one_answers() {
        let ap = three();
        assert_eq!(ap.order(), vec!["a:1", "b:2", "c:3"]);
        ap.answered("b:2");
        assert_eq!(ap.order(), vec!["b:2", "c:3", "a:1"]);
        ap.answered("nowhere:9");
        assert_eq!(ap.order(), vec!["b:2", "c:3", "a:1"]);
    }

    #[test]
    fn an_unreachable_one_goes_last_for_a_while() {
        let ap = three();
        let t0 = Instant::now();
        ap.unreachable_at("a:1", t0);
        assert_eq!(ap.order_at(t0), vec!["b:2", "c:3", "a:1"]);
        ap.unreachable_at("b:2", t0);
        assert_eq!(ap.order_at(t0), vec!["c:3", "a:1", "b:2"]);
        // Every one down: all are still tried.
        ap.unreachable_at("c:3", t0);
        assert_eq!(ap.order_at(t0).len(), 3);
        // Back in the rotation once the period is over.
        assert_eq!(ap.order_at(t0 + DOWN_FOR), vec!["a:1", "b:2", "c:3"]);
        // Answering clears the mark at once.
        ap.answered("b:2");
        assert_eq!(ap.order_at(t0)[0], "b:2");
    }

    /// A port nothing listens on (bound, then closed).
    fn closed_port() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        addr
    }

    #[tokio::test]
    async fn none_reachable_names_each_and_why() {
        use tower_service::Service;
        let addrs = vec![closed_port(), closed_port()];
        let mut ch = FailoverChannel::new(&addrs, Duration::from_secs(2), None).unwrap();
        let req = http::Request::builder()
            .uri("/apogee.cluster.v1.Registry/GetClusterInfo")
            .body(tonic::body::Body::empty())
            .unwrap();
        let err = ch.call(req).await.unwrap_err();
        let status = err.downcast::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let unreachable = Unreachable::of(&status).expect("an Unreachable source");
        let tried: Vec<&str> = unreachable
            .failures
            .iter()
            .map(|(a, _)| a.as_str())
            .collect();
        assert_eq!(tried, vec![addrs[0].as_str(), addrs[1].as_str()]);
        let text = status.message();
        assert!(text.starts_with("cannot reach any nameserver: "), "{text}");
        assert!(
            text.contains(&addrs[1]) && text.contains("refused"),
            "{text}"
        );
        // Both are now marked down; the order keeps them all.
        assert_eq!(ch.shared.points.order().len(), 2);
        let one = Unreachable {
            failures: vec![("a:1".into(), "refused".into())],
        };
        assert_eq!(one.to_string(), "cannot reach nameserver a:1: refused");
    }

    #[test]
    fn bad_addresses_are_refused_up_front() {
        let t = Duration::from_secs(1);
        assert!(FailoverChannel::new(&[], t, None).is_err());
        let e = FailoverChannel::new(&["a:1".into(), "b:x".into()], t, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"b:x\""), "{e}");
    }
}

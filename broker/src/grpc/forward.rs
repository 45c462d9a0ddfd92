//! A slave's pass-through to its master for the MessagingService calls it cannot answer as
//! the master would (docs/REPLICATION.md, "Reads from slaves and the master's return").
//!
//! Routes present every broker group as broker id 0 with all its members' addresses
//! (`apogee_nameserver::grpc::route`), so an official client may land on a slave for any
//! call. [`SlaveForwarding`] sits in front of the slave's MessagingService, behind the auth
//! guard (a call is admitted here before it is passed on). While the replication link to the
//! master is up it passes every call that reads or changes the group's data to the master as
//! the HTTP/2 request it is (path, headers with the client id, signature and `grpc-timeout`,
//! body bytes undecoded) over a channel with the link's TLS settings, and streams the master's
//! answer back unchanged: a send is stored once, on the master; a receive pops from the
//! master's state, and an ack applies where the receipt was issued. Each RPC's treatment is
//! [`handling`]; route queries and Telemetry are always answered here.
//!
//! While the master is away (no link) the slave answers reads and consume calls from its
//! replicated state, as before, and refuses writes with HA_NOT_AVAILABLE, which the official
//! producers retry (Java and Go on another broker, Python on the same queue, the Rust crate's
//! next send goes to the next queue).
//!
//! While this broker hands its role of master over (`replication/handover.rs`), the calls a
//! slave would forward wait (at most until the client's deadline) and are then decided by
//! the role the handover ended in: passed to the new master, or answered here. One another
//! member passed here while this one was the master is then passed on once more, to the new
//! master: the only second hop, which the new master answers itself.
//!
//! A forwarded call the master does not answer in time (the client's `grpc-timeout`, a little
//! earlier so the client reads the reason; [`NO_DEADLINE_LIMIT`] without one), or whose
//! connection breaks mid-call, ends with the gRPC status UNAVAILABLE naming the master. A
//! forwarded request carries [`FORWARDED_BY_HEADER`]; a broker never forwards such a request
//! again, so a misconfigured chain cannot loop.

use crate::config::Role;
use crate::produce::slave_refusal;
use crate::replication::{MasterChannel, Replication};
use apogee_server::auth::guard::refuse;
use apogee_server::serve::grpc_timeout;
use bytes::Bytes;
use futures::future::Either;
use http_body::Frame;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;

/// Set on a request a slave passes on, to the forwarding slave's endpoint.
pub const FORWARDED_BY_HEADER: &str = "x-apogee-forwarded-by";
/// How long a forwarded call without `grpc-timeout` may wait for the master's answer: the
/// longest long poll a receive may ask for plus 10 s.
pub const NO_DEADLINE_LIMIT: Duration =
    Duration::from_millis(apogee_proto::limits::MAX_LONG_POLLING_MS as u64 + 10_000);
/// The most a forwarded call gives up before the client's own deadline, so that the client
/// reads UNAVAILABLE and the master's name rather than its own DEADLINE_EXCEEDED.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

const SERVICE: &str = "apache.rocketmq.v2.MessagingService";

/// What a slave does with one MessagingService call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// Answered here whatever the link's state.
    Local,
    /// Passed to the master while the link is up; answered here from the replicated state
    /// while the master is away.
    ForwardElseServe,
    /// Passed to the master while the link is up; refused with HA_NOT_AVAILABLE while the
    /// master is away (a slave stores nothing of its own).
    ForwardElseRefuse,
}

/// How a slave treats the call at gRPC `path`, and why:
///
/// - SendMessage, EndTransaction, RecallMessage, ForwardMessageToDeadLetterQueue write to the
///   commit log or the schedule, which only the master may do (a slave's log is a copy of
///   the master's byte for byte): forwarded, refused while the master is away.
/// - ReceiveMessage, AckMessage, ChangeInvisibleDuration: the master's consume state is the
///   one that counts while it is reachable (one pop per message, the receipt acked where it
///   was issued); PullMessage, GetOffset, QueryOffset and UpdateOffset read or move the
///   master's offsets (the slave's copy may lag). Forwarded; while the master is away the
///   slave serves them from its replicated state and hands its changes back on the
///   master's return.
/// - Heartbeat, NotifyClientTermination, SyncLiteSubscription: the master keeps the client
///   table, the group lookup and the lite subscriptions its consume side reads: forwarded,
///   answered here while the master is away.
/// - QueryRoute, QueryAssignment (the NameServers' answer, the same on every broker) and
///   Telemetry (every broker answers Settings; a client's session is with the member it
///   opened it on), and anything else (the service answers UNIMPLEMENTED): here.
pub fn handling(path: &str) -> Handling {
    let Some(method) = method(path) else {
        return Handling::Local;
    };
    match method {
        "SendMessage" | "EndTransaction" | "RecallMessage" | "ForwardMessageToDeadLetterQueue" => {
            Handling::ForwardElseRefuse
        }
        "ReceiveMessage"
        | "AckMessage"
        | "ChangeInvisibleDuration"
        | "PullMessage"
        | "GetOffset"
        | "QueryOffset"
        | "UpdateOffset"
        | "Heartbeat"
        | "NotifyClientTermination"
        | "SyncLiteSubscription" => Handling::ForwardElseServe,
        _ => Handling::Local,
    }
}

/// The MessagingService method a gRPC `path` names (None: another service's).
fn method(path: &str) -> Option<&str> {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(SERVICE))
        .and_then(|p| p.strip_prefix('/'))
}

/// How long to wait for the master's answer to a call with these headers.
fn answer_limit(headers: &HeaderMap) -> Duration {
    match headers.get("grpc-timeout").and_then(grpc_timeout) {
        Some(limit) => limit.saturating_sub(DEADLINE_MARGIN.min(limit / 10)),
        None => NO_DEADLINE_LIMIT,
    }
}

fn unavailable_status(master: &str, why: &str) -> tonic::Status {
    tonic::Status::unavailable(format!(
        "this slave passed the call to its master {master}, which {why}"
    ))
}

/// The MessagingService of a slave behind its pass-through to the master.
#[derive(Clone)]
pub struct SlaveForwarding<S> {
    inner: S,
    replication: Arc<Replication>,
    broker_name: String,
    /// This broker's advertised endpoint, sent in [`FORWARDED_BY_HEADER`].
    forwarded_by: HeaderValue,
}

impl<S> SlaveForwarding<S> {
    /// `inner` (the MessagingService) behind the pass-through to the master `replication`
    /// links this broker to; `endpoint` is this broker's advertised endpoint.
    pub fn new(
        inner: S,
        replication: Arc<Replication>,
        broker_name: &str,
        endpoint: &str,
    ) -> SlaveForwarding<S> {
        SlaveForwarding {
            inner,
            replication,
            broker_name: broker_name.to_string(),
            forwarded_by: HeaderValue::from_str(endpoint)
                .unwrap_or_else(|_| HeaderValue::from_static("slave")),
        }
    }
}

impl<S: NamedService> NamedService for SlaveForwarding<S> {
    const NAME: &'static str = S::NAME;
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for SlaveForwarding<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    /// A call answered here (every call on a master) runs the service's own future, with no
    /// allocation added to the send and receive path.
    type Future = Either<S::Future, ResponseFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let held = self.replication.membership().handing_over()
            && handling(request.uri().path()) != Handling::Local;
        if !held && self.admit_send_here(&mut request) {
            return self.route(request);
        }
        let mut after = self.clone();
        let limit = answer_limit(request.headers());
        Either::Right(Box::pin(async move {
            let settled = after.replication.membership().handover_settled();
            let _ = tokio::time::timeout(limit, settled).await;
            let mut request = request;
            if after.replication.role() == Role::Slave {
                // Passed here by another member while this one was the master: passed on
                // once more, to the new master, which answers it (the header set again).
                request.headers_mut().remove(FORWARDED_BY_HEADER);
            }
            // Still answered here (the handover timed out): admitted now, or, should
            // another handover hold sends already, by the producer's own gate.
            after.admit_send_here(&mut request);
            match after.route(request) {
                Either::Left(answer) => answer.await,
                Either::Right(answer) => answer.await,
            }
        }))
    }
}

impl<S> SlaveForwarding<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    /// Whether `request` is answered here rather than passed to the master, by the role now.
    fn answers_here(&self, request: &Request<Body>) -> bool {
        request.headers().contains_key(FORWARDED_BY_HEADER)
            || self.replication.role() != Role::Slave
    }

    /// A send this broker answers itself takes its pass of the handover gate here, carried
    /// to the producer in the request's extensions: no handover can begin between this
    /// decision and the producer, which would refuse the send as a slave's once the
    /// handover ended. False while a handover holds sends back (the call waits for it).
    fn admit_send_here(&self, request: &mut Request<Body>) -> bool {
        if method(request.uri().path()) != Some("SendMessage") || !self.answers_here(request) {
            return true;
        }
        match self.replication.membership().try_admit_send() {
            Some(admitted) => {
                request.extensions_mut().insert(admitted);
                true
            }
            None => false,
        }
    }

    /// Answers `request` here, or passes it to the master, by the role now.
    fn route(&mut self, mut request: Request<Body>) -> Either<S::Future, ResponseFuture> {
        let handling = if self.answers_here(&request) {
            Handling::Local
        } else {
            handling(request.uri().path())
        };
        if handling == Handling::Local {
            return Either::Left(self.inner.call(request));
        }
        match self.replication.master_channel() {
            Some(master) => {
                request
                    .headers_mut()
                    .insert(FORWARDED_BY_HEADER, self.forwarded_by.clone());
                Either::Right(Box::pin(forward(master, request)))
            }
            None if handling == Handling::ForwardElseRefuse => {
                let master = self
                    .replication
                    .master_link()
                    .map(|l| l.endpoint)
                    .unwrap_or_default();
                let error = slave_refusal(&self.broker_name, self.replication.broker_id(), &master);
                Either::Right(Box::pin(
                    async move { Ok(refuse(request, true, error).await) },
                ))
            }
            None => Either::Left(self.inner.call(request)),
        }
    }
}

/// Passes `request` to the master and returns its answer, its body streamed through
/// [`FromMaster`].
async fn forward(
    master: MasterChannel,
    request: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let limit = answer_limit(request.headers());
    let give_up = tokio::time::Instant::now() + limit;
    let MasterChannel {
        endpoint,
        mut channel,
    } = master;
    let call = async {
        poll_fn(|cx| channel.poll_ready(cx)).await?;
        channel.call(request).await
    };
    let response = match tokio::time::timeout_at(give_up, call).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            let why = format!("could not be reached: {e}");
            return Ok(unavailable_status(&endpoint, &why).into_http());
        }
        Err(_) => {
            let why = format!("did not answer within {} ms", limit.as_millis());
            return Ok(unavailable_status(&endpoint, &why).into_http());
        }
    };
    Ok(response.map(|body| {
        Body::new(FromMaster {
            inner: body,
            master: endpoint,
            give_up: Box::pin(tokio::time::sleep_until(give_up)),
            limit,
            done: false,
        })
    }))
}

/// The master's response body, passed on frame by frame; a broken stream or the deadline
/// ends it with UNAVAILABLE trailers naming the master.
struct FromMaster {
    inner: Body,
    master: String,
    give_up: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    done: bool,
}

impl FromMaster {
    fn end_unavailable(&mut self, why: &str) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        self.done = true;
        let status = unavailable_status(&self.master, why);
        let mut trailers = HeaderMap::new();
        match status.add_header(&mut trailers) {
            Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Err(status) => Poll::Ready(Some(Err(status))),
        }
    }
}

impl http_body::Body for FromMaster {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.done = frame.is_trailers();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let why = format!("broke the call off: {e}");
                self.end_unavailable(&why)
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.give_up.as_mut().poll(cx).is_ready() {
                    let why = format!("did not finish within {} ms", self.limit.as_millis());
                    return self.end_unavailable(&why);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;

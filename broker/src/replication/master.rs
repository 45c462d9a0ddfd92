//! The master's side of a replication session.
//!
//! 1. The slave's Hello names its broker group and id (checked against ours) and its log end
//!    with the record that ends there. In static mode the handback it carries (consume state
//!    it served while we were away) is adopted first; in controller mode a handback is
//!    ignored (the master never takes a returning member's changes: the member takes our
//!    snapshot instead). We answer Welcome: our log bounds and whether its last record is
//!    one we wrote (same offset, size and CRC); in controller mode also our epoch file and,
//!    when the Hello carried the slave's, the point its log stops agreeing with ours by epoch
//!    ([`divergence_point`]).
//! 2. Probes: the slave checks the record below the epoch point, or looks for the longest
//!    common prefix after a mismatch without one.
//! 3. Start: the slave's log ends at a record boundary of ours; two streamers begin: the log
//!    (whole records from that offset, waiting on the store's log end when caught up, with a
//!    heartbeat every second) and the replicated state (a snapshot, then every change).
//! 4. Reports move the slave's entry in [`Replication`](super::Replication), which feeds
//!    SYNC_MASTER acknowledgements.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apogee_proto::cluster::{
    master_message, replication_server, slave_message, EpochEntry, LogChunk, MasterHeartbeat,
    MasterMessage, ProbeResult, RecordMark as WireMark, SlaveHello, SlaveMessage, StateBatch,
    Welcome,
};
use apogee_proto::time::now_ms;
use apogee_proto::ApogeeError;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::state;
use super::ReplicationContext;
use crate::store::epochs::divergence_point;
use crate::store::{EpochStart, MessageStore, RecordMark, DATA_FORMAT_VERSION};

/// Messages buffered towards one slave (each at most `replication.chunk_bytes` of log).
const OUTBOUND_BUFFER: usize = 16;
/// A caught-up master sends a heartbeat this often.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// State operations per snapshot batch.
const SNAPSHOT_BATCH: usize = 4096;

type Outbound = mpsc::Sender<Result<MasterMessage, Status>>;

/// The `Replication` gRPC service of a broker.
pub struct ReplicationService {
    ctx: ReplicationContext,
    /// Turns true when the broker shuts down: every session ends then (a slave's stream is
    /// never closed by the slave, so the drain of open calls would wait for it forever).
    closing: Option<tokio::sync::watch::Receiver<bool>>,
}

impl ReplicationService {
    pub fn new(ctx: ReplicationContext) -> Self {
        ReplicationService { ctx, closing: None }
    }

    /// Ends every session when `closing` turns true.
    pub fn ending_on(mut self, closing: tokio::sync::watch::Receiver<bool>) -> Self {
        self.closing = Some(closing);
        self
    }
}

/// Waits until `closing` turns true (never without one).
async fn closed(closing: Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(mut c) = closing {
        if c.wait_for(|closing| *closing).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Waits until this broker stops being the master (never in static mode).
async fn no_longer_master(rep: &super::Replication) {
    let mut roles = rep.membership().role_watch();
    if roles.wait_for(|v| !v.is_master()).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(super) fn to_wire(m: RecordMark) -> WireMark {
    WireMark {
        offset: m.offset as i64,
        size: m.size,
        crc: m.crc,
    }
}

pub(super) fn from_wire(m: &WireMark) -> Option<RecordMark> {
    (m.offset >= 0).then_some(RecordMark {
        offset: m.offset as u64,
        size: m.size,
        crc: m.crc,
    })
}

/// Does our log hold exactly this record?
async fn holds(store: &Arc<MessageStore>, mark: RecordMark) -> Result<bool, ApogeeError> {
    let s = store.clone();
    let found = tokio::task::spawn_blocking(move || s.record_mark_at(mark.offset))
        .await
        .map_err(ApogeeError::internal)?
        .map_err(ApogeeError::from)?;
    Ok(found == Some(mark))
}

/// Whether a slave with this Hello may start streaming at its log end.
async fn last_record_matches(
    store: &Arc<MessageStore>,
    hello: &SlaveHello,
) -> Result<bool, ApogeeError> {
    let (start, end) = (store.log_start_offset(), store.log_end_offset());
    let slave_end = hello.log_end_offset.max(0) as u64;
    match hello.last_record.as_ref().and_then(from_wire) {
        // An empty slave log: it starts wherever our log starts.
        None => Ok(hello.log_end_offset == hello.log_start_offset),
        Some(mark) => Ok(slave_end >= start
            && slave_end <= end
            && mark.offset + u64::from(mark.size) == slave_end
            && holds(store, mark).await?),
    }
}

pub(super) fn epochs_to_wire(entries: &[EpochStart]) -> Vec<EpochEntry> {
    entries
        .iter()
        .map(|e| EpochEntry {
            epoch: e.epoch,
            start_offset: e.start_offset as i64,
        })
        .collect()
}

pub(super) fn epochs_from_wire(entries: &[EpochEntry]) -> Vec<EpochStart> {
    entries
        .iter()
        .map(|e| EpochStart {
            epoch: e.epoch,
            start_offset: e.start_offset.max(0) as u64,
        })
        .collect()
}

/// Controller mode: where the slave's log stops agreeing with ours by epoch; -1 when the
/// Hello carried no epochs or the histories cannot tell (the slave probes then).
fn epoch_point(store: &MessageStore, hello: &SlaveHello) -> i64 {
    if hello.epochs.is_empty() {
        return -1;
    }
    let slave_end = hello.log_end_offset.max(0) as u64;
    let ours = store.epochs().entries();
    let theirs = epochs_from_wire(&hello.epochs);
    match divergence_point(&ours, store.log_end_offset(), &theirs, slave_end) {
        Some(point) => point as i64,
        None => {
            tracing::warn!(
                master_epochs = ?ours,
                slave_epochs = ?theirs,
                "the slave's epoch history shares no epoch with ours; it probes for the common prefix"
            );
            -1
        }
    }
}

pub(super) fn check_hello(ctx: &ReplicationContext, hello: &SlaveHello) -> Result<(), ApogeeError> {
    let cfg = &ctx.config;
    let membership = ctx.replication.membership();
    if !membership.is_master() {
        return Err(ApogeeError::PreconditionFailed(format!(
            "broker {} id {} is a slave; replicate from the group's master{}",
            cfg.broker_name,
            cfg.broker_id,
            if membership.controlled_mode() {
                ""
            } else {
                " (broker id 0)"
            }
        )));
    }
    let epoch = membership.master_epoch();
    if membership.controlled_mode() && hello.master_epoch != epoch {
        return Err(ApogeeError::PreconditionFailed(format!(
            "this is the master of epoch {epoch}, and the slave follows the master of epoch {}: \
             a member follows only the master of the epoch the controller assigned it",
            hello.master_epoch
        )));
    }
    if hello.cluster_name != cfg.cluster_name || hello.broker_name != cfg.broker_name {
        return Err(ApogeeError::Forbidden(format!(
            "this is the master of {}/{}; a slave of {}/{} cannot replicate from it",
            cfg.cluster_name, cfg.broker_name, hello.cluster_name, hello.broker_name
        )));
    }
    if hello.broker_id <= 0 {
        return Err(ApogeeError::BadRequest(format!(
            "a slave needs a broker id > 0, not {}",
            hello.broker_id
        )));
    }
    if hello.data_format != DATA_FORMAT_VERSION {
        // Its replicated rows (and its handback) would be in another layout than ours.
        return Err(ApogeeError::PreconditionFailed(format!(
            "the slave's data format is {} and this master's {DATA_FORMAT_VERSION} (0: a broker \
             older than the versions); run one Apogee version on every member of a broker group",
            hello.data_format
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl replication_server::Replication for ReplicationService {
    type ReplicateStream =
        Pin<Box<dyn futures::Stream<Item = Result<MasterMessage, Status>> + Send + 'static>>;

    async fn replicate(
        &self,
        request: Request<Streaming<SlaveMessage>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        apogee_server::cluster_proof::check(
            self.ctx.replication.secret.as_ref(),
            &request,
            "replication stream",
        )?;
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(SlaveMessage {
                kind: Some(slave_message::Kind::Hello(h)),
            }) => h,
            _ => {
                return Err(ApogeeError::BadRequest(
                    "a replication session starts with a Hello".into(),
                )
                .into())
            }
        };
        check_hello(&self.ctx, &hello)?;
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let ctx = self.ctx.clone();
        let closing = self.closing.clone();
        // A child of the call's rpc span (peer, identity); the session number is known once
        // the slave is registered.
        let span = tracing::info_span!(
            "replication",
            slave = hello.broker_id,
            endpoint = %hello.endpoint,
            session = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                let rep = ctx.replication.clone();
                let id = hello.broker_id;
                let session = rep.slave_connected(id, &hello.endpoint);
                tracing::Span::current().record("session", session);
                tracing::info!(slave_log_end = hello.log_end_offset, "slave connected");
                let mut streamers = Streamers::default();
                let result = tokio::select! {
                    r = serve(&ctx, hello, session, &mut inbound, &tx, &mut streamers) => r,
                    _ = closed(closing) => Err(ApogeeError::Unavailable(
                        "the master is shutting down".into(),
                    )),
                    _ = no_longer_master(&rep) => Err(ApogeeError::PreconditionFailed(
                        "this broker is no longer the master of its group".into(),
                    )),
                };
                streamers.stop();
                rep.slave_disconnected(id, session);
                match result {
                    Ok(()) => tracing::info!("slave disconnected"),
                    Err(e) => {
                        tracing::warn!(error = %e, "replication session ended");
                        let _ = tx.send(Err(e.into())).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The two streaming tasks of a session; stopped when the session ends.
#[derive(Default)]
struct Streamers(Vec<JoinHandle<()>>);

impl Streamers {
    fn stop(&mut self) {
        for t in self.0.drain(..) {
            t.abort();
        }
    }
}

async fn send(tx: &Outbound, kind: master_message::Kind) -> Result<(), ApogeeError> {
    tx.send(Ok(MasterMessage { kind: Some(kind) }))
        .await
        .map_err(|_| ApogeeError::Unavailable("the slave went away".into()))
}

async fn serve(
    ctx: &ReplicationContext,
    hello: SlaveHello,
    session: u64,
    inbound: &mut Streaming<SlaveMessage>,
    tx: &Outbound,
    streamers: &mut Streamers,
) -> Result<(), ApogeeError> {
    let store = &ctx.store;
    let rep = &ctx.replication;
    let controlled = rep.membership().controlled_mode();
    let handback_applied = if hello.handback.is_empty() {
        0
    } else if controlled {
        tracing::warn!(
            rows = hello.handback.len(),
            "ignored the slave's handback: in controller mode a member's changes made while \
             it was away are replaced by our snapshot"
        );
        0
    } else {
        let n = state::adopt_handback(&ctx.targets, &hello.handback)?;
        tracing::info!(
            rows = n,
            "adopted the consume state the slave served while we were away"
        );
        n
    };
    rep.open_gate();
    let matches = last_record_matches(store, &hello).await?;
    if !matches {
        tracing::warn!(
            slave_log_end = hello.log_end_offset,
            master_log_end = store.log_end_offset(),
            "the slave's log does not end on a record of ours; it looks for the common prefix"
        );
    }
    send(
        tx,
        master_message::Kind::Welcome(Welcome {
            log_start_offset: store.log_start_offset() as i64,
            log_end_offset: store.log_end_offset() as i64,
            last_record_matches: matches,
            handback_applied: handback_applied as u64,
            data_format: DATA_FORMAT_VERSION,
            epoch_truncate_to: if controlled {
                epoch_point(store, &hello)
            } else {
                -1
            },
            epochs: if controlled {
                epochs_to_wire(&store.epochs().entries())
            } else {
                Vec::new()
            },
        }),
    )
    .await?;
    let id = hello.broker_id;
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(ApogeeError::Unavailable(format!(
                    "the slave's stream broke: {}",
                    status.message()
                )))
            }
        };
        match msg.kind {
            Some(slave_message::Kind::Probe(p)) => {
                let Some(wire) = p.record else {
                    return Err(ApogeeError::BadRequest("a probe without a record".into()));
                };
                let found = match from_wire(&wire) {
                    Some(mark) => holds(store, mark).await?,
                    None => false,
                };
                send(
                    tx,
                    master_message::Kind::Probe(ProbeResult {
                        record: Some(wire),
                        matches: found,
                    }),
                )
                .await?;
            }
            Some(slave_message::Kind::Start(s)) => {
                if !streamers.0.is_empty() {
                    return Err(ApogeeError::BadRequest("Start sent twice".into()));
                }
                let from = check_start(store, s.offset).await?;
                tracing::info!(from, "streaming the log to the slave");
                streamers.0.push(tokio::spawn(
                    stream_log(ctx.clone(), from, tx.clone()).in_current_span(),
                ));
                streamers.0.push(tokio::spawn(
                    stream_state(ctx.clone(), tx.clone()).in_current_span(),
                ));
            }
            Some(slave_message::Kind::Report(r)) => {
                rep.slave_report(
                    id,
                    session,
                    r.written_offset.max(0) as u64,
                    r.synced_offset.max(0) as u64,
                );
            }
            Some(slave_message::Kind::Hello(_)) | None => {
                return Err(ApogeeError::BadRequest(
                    "unexpected message in a replication session".into(),
                ))
            }
        }
    }
}

/// A slave may start at our log start, our log end, or any record boundary in between.
async fn check_start(store: &Arc<MessageStore>, offset: i64) -> Result<u64, ApogeeError> {
    let (start, end) = (store.log_start_offset(), store.log_end_offset());
    let off = u64::try_from(offset).unwrap_or(u64::MAX);
    let boundary = off == start || off == end || {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.record_mark_at(off))
            .await
            .map_err(ApogeeError::internal)?
            .map_err(ApogeeError::from)?
            .is_some()
    };
    if off < start || off > end || !boundary {
        return Err(ApogeeError::PreconditionFailed(format!(
            "log offset {offset} is not a record boundary of the master's log [{start}, {end}]"
        )));
    }
    Ok(off)
}

/// Streams whole records from `offset` for as long as the slave listens.
async fn stream_log(ctx: ReplicationContext, mut offset: u64, tx: Outbound) {
    let store = ctx.store.clone();
    let chunk = ctx.config.replication.chunk_bytes;
    let mut end = store.log_end_watch();
    loop {
        end.borrow_and_update();
        let s = store.clone();
        let slice = match tokio::task::spawn_blocking(move || s.read_records(offset, chunk)).await {
            Ok(Ok(slice)) => slice,
            Ok(Err(e)) => {
                tracing::error!(offset, error = %e, "cannot read the log for the slave");
                let _ = tx.send(Err(ApogeeError::from(e).into())).await;
                return;
            }
            Err(_) => return,
        };
        match slice {
            Some(s) => {
                let len = s.bytes.len() as u64;
                let msg = master_message::Kind::Chunk(LogChunk {
                    offset: s.offset as i64,
                    segment_base: s.segment_base as i64,
                    data: s.bytes,
                    master_end_offset: store.log_end_offset() as i64,
                });
                if send(&tx, msg).await.is_err() {
                    return;
                }
                offset += len;
            }
            None => {
                tokio::select! {
                    changed = end.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(HEARTBEAT) => {
                        let hb = master_message::Kind::Heartbeat(MasterHeartbeat {
                            master_end_offset: store.log_end_offset() as i64,
                            now_ms: now_ms(),
                        });
                        if send(&tx, hb).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Streams the replicated state: a snapshot, then every change; a new snapshot when the
/// slave fell so far behind that changes were dropped.
async fn stream_state(ctx: ReplicationContext, tx: Outbound) {
    let journal = ctx.targets.journal.clone();
    loop {
        let mut changes = journal.subscribe();
        let j = journal.clone();
        let batches = match tokio::task::spawn_blocking(move || j.snapshot(SNAPSHOT_BATCH)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot snapshot the replicated state");
                let _ = tx.send(Err(ApogeeError::from(e).into())).await;
                return;
            }
            Err(_) => return,
        };
        let last = batches.len().saturating_sub(1);
        if batches.is_empty() {
            let empty = StateBatch {
                snapshot_begin: true,
                snapshot_end: true,
                ops: Vec::new(),
            };
            if send(&tx, master_message::Kind::State(empty)).await.is_err() {
                return;
            }
        }
        for (i, ops) in batches.into_iter().enumerate() {
            let batch = StateBatch {
                snapshot_begin: i == 0,
                snapshot_end: i == last,
                ops,
            };
            if send(&tx, master_message::Kind::State(batch)).await.is_err() {
                return;
            }
        }
        loop {
            match changes.recv().await {
                Ok(ops) => {
                    let batch = StateBatch {
                        snapshot_begin: false,
                        snapshot_end: false,
                        ops: ops.as_ref().clone(),
                    };
                    if send(&tx, master_message::Kind::State(batch)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        dropped = n,
                        "the slave fell behind on state changes; sending a new snapshot"
                    );
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

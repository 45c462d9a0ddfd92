//! The slave's side: find the master, agree on a common log, then apply what it streams.
//!
//! Each attempt: look up the master (in controller mode the one the controller assigned;
//! else configured, or the group's broker id 0 in the NameServers' cluster info), open
//! `Replicate`, send Hello with our log end, its last record, the master epoch we follow (a
//! master of another epoch refuses us: so we never follow an older one), and in static mode
//! the handback (consume state we changed while the master was away).
//!
//! Agreeing on the log. In controller mode the Hello also carries our epoch file, and the
//! master answers with its own and the point where our log stops agreeing with its log by
//! epoch (`store::epochs::divergence_point`). That point is checked by one probe (the
//! master must hold our record just below it); a failed check is logged as an error and,
//! like a master without a point for us (no shared epoch, or we have no epoch file), leads
//! to today's search. Otherwise (static mode) we search only when the master does not hold
//! our last record: binary-search the common prefix with probes (first over segment
//! starts, then over the records of one segment). The cut is logged as a warning with the
//! bytes, records and message ids dropped (up to [`MAX_IDS_LOGGED`], then "and N more");
//! the store drops the epoch entries beyond it and rebuilds the derived index. In
//! controller mode our consumer offsets and consume state are then dropped until the
//! master's snapshot replaces every replicated table (no handback there: the master never
//! takes a returning member's changes), and our epoch file becomes the master's entries
//! that our log reaches, extended as it reaches more.
//!
//! Then Start at our log end and apply chunks (byte for byte, indexed by recovery's
//! dispatch) and state batches, reporting written and synced offsets after every chunk and
//! every second. Any failure ends the attempt; the next one starts after
//! `replication.reconnect_ms`. While not connected, the master counts as away: in static
//! mode consume changes made here are kept for the handback.

use std::sync::Arc;
use std::time::Duration;

use apogee_proto::cluster::{
    master_message, registry_client::RegistryClient, replication_client::ReplicationClient,
    slave_message, GetClusterInfoRequest, MasterMessage, Probe, SlaveHello, SlaveMessage,
    SlaveReport, Start,
};
use apogee_proto::time::now_ms;
use apogee_proto::ApogeeError;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::master::{epochs_from_wire, epochs_to_wire, from_wire, to_wire};
use super::state;
use super::ReplicationContext;
use crate::store::{EpochStart, MessageStore, RecordMark, DATA_FORMAT_VERSION};

const RPC_TIMEOUT: Duration = Duration::from_secs(3);
/// A master silent this long (it heartbeats every second) is taken as gone: the slave then
/// serves reads itself instead of forwarding them to a master that hangs. About as soon as
/// the NameServers drop a hung master from the routes (2 missed 1 s heartbeats by default).
const MASTER_SILENCE: Duration = Duration::from_secs(3);
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Message ids named in the warning of a truncation; past it, "and N more".
const MAX_IDS_LOGGED: usize = 1000;

type SlaveTx = mpsc::Sender<SlaveMessage>;

fn err(e: impl std::fmt::Display) -> ApogeeError {
    ApogeeError::Unavailable(e.to_string())
}

/// The replication loop of a slave, until shutdown.
pub(super) async fn run(ctx: ReplicationContext, mut stop: watch::Receiver<bool>) {
    let rep = ctx.replication.clone();
    let pause = Duration::from_millis(ctx.config.replication.reconnect_ms);
    let mut last_error = String::new();
    loop {
        let attempt = async {
            let master = find_master(&ctx).await?;
            rep.update_link(|l| l.endpoint = master.clone());
            let span = tracing::info_span!("replication", master = %master);
            session(&ctx, &master).instrument(span).await
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        rep.set_master_channel(None);
        rep.update_link(|l| l.connected = false);
        ctx.targets.journal.set_master_away(true);
        // The controller hears at once that this member lost its master, and its answer
        // comes sooner: after a handover it names this member the new master.
        rep.membership().beat_now();
        if let Err(e) = result {
            let text = e.to_string();
            if text != last_error {
                tracing::warn!(error = %text, "replication from the master stopped; retrying");
                last_error = text;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// The master's endpoint: in controller mode the assigned one; else configured, or the live
/// broker id 0 of our group per the NameServers.
async fn find_master(ctx: &ReplicationContext) -> Result<String, ApogeeError> {
    let cfg = &ctx.config;
    let membership = ctx.replication.membership();
    if membership.controlled_mode() {
        let view = membership.role_view();
        return match view.role {
            crate::membership::MemberRole::Slave { master_endpoint } => Ok(master_endpoint),
            _ => Err(ApogeeError::Unavailable(format!(
                "the controller assigns this member no master to follow (epoch {})",
                view.master_epoch
            ))),
        };
    }
    if !cfg.replication.master.is_empty() {
        return Ok(cfg.replication.master.clone());
    }
    let tls = cfg.tls.client_tls().map_err(err)?;
    for ns in &cfg.nameservers {
        let Ok(endpoint) = apogee_proto::tls::endpoint(ns, tls.as_ref()) else {
            continue;
        };
        let Ok(channel) = endpoint
            .connect_timeout(RPC_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            .connect()
            .await
        else {
            continue;
        };
        let mut request = tonic::Request::new(GetClusterInfoRequest {});
        if let Some(secret) = &ctx.replication.secret {
            secret.sign(&mut request);
        }
        let Ok(info) = RegistryClient::new(channel).get_cluster_info(request).await else {
            continue;
        };
        let master = info
            .into_inner()
            .groups
            .into_iter()
            .filter(|g| g.cluster_name == cfg.cluster_name && g.broker_name == cfg.broker_name)
            .flat_map(|g| g.members)
            .find(|m| m.broker_id == 0);
        if let Some(m) = master {
            return Ok(m.endpoint);
        }
    }
    Err(ApogeeError::Unavailable(format!(
        "no NameServer knows a live master of broker group {}/{}",
        cfg.cluster_name, cfg.broker_name
    )))
}

/// Reads the next message from the master, bounded by [`MASTER_SILENCE`].
async fn next(inbound: &mut Streaming<MasterMessage>) -> Result<master_message::Kind, ApogeeError> {
    match tokio::time::timeout(MASTER_SILENCE, inbound.message()).await {
        Err(_) => Err(err("the master went silent")),
        Ok(m) => received(m),
    }
}

/// What one read of the master's stream brought.
fn received(
    message: Result<Option<MasterMessage>, Status>,
) -> Result<master_message::Kind, ApogeeError> {
    match message {
        Err(status) => Err(with_causes(status)),
        Ok(None) => Err(err("the master closed the stream")),
        Ok(Some(MasterMessage { kind: Some(k) })) => Ok(k),
        Ok(Some(_)) => Err(err("an empty message from the master")),
    }
}

/// A broken stream's status as an error whose text also names the causes below it (the
/// transport's: hyper's "error reading a body from connection" says nothing without h2's
/// reason or the I/O error under it).
pub(super) fn with_causes(status: Status) -> ApogeeError {
    let mut text = status.message().to_string();
    let mut cause = std::error::Error::source(&status);
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        cause = c.source();
    }
    ApogeeError::from(Status::new(status.code(), text))
}

/// Queues a message to the master; a master that takes none for [`MASTER_SILENCE`] (its
/// stream's window full) is taken as gone.
async fn send(tx: &SlaveTx, kind: slave_message::Kind) -> Result<(), ApogeeError> {
    let sent = tokio::time::timeout(MASTER_SILENCE, tx.send(SlaveMessage { kind: Some(kind) }));
    sent.await
        .map_err(|_| err("the master stopped reading the stream"))?
        .map_err(|_| err("the stream to the master closed"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApogeeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApogeeError::internal)?
        .map_err(ApogeeError::from)
}

async fn session(ctx: &ReplicationContext, master: &str) -> Result<(), ApogeeError> {
    let cfg = &ctx.config;
    let store = ctx.store.clone();
    let tls = cfg.tls.client_tls().map_err(err)?;
    let endpoint = apogee_proto::tls::endpoint(master, tls.as_ref())
        .map_err(err)?
        .connect_timeout(RPC_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| err(format!("cannot reach the master at {master}: {e}")))?;
    // The calls this slave forwards go on their own connection, made when first needed.
    let forwarding = endpoint.connect_lazy();
    let controlled = ctx.replication.membership().controlled_mode();
    // Controller mode has no handback: the new master never takes a returning member's
    // changes; its snapshot replaces them.
    let handback = if controlled {
        Vec::new()
    } else {
        let j = ctx.targets.journal.clone();
        blocking(move || j.take_handback()).await?
    };
    let our_epochs = if controlled {
        store.epochs().entries()
    } else {
        Vec::new()
    };
    let hello = SlaveHello {
        cluster_name: cfg.cluster_name.clone(),
        broker_name: cfg.broker_name.clone(),
        broker_id: cfg.broker_id,
        endpoint: cfg.advertised_endpoint(),
        log_start_offset: store.log_start_offset() as i64,
        log_end_offset: store.log_end_offset() as i64,
        last_record: store.last_record().map(to_wire),
        handback,
        data_format: DATA_FORMAT_VERSION,
        master_epoch: ctx.replication.membership().master_epoch(),
        epochs: epochs_to_wire(&our_epochs),
    };
    let handed_back = !hello.handback.is_empty();
    let (tx, rx) = mpsc::channel::<SlaveMessage>(64);
    send(&tx, slave_message::Kind::Hello(hello)).await?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(secret) = &ctx.replication.secret {
        secret.sign(&mut request);
    }
    let mut inbound = ReplicationClient::new(channel)
        .max_decoding_message_size(apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES)
        .replicate(request)
        .await?
        .into_inner();
    let welcome = match next(&mut inbound).await? {
        master_message::Kind::Welcome(w) => w,
        _ => return Err(err("the master did not answer Hello with Welcome")),
    };
    if welcome.data_format != DATA_FORMAT_VERSION {
        return Err(err(format!(
            "the master's data format is {} and ours {DATA_FORMAT_VERSION} (0: a broker older \
             than the versions); run one Apogee version on every member of a broker group",
            welcome.data_format
        )));
    }
    if handed_back {
        let j = ctx.targets.journal.clone();
        blocking(move || j.clear_handback()).await?;
        tracing::info!(
            rows = welcome.handback_applied,
            "handed the consume state served while the master was away back to it"
        );
    }
    ctx.targets.journal.set_master_away(false);
    let master_start = welcome.log_start_offset.max(0) as u64;
    let by_epoch = (controlled && !our_epochs.is_empty() && welcome.epoch_truncate_to >= 0)
        .then_some(welcome.epoch_truncate_to as u64);
    let cut = reconcile(
        &store,
        &tx,
        &mut inbound,
        by_epoch,
        welcome.last_record_matches,
    )
    .await?;
    if let Some((to, found_by)) = cut {
        let to = to.max(master_start);
        truncate(&store, to, found_by).await?;
        if controlled {
            // Until the master's snapshot arrives, no consume row may point into what was cut.
            let t = ctx.targets.clone();
            tokio::task::spawn_blocking(move || state::forget_consume_progress(&t))
                .await
                .map_err(ApogeeError::internal)??;
        }
    }
    let master_epochs = epochs_from_wire(&welcome.epochs);
    if controlled {
        let (s, m) = (store.clone(), master_epochs.clone());
        blocking(move || s.epochs().follow(&m, s.log_end_offset())).await?;
    }
    let from = if store.last_record().is_none() {
        master_start
    } else {
        store.log_end_offset()
    };
    send(
        &tx,
        slave_message::Kind::Start(Start {
            offset: from as i64,
        }),
    )
    .await?;
    ctx.replication
        .set_master_channel(Some(super::MasterChannel {
            endpoint: master.to_string(),
            channel: forwarding,
        }));
    ctx.replication.update_link(|l| {
        l.connected = true;
        l.master_end_offset = welcome.log_end_offset.max(0) as u64;
        l.last_contact_ms = now_ms();
    });
    tracing::info!(
        from,
        master_log_end = welcome.log_end_offset,
        "replicating from the master"
    );
    let pending: Vec<EpochStart> = if controlled {
        master_epochs
    } else {
        Vec::new()
    };
    apply_stream(ctx, &tx, &mut inbound, pending).await
}

/// Where to cut our log, and how that point was found: by epoch (checked by probing the
/// record below it; a disagreement is logged as an error and the common prefix probed for
/// instead), or by probing when the master did not give one and our last record is not its.
async fn reconcile(
    store: &Arc<MessageStore>,
    tx: &SlaveTx,
    inbound: &mut Streaming<MasterMessage>,
    by_epoch: Option<u64>,
    last_record_matches: bool,
) -> Result<Option<(u64, &'static str)>, ApogeeError> {
    let end = store.log_end_offset();
    if store.last_record().is_none() {
        return Ok(None);
    }
    if let Some(point) = by_epoch {
        if epoch_point_holds(store, tx, inbound, point, last_record_matches).await? {
            return Ok((point < end).then_some((point, "epoch")));
        }
        tracing::error!(
            epoch_point = point,
            our_log_end = end,
            "the epoch history disagreed with the log: the master does not hold our record \
             below the epoch point; finding the common prefix by probing instead"
        );
    } else if last_record_matches {
        return Ok(None);
    }
    let prefix = common_prefix(store, tx, inbound).await?;
    Ok((prefix < end || !last_record_matches).then_some((prefix, "probe")))
}

/// Whether the master holds our record that ends at the epoch point (our last record when
/// the point is our log end; nothing to check at our log start).
async fn epoch_point_holds(
    store: &Arc<MessageStore>,
    tx: &SlaveTx,
    inbound: &mut Streaming<MasterMessage>,
    point: u64,
    last_record_matches: bool,
) -> Result<bool, ApogeeError> {
    if point == store.log_end_offset() {
        return Ok(last_record_matches);
    }
    if point <= store.local_start_offset() {
        return Ok(true);
    }
    let s = store.clone();
    let below = blocking(move || {
        let Some(base) = s.segment_bases().into_iter().rev().find(|b| *b < point) else {
            return Ok(None);
        };
        let marks = s.segment_records(base)?;
        Ok(marks
            .into_iter()
            .find(|m| m.offset + u64::from(m.size) == point))
    })
    .await?;
    match below {
        Some(mark) => probe(tx, inbound, mark).await,
        None => Ok(false),
    }
}

/// Cuts our log back to `to`, first logging what goes: bytes, records and message ids.
async fn truncate(store: &Arc<MessageStore>, to: u64, found_by: &str) -> Result<(), ApogeeError> {
    let end = store.log_end_offset();
    let s = store.clone();
    let dropped = blocking(move || s.records_beyond(to, MAX_IDS_LOGGED)).await?;
    tracing::warn!(
        our_log_end = end,
        truncate_to = to,
        found_by,
        dropped_bytes = dropped.bytes,
        dropped_records = dropped.records,
        dropped_ids = %dropped.ids_text(),
        "our log holds records the master never wrote; truncating to the common prefix"
    );
    store
        .truncate_replica(to)
        .await
        .map_err(ApogeeError::from)?;
    Ok(())
}

/// Applies chunks and state until the stream breaks; in controller mode also records each
/// of the master's epochs in our epoch file once our log reaches its start.
async fn apply_stream(
    ctx: &ReplicationContext,
    tx: &SlaveTx,
    inbound: &mut Streaming<MasterMessage>,
    master_epochs: Vec<EpochStart>,
) -> Result<(), ApogeeError> {
    // Controller mode: the master's epochs our log has not reached yet.
    let mut epochs_ahead = master_epochs
        .last()
        .is_some_and(|e| e.start_offset > ctx.store.log_end_offset());
    let store = &ctx.store;
    let rep = &ctx.replication;
    let targets = ctx.targets.clone();
    let mut report_tick = tokio::time::interval(REPORT_INTERVAL);
    // One deadline for the whole stream, moved by every message: a read started afresh at
    // each report tick would never see a silence longer than the tick.
    let mut silent = std::pin::pin!(tokio::time::sleep(MASTER_SILENCE));
    loop {
        let kind = tokio::select! {
            m = inbound.message() => received(m)?,
            _ = &mut silent => return Err(err("the master went silent")),
            _ = report_tick.tick() => {
                report(tx, store.log_end_offset(), store.flushed_offset()).await?;
                continue;
            }
        };
        silent
            .as_mut()
            .reset(tokio::time::Instant::now() + MASTER_SILENCE);
        let now = now_ms();
        match kind {
            master_message::Kind::Chunk(c) => {
                let (offset, base) = (c.offset.max(0) as u64, c.segment_base.max(0) as u64);
                let done = store
                    .append_replicated(offset, base, c.data)
                    .await
                    .map_err(ApogeeError::from)?;
                rep.update_link(|l| {
                    l.master_end_offset = c.master_end_offset.max(0) as u64;
                    l.last_contact_ms = now;
                });
                if epochs_ahead
                    && master_epochs
                        .iter()
                        .any(|e| e.start_offset > offset && e.start_offset <= done.written)
                {
                    let (s, m) = (store.clone(), master_epochs.clone());
                    blocking(move || s.epochs().follow(&m, done.written)).await?;
                    epochs_ahead = master_epochs
                        .last()
                        .is_some_and(|e| e.start_offset > done.written);
                }
                report(tx, done.written, done.flushed).await?;
            }
            master_message::Kind::State(batch) => {
                let t = targets.clone();
                tokio::task::spawn_blocking(move || state::apply_batch(&t, &batch))
                    .await
                    .map_err(ApogeeError::internal)??;
                rep.update_link(|l| l.last_contact_ms = now);
            }
            master_message::Kind::Heartbeat(h) => {
                rep.update_link(|l| {
                    l.master_end_offset = h.master_end_offset.max(0) as u64;
                    l.last_contact_ms = now;
                });
            }
            master_message::Kind::Welcome(_) | master_message::Kind::Probe(_) => {
                return Err(err("unexpected message from the master while streaming"));
            }
        }
    }
}

async fn report(tx: &SlaveTx, written: u64, synced: u64) -> Result<(), ApogeeError> {
    send(
        tx,
        slave_message::Kind::Report(SlaveReport {
            written_offset: written as i64,
            synced_offset: synced as i64,
        }),
    )
    .await
}

/// Asks the master whether it holds `mark`.
async fn probe(
    tx: &SlaveTx,
    inbound: &mut Streaming<MasterMessage>,
    mark: RecordMark,
) -> Result<bool, ApogeeError> {
    send(
        tx,
        slave_message::Kind::Probe(Probe {
            record: Some(to_wire(mark)),
        }),
    )
    .await?;
    match next(inbound).await? {
        master_message::Kind::Probe(r) if r.record.as_ref().and_then(from_wire) == Some(mark) => {
            Ok(r.matches)
        }
        _ => Err(err("the master did not answer a probe")),
    }
}

/// The end of the longest prefix of our log that the master also holds (0 if none).
/// Assumes the logs agree up to one point and differ after it, so "the master holds record
/// r" is true for a prefix of our records: binary search over segment starts, then over the
/// records of the last segment that starts in agreement.
async fn common_prefix(
    store: &Arc<MessageStore>,
    tx: &SlaveTx,
    inbound: &mut Streaming<MasterMessage>,
) -> Result<u64, ApogeeError> {
    let bases = store.segment_bases();
    let mut firsts = Vec::with_capacity(bases.len());
    for base in bases {
        let s = store.clone();
        if let Some(m) = blocking(move || s.record_mark_at(base)).await? {
            firsts.push(m);
        }
    }
    let Some(seg) = last_true(&firsts, tx, inbound).await? else {
        return Ok(0);
    };
    let s = store.clone();
    let base = seg.offset;
    let records = blocking(move || s.segment_records(base)).await?;
    let last = last_true(&records, tx, inbound).await?.unwrap_or(seg);
    Ok(last.offset + u64::from(last.size))
}

/// The last mark the master holds, assuming it holds a prefix of `marks`.
async fn last_true(
    marks: &[RecordMark],
    tx: &SlaveTx,
    inbound: &mut Streaming<MasterMessage>,
) -> Result<Option<RecordMark>, ApogeeError> {
    // Invariant: marks[..lo] are held, marks[hi..] are not.
    let (mut lo, mut hi) = (0usize, marks.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if probe(tx, inbound, marks[mid]).await? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.checked_sub(1).map(|i| marks[i]))
}

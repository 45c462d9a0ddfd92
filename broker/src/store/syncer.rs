//! The sync thread of [`FlushMode::Sync`](super::FlushMode::Sync): pipelined group commit.
//!
//! The writer writes and indexes a group, registers each request here under the log offset
//! its records end at, kicks this thread and takes the next group at once. This thread
//! fdatasyncs the last segment (reading the log end first: bytes below it are in the last
//! segment or in sealed segments, which a roll already synced), moves the flushed offset (the
//! writer records it in the index with its next group; this thread writes nothing there) and
//! answers every request it covers; on a SYNC_MASTER it hands them on to the wait for a slave
//! (`replica_log.rs`), so local flush and slave confirmation are two conditions of one wait.
//! A failed fdatasync poisons the store and fails every waiting request.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use parking_lot::Mutex;

use super::writer::AppendReply;
use super::{AppendResult, Shared, StoreError};

type Waiting = (Vec<AppendResult>, AppendReply);

/// Requests waiting for an fdatasync, keyed by the log offset they end at.
#[derive(Default)]
pub(crate) struct FlushWaits {
    waiting: Mutex<BTreeMap<u64, Vec<Waiting>>>,
}

impl FlushWaits {
    pub(crate) fn register(&self, end: u64, results: Vec<AppendResult>, reply: AppendReply) {
        self.waiting
            .lock()
            .entry(end)
            .or_default()
            .push((results, reply));
    }

    fn take_up_to(&self, flushed: u64) -> Vec<(u64, Waiting)> {
        let mut w = self.waiting.lock();
        let rest = w.split_off(&(flushed + 1));
        std::mem::replace(&mut *w, rest)
            .into_iter()
            .flat_map(|(end, ws)| ws.into_iter().map(move |x| (end, x)))
            .collect()
    }
}

/// Answers (or hands on to the replica wait) what the flushed offset covers.
fn answer(shared: &Shared, flushed: u64) {
    let cfg = &shared.config;
    for (end, (results, reply)) in shared.flush_waits.take_up_to(flushed) {
        if shared.sync_replicas() {
            shared
                .replicas
                .register(end, results, reply, cfg.replica_timeout);
        } else {
            let _ = reply.send(Ok(results));
        }
    }
}

/// The thread body: one pass per kick, until the writer is gone.
pub(crate) fn run_syncer(shared: Arc<Shared>, kicks: Receiver<()>) {
    loop {
        let closing = kicks.recv().is_err();
        while kicks.try_recv().is_ok() {}
        if let Err(e) = shared.log.sync_to_end() {
            let reason = format!("fdatasync failed, the store accepts no more writes: {e}");
            tracing::error!("{reason}");
            shared.set_failed(reason.clone());
            for (_, (_, reply)) in shared.flush_waits.take_up_to(u64::MAX) {
                let _ = reply.send(Err(StoreError::Failed(reason.clone())));
            }
            return;
        }
        answer(&shared, shared.log.flushed_offset());
        if closing {
            return;
        }
    }
}

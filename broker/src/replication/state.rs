//! Applying replicated state to the tables that serve from it.
//!
//! A slave applies the master's state batches to its index database through the journal
//! (`journal.rs`), then makes the in-memory tables follow: the consume queues a batch touched
//! are re-read under their own locks, topic and group tables when their configs changed, and
//! everything (the receipt secret included) at the end of a snapshot. A master adopting a
//! slave's handback does the same for the queues handed back.

use std::sync::Arc;

use apogee_proto::cluster::{StateBatch, StateOp};
use apogee_proto::ApogeeError;

use super::journal::JournaledKv;
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::topics::TopicTable;

/// What replicated state lands in.
#[derive(Clone)]
pub struct StateTargets {
    pub journal: Arc<JournaledKv>,
    pub consume: Arc<ConsumeEngine>,
    pub topics: Arc<TopicTable>,
    pub groups: Arc<GroupTable>,
}

/// Slave: applies one batch from the master.
pub fn apply_batch(t: &StateTargets, batch: &StateBatch) -> Result<(), ApogeeError> {
    if batch.snapshot_begin {
        t.journal.clear_replicated().map_err(ApogeeError::from)?;
    }
    let (queues, configs) = t.journal.apply(&batch.ops).map_err(ApogeeError::from)?;
    if batch.snapshot_end {
        t.consume.reload_all()?;
        t.topics.reload()?;
        t.groups.reload()?;
        tracing::info!("applied the master's state snapshot");
        return Ok(());
    }
    if !queues.is_empty() {
        t.consume.reload_queues(&queues)?;
    }
    if configs {
        t.topics.reload()?;
        t.groups.reload()?;
    }
    Ok(())
}

/// Master: adopts the consume state a slave served while we were away; returns rows applied.
pub fn adopt_handback(t: &StateTargets, ops: &[StateOp]) -> Result<usize, ApogeeError> {
    let queues = t.journal.adopt(ops).map_err(ApogeeError::from)?;
    t.consume.reload_queues(&queues)?;
    Ok(ops.len())
}

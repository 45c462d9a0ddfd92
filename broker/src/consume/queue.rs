//! A pop ([`ConsumeEngine::pop`]): over the queues asked for, and each queue's part of it
//! ([`QueuePop`]: retries, FIFO turns), run under that queue's lock on its
//! [`QueueState`].
//!
//! A lite queue (`%LITE%<parent>%<lite>`, RIP-83 lite topics) is consumed as one message
//! group, whatever message groups its messages carry: one delivery in flight at a time, the
//! next handed out when it is acknowledged or dead-lettered, so it is strictly ordered and
//! held by one consumer at a time. It keeps no waiting entries: the scan simply stops at the
//! pop offset while something is in flight.

use super::queue_state::QueueState;
use super::state::{internal, ConsumeEngine, Delivery, PopRequest};
use crate::store::keys::QueueKey;
use crate::store::values::{message_group_hash, Inflight};
use crate::store::{Cf, KvBatch, QueueEntry, StoredMessage};
use apogee_proto::{names, ApogeeError};
use std::collections::HashSet;
use std::sync::Arc;

/// Most FIFO messages one queue of a group keeps waiting for their message
/// group's turn; past it the queue is not scanned further until some finish.
pub const MAX_FIFO_WAITING_PER_QUEUE: usize = 4096;

/// One queue's part of a pop, under that queue's lock.
pub(super) struct QueuePop<'p, 'r> {
    pub(super) engine: &'p ConsumeEngine,
    pub(super) req: &'p PopRequest<'r>,
    pub(super) key: &'p QueueKey,
    pub(super) now_ms: i64,
    pub(super) batch: &'p mut KvBatch,
    pub(super) out: &'p mut Vec<Delivery>,
}

impl QueuePop<'_, '_> {
    fn room(&self) -> bool {
        self.out.len() < self.req.max
    }

    /// Where a delivery made now becomes visible again: after the invisible
    /// time plus, unless the broker renews it, the group's backoff. The group's
    /// last attempt has no backoff: no retry follows it, so it goes to the
    /// dead-letter topic as soon as its invisible time is over.
    fn next_visible(&self, attempt: u32) -> i64 {
        let last = attempt >= self.req.group.max_delivery_attempts;
        let backoff = match self.req.renew_until_ms {
            Some(_) => 0,
            None if last => 0,
            None => self.req.group.retry.backoff_ms(attempt) as i64,
        };
        self.now_ms + self.req.invisible_ms + backoff
    }

    /// Hands out `f` (attempt raised, unless its last delivery was suspended) and records
    /// it in `state`.
    /// The record of entry `e` when the request's filter takes it (the tag hash first, before
    /// any read; then the record).
    fn read_matching(&self, e: &QueueEntry) -> Result<Option<StoredMessage>, ApogeeError> {
        if !self.req.filter.may_match_hash(e.tag_hash) {
            return Ok(None);
        }
        let message = self
            .engine
            .store
            .read_at(e.log_offset, e.size)
            .map_err(internal)?;
        Ok(self.req.filter.matches(&message.msg).then_some(message))
    }

    fn hand_out(&mut self, state: &mut QueueState, message: StoredMessage, mut f: Inflight) {
        let offset = message.queue_offset;
        if !f.is_suspended() || f.attempt == 0 {
            f.attempt += 1;
        }
        f.nonce = rand::random();
        f.visible_at_ms = self.next_visible(f.attempt);
        f.renew_until_ms = self.req.renew_until_ms.unwrap_or(0);
        self.batch
            .put(Cf::ConsumeState, self.key.inflight_key(offset), f.encode());
        state.inflight.insert(offset, f);
        if f.renew_until_ms > 0 {
            state.owners.insert(offset, Arc::from(self.req.client_id));
        } else {
            state.owners.remove(&offset);
        }
        state.last_consume_ms = Some(self.now_ms);
        let d = self
            .engine
            .delivery(self.key, message, f, self.req.invisible_ms);
        self.out.push(d);
    }

    /// Deliveries due again, then (FIFO groups) the first waiting message
    /// of each message group with nothing in flight, oldest offset first.
    pub(super) fn due_again(&mut self, state: &mut QueueState) -> Result<(), ApogeeError> {
        let max_attempts = self.req.group.max_delivery_attempts;
        let due: Vec<u64> = state
            .inflight
            .iter()
            .filter(|(_, f)| f.visible_at_ms <= self.now_ms)
            .map(|(o, _)| *o)
            .collect();
        for offset in due {
            if !self.room() {
                return Ok(());
            }
            let f = state.inflight[&offset];
            if f.attempt >= max_attempts && !f.is_suspended() {
                self.engine.expired.notify_one();
                continue;
            }
            match self
                .engine
                .read_one(self.req.topic, self.key.queue_id, offset)?
            {
                Some(message) => self.hand_out(state, message, f),
                None => self.gone(state, offset),
            }
        }
        if state.waiting_count == 0 {
            return Ok(());
        }
        // Heads of free message groups; a group that is no longer FIFO lets all go.
        let busy = state.busy_groups();
        let mut ready: Vec<(u64, u64)> = state
            .waiting
            .iter()
            .filter(|(g, _)| !self.req.group.fifo || !busy.contains(g))
            .flat_map(|(g, offsets)| {
                let take = if self.req.group.fifo {
                    1
                } else {
                    offsets.len()
                };
                offsets.iter().take(take).map(move |o| (*o, *g))
            })
            .collect();
        ready.sort_unstable();
        for (offset, group) in ready {
            if !self.room() {
                break;
            }
            state.remove_waiting(offset, group);
            match self
                .engine
                .read_one(self.req.topic, self.key.queue_id, offset)?
            {
                Some(message) => self.hand_out(state, message, Inflight::not_handed_out(group)),
                None => self.gone(state, offset),
            }
        }
        Ok(())
    }

    /// Forgets an entry whose message is gone from the store (retention).
    fn gone(&mut self, state: &mut QueueState, offset: u64) {
        state.inflight.remove(&offset);
        self.batch
            .delete(Cf::ConsumeState, self.key.inflight_key(offset));
    }

    /// New messages from the queue's pop offset up to `next`.
    pub(super) fn new_messages(
        &mut self,
        state: &mut QueueState,
        next: u64,
    ) -> Result<(), ApogeeError> {
        if names::split_lite_queue_topic(self.req.topic).is_some() {
            return self.next_of_lite_queue(state, next);
        }
        let fifo = self.req.group.fifo;
        // Message groups with one in flight or waiting: new ones queue behind.
        let mut busy: HashSet<u64> = if fifo {
            let mut b = state.busy_groups();
            b.extend(state.waiting.keys());
            b
        } else {
            HashSet::new()
        };
        while self.room()
            && state.pop_offset < next
            && state.waiting_count < MAX_FIFO_WAITING_PER_QUEUE
        {
            let want = (self.req.max - self.out.len()).max(32);
            let entries = self
                .engine
                .store
                .queue_entries(self.req.topic, self.key.queue_id, state.pop_offset, want)
                .map_err(internal)?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                if !self.room() || state.waiting_count >= MAX_FIFO_WAITING_PER_QUEUE {
                    break;
                }
                state.pop_offset = e.queue_offset + 1;
                let Some(message) = self.read_matching(&e)? else {
                    continue;
                };
                let group = match (&message.msg.message_group, fifo) {
                    (Some(g), true) => message_group_hash(g),
                    _ => 0,
                };
                let f = Inflight::not_handed_out(group);
                if group != 0 && !busy.insert(group) {
                    // Its message group has one in flight or waiting: wait behind it.
                    state.add_waiting(e.queue_offset, group);
                    self.batch.put(
                        Cf::ConsumeState,
                        self.key.inflight_key(e.queue_offset),
                        f.encode(),
                    );
                    continue;
                }
                self.hand_out(state, message, f);
            }
        }
        Ok(())
    }

    /// A lite queue's next message, only when nothing of it is in flight (the whole queue is
    /// one message group).
    fn next_of_lite_queue(&mut self, state: &mut QueueState, next: u64) -> Result<(), ApogeeError> {
        while self.room() && state.inflight.is_empty() && state.pop_offset < next {
            let entries = self
                .engine
                .store
                .queue_entries(self.req.topic, self.key.queue_id, state.pop_offset, 8)
                .map_err(internal)?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                state.pop_offset = e.queue_offset + 1;
                let Some(message) = self.read_matching(&e)? else {
                    continue;
                };
                self.hand_out(state, message, Inflight::not_handed_out(0));
                break;
            }
        }
        Ok(())
    }
}

impl ConsumeEngine {
    /// Hands out up to `max` messages of `topic` to the group from the given
    /// queues, in that order: first deliveries due again (attempt + 1), then
    /// new messages matching the filter. A repeated `attempt_id` gets the
    /// deliveries of the first receive back, without a new attempt.
    pub fn pop(&self, req: &PopRequest<'_>, now_ms: i64) -> Result<Vec<Delivery>, ApogeeError> {
        self.check_gate()?;
        if let Some(id) = req.attempt_id {
            if let Some(again) = self.repeat(req, id, now_ms)? {
                return Ok(again);
            }
        }
        let mut out = Vec::new();
        for &queue_id in req.queue_ids {
            if out.len() >= req.max {
                break;
            }
            let key = QueueKey::new(&req.group.name, req.topic, queue_id);
            // A lite queue hands out one message at a time and its read of the index starts
            // at the first entry at or after its pop offset, which passes over what
            // retention removed: no bounds needed. Reading them (three index reads) for each
            // message made a lite drain over many lite topics several times slower than a
            // plain one.
            let (min, next) = if apogee_proto::names::split_lite_queue_topic(req.topic).is_some() {
                (0, u64::MAX)
            } else {
                self.store
                    .queue_bounds(req.topic, queue_id)
                    .map_err(internal)?
            };
            let queue = match self.existing(&key) {
                Some(q) => q,
                None => {
                    let start = self.start_offset(req.topic, queue_id, min, req.start_after_ms)?;
                    self.queue(&key, start)
                }
            };
            let mut state = queue.lock();
            let mut batch = KvBatch::new();
            let before = (state.pop_offset, state.inflight.len(), state.waiting_count);
            let mut pop = QueuePop {
                engine: self,
                req,
                key: &key,
                now_ms,
                batch: &mut batch,
                out: &mut out,
            };
            pop.due_again(&mut state)?;
            if state.pop_offset < min {
                state.pop_offset = min;
            }
            pop.new_messages(&mut state, next)?;
            if before != (state.pop_offset, state.inflight.len(), state.waiting_count)
                || !batch.is_empty()
            {
                Self::persist_queue(&mut batch, &key, &state);
            }
            if !batch.is_empty() {
                self.kv.write(batch).map_err(internal)?;
            }
        }
        if let (Some(id), false) = (req.attempt_id, out.is_empty()) {
            self.remember(req, id, &out, now_ms);
        }
        Ok(out)
    }
}

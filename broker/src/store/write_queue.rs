//! The queue in front of the [`Writer`], and who drains it: leader/follower group commit.
//!
//! Every mutation of the log goes through one FIFO queue of [`Command`]s, and one party at a
//! time, the *leader*, takes commands off it and runs them on the writer:
//!
//! - A send that finds no leader becomes the leader itself. It takes one group (its own
//!   request and whatever appends queued up behind it, up to the group bounds) and writes it
//!   on its own task. A lone send on an idle broker is written and answered with no thread
//!   hand-off at all. When other sends are under way (waiting for an fdatasync, say), the
//!   leader first yields once to the runtime, so that the sends already runnable on its
//!   worker queue up behind it and share its write instead of each writing alone.
//! - When that group is done and more commands are waiting, the sender hands leadership to
//!   the writer thread (`apogee-store-writer`), which drains the queue group by group for as
//!   long as commands keep arriving while it writes; once the queue runs empty the next send
//!   leads again. A send's task never runs more than one group.
//! - Every other command (topic purge, a slave's replicated append, segment deletion, cut-back,
//!   shutdown) is run by the writer thread, in queue order with the appends around it, and so
//!   is a group that would start a new segment (a roll fdatasyncs the full one).
//!
//! Only the leader writes, so at most one runtime worker is ever inside a write (a `pwrite`
//! and one RocksDB batch); a send that finds a leader, however long that leader is held up (a
//! RocksDB write stall, say), only queues and waits without blocking. Leadership is released
//! by a guard, so a panicking group cannot leave the queue without a leader. Whoever leads
//! holds the writer's lock, which no one else takes: the lock only makes that exclusion
//! visible to the compiler.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::record::NewMessage;
use super::writer::{AppendReply, Command, Group, Writer};
use super::StoreError;

/// Bounds on one group, so a burst cannot build an unbounded buffer. Recovery cuts no more
/// than one group's bytes past what may have been unsynced (`recovery.rs`).
const MAX_GROUP_REQUESTS: usize = 1024;
pub(super) const MAX_GROUP_BYTES: usize = 32 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leader {
    None,
    /// A send writing one group on its own task.
    Caller,
    /// The writer thread, draining until the queue is empty.
    Thread,
}

struct Queue {
    cmds: VecDeque<Command>,
    leader: Leader,
    /// Set by [`WriteQueue::close`]: nothing more is taken.
    closed: bool,
}

pub(crate) struct WriteQueue {
    queue: Mutex<Queue>,
    /// Wakes the writer thread when leadership is handed to it.
    thread_wake: Condvar,
    writer: Mutex<Writer>,
    /// Groups a sender left to the writer thread because they would start a segment.
    roll_handoffs: AtomicU64,
    /// Sends between [`enter`](WriteQueue::enter) and their answer.
    in_flight: AtomicUsize,
    /// Append groups written, by senders and by the writer thread.
    groups: AtomicU64,
}

/// One send under way, counted until it is dropped.
pub(crate) struct InFlight<'a>(&'a WriteQueue);

impl InFlight<'_> {
    /// Whether other sends are under way too, so that waiting a moment before writing can let
    /// some of them join this group.
    pub(crate) fn has_company(&self) -> bool {
        self.0.in_flight.load(Ordering::Relaxed) > 1
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn approx_size(msgs: &[NewMessage]) -> usize {
    msgs.iter().map(|m| m.body.len() + 256).sum()
}

/// Takes the appends at the front of the queue, within the group bounds; returns them with
/// their estimated size.
fn take_group(cmds: &mut VecDeque<Command>) -> (Group, usize) {
    let mut group = Vec::new();
    let mut bytes = 0;
    while group.len() < MAX_GROUP_REQUESTS && bytes < MAX_GROUP_BYTES {
        match cmds.pop_front() {
            Some(Command::Append { msgs, reply }) => {
                bytes += approx_size(&msgs);
                group.push((msgs, reply));
            }
            Some(other) => {
                cmds.push_front(other);
                break;
            }
            None => break,
        }
    }
    (group, bytes)
}

/// Releases a caller's leadership: to no one when the queue is empty, else to the thread.
pub(crate) struct CallerLead<'a>(&'a WriteQueue);

impl Drop for CallerLead<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock();
        if q.cmds.is_empty() {
            q.leader = Leader::None;
        } else {
            q.leader = Leader::Thread;
            self.0.thread_wake.notify_one();
        }
    }
}

impl WriteQueue {
    pub(crate) fn new(writer: Writer) -> Arc<Self> {
        Arc::new(WriteQueue {
            queue: Mutex::new(Queue {
                cmds: VecDeque::new(),
                leader: Leader::None,
                closed: false,
            }),
            thread_wake: Condvar::new(),
            writer: Mutex::new(writer),
            roll_handoffs: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            groups: AtomicU64::new(0),
        })
    }

    fn push(&self, cmd: Command) -> Result<MutexGuard<'_, Queue>, StoreError> {
        let mut q = self.queue.lock();
        if q.closed {
            return Err(StoreError::Closed);
        }
        q.cmds.push_back(cmd);
        Ok(q)
    }

    /// Queues a command for the writer thread.
    pub(crate) fn submit(&self, cmd: Command) -> Result<(), StoreError> {
        let mut q = self.push(cmd)?;
        if q.leader == Leader::None {
            q.leader = Leader::Thread;
            self.thread_wake.notify_one();
        }
        Ok(())
    }

    /// Counts a send as under way until the returned guard is dropped.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Queues an append. When no one is writing, the caller becomes the leader: it gets the
    /// lead back and must pass it to [`write_group`](Self::write_group) (dropping it instead
    /// hands what is queued to the writer thread). The answer comes through `reply` either way.
    pub(crate) fn append(
        &self,
        msgs: Vec<NewMessage>,
        reply: AppendReply,
    ) -> Result<Option<CallerLead<'_>>, StoreError> {
        let mut q = self.push(Command::Append { msgs, reply })?;
        if q.leader != Leader::None {
            return Ok(None);
        }
        q.leader = Leader::Caller;
        Ok(Some(CallerLead(self)))
    }

    /// Writes one group (the leader's own request and whatever queued up behind it) on the
    /// calling thread, then gives the lead up.
    pub(crate) fn write_group(&self, _lead: CallerLead<'_>) {
        let (group, bytes) = take_group(&mut self.queue.lock().cmds);
        let mut writer = self.writer.lock();
        if writer.would_roll(bytes) {
            // A roll fdatasyncs the full segment: leave it to the writer thread.
            self.roll_handoffs.fetch_add(1, Ordering::Relaxed);
            let mut q = self.queue.lock();
            for (msgs, reply) in group.into_iter().rev() {
                q.cmds.push_front(Command::Append { msgs, reply });
            }
        } else {
            self.groups.fetch_add(1, Ordering::Relaxed);
            writer.append_group(group);
        }
    }

    /// No one leads: the next send writes its own group.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.queue.lock().leader == Leader::None
    }

    /// Groups a sender left to the writer thread because they would start a segment.
    #[cfg(test)]
    pub(crate) fn roll_handoffs(&self) -> u64 {
        self.roll_handoffs.load(Ordering::Relaxed)
    }

    /// Append groups written since open.
    #[cfg(test)]
    pub(crate) fn groups_written(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// Stops taking commands; the writer thread runs what is queued, then closes the writer
    /// and ends. Idempotent.
    pub(crate) fn close(&self) {
        let mut q = self.queue.lock();
        if q.closed {
            return;
        }
        q.cmds.push_back(Command::Shutdown);
        q.closed = true;
        if q.leader == Leader::None {
            q.leader = Leader::Thread;
            self.thread_wake.notify_one();
        }
    }

    /// The writer thread's body: leads whenever leadership is handed to it, until shutdown.
    pub(crate) fn run_thread(&self) {
        let mut q = self.queue.lock();
        loop {
            while q.leader != Leader::Thread {
                self.thread_wake.wait(&mut q);
            }
            match q.cmds.front() {
                None => q.leader = Leader::None,
                Some(Command::Append { .. }) => {
                    let (group, _) = take_group(&mut q.cmds);
                    drop(q);
                    self.groups.fetch_add(1, Ordering::Relaxed);
                    self.writer.lock().append_group(group);
                    q = self.queue.lock();
                }
                Some(_) => {
                    let cmd = q.cmds.pop_front().expect("front exists");
                    drop(q);
                    let last = matches!(cmd, Command::Shutdown);
                    self.writer.lock().run_command(cmd);
                    if last {
                        return;
                    }
                    q = self.queue.lock();
                }
            }
        }
    }
}

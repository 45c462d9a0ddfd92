//! One lite consumer client: the lite queues it subscribes, the ones with something to hand
//! out (its ready set, taken round-robin), the times at which one of its lite queues has a
//! redelivery coming due, and the one [`Notify`] that wakes its long polls.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;

/// A lite queue's broker-internal topic (`%LITE%<parent>%<lite>`), shared between the maps.
pub type QueueName = Arc<str>;

/// One client of a lite consumer group on this broker.
pub struct LiteClient {
    pub id: Arc<str>,
    pub group: String,
    /// The LITE parent topic its group is bound to.
    pub parent: String,
    state: Mutex<ClientState>,
    /// Woken (`notify_waiters`) when a lite queue of it becomes ready; long polls register
    /// before they look (`crate::consume::long_poll`).
    notify: Notify,
}

#[derive(Default)]
struct ClientState {
    subscribed: HashSet<QueueName>,
    /// Ready lite queues in the order they became ready (each at most once).
    ready: VecDeque<QueueName>,
    queued: HashSet<QueueName>,
    /// (due time, lite queue): redeliveries coming due, at most one time per lite queue.
    due: BTreeSet<(i64, QueueName)>,
    due_of: HashMap<QueueName, i64>,
    last_sync_ms: i64,
    /// Whether this client was seen with a Telemetry session on this broker (its stream
    /// closing then means it is gone).
    had_session: bool,
}

impl LiteClient {
    pub(super) fn new(id: &str, group: &str, parent: &str, now_ms: i64) -> Self {
        LiteClient {
            id: Arc::from(id),
            group: group.to_string(),
            parent: parent.to_string(),
            state: Mutex::new(ClientState {
                last_sync_ms: now_ms,
                ..Default::default()
            }),
            notify: Notify::new(),
        }
    }

    /// What wakes this client's long polls.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }

    /// The lite queues it subscribes.
    pub fn subscribed(&self) -> Vec<QueueName> {
        self.state.lock().subscribed.iter().cloned().collect()
    }

    pub fn subscription_count(&self) -> usize {
        self.state.lock().subscribed.len()
    }

    pub fn subscribes(&self, queue: &str) -> bool {
        self.state.lock().subscribed.contains(queue)
    }

    pub(super) fn touch(&self, now_ms: i64) {
        self.state.lock().last_sync_ms = now_ms;
    }

    pub(super) fn last_sync_ms(&self) -> i64 {
        self.state.lock().last_sync_ms
    }

    /// Records whether the client has a Telemetry session here now; true when it had one
    /// before and has none any more (its stream closed).
    pub(super) fn session_closed(&self, live: bool) -> bool {
        let mut s = self.state.lock();
        let closed = s.had_session && !live;
        s.had_session |= live;
        closed
    }

    pub(super) fn add(&self, queue: &QueueName) -> bool {
        self.state.lock().subscribed.insert(queue.clone())
    }

    pub(super) fn remove(&self, queue: &str) -> bool {
        let mut s = self.state.lock();
        let removed = s.subscribed.remove(queue);
        if removed {
            s.queued.remove(queue);
            s.ready.retain(|q| &**q != queue);
            if let Some(at) = s.due_of.remove(queue) {
                s.due.retain(|(t, q)| !(*t == at && &**q == queue));
            }
        }
        removed
    }

    /// Marks `queue` ready (when subscribed) and wakes the client's long polls.
    pub fn mark_ready(&self, queue: &QueueName) {
        {
            let mut s = self.state.lock();
            if !s.subscribed.contains(queue) || !s.queued.insert(queue.clone()) {
                return;
            }
            s.ready.push_back(queue.clone());
        }
        self.notify.notify_waiters();
    }

    /// Looks at `queue` again at `at_ms` (a redelivery coming due); an earlier time kept wins.
    pub fn due_at(&self, queue: &QueueName, at_ms: i64) {
        let mut s = self.state.lock();
        if !s.subscribed.contains(queue) {
            return;
        }
        match s.due_of.get(queue).copied() {
            Some(t) if t <= at_ms => return,
            Some(t) => {
                s.due.remove(&(t, queue.clone()));
            }
            None => {}
        }
        s.due_of.insert(queue.clone(), at_ms);
        s.due.insert((at_ms, queue.clone()));
    }

    /// The next ready lite queue (those come due by `now_ms` are ready first); it leaves the
    /// ready set and is marked again by its next append, ack or redelivery time.
    pub fn take_ready(&self, now_ms: i64) -> Option<QueueName> {
        let mut s = self.state.lock();
        while let Some((at, q)) = s.due.first().cloned() {
            if at > now_ms {
                break;
            }
            s.due.pop_first();
            s.due_of.remove(&q);
            if s.subscribed.contains(&q) && s.queued.insert(q.clone()) {
                s.ready.push_back(q);
            }
        }
        let q = s.ready.pop_front()?;
        s.queued.remove(&q);
        Some(q)
    }

    /// When the next redelivery of one of its lite queues comes due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.state.lock().due.first().map(|(at, _)| *at)
    }

    /// Number of ready lite queues (for tests and diagnostics).
    pub fn ready_count(&self) -> usize {
        self.state.lock().ready.len()
    }
}

//! Per-queue wake-ups for long-polling readers.
//!
//! This module owns the registry that tells a waiting ReceiveMessage or PullMessage that
//! entries arrived on a queue it reads, and only then. A reader [`watch`](Wakeups::watch)es the
//! (topic, queue ids) it reads, *before* it looks at them; the store's writer calls
//! [`notify`](Wakeups::notify) with every (topic, queue) that got entries in a batch, after the
//! batch is readable. Each watch has its own [`Notify`] and is signalled with `notify_one`, which
//! leaves a permit when the reader is not waiting yet: an append between registering and
//! waiting is never lost, it makes the next wait return at once.
//!
//! The map holds only queues somebody watches: dropping a [`QueueWatch`] removes it, and a queue
//! (and a topic) without watches is removed with it, so the registry does not grow with the
//! number of queues ever read. The append path allocates nothing here: one lock per batch and
//! one lookup per distinct queue of the batch. The lock also orders the two sides: a reader
//! registers before it reads the index and the writer looks after the index write, so either
//! the writer finds the watch or the reader sees the entries.
//!
//! Besides the short-lived watches of one request, a queue can carry long-lived
//! [`AppendListener`]s ([`listen`](Wakeups::listen)): the lite subscriptions register one per
//! (consumer group, lite queue) they subscribe, which marks that lite queue ready for each of its
//! subscribers and wakes them (`crate::consume::lite`). They are bounded by the subscriptions,
//! removed with them ([`unlisten`](Wakeups::unlisten)), and called under the registry's lock, so
//! a listener only takes its own small locks and never calls back into the registry.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Told of every batch that appended entries to a queue it listens to.
pub trait AppendListener: Send + Sync {
    /// Entries were appended to (`topic`, `queue_id`) and are readable.
    fn appended(&self, topic: &str, queue_id: u32);
}

/// One registration of a queue: a request's watch or a long-lived listener.
enum Waker {
    Watch(Arc<Notify>),
    Listener(Arc<dyn AppendListener>),
}

impl Waker {
    fn is_watch(&self, notify: &Arc<Notify>) -> bool {
        matches!(self, Waker::Watch(n) if Arc::ptr_eq(n, notify))
    }

    fn is_listener(&self, listener: &Arc<dyn AppendListener>) -> bool {
        matches!(self, Waker::Listener(l) if Arc::ptr_eq(l, listener))
    }
}

/// topic -> queue id -> the registrations of that queue.
type Watchers = HashMap<String, HashMap<u32, Vec<Waker>>>;

/// The registry of watched queues (one per store).
#[derive(Default)]
pub struct Wakeups {
    watchers: Mutex<Watchers>,
}

impl Wakeups {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest in `queue_ids` of `topic` until the returned watch is dropped.
    /// Entries appended to any of them from now on wake [`QueueWatch::appended`].
    pub fn watch(&self, topic: &str, queue_ids: &[u32]) -> QueueWatch<'_> {
        let mut queues = queue_ids.to_vec();
        queues.sort_unstable();
        queues.dedup();
        let notify = Arc::new(Notify::new());
        {
            let mut map = self.watchers.lock();
            let per_topic = match map.get_mut(topic) {
                Some(q) => q,
                None => map.entry(topic.to_string()).or_default(),
            };
            for &q in &queues {
                per_topic
                    .entry(q)
                    .or_default()
                    .push(Waker::Watch(notify.clone()));
            }
        }
        QueueWatch {
            registry: self,
            topic: topic.to_string(),
            queues,
            notify,
        }
    }

    /// Wakes the watches of every listed (topic, queue id): the writer calls it once per batch
    /// with each queue that got entries, after they are readable.
    pub fn notify<'a>(&self, queues: impl IntoIterator<Item = (&'a str, u32)>) {
        let map = self.watchers.lock();
        for (topic, queue_id) in queues {
            if let Some(watches) = map.get(topic).and_then(|q| q.get(&queue_id)) {
                for w in watches {
                    match w {
                        Waker::Watch(n) => n.notify_one(),
                        Waker::Listener(l) => l.appended(topic, queue_id),
                    }
                }
            }
        }
    }

    /// Number of queues with at least one watch (for tests and diagnostics).
    pub fn watched_queues(&self) -> usize {
        self.watchers.lock().values().map(HashMap::len).sum()
    }

    /// Registers `listener` for appends to (`topic`, `queue_id`) until
    /// [`unlisten`](Self::unlisten) removes it.
    pub fn listen(&self, topic: &str, queue_id: u32, listener: Arc<dyn AppendListener>) {
        let mut map = self.watchers.lock();
        let per_topic = match map.get_mut(topic) {
            Some(q) => q,
            None => map.entry(topic.to_string()).or_default(),
        };
        per_topic
            .entry(queue_id)
            .or_default()
            .push(Waker::Listener(listener));
    }

    /// Removes a listener registered with [`listen`](Self::listen) (the same `Arc`).
    pub fn unlisten(&self, topic: &str, queue_id: u32, listener: &Arc<dyn AppendListener>) {
        self.remove(topic, &[queue_id], |w| w.is_listener(listener));
    }

    fn unwatch(&self, topic: &str, queues: &[u32], notify: &Arc<Notify>) {
        self.remove(topic, queues, |w| w.is_watch(notify));
    }

    fn remove(&self, topic: &str, queues: &[u32], which: impl Fn(&Waker) -> bool) {
        let mut map = self.watchers.lock();
        let Some(per_topic) = map.get_mut(topic) else {
            return;
        };
        for q in queues {
            if let Some(watches) = per_topic.get_mut(q) {
                watches.retain(|w| !which(w));
                if watches.is_empty() {
                    per_topic.remove(q);
                }
            }
        }
        if per_topic.is_empty() {
            map.remove(topic);
        }
    }
}

/// Interest in some queues of one topic; dropping it unregisters.
pub struct QueueWatch<'a> {
    registry: &'a Wakeups,
    topic: String,
    queues: Vec<u32>,
    notify: Arc<Notify>,
}

impl QueueWatch<'_> {
    /// Completes when entries were appended to a watched queue since the watch was made or
    /// since the last completion (appends in between coalesce into one wake-up).
    pub async fn appended(&self) {
        self.notify.notified().await;
    }
}

impl Drop for QueueWatch<'_> {
    fn drop(&mut self) {
        self.registry
            .unwatch(&self.topic, &self.queues, &self.notify);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn only_appends_to_a_watched_queue_wake() {
        let w = Wakeups::new();
        let watch = w.watch("T", &[0, 2]);
        w.notify([("T", 1), ("U", 0)]);
        assert!(watch.appended().now_or_never().is_none());
        w.notify([("U", 1), ("T", 2)]);
        assert!(watch.appended().now_or_never().is_some());
        // Consumed: the next wait blocks again.
        assert!(watch.appended().now_or_never().is_none());
    }

    #[test]
    fn an_append_before_the_wait_is_not_lost() {
        let w = Wakeups::new();
        let watch = w.watch("T", &[3]);
        // The append lands between registering and waiting (e.g. during a pop).
        w.notify([("T", 3), ("T", 3)]);
        assert!(watch.appended().now_or_never().is_some());
        assert!(watch.appended().now_or_never().is_none());
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken() {
        let w = Arc::new(Wakeups::new());
        let w2 = w.clone();
        let (armed_tx, armed_rx) = tokio::sync::oneshot::channel();
        let reader = tokio::spawn(async move {
            let watch = w2.watch("T", &[1]);
            armed_tx.send(()).unwrap();
            watch.appended().await;
        });
        armed_rx.await.unwrap();
        w.notify([("T", 1)]);
        reader.await.unwrap();
    }

    #[test]
    fn several_watches_of_one_queue_all_wake() {
        let w = Wakeups::new();
        let a = w.watch("T", &[0]);
        let b = w.watch("T", &[0, 1]);
        w.notify([("T", 0)]);
        assert!(a.appended().now_or_never().is_some());
        assert!(b.appended().now_or_never().is_some());
    }

    #[test]
    fn dropped_watches_leave_nothing_behind() {
        let w = Wakeups::new();
        let a = w.watch("T", &[0, 1, 1]);
        let b = w.watch("T", &[1]);
        let c = w.watch("U", &[5]);
        assert_eq!(w.watched_queues(), 3);
        drop(a);
        assert_eq!(w.watched_queues(), 2);
        w.notify([("T", 1)]);
        assert!(b.appended().now_or_never().is_some());
        drop(b);
        drop(c);
        assert_eq!(w.watched_queues(), 0);
        assert!(w.watchers.lock().is_empty());
        // Nobody watches: a notify is a no-op.
        w.notify([("T", 1)]);
    }

    #[derive(Default)]
    struct Counting(parking_lot::Mutex<Vec<(String, u32)>>);

    impl AppendListener for Counting {
        fn appended(&self, topic: &str, queue_id: u32) {
            self.0.lock().push((topic.to_string(), queue_id));
        }
    }

    #[test]
    fn listeners_hear_appends_to_their_queue_until_removed() {
        let w = Wakeups::new();
        let counting = Arc::new(Counting::default());
        let listener: Arc<dyn AppendListener> = counting.clone();
        w.listen("L", 0, listener.clone());
        let watch = w.watch("L", &[0]);
        w.notify([("L", 1), ("M", 0), ("L", 0)]);
        assert_eq!(*counting.0.lock(), vec![("L".to_string(), 0)]);
        assert!(watch.appended().now_or_never().is_some());
        drop(watch);
        assert_eq!(w.watched_queues(), 1, "the listener keeps its queue");
        w.unlisten("L", 0, &listener);
        assert_eq!(w.watched_queues(), 0);
        w.notify([("L", 0)]);
        assert_eq!(counting.0.lock().len(), 1);
    }
}

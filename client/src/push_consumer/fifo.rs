//! FIFO turns: in FIFO mode the messages of one message group reach the
//! listener one at a time, in the order they were received. Each received
//! message of a group takes a [`Turn`] (in receive order, before its task is
//! spawned); a turn is ready once the previous turn of the same group has
//! been dropped, i.e. once the previous message was acked, nacked,
//! dead-lettered or left. Different groups never wait for each other.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The last turn taken per message group: its number and the receiver the
/// next turn waits on.
type Tails = HashMap<String, (u64, oneshot::Receiver<()>)>;

/// The chain of turns of every message group.
#[derive(Clone, Default)]
pub(crate) struct FifoOrder {
    tails: Arc<Mutex<(u64, Tails)>>,
}

/// One message's place in its group's order.
pub(crate) struct Turn {
    key: String,
    seq: u64,
    prev: Option<oneshot::Receiver<()>>,
    // Dropped with the turn: that is what wakes the next one.
    _done: oneshot::Sender<()>,
    tails: Arc<Mutex<(u64, Tails)>>,
}

impl FifoOrder {
    /// Takes the next turn of message group `key`.
    pub(crate) fn enqueue(&self, key: String) -> Turn {
        let (done, next) = oneshot::channel();
        let mut guard = self.tails.lock();
        guard.0 += 1;
        let seq = guard.0;
        let prev = guard.1.insert(key.clone(), (seq, next)).map(|(_, rx)| rx);
        Turn {
            key,
            seq,
            prev,
            _done: done,
            tails: self.tails.clone(),
        }
    }

    /// Message groups with a turn outstanding.
    #[cfg(test)]
    fn groups(&self) -> usize {
        self.tails.lock().1.len()
    }
}

impl Turn {
    /// Waits until every earlier message of the group is finished
    /// (cancel-safe: a dropped wait can be started again).
    pub(crate) async fn ready(&mut self) {
        if let Some(prev) = self.prev.as_mut() {
            let _ = prev.await;
            self.prev = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut guard = self.tails.lock();
        if guard.1.get(&self.key).is_some_and(|(s, _)| *s == self.seq) {
            guard.1.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn a_turn_waits_for_the_previous_one_of_its_group_only() {
        let order = FifoOrder::default();
        let mut a1 = order.enqueue("a".into());
        let mut a2 = order.enqueue("a".into());
        let mut a3 = order.enqueue("a".into());
        let mut b1 = order.enqueue("b".into());
        assert!(
            a1.ready().now_or_never().is_some(),
            "the first turn is ready"
        );
        assert!(
            b1.ready().now_or_never().is_some(),
            "other groups do not wait"
        );
        assert!(a2.ready().now_or_never().is_none());
        drop(a1);
        assert!(a3.ready().now_or_never().is_none(), "a3 still waits for a2");
        a2.ready().await;
        drop(a2);
        a3.ready().await;
        assert_eq!(order.groups(), 2);
        drop(a3);
        drop(b1);
        assert_eq!(order.groups(), 0, "finished groups are forgotten");
    }

    #[tokio::test]
    async fn a_turn_taken_after_the_group_emptied_is_ready() {
        let order = FifoOrder::default();
        drop(order.enqueue("g".into()));
        let mut next = order.enqueue("g".into());
        assert!(next.ready().now_or_never().is_some());
    }
}

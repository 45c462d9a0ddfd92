//! Slot accounting: the push consumer's back-pressure. A slot is one
//! message between its receipt and the end of its ack or nack; there are
//! `concurrency` of them. A receive asks for no more messages than the slots
//! it holds, so a consumer never holds more messages than it can handle at
//! once, and shutdown knows that every handler is done when every slot is
//! free again.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The consumer's `concurrency` slots.
#[derive(Clone)]
pub(crate) struct Slots {
    sem: Arc<Semaphore>,
    total: usize,
}

/// One occupied slot; dropping it frees the slot.
pub(crate) type Slot = OwnedSemaphorePermit;

impl Slots {
    pub(crate) fn new(total: usize) -> Slots {
        let total = total.max(1);
        Slots {
            sem: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Slots taken right now.
    pub(crate) fn in_use(&self) -> usize {
        self.total - self.sem.available_permits()
    }

    /// Waits for one free slot, then also takes every other free one, up to
    /// `max` in all.
    pub(crate) async fn take_up_to(&self, max: usize) -> Vec<Slot> {
        let Ok(first) = self.sem.clone().acquire_owned().await else {
            return Vec::new();
        };
        let mut out = vec![first];
        while out.len() < max.max(1) {
            match self.sem.clone().try_acquire_owned() {
                Ok(p) => out.push(p),
                Err(_) => break,
            }
        }
        out
    }

    /// Waits for one free slot.
    pub(crate) async fn take_one(&self) -> Option<Slot> {
        self.sem.clone().acquire_owned().await.ok()
    }

    /// Waits until every slot is free (at most `timeout`); true when they are.
    pub(crate) async fn wait_idle(&self, timeout: Duration) -> bool {
        let all = self.sem.acquire_many(self.total as u32);
        matches!(tokio::time::timeout(timeout, all).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_take_gets_the_free_slots_up_to_its_limit() {
        let slots = Slots::new(4);
        let a = slots.take_up_to(3).await;
        assert_eq!((a.len(), slots.in_use()), (3, 3));
        let b = slots.take_up_to(3).await;
        assert_eq!(b.len(), 1, "only one slot was left");
        assert_eq!(slots.in_use(), 4);
        drop(a);
        assert_eq!(slots.in_use(), 1, "dropping slots frees them");
        let c = slots.take_up_to(0).await;
        assert_eq!(c.len(), 1, "a take always gets at least one slot");
    }

    #[tokio::test]
    async fn a_take_waits_for_a_free_slot() {
        let slots = Slots::new(1);
        let held = slots.take_one().await.unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take_up_to(8).await.len() }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(waiting.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn idle_means_every_slot_is_free() {
        let slots = Slots::new(2);
        assert!(slots.wait_idle(Duration::ZERO).await);
        let held = slots.take_one().await.unwrap();
        assert!(!slots.wait_idle(Duration::from_millis(1)).await);
        let idle = tokio::spawn({
            let slots = slots.clone();
            async move { slots.wait_idle(Duration::from_secs(3600)).await }
        });
        drop(held);
        assert!(idle.await.unwrap());
        assert_eq!(slots.in_use(), 0);
        assert_eq!(slots.total(), 2);
    }

    #[test]
    fn zero_concurrency_means_one_slot() {
        assert_eq!(Slots::new(0).total(), 1);
    }
}

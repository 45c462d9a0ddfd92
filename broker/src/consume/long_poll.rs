//! Long polling: the wait that ReceiveMessage and PullMessage share.
//!
//! A reader with nothing to hand out waits until something it reads may have changed, then
//! looks again, until it finds something or its deadline passes. [`LongPoll`] owns that loop
//! and nothing else: what "looking" means is the caller's [`Attempt`] closure (a pop for
//! ReceiveMessage, a read from an offset for PullMessage), and what to answer is the caller's
//! too. It knows no transport type, so it is tested here with a bare [`Wakeups`] registry and
//! tokio's paused clock.
//!
//! What ends one wait and makes the loop look again:
//! - entries appended to a watched queue (the [`QueueWatch`], made before the first look, so an
//!   append between looking and waiting is never lost);
//! - optionally a [`Notify`] signalled with `notify_waiters` (the consume engine's acks, nacks
//!   and dead letters, which may free a FIFO message group); the poll registers for it before
//!   every look, so a signal during a look is not lost either;
//! - the time the last look asked to be repeated at (a redelivery coming due);
//! - the deadline, or the start of a shutdown: both end the poll with the last look's empty
//!   answer.
//!
//! A wake-up that finds nothing (an ack for another group, say) only makes the poll look again
//! and wait for the rest of its time; it never ends the poll early.
//!
//! [`Wakeups`]: crate::store::Wakeups

use std::future::pending;
use std::pin::{pin, Pin};
use std::time::Duration;

use tokio::sync::{futures::Notified, watch, Notify};
use tokio::time::Instant;

use crate::store::QueueWatch;

/// What one look found.
pub enum Attempt<T, E> {
    /// Something to answer with (messages, or an error): the poll ends with it.
    Done(T),
    /// Nothing yet. `empty` is the answer should the poll end now; `look_again_in`, when set,
    /// is a time after which to look again even if nothing wakes the poll.
    Nothing {
        empty: E,
        look_again_in: Option<Duration>,
    },
}

/// How a poll ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled<T, E> {
    /// A look found something.
    Done(T),
    /// The deadline passed (or the server began shutting down) with nothing found: the last
    /// look's empty answer.
    DeadlinePassed(E),
}

/// One reader's long poll: its deadline and what wakes it.
pub struct LongPoll<'w> {
    deadline: Instant,
    appended: QueueWatch<'w>,
    changed: Option<&'w Notify>,
    closing: watch::Receiver<bool>,
}

impl<'w> LongPoll<'w> {
    /// A poll until `deadline`, woken by appends to the queues of `appended` (made before the
    /// first look) and ended early when `closing` turns true.
    pub fn new(
        deadline: Instant,
        appended: QueueWatch<'w>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            deadline,
            appended,
            changed: None,
            closing,
        }
    }

    /// Also wakes when `changed` is signalled with `notify_waiters`.
    pub fn woken_by(mut self, changed: &'w Notify) -> Self {
        self.changed = Some(changed);
        self
    }

    /// Looks with `attempt` until it finds something, waiting between looks; at least one
    /// look is made, also when the deadline has passed already.
    pub async fn run<T, E>(mut self, mut attempt: impl FnMut() -> Attempt<T, E>) -> Polled<T, E> {
        loop {
            let mut changed = pin!(self.changed.map(Notify::notified));
            if let Some(notified) = changed.as_mut().as_pin_mut() {
                notified.enable();
            }
            let (empty, look_again_in) = match attempt() {
                Attempt::Done(found) => return Polled::Done(found),
                Attempt::Nothing {
                    empty,
                    look_again_in,
                } => (empty, look_again_in),
            };
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || *self.closing.borrow() {
                return Polled::DeadlinePassed(empty);
            }
            let wait = look_again_in.map_or(left, |again| again.min(left));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.appended.appended() => {}
                _ = signalled(changed) => {}
                _ = closes(&mut self.closing) => {}
            }
        }
    }
}

/// Completes when `notified` is signalled; never if there is none.
async fn signalled(notified: Pin<&mut Option<Notified<'_>>>) {
    match notified.as_pin_mut() {
        Some(notified) => notified.await,
        None => pending().await,
    }
}

/// Completes when `closing` turns true; never if its sender is gone (nobody can close it then).
async fn closes(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|c| *c).await.is_err() {
        pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::store::Wakeups;

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A stand-in for a queue: what an append put there, taken by the next look.
    #[derive(Default)]
    struct Queue {
        entries: RefCell<Vec<&'static str>>,
        looks: Cell<u32>,
    }

    impl Queue {
        /// One look: everything appended so far, or nothing with the number of looks made.
        fn look(&self) -> Attempt<Vec<&'static str>, u32> {
            self.looks.set(self.looks.get() + 1);
            let found = std::mem::take(&mut *self.entries.borrow_mut());
            if found.is_empty() {
                Attempt::Nothing {
                    empty: self.looks.get(),
                    look_again_in: None,
                }
            } else {
                Attempt::Done(found)
            }
        }
    }

    fn never_closing() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_that_finds_ends_the_poll_at_once() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        queue.entries.borrow_mut().push("m1");
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing());
        assert_eq!(poll.run(|| queue.look()).await, Polled::Done(vec!["m1"]));
        assert_eq!(queue.looks.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_to_a_watched_queue_ends_the_wait_before_the_deadline() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        let start = Instant::now();
        let poll = LongPoll::new(
            start + DEADLINE,
            wakeups.watch("T", &[0, 1]),
            never_closing(),
        );
        let append = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            queue.entries.borrow_mut().push("m1");
            wakeups.notify([("T", 1)]);
        };
        let (polled, ()) = tokio::join!(poll.run(|| queue.look()), append);
        assert_eq!(polled, Polled::Done(vec!["m1"]));
        assert_eq!(queue.looks.get(), 2);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_by_the_deadline_answers_the_last_looks_empty_answer() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing());
        // One look at the start, one when the deadline wakes the poll.
        assert_eq!(poll.run(|| queue.look()).await, Polled::DeadlinePassed(2));
        assert_eq!(start.elapsed(), DEADLINE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_passed_still_looks_once() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        let poll = LongPoll::new(Instant::now(), wakeups.watch("T", &[0]), never_closing());
        assert_eq!(poll.run(|| queue.look()).await, Polled::DeadlinePassed(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_to_another_queue_does_not_wake_the_poll() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing());
        let elsewhere = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            wakeups.notify([("T", 1), ("U", 0)]);
        };
        let (polled, ()) = tokio::join!(poll.run(|| queue.look()), elsewhere);
        // No look between the first and the one at the deadline.
        assert_eq!(polled, Polled::DeadlinePassed(2));
        assert_eq!(start.elapsed(), DEADLINE);
    }

    /// The consume engine's `changed` fires for every ack, whichever group or queue: the poll
    /// looks again, finds nothing and waits out the rest of its time.
    #[tokio::test(start_paused = true)]
    async fn a_signal_that_frees_nothing_looks_again_and_waits_on() {
        let wakeups = Wakeups::new();
        let changed = Notify::new();
        let queue = Queue::default();
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing())
            .woken_by(&changed);
        let other_ack = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            changed.notify_waiters();
        };
        let (polled, ()) = tokio::join!(poll.run(|| queue.look()), other_ack);
        assert_eq!(polled, Polled::DeadlinePassed(3));
        assert_eq!(start.elapsed(), DEADLINE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_that_frees_something_ends_the_wait() {
        let wakeups = Wakeups::new();
        let changed = Notify::new();
        let queue = Queue::default();
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing())
            .woken_by(&changed);
        let ack = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            queue.entries.borrow_mut().push("next of the message group");
            changed.notify_waiters();
        };
        let (polled, ()) = tokio::join!(poll.run(|| queue.look()), ack);
        assert_eq!(polled, Polled::Done(vec!["next of the message group"]));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    /// An ack or an append that lands while the poll looks (after the look saw nothing) makes
    /// the next wait end at once.
    #[tokio::test(start_paused = true)]
    async fn wake_ups_during_a_look_are_not_lost() {
        let wakeups = Wakeups::new();
        let changed = Notify::new();
        let start = Instant::now();
        for during_the_look in [&(|| changed.notify_waiters()) as &dyn Fn(), &|| {
            wakeups.notify([("T", 0)])
        }] {
            let looks = Cell::new(0);
            let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing())
                .woken_by(&changed);
            let polled = poll
                .run(|| {
                    looks.set(looks.get() + 1);
                    if looks.get() == 1 {
                        during_the_look();
                        Attempt::Nothing {
                            empty: (),
                            look_again_in: None,
                        }
                    } else {
                        Attempt::Done("found")
                    }
                })
                .await;
            assert_eq!(polled, Polled::Done("found"));
            assert_eq!(start.elapsed(), Duration::ZERO);
        }
    }

    /// A redelivery coming due: the look asks to be repeated then, before the deadline.
    #[tokio::test(start_paused = true)]
    async fn a_look_again_time_is_kept() {
        let wakeups = Wakeups::new();
        let start = Instant::now();
        let due = Duration::from_secs(5);
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing());
        let polled = poll
            .run(|| {
                if start.elapsed() >= due {
                    Attempt::Done("redelivered")
                } else {
                    Attempt::Nothing {
                        empty: (),
                        look_again_in: Some(due - start.elapsed()),
                    }
                }
            })
            .await;
        assert_eq!(polled, Polled::Done("redelivered"));
        assert_eq!(start.elapsed(), due);
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_again_time_past_the_deadline_ends_at_the_deadline() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), never_closing());
        let polled = poll
            .run(|| match queue.look() {
                Attempt::Nothing { empty, .. } => Attempt::Nothing {
                    empty,
                    look_again_in: Some(DEADLINE * 2),
                },
                found => found,
            })
            .await;
        assert_eq!(polled, Polled::DeadlinePassed(2));
        assert_eq!(start.elapsed(), DEADLINE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_the_wait_with_the_empty_answer() {
        let wakeups = Wakeups::new();
        let queue = Queue::default();
        let (close, closing) = watch::channel(false);
        let start = Instant::now();
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), closing.clone());
        let shutdown = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            close.send_replace(true);
        };
        let (polled, ()) = tokio::join!(poll.run(|| queue.look()), shutdown);
        assert_eq!(polled, Polled::DeadlinePassed(2));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // Once closing, a new poll looks once and does not wait.
        let poll = LongPoll::new(start + DEADLINE, wakeups.watch("T", &[0]), closing);
        assert_eq!(poll.run(|| queue.look()).await, Polled::DeadlinePassed(3));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}

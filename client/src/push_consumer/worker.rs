//! One received message's life in the push consumer: wait for its FIFO
//! turn (if any), call the listener, then ack, nack with the group's
//! backoff, retry locally (FIFO) or forward to the dead-letter queue (FIFO
//! after the last attempt). A [`Lease`] renews the message's invisibility
//! whenever about 2/3 of it has passed, for as long as the message is held,
//! and keeps the newest receipt handle for the calls that follow.

use super::{ConsumeResult, Shared};
use crate::message::ReceivedMessage;
use crate::push_consumer::fifo::Turn;
use crate::push_consumer::slots::Slot;
use crate::ClientError;
use apogee_proto::{limits, v2};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Attempts for one ack before the message is left to come back.
const ACK_ATTEMPTS: u32 = 3;
/// Attempts for one dead-letter forward before the message is left to come
/// back.
const FORWARD_ATTEMPTS: u32 = 5;
/// Wait between two failed renewals, forwards or acks.
const RETRY_GAP: Duration = Duration::from_secs(1);

/// Handles one message while holding its slot; the slot and the FIFO turn
/// are released when this returns.
pub(super) async fn process(
    shared: Arc<Shared>,
    message: ReceivedMessage,
    slot: Slot,
    turn: Option<Turn>,
) {
    let _slot = slot;
    let mut lease = Lease::new(message, shared.invisible);
    if let Some(mut turn) = turn {
        let ready = lease
            .renewing(&shared, async {
                tokio::select! {
                    biased;
                    _ = shared.stopped() => false,
                    _ = turn.ready() => true,
                }
            })
            .await;
        if ready {
            handle(&shared, &mut lease).await;
        }
        drop(turn);
    } else {
        handle(&shared, &mut lease).await;
    }
}

async fn handle(shared: &Arc<Shared>, lease: &mut Lease) {
    let mut attempt = lease.message.delivery_attempt.max(1) as u32;
    loop {
        if shared.stopping() {
            // Not handed to the listener: left to come back.
            return;
        }
        let mut m = lease.message.clone();
        m.delivery_attempt = attempt as i32;
        let result = lease.renewing(shared, call_listener(shared, m)).await;
        match result {
            ConsumeResult::Success => return ack(shared, lease).await,
            ConsumeResult::Failure if !shared.fifo => return nack(shared, lease, attempt).await,
            ConsumeResult::Failure => {
                let learned = shared.learned();
                if attempt >= learned.max_attempts {
                    return forward_to_dlq(shared, lease, attempt, learned.max_attempts).await;
                }
                let delay = learned.backoff.delay(attempt);
                let waited = lease
                    .renewing(shared, async {
                        tokio::select! {
                            biased;
                            _ = shared.stopped() => false,
                            _ = tokio::time::sleep(delay) => true,
                        }
                    })
                    .await;
                if !waited {
                    return;
                }
                attempt += 1;
            }
        }
    }
}

/// Runs the listener in its own task, so that a panic becomes a failure and
/// an aborted message task aborts its handler too.
async fn call_listener(shared: &Arc<Shared>, message: ReceivedMessage) -> ConsumeResult {
    let listener = shared.listener.clone();
    let id = message.message_id.clone();
    let task = tokio::spawn(async move { listener(message).await });
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(result) => result,
        Err(e) => {
            tracing::warn!(message_id = %id, error = %e, "listener failed; counted as a failure");
            ConsumeResult::Failure
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn ack(shared: &Shared, lease: &Lease) {
    for n in 1..=ACK_ATTEMPTS {
        match shared.consumer.ack(&lease.message).await {
            Ok(()) => return,
            Err(e) if e.is_retryable() && n < ACK_ATTEMPTS => {
                tracing::debug!(message_id = %lease.message.message_id, error = %e, "ack failed, retrying");
                tokio::time::sleep(RETRY_GAP / 4 * n).await;
            }
            Err(e) => {
                tracing::warn!(message_id = %lease.message.message_id, error = %e,
                    "ack failed; the message will be delivered again");
                return;
            }
        }
    }
}

/// The invisible duration a nack asks for: the backoff, within the
/// protocol's bounds.
pub(super) fn nack_duration(backoff: Duration) -> Duration {
    let min = Duration::from_millis(limits::MIN_INVISIBLE_MS as u64);
    let max = Duration::from_millis(limits::MAX_INVISIBLE_MS as u64);
    backoff.clamp(min, max)
}

async fn nack(shared: &Shared, lease: &Lease, attempt: u32) {
    let delay = nack_duration(shared.learned().backoff.delay(attempt));
    if let Err(e) = shared
        .consumer
        .change_invisible_duration(&lease.message, delay)
        .await
    {
        tracing::warn!(message_id = %lease.message.message_id, error = %e,
            "nack failed; the message comes back after its invisible duration");
    }
}

async fn forward_to_dlq(shared: &Shared, lease: &mut Lease, attempt: u32, max: u32) {
    for n in 1..=FORWARD_ATTEMPTS {
        let m = &lease.message;
        let core = shared.consumer.core();
        let req = v2::ForwardMessageToDeadLetterQueueRequest {
            group: Some(core.resource(shared.consumer.group())),
            topic: Some(core.resource(&m.topic)),
            receipt_handle: m.receipt_handle.clone(),
            message_id: m.message_id.clone(),
            delivery_attempt: attempt as i32,
            max_delivery_attempts: max as i32,
            lite_topic: m.lite_topic.clone(),
        };
        let res = core
            .call(
                &m.endpoint,
                req,
                core.config.request_timeout,
                |mut c, r| async move { c.forward_message_to_dead_letter_queue(r).await },
            )
            .await
            .and_then(|r| ClientError::check(r.status.as_ref()));
        match res {
            Ok(()) => return,
            Err(e) if e.is_retryable() && n < FORWARD_ATTEMPTS && !shared.stopping() => {
                tracing::debug!(message_id = %m.message_id, error = %e, "dead-letter forward failed, retrying");
                lease.renewing(shared, tokio::time::sleep(RETRY_GAP)).await;
            }
            Err(e) => {
                tracing::error!(message_id = %m.message_id, error = %e,
                    "dead-letter forward failed; the message will be delivered again");
                return;
            }
        }
    }
}

/// A held message: its newest receipt handle and when to renew it.
pub(super) struct Lease {
    pub(super) message: ReceivedMessage,
    /// None: the broker renews; the client never does.
    invisible: Option<Duration>,
    renew_at: Instant,
    expires: Instant,
}

impl Lease {
    fn new(message: ReceivedMessage, invisible: Option<Duration>) -> Lease {
        let now = Instant::now();
        let (renew_at, expires) = match invisible {
            Some(d) => (now + renew_after(d), now + d),
            None => (now + NEVER, now + NEVER),
        };
        Lease {
            message,
            invisible,
            renew_at,
            expires,
        }
    }

    /// Runs `fut`, renewing the message's invisibility whenever it is due.
    async fn renewing<F: Future>(&mut self, shared: &Shared, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = tokio::time::sleep_until(self.renew_at) => self.renew(shared).await,
            }
        }
    }

    async fn renew(&mut self, shared: &Shared) {
        let Some(invisible) = self.invisible else {
            self.renew_at = Instant::now() + NEVER;
            return;
        };
        let res = shared
            .consumer
            .change_invisible_duration(&self.message, invisible)
            .await;
        let now = Instant::now();
        match res {
            Ok(handle) => {
                self.message.receipt_handle = handle;
                self.expires = now + invisible;
                self.renew_at = now + renew_after(invisible);
            }
            Err(e) if now + RETRY_GAP < self.expires => {
                tracing::debug!(message_id = %self.message.message_id, error = %e, "renewal failed, retrying");
                self.renew_at = now + RETRY_GAP;
            }
            Err(e) => {
                tracing::warn!(message_id = %self.message.message_id, error = %e,
                    "cannot renew the message's invisibility; it may be delivered again");
                self.renew_at = now + NEVER;
            }
        }
    }
}

/// "Not in this process's lifetime", for timers that must not fire.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a lease of `invisible` is renewed: after 2/3 of it.
pub(super) fn renew_after(invisible: Duration) -> Duration {
    invisible * 2 / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nacks_stay_within_the_protocol_bounds() {
        assert_eq!(
            nack_duration(Duration::from_millis(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            nack_duration(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            nack_duration(Duration::from_secs(48 * 3600)),
            Duration::from_secs(12 * 3600)
        );
    }

    #[test]
    fn renewal_comes_at_two_thirds() {
        assert_eq!(
            renew_after(Duration::from_secs(30)),
            Duration::from_secs(20)
        );
        assert_eq!(renew_after(Duration::from_secs(3)), Duration::from_secs(2));
    }
}

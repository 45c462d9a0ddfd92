//! A pull: reading one queue from an offset a consumer keeps itself, with a filter and a
//! long poll, the same for both transports (gRPC PullMessage, remoting's PULL_MESSAGE).
//!
//! [`pull`] looks at the queue's bounds, reads up to a batch from the offset (an offset
//! behind the oldest stored message reads from the oldest, or is reported out of range
//! when the caller asks for exact offsets), keeps what the filter passes, and when nothing
//! is there yet waits for an append to the queue until its deadline or the broker's
//! shutdown. The transport checks the request, takes its long-poll place and encodes the
//! answer.

use crate::consume::long_poll::{Attempt, LongPoll, Polled};
use crate::consume::MessageFilter;
use crate::store::{MessageStore, StoredMessage};
use apogee_proto::{limits, ApogeeError};
use std::time::Duration;
use tokio::sync::watch;

/// The batch of a pull that asks for none (or a negative one).
pub const DEFAULT_PULL_BATCH: usize = 32;

/// The batch a pull asking for `requested` messages reads: [`DEFAULT_PULL_BATCH`] for none,
/// at most [`limits::MAX_RECEIVE_BATCH`].
pub fn batch_size(requested: i64) -> usize {
    if requested <= 0 {
        DEFAULT_PULL_BATCH
    } else {
        requested.min(limits::MAX_RECEIVE_BATCH as i64) as usize
    }
}

/// One pull of a queue already checked against its topic.
pub struct PullSpec<'a> {
    pub topic: &'a str,
    pub queue: u32,
    /// Where to read from (not negative).
    pub offset: u64,
    /// How many messages to read at most ([`batch_size`]).
    pub batch: usize,
    pub filter: &'a MessageFilter,
    /// How long to wait for a message when there is none at the offset.
    pub wait: Duration,
    /// An offset behind the oldest stored message is [`Pulled::OutOfRange`] instead of
    /// reading from the oldest.
    pub exact_offset: bool,
}

/// What a pull found.
#[derive(Debug)]
pub enum Pulled {
    /// A batch was read: the messages the filter passed (none when it passed none of the
    /// batch) and the offset to pull next.
    Read {
        matching: Vec<StoredMessage>,
        next_offset: u64,
    },
    /// Nothing at or after the offset until the deadline: the offset to pull next.
    NothingNew { next_offset: u64 },
    /// The offset is outside the queue: its oldest stored offset and its end.
    OutOfRange { oldest: u64, end: u64 },
}

/// Reads `spec`'s queue, waiting up to its `wait` for something to read; a shutdown
/// (`closing` turning true) ends the wait early with [`Pulled::NothingNew`].
pub async fn pull(
    store: &MessageStore,
    closing: watch::Receiver<bool>,
    spec: &PullSpec<'_>,
) -> Result<Pulled, ApogeeError> {
    let deadline = tokio::time::Instant::now() + spec.wait;
    let (topic, queue, offset) = (spec.topic, spec.queue, spec.offset);
    // The watch is made before the first look, so an append in between wakes the poll.
    let poll = LongPoll::new(deadline, store.watch_queues(topic, &[queue]), closing);
    let polled = poll
        .run(|| {
            let (min, next) = match store.queue_bounds(topic, queue) {
                Ok(b) => b,
                Err(e) => return Attempt::Done(Err(ApogeeError::from(e))),
            };
            if offset > next || (spec.exact_offset && offset < min) {
                return Attempt::Done(Ok(Pulled::OutOfRange {
                    oldest: min,
                    end: next,
                }));
            }
            let from = offset.max(min);
            if from >= next {
                // Nothing yet: a pull that ends now tells the client where to pull next.
                return Attempt::Nothing {
                    empty: from,
                    look_again_in: None,
                };
            }
            Attempt::Done(
                store
                    .read_queue(topic, queue, from, spec.batch, limits::MAX_BATCH_BYTES)
                    .map(|messages| {
                        let next_offset =
                            messages.last().map(|m| m.queue_offset + 1).unwrap_or(from);
                        let matching = messages
                            .into_iter()
                            .filter(|m| spec.filter.matches(&m.msg))
                            .collect();
                        Pulled::Read {
                            matching,
                            next_offset,
                        }
                    })
                    .map_err(ApogeeError::from),
            )
        })
        .await;
    match polled {
        Polled::Done(found) => found,
        Polled::DeadlinePassed(from) => Ok(Pulled::NothingNew { next_offset: from }),
    }
}

//! The pull action: a consumer reads one queue from an offset it keeps itself (gRPC
//! PullMessage, remoting PULL_MESSAGE and LITE_PULL_MESSAGE), long-polled when the queue
//! holds nothing at the offset.

use crate::consume::offsets;
use crate::consume::pull::{self, PullSpec, Pulled};
use crate::consume::MessageFilter;
use crate::services::Broker;
use apogee_proto::time::now_ms;
use apogee_proto::{limits, ApogeeError};
use std::time::Duration;

/// What a consumer asks a pull for.
#[derive(Debug)]
pub struct PullOrder<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub queue_id: i64,
    /// Where to read from; not negative.
    pub offset: i64,
    /// Most messages to read; 0 or less takes the default (`consume::pull::batch_size`).
    pub batch: i64,
    pub filter: &'a MessageFilter,
    /// How long to wait when there is nothing at the offset; a pull that waits holds one of
    /// the broker's waiting places.
    pub wait: Duration,
    /// An offset behind the oldest stored message is [`Pulled::OutOfRange`] instead of a read
    /// from the oldest.
    pub exact_offset: bool,
    /// An offset to store as the group's for the queue before reading (a remoting pull's
    /// commit bit); one that cannot be stored does not fail the pull.
    pub commit_offset: Option<i64>,
    /// The pulling client (named in the log when the pull creates the group).
    pub client_id: &'a str,
}

/// What a pull read, and the queue it read.
#[derive(Debug)]
pub struct PulledQueue {
    pub queue: u32,
    pub pulled: Pulled,
}

impl Broker {
    /// Pulls for `order`: the topic must be readable, the queue exist, the group be known (or
    /// created on first use where allowed); then reads, waiting up to the order's wait.
    pub async fn pull(&self, order: &PullOrder<'_>) -> Result<PulledQueue, ApogeeError> {
        limits::validate_group(order.group)?;
        let topic = self.readable_topic(order.topic)?;
        let queue = offsets::queue_of_topic(&topic, order.queue_id)?;
        if order.offset < 0 {
            return Err(ApogeeError::IllegalOffset(format!(
                "offset {} is negative",
                order.offset
            )));
        }
        self.groups()
            .resolve_for_receive(order.group, order.topic, order.client_id, now_ms())?;
        if let Some(commit) = order.commit_offset.filter(|&o| o >= 0) {
            if let Err(e) =
                offsets::commit_offset(self.store(), order.group, order.topic, queue, commit)
            {
                tracing::debug!(
                    group = order.group,
                    topic = order.topic,
                    queue,
                    "a pull's commit offset not stored: {e}"
                );
            }
        }
        let _place = if order.wait.is_zero() {
            None
        } else {
            Some(self.quotas().long_poll()?)
        };
        let spec = PullSpec {
            topic: order.topic,
            queue,
            offset: order.offset as u64,
            batch: pull::batch_size(order.batch),
            filter: order.filter,
            wait: order
                .wait
                .min(Duration::from_millis(limits::MAX_LONG_POLLING_MS as u64)),
            exact_offset: order.exact_offset,
        };
        let pulled = pull::pull(self.store(), self.closing(), &spec).await?;
        if let Pulled::Read { matching, .. } = &pulled {
            if matching.is_empty() {
                return Ok(PulledQueue { queue, pulled });
            }
            let bytes = matching.iter().map(|m| m.msg.body.len()).sum();
            self.metrics()
                .delivered(order.topic, order.group, matching.len(), bytes);
        }
        Ok(PulledQueue { queue, pulled })
    }
}

//! Offsets of a queue, whatever the transport: where a queue begins and ends, the offset
//! stored at a time, and a consumer group's committed offset (gRPC QueryOffset, GetOffset
//! and UpdateOffset; remoting GET_MIN_OFFSET, GET_MAX_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP,
//! GET_EARLIEST_MSG_STORETIME, QUERY_CONSUMER_OFFSET and UPDATE_CONSUMER_OFFSET). The
//! stored offsets are the consume domain's (`crate::consume::offsets`).

use crate::consume::offsets;
use crate::services::Broker;
use apogee_proto::{limits, ApogeeError};

/// A position in a queue, as a consumer names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueuePosition {
    /// The oldest stored message.
    Beginning,
    /// Where the next message will be stored.
    End,
    /// The first message stored at or after this time (unix ms); the end when none is.
    Time(i64),
}

impl Broker {
    /// Queue `queue_id` of `topic`, when the topic exists and has that queue.
    pub fn checked_queue(&self, topic: &str, queue_id: i64) -> Result<u32, ApogeeError> {
        offsets::checked_queue(self.topics(), topic, queue_id)
    }

    /// The oldest stored offset of a queue and the offset its next message will get.
    pub fn queue_bounds(&self, topic: &str, queue: u32) -> Result<(u64, u64), ApogeeError> {
        offsets::queue_bounds(self.store(), topic, queue)
    }

    /// The offset of `position` in a queue.
    pub fn offset_at(
        &self,
        topic: &str,
        queue: u32,
        position: QueuePosition,
    ) -> Result<u64, ApogeeError> {
        match position {
            QueuePosition::Beginning => Ok(self.queue_bounds(topic, queue)?.0),
            QueuePosition::End => Ok(self.queue_bounds(topic, queue)?.1),
            QueuePosition::Time(ms) => offsets::offset_for_time(self.store(), topic, queue, ms),
        }
    }

    /// The store time (unix ms) of a queue's oldest stored message; `None` when it is empty.
    pub fn earliest_store_time(&self, topic: &str, queue: u32) -> Result<Option<i64>, ApogeeError> {
        offsets::earliest_store_time(self.store(), topic, queue)
    }

    /// The offset `group` committed for a queue, raised to the oldest stored message;
    /// `None` when it never committed one.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
    ) -> Result<Option<u64>, ApogeeError> {
        limits::validate_group(group)?;
        offsets::committed_offset(self.store(), group, topic, queue)
    }

    /// Stores `offset` (0 up to the queue's end) as `group`'s offset for a queue.
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: i64,
    ) -> Result<(), ApogeeError> {
        limits::validate_group(group)?;
        offsets::commit_offset(self.store(), group, topic, queue, offset)
    }
}

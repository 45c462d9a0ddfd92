//! This broker's running figures at one moment, as monitoring tools read them (RocketMQ's
//! `GET_BROKER_RUNTIME_INFO`, behind `mqadmin clusterList` and `mqadmin brokerStatus`):
//! whether it is the active master, its commit log's extent and unflushed bytes, the store
//! time of its oldest message, the disk holding its data, and its traffic (messages in and
//! out per second over the last minutes, and the daily totals) from the traffic history
//! ([`crate::metrics::traffic`]).
//!
//! Only what the broker measures is here; what RocketMQ reports and Apogee has no figure
//! for (thread-pool queues, page-cache lock time, the timer wheel) is left to the transport
//! to answer as RocketMQ does for "none".

use super::LogOffsets;
use crate::metrics::traffic::TrafficSummary;
use crate::services::Broker;
use crate::store::record;
use crate::store::retention::DiskSpace;

/// The figures, read at one moment.
#[derive(Clone, Debug)]
pub struct RuntimeFigures {
    /// Apogee's version.
    pub version: &'static str,
    /// Unix ms when this broker started.
    pub started_at_ms: i64,
    /// The master of its group now.
    pub is_master: bool,
    /// The master and serving as one (controller mode: holding a valid lease, not handing
    /// its role over; static mode: the master).
    pub active: bool,
    pub log: LogOffsets,
    /// The store time (Unix ms) of the oldest message still readable; None for an empty log
    /// (or one whose first record could not be read, which is logged).
    pub earliest_store_ms: Option<i64>,
    /// The file system holding the data directory; None when it could not be measured.
    pub disk: Option<DiskSpace>,
    /// Messages in and out: rates over the last 10 s, minute and ten minutes, and totals.
    pub traffic: TrafficSummary,
}

impl Broker {
    /// This broker's running figures now.
    pub fn runtime_figures(&self) -> RuntimeFigures {
        let store = self.store();
        let log = LogOffsets {
            start: store.log_start_offset(),
            end: store.log_end_offset(),
            flushed: store.flushed_offset(),
        };
        let is_master = self.membership().is_master();
        RuntimeFigures {
            version: env!("CARGO_PKG_VERSION"),
            started_at_ms: self.started_at_ms(),
            is_master,
            active: is_master && self.membership().check_serving().is_ok(),
            log,
            earliest_store_ms: self.earliest_store_ms(log),
            disk: DiskSpace::of(store.data_dir())
                .inspect_err(|e| tracing::warn!("measuring the data directory's disk: {e}"))
                .ok(),
            traffic: self.metrics().traffic().summary(),
        }
    }

    /// The store time of the record at the start of `log` (None when the log is empty).
    fn earliest_store_ms(&self, log: LogOffsets) -> Option<i64> {
        if log.start >= log.end {
            return None;
        }
        let read = self
            .store()
            .read_log_bytes(log.start, record::STORE_TIMESTAMP_END)
            .map_err(|e| e.to_string())
            .and_then(|head| record::store_timestamp_of_head(&head));
        read.inspect_err(|e| {
            tracing::warn!(
                offset = log.start,
                "reading the store time of the oldest message: {e}"
            )
        })
        .ok()
    }
}

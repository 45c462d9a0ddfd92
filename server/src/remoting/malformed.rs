//! The count of remoting connections closed for a malformed frame, and its metric.
//!
//! [`MalformedFrames`] is shared: the transport ([`RemotingServer`](super::RemotingServer))
//! adds to it, and a server's metrics read it at each scrape through
//! [`register_malformed_frames_metric`] (`apogee_remoting_malformed_frames_total`), so the
//! metrics hold a number, not the transport or its handlers.

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The metric's name.
pub const MALFORMED_FRAMES_METRIC: &str = "apogee_remoting_malformed_frames_total";

/// Remoting connections closed for a malformed frame since the start. Clones share one count.
#[derive(Clone, Debug, Default)]
pub struct MalformedFrames(Arc<AtomicU64>);

impl MalformedFrames {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// One more connection closed for a malformed frame (the transport counts with it).
    pub fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Registers [`MALFORMED_FRAMES_METRIC`] in `registry`: a counter read from `frames` at each
/// scrape.
pub fn register_malformed_frames_metric(
    registry: &Registry,
    frames: MalformedFrames,
) -> prometheus::Result<()> {
    let counter = IntCounter::new(
        MALFORMED_FRAMES_METRIC,
        "Remoting connections closed because their client sent a malformed frame (a bad \
         length, header or serialization type, or a frame over remoting.max_frame_bytes).",
    )?;
    registry.register(Box::new(MalformedFramesCollector {
        frames,
        counter,
        catching_up: Mutex::new(()),
    }))
}

/// The counter, brought up to the count when collected.
struct MalformedFramesCollector {
    frames: MalformedFrames,
    counter: IntCounter,
    /// One catch-up at a time, so two scrapes do not both add the same difference.
    catching_up: Mutex<()>,
}

impl Collector for MalformedFramesCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.catching_up.lock();
        let behind = self.frames.get().saturating_sub(self.counter.get());
        if behind > 0 {
            self.counter.inc_by(behind);
        }
        self.counter.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;
    use std::collections::HashMap;

    fn scrape(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_metric_shows_the_count_at_each_scrape() {
        let labels = HashMap::from([("node_type".to_string(), "broker".to_string())]);
        let registry = Registry::new_custom(None, Some(labels)).unwrap();
        let frames = MalformedFrames::default();
        register_malformed_frames_metric(&registry, frames.clone()).unwrap();

        let text = scrape(&registry);
        assert!(
            text.contains(&format!("# TYPE {MALFORMED_FRAMES_METRIC} counter")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{MALFORMED_FRAMES_METRIC}{{node_type=\"broker\"}} 0\n"
            )),
            "{text}"
        );
        // A clone counts for all: the transport's clone is what the metric reads.
        let transport = frames.clone();
        transport.add_one();
        transport.add_one();
        assert_eq!(frames.get(), 2);
        let text = scrape(&registry);
        assert!(
            text.contains(&format!(
                "{MALFORMED_FRAMES_METRIC}{{node_type=\"broker\"}} 2\n"
            )),
            "{text}"
        );
        // A scrape with no change shows the same count, not twice the difference.
        let text = scrape(&registry);
        assert!(
            text.contains(&format!(
                "{MALFORMED_FRAMES_METRIC}{{node_type=\"broker\"}} 2\n"
            )),
            "{text}"
        );
    }
}

//! `[trace]`: message trace records that clients write (`crate::produce::validate`).
//!
//! RocketMQ 4.x clients with message trace on (`enableMsgTrace`, common with Spring) send a
//! record of every send and consume to `RMQ_SYS_TRACE_TOPIC`
//! ([`apogee_proto::names::TRACE_TOPIC`]) unless they name a trace topic of their own, which
//! is an ordinary topic. That one is a system topic: with `enabled` the broker creates it (one
//! queue, as RocketMQ's `traceTopicEnable` does), the NameServers route it, and clients send to
//! it and read it like any topic; without, every send to it is refused with the reason.

use serde::{Deserialize, Serialize};

/// Queues of the trace topic the broker creates (RocketMQ's broker makes it with one).
pub const TRACE_TOPIC_QUEUES: u32 = 1;

/// Message trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSection {
    /// Clients may write trace records to `RMQ_SYS_TRACE_TOPIC` (default true: a RocketMQ
    /// application with trace on works unchanged; its records are stored like messages and
    /// found by id and key).
    pub enabled: bool,
}

impl Default for TraceSection {
    fn default() -> Self {
        TraceSection { enabled: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_on_unless_turned_off_and_unknown_keys_are_refused() {
        assert!(TraceSection::default().enabled);
        let s: TraceSection = toml::from_str("enabled = false").unwrap();
        assert!(!s.enabled);
        assert!(toml::from_str::<TraceSection>("topic = \"mine\"").is_err());
    }
}

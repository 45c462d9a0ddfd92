//! `[lite]`: the limits of lite topics (RocketMQ's RIP-83 lite topics: many short-lived
//! channels under one LITE parent topic) and of lite subscriptions; checked in
//! `BrokerConfig::validate`.

use serde::{Deserialize, Serialize};

/// Lite topics and lite subscriptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiteSection {
    /// Longest lite topic name (RocketMQ's `maxLiteTopicSize`), told to clients in Settings.
    pub max_topic_len: usize,
    /// Most lite topics this broker keeps, all parents together: a send that would create
    /// one more is refused with LITE_TOPIC_QUOTA_EXCEEDED.
    pub max_lite_topics: u64,
    /// Most lite topics one client may subscribe when its group sets no quota of its own
    /// (LITE_SUBSCRIPTION_QUOTA_EXCEEDED beyond it); told to clients in Settings.
    pub subscription_quota: u32,
    /// A client that sent no subscription sync (nor any request) for this long loses its
    /// lite subscriptions. The official clients re-send their whole set every 30 s.
    pub subscription_idle_secs: u64,
    /// How often lite topics are checked against their parent's `lite_expire_after_secs`.
    pub expiry_scan_interval_secs: u64,
}

/// Upper bound of `lite.max_topic_len` (a lite queue's name must stay a short key; the
/// store's listing of lite queues looks for names up to this length).
pub const MAX_LITE_TOPIC_LEN_LIMIT: usize = crate::store::lite::MAX_LITE_NAME_LEN;

impl Default for LiteSection {
    fn default() -> Self {
        LiteSection {
            max_topic_len: apogee_proto::limits::DEFAULT_MAX_LITE_TOPIC_LEN,
            max_lite_topics: 2_000_000,
            subscription_quota: 1_000,
            subscription_idle_secs: 120,
            expiry_scan_interval_secs: 60,
        }
    }
}

impl LiteSection {
    /// Checks the bounds serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_LITE_TOPIC_LEN_LIMIT).contains(&self.max_topic_len) {
            return Err(format!(
                "lite.max_topic_len must be within 1..={MAX_LITE_TOPIC_LEN_LIMIT}"
            ));
        }
        if self.max_lite_topics == 0 || self.subscription_quota == 0 {
            return Err("lite.max_lite_topics and lite.subscription_quota must be > 0".into());
        }
        if self.subscription_idle_secs < 30 {
            return Err(
                "lite.subscription_idle_secs must be at least 30 (clients sync every 30 s)".into(),
            );
        }
        if self.expiry_scan_interval_secs == 0 {
            return Err("lite.expiry_scan_interval_secs must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_refused() {
        LiteSection::default().validate().unwrap();
        for bad in [
            LiteSection {
                max_topic_len: 0,
                ..Default::default()
            },
            LiteSection {
                max_topic_len: MAX_LITE_TOPIC_LEN_LIMIT + 1,
                ..Default::default()
            },
            LiteSection {
                subscription_quota: 0,
                ..Default::default()
            },
            LiteSection {
                subscription_idle_secs: 29,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}

//! `[priority]`: how a receive serves a PRIORITY topic's queues (RocketMQ's RIP-80 priority
//! messages; `crate::consume::priority`).

use serde::{Deserialize, Serialize};

/// Which end of a PRIORITY topic's queues a receive serves first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityOrder {
    /// A higher priority number is served first (RocketMQ's default): queue `n - 1` first.
    #[default]
    HighestFirst,
    /// A lower priority number is served first: queue 0 first.
    LowestFirst,
}

/// Priority messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrioritySection {
    /// `highest_first` (default) or `lowest_first`.
    pub order: PriorityOrder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_reads_from_toml_and_defaults_to_highest_first() {
        assert_eq!(
            PrioritySection::default().order,
            PriorityOrder::HighestFirst
        );
        let s: PrioritySection = toml::from_str("order = \"lowest_first\"").unwrap();
        assert_eq!(s.order, PriorityOrder::LowestFirst);
        assert!(toml::from_str::<PrioritySection>("order = \"sideways\"").is_err());
        assert!(toml::from_str::<PrioritySection>("orders = \"lowest_first\"").is_err());
    }
}

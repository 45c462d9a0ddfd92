//! Consumer-group configuration shared by brokers, NameServers and tools:
//! how many deliveries a message gets, how long a group waits before each
//! redelivery, and whether the group consumes in FIFO order.
//!
//! The defaults follow RocketMQ: 16 delivery attempts, and the 18 classic
//! delay levels (1s 5s 10s 30s 1m 2m ... 2h) as backoff.

use crate::ApogeeError;

/// Longest backoff a policy may hold (one day).
pub const MAX_BACKOFF_MS: u64 = 24 * 3600 * 1000;
/// Most delivery attempts a group may ask for.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 1000;
/// Most steps a custom backoff list may hold.
pub const MAX_CUSTOM_STEPS: usize = 64;
/// Default delivery attempts before a message is dead-lettered.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 16;
/// Response header of the ReceiveMessage that created its consumer group on first use:
/// where the new group starts reading, `earliest` or `latest` (the broker's
/// `consume.auto_create_start`). Clients that do not know it ignore it.
pub const GROUP_CREATED_HEADER: &str = "apogee-group-created";

/// The backoff before the redelivery that follows a failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryPolicy {
    /// `initial * multiplier^(attempt-1)`, at most `max`.
    Exponential {
        initial_ms: u64,
        max_ms: u64,
        multiplier: f64,
    },
    /// Step `attempt-1` of the list; the last step repeats.
    Custom(Vec<u64>),
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::Custom(
            crate::delay_level::LEVELS_SECS
                .iter()
                .map(|s| s * 1000)
                .collect(),
        )
    }
}

impl RetryPolicy {
    /// Backoff after delivery attempt `attempt` (1-based) failed.
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let step = attempt.max(1) - 1;
        match self {
            RetryPolicy::Exponential {
                initial_ms,
                max_ms,
                multiplier,
            } => {
                let v = (*initial_ms as f64) * multiplier.powi(step.min(1000) as i32);
                if v.is_finite() {
                    (v as u64).min(*max_ms)
                } else {
                    *max_ms
                }
            }
            RetryPolicy::Custom(steps) => steps
                .get(step as usize)
                .or(steps.last())
                .copied()
                .unwrap_or(0),
        }
    }

    /// Checks the policy's bounds.
    pub fn validate(&self) -> Result<(), ApogeeError> {
        let bad = |m: String| Err(ApogeeError::BadRequest(m));
        match self {
            RetryPolicy::Exponential {
                initial_ms,
                max_ms,
                multiplier,
            } => {
                if *initial_ms == 0 || initial_ms > max_ms || *max_ms > MAX_BACKOFF_MS {
                    return bad(format!(
                        "exponential backoff needs 0 < initial ({initial_ms} ms) <= max ({max_ms} ms) <= {MAX_BACKOFF_MS} ms"
                    ));
                }
                if !(1.0..=10.0).contains(multiplier) {
                    return bad(format!("backoff multiplier {multiplier} is outside 1..=10"));
                }
            }
            RetryPolicy::Custom(steps) => {
                if steps.is_empty() || steps.len() > MAX_CUSTOM_STEPS {
                    return bad(format!(
                        "a custom backoff needs 1..={MAX_CUSTOM_STEPS} steps, got {}",
                        steps.len()
                    ));
                }
                if let Some(s) = steps.iter().find(|s| **s > MAX_BACKOFF_MS) {
                    return bad(format!(
                        "backoff step {s} ms is longer than {MAX_BACKOFF_MS} ms"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One consumer group's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupConfig {
    pub name: String,
    /// Deliveries before a message goes to the dead-letter topic.
    pub max_delivery_attempts: u32,
    pub retry: RetryPolicy,
    /// Messages of one message group are handed out one at a time, in order.
    pub fifo: bool,
    /// Set for a lite consumer group: the LITE parent topic it is bound to and how its
    /// clients share lite topics.
    pub lite: Option<LiteBinding>,
    /// Receives ignore message priority (a PRIORITY topic's queues in plain rotation).
    pub priority_off: bool,
}

/// What binds a lite consumer group to its parent topic (`apogee group create --lite-bind`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiteBinding {
    /// The LITE parent topic.
    pub bind_topic: String,
    /// One client per lite topic: a new subscriber evicts the old one.
    pub exclusive: bool,
    /// Most lite topics one client may subscribe; 0: the broker's default.
    pub subscription_quota: u32,
}

impl GroupConfig {
    /// A group with the defaults (what an unknown group gets on first use).
    pub fn with_defaults(name: &str) -> GroupConfig {
        GroupConfig {
            name: name.to_string(),
            max_delivery_attempts: DEFAULT_MAX_DELIVERY_ATTEMPTS,
            retry: RetryPolicy::default(),
            fifo: false,
            lite: None,
            priority_off: false,
        }
    }

    /// Checks the name and every bound.
    pub fn validate(&self) -> Result<(), ApogeeError> {
        crate::limits::validate_group(&self.name)?;
        if let Some(lite) = &self.lite {
            crate::limits::validate_topic(&lite.bind_topic)?;
        }
        if !(1..=MAX_DELIVERY_ATTEMPTS).contains(&self.max_delivery_attempts) {
            return Err(ApogeeError::BadRequest(format!(
                "max delivery attempts {} is outside 1..={MAX_DELIVERY_ATTEMPTS}",
                self.max_delivery_attempts
            )));
        }
        self.retry.validate()
    }

    /// The dead-letter topic of this group (`%DLQ%<group>`).
    pub fn dead_letter_topic(&self) -> String {
        crate::names::dlq_topic(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_rocketmq_levels() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ms(1), 1_000);
        assert_eq!(p.backoff_ms(2), 5_000);
        assert_eq!(p.backoff_ms(18), 7_200_000);
        assert_eq!(p.backoff_ms(40), 7_200_000, "the last step repeats");
    }

    #[test]
    fn exponential_doubles_up_to_max() {
        let p = RetryPolicy::Exponential {
            initial_ms: 100,
            max_ms: 1_000,
            multiplier: 2.0,
        };
        assert_eq!(
            [1, 2, 3, 4, 5, 99].map(|a| p.backoff_ms(a)),
            [100, 200, 400, 800, 1_000, 1_000]
        );
    }

    #[test]
    fn bounds_are_checked() {
        let mut g = GroupConfig::with_defaults("g");
        assert!(g.validate().is_ok());
        g.max_delivery_attempts = 0;
        assert!(g.validate().is_err());
        g.max_delivery_attempts = 3;
        g.retry = RetryPolicy::Custom(vec![]);
        assert!(g.validate().is_err());
        g.retry = RetryPolicy::Exponential {
            initial_ms: 10,
            max_ms: 5,
            multiplier: 2.0,
        };
        assert!(g.validate().is_err());
        assert_eq!(g.dead_letter_topic(), "%DLQ%g");
    }
}

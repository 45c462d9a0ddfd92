//! Conversions between the consumer-group config of [`crate::group`] and its
//! wire form `cluster.v1.GroupConfig` (admin RPCs, broker registration, the
//! broker's persisted copy).
//!
//! On the wire, 0 delivery attempts and an absent retry policy mean "the
//! default" (what `apogee group create G` without flags sends); everything
//! read from the wire is validated.

use crate::cluster;
use crate::group::{GroupConfig, LiteBinding, RetryPolicy, DEFAULT_MAX_DELIVERY_ATTEMPTS};
use crate::ApogeeError;

impl From<&GroupConfig> for cluster::GroupConfig {
    fn from(g: &GroupConfig) -> Self {
        cluster::GroupConfig {
            name: g.name.clone(),
            max_delivery_attempts: g.max_delivery_attempts,
            retry: Some(retry_to_proto(&g.retry)),
            fifo: g.fifo,
            lite_bind_topic: g
                .lite
                .as_ref()
                .map(|l| l.bind_topic.clone())
                .unwrap_or_default(),
            lite_mode: match &g.lite {
                Some(l) if l.exclusive => cluster::LiteMode::Exclusive as i32,
                _ => cluster::LiteMode::Shared as i32,
            },
            lite_subscription_quota: g.lite.as_ref().map_or(0, |l| l.subscription_quota),
            priority_off: g.priority_off,
        }
    }
}

impl TryFrom<&cluster::GroupConfig> for GroupConfig {
    type Error = ApogeeError;

    /// Reads a config from the wire, filling in defaults and checking every bound.
    fn try_from(p: &cluster::GroupConfig) -> Result<Self, ApogeeError> {
        let g = GroupConfig {
            name: p.name.clone(),
            max_delivery_attempts: match p.max_delivery_attempts {
                0 => DEFAULT_MAX_DELIVERY_ATTEMPTS,
                n => n,
            },
            retry: p.retry.as_ref().map(retry_from_proto).unwrap_or_default(),
            fifo: p.fifo,
            lite: (!p.lite_bind_topic.is_empty()).then(|| LiteBinding {
                bind_topic: p.lite_bind_topic.clone(),
                exclusive: p.lite_mode == cluster::LiteMode::Exclusive as i32,
                subscription_quota: p.lite_subscription_quota,
            }),
            priority_off: p.priority_off,
        };
        g.validate()?;
        Ok(g)
    }
}

/// The wire form of a retry policy.
pub fn retry_to_proto(r: &RetryPolicy) -> cluster::group_config::Retry {
    use cluster::group_config::Retry;
    match r {
        RetryPolicy::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => Retry::Exponential(cluster::ExponentialRetry {
            initial_ms: *initial_ms,
            max_ms: *max_ms,
            multiplier: *multiplier,
        }),
        RetryPolicy::Custom(steps) => Retry::Custom(cluster::CustomRetry {
            steps_ms: steps.clone(),
        }),
    }
}

/// A retry policy from the wire (not validated: see [`RetryPolicy::validate`]).
pub fn retry_from_proto(r: &cluster::group_config::Retry) -> RetryPolicy {
    use cluster::group_config::Retry;
    match r {
        Retry::Exponential(e) => RetryPolicy::Exponential {
            initial_ms: e.initial_ms,
            max_ms: e.max_ms,
            multiplier: e.multiplier,
        },
        Retry::Custom(c) => RetryPolicy::Custom(c.steps_ms.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip() {
        for retry in [
            RetryPolicy::default(),
            RetryPolicy::Exponential {
                initial_ms: 250,
                max_ms: 60_000,
                multiplier: 1.5,
            },
            RetryPolicy::Custom(vec![1_000, 3_000]),
        ] {
            let g = GroupConfig {
                name: "orders-g".into(),
                max_delivery_attempts: 5,
                retry,
                fifo: true,
                lite: None,
                priority_off: false,
            };
            let wire = cluster::GroupConfig::from(&g);
            assert_eq!(GroupConfig::try_from(&wire).unwrap(), g);
        }
        let lite = GroupConfig {
            lite: Some(LiteBinding {
                bind_topic: "agents".into(),
                exclusive: true,
                subscription_quota: 500,
            }),
            priority_off: true,
            ..GroupConfig::with_defaults("agents-g")
        };
        let wire = cluster::GroupConfig::from(&lite);
        assert_eq!(wire.lite_mode, cluster::LiteMode::Exclusive as i32);
        assert_eq!(GroupConfig::try_from(&wire).unwrap(), lite);
    }

    #[test]
    fn unset_fields_mean_the_defaults() {
        let wire = cluster::GroupConfig {
            name: "g".into(),
            ..Default::default()
        };
        assert_eq!(
            GroupConfig::try_from(&wire).unwrap(),
            GroupConfig::with_defaults("g")
        );
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad = [
            cluster::GroupConfig {
                name: "bad name".into(),
                ..Default::default()
            },
            cluster::GroupConfig {
                name: "g".into(),
                max_delivery_attempts: 5_000,
                ..Default::default()
            },
            cluster::GroupConfig {
                name: "g".into(),
                retry: Some(cluster::group_config::Retry::Custom(cluster::CustomRetry {
                    steps_ms: vec![],
                })),
                ..Default::default()
            },
            cluster::GroupConfig {
                name: "g".into(),
                retry: Some(cluster::group_config::Retry::Exponential(
                    cluster::ExponentialRetry {
                        initial_ms: 1_000,
                        max_ms: 10,
                        multiplier: 2.0,
                    },
                )),
                ..Default::default()
            },
        ];
        for wire in bad {
            assert!(GroupConfig::try_from(&wire).is_err(), "{wire:?}");
        }
    }
}

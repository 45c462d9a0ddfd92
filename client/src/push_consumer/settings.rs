//! What the push consumer takes from the servers' Telemetry Settings reply:
//! the group's retry policy (the backoff before each redelivery and the
//! maximum delivery attempts), the FIFO flag, the receive batch size and the
//! granted long-polling time. [`BackoffPolicy`] turns a delivery attempt
//! into the delay before the next one, as the official clients do:
//! exponential `initial * multiplier^(attempt-1)` capped at `max`, or step
//! `attempt-1` of a customized list (the last step repeats).

use apogee_proto::v2::{self, retry_policy::Strategy, settings::PubSub};
use apogee_proto::{delay_level, limits, time::duration_ms};
use std::time::Duration;

/// Delivery attempts assumed when the server names none (RocketMQ's default).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;

/// Receive batch size assumed when the server names none.
const DEFAULT_BATCH: u32 = 32;

/// The delay before a failed delivery is attempted again.
#[derive(Clone, Debug, PartialEq)]
pub enum BackoffPolicy {
    /// `initial * multiplier^(attempt-1)`, at most `max`.
    Exponential {
        initial: Duration,
        max: Duration,
        multiplier: f64,
    },
    /// Step `attempt-1` of the list; the last step repeats.
    Customized(Vec<Duration>),
}

impl Default for BackoffPolicy {
    /// RocketMQ's default: 1s 5s 10s 30s 1m 2m ... 2h (the delay levels).
    fn default() -> Self {
        BackoffPolicy::Customized(
            delay_level::LEVELS_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
        )
    }
}

impl BackoffPolicy {
    /// Reads a policy a server sent; `None` when it names no usable strategy
    /// (no strategy, an exponential one without an initial delay, an empty
    /// customized list).
    pub fn from_v2(policy: &v2::RetryPolicy) -> Option<BackoffPolicy> {
        match policy.strategy.as_ref()? {
            Strategy::ExponentialBackoff(e) => {
                let initial = e.initial.as_ref().map(to_duration)?;
                if initial.is_zero() {
                    return None;
                }
                let max = e.max.as_ref().map(to_duration).unwrap_or(initial);
                let multiplier = if e.multiplier.is_finite() && e.multiplier >= 1.0 {
                    e.multiplier as f64
                } else {
                    1.0
                };
                Some(BackoffPolicy::Exponential {
                    initial,
                    max: max.max(initial),
                    multiplier,
                })
            }
            Strategy::CustomizedBackoff(c) if !c.next.is_empty() => Some(
                BackoffPolicy::Customized(c.next.iter().map(to_duration).collect()),
            ),
            Strategy::CustomizedBackoff(_) => None,
        }
    }

    /// The delay after delivery attempt `attempt` (1-based) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = attempt.max(1) - 1;
        match self {
            BackoffPolicy::Exponential {
                initial,
                max,
                multiplier,
            } => {
                let ms = initial.as_millis() as f64 * multiplier.powi(step.min(1000) as i32);
                if ms.is_finite() && ms < max.as_millis() as f64 {
                    Duration::from_millis(ms as u64)
                } else {
                    *max
                }
            }
            BackoffPolicy::Customized(steps) => steps
                .get(step as usize)
                .or(steps.last())
                .copied()
                .unwrap_or_default(),
        }
    }
}

fn to_duration(d: &prost_types::Duration) -> Duration {
    Duration::from_millis(duration_ms(d).max(0) as u64)
}

/// The consumer-side values of a Settings reply, with defaults for what it
/// leaves out.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Learned {
    pub(crate) fifo: bool,
    pub(crate) backoff: BackoffPolicy,
    pub(crate) max_attempts: u32,
    /// Most messages one receive asks for (1 to 64).
    pub(crate) batch: u32,
    /// How long an idle receive waits (at most the protocol's 30 s).
    pub(crate) long_poll: Duration,
}

impl Learned {
    pub(crate) fn from_settings(settings: Option<&v2::Settings>) -> Learned {
        let policy = settings.and_then(|s| s.backoff_policy.as_ref());
        let sub = settings.and_then(|s| match &s.pub_sub {
            Some(PubSub::Subscription(sub)) => Some(sub),
            _ => None,
        });
        let max_poll = Duration::from_millis(limits::MAX_LONG_POLLING_MS as u64);
        Learned {
            fifo: sub.and_then(|s| s.fifo).unwrap_or(false),
            backoff: policy.and_then(BackoffPolicy::from_v2).unwrap_or_default(),
            max_attempts: policy
                .map(|p| p.max_attempts)
                .filter(|n| *n > 0)
                .map_or(DEFAULT_MAX_ATTEMPTS, |n| n as u32),
            batch: sub
                .and_then(|s| s.receive_batch_size)
                .filter(|n| *n > 0)
                .map_or(DEFAULT_BATCH, |n| n as u32)
                .min(limits::MAX_RECEIVE_BATCH as u32),
            long_poll: sub
                .and_then(|s| s.long_polling_timeout.as_ref())
                .map(to_duration)
                .unwrap_or(max_poll)
                .min(max_poll),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::time::duration;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    fn exponential(initial_ms: u64, max_ms: Option<u64>, multiplier: f32) -> v2::RetryPolicy {
        v2::RetryPolicy {
            max_attempts: 5,
            strategy: Some(Strategy::ExponentialBackoff(v2::ExponentialBackoff {
                initial: Some(duration(Duration::from_millis(initial_ms))),
                max: max_ms.map(|m| duration(Duration::from_millis(m))),
                multiplier,
            })),
        }
    }

    fn customized(steps_ms: &[u64]) -> v2::RetryPolicy {
        v2::RetryPolicy {
            max_attempts: 3,
            strategy: Some(Strategy::CustomizedBackoff(v2::CustomizedBackoff {
                next: steps_ms
                    .iter()
                    .map(|m| duration(Duration::from_millis(*m)))
                    .collect(),
            })),
        }
    }

    #[test]
    fn default_backoff_is_rocketmq_levels() {
        let p = BackoffPolicy::default();
        let first: Vec<Duration> = (1..=4).map(|a| p.delay(a)).collect();
        assert_eq!(first, secs(&[1, 5, 10, 30]));
        assert_eq!(p.delay(18), Duration::from_secs(7200));
        assert_eq!(
            p.delay(100),
            Duration::from_secs(7200),
            "the last step repeats"
        );
        assert_eq!(p.delay(0), Duration::from_secs(1), "attempt 0 counts as 1");
    }

    #[test]
    fn exponential_grows_by_the_multiplier_up_to_max() {
        let p = BackoffPolicy::from_v2(&exponential(100, Some(1_000), 2.0)).unwrap();
        let got: Vec<u128> = [1, 2, 3, 4, 5, 1000, u32::MAX]
            .iter()
            .map(|a| p.delay(*a).as_millis())
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1_000, 1_000, 1_000]);
    }

    #[test]
    fn customized_steps_follow_the_attempt_and_repeat_the_last() {
        let p = BackoffPolicy::from_v2(&customized(&[300, 700])).unwrap();
        let got: Vec<u128> = (1..=4).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(got, vec![300, 700, 700, 700]);
    }

    #[test]
    fn unusable_policies_are_rejected() {
        assert_eq!(BackoffPolicy::from_v2(&customized(&[])), None);
        assert_eq!(BackoffPolicy::from_v2(&exponential(0, None, 2.0)), None);
        assert_eq!(BackoffPolicy::from_v2(&v2::RetryPolicy::default()), None);
        let odd = BackoffPolicy::from_v2(&exponential(500, None, f32::NAN)).unwrap();
        assert_eq!(
            odd.delay(9),
            Duration::from_millis(500),
            "no max: stays at initial"
        );
    }

    #[test]
    fn learned_values_come_from_the_reply_with_defaults() {
        let none = Learned::from_settings(None);
        assert_eq!(
            none,
            Learned {
                fifo: false,
                backoff: BackoffPolicy::default(),
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                batch: DEFAULT_BATCH,
                long_poll: Duration::from_secs(30),
            }
        );
        let reply = v2::Settings {
            backoff_policy: Some(customized(&[200])),
            pub_sub: Some(PubSub::Subscription(v2::Subscription {
                fifo: Some(true),
                receive_batch_size: Some(500),
                long_polling_timeout: Some(duration(Duration::from_secs(5))),
                ..Default::default()
            })),
            ..Default::default()
        };
        let l = Learned::from_settings(Some(&reply));
        assert!(l.fifo);
        assert_eq!(l.max_attempts, 3);
        assert_eq!(l.batch, 64, "capped at the protocol's batch limit");
        assert_eq!(l.long_poll, Duration::from_secs(5));
        assert_eq!(l.backoff.delay(7), Duration::from_millis(200));
    }
}

//! The server's answer to a client's Telemetry `Settings`.
//!
//! Official RocketMQ 5 clients open Telemetry first and send their settings;
//! they wait for the server's settings before they consider themselves
//! started. The reply echoes what the client declared and adds the server's
//! limits: the largest body a producer may send, whether message types are
//! checked, and the retry (backoff) policy.

use crate::time::duration;
use crate::v2::{self, retry_policy, settings::PubSub, ExponentialBackoff, RetryPolicy};
use std::time::Duration;

/// The server-side values a settings reply carries.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Largest message body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Attempts a producer makes for one send (first try included).
    pub producer_max_attempts: i32,
    /// Deliveries a consumer group gets before a message is dead-lettered.
    pub consumer_max_attempts: i32,
    /// Longest long-polling wait the server grants.
    pub max_long_polling: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: crate::limits::DEFAULT_MAX_BODY_BYTES,
            producer_max_attempts: 3,
            consumer_max_attempts: 16,
            max_long_polling: Duration::from_millis(crate::limits::MAX_LONG_POLLING_MS as u64),
        }
    }
}

fn backoff(max_attempts: i32, initial: Duration, max: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        strategy: Some(retry_policy::Strategy::ExponentialBackoff(
            ExponentialBackoff {
                initial: Some(duration(initial)),
                max: Some(duration(max)),
                multiplier: 2.0,
            },
        )),
    }
}

/// Builds the reply to the settings a client sent over Telemetry.
pub fn settings_reply(client: &v2::Settings, limits: &ServerLimits) -> v2::Settings {
    let mut reply = client.clone();
    match reply.pub_sub.as_mut() {
        Some(PubSub::Publishing(p)) => {
            p.max_body_size = limits.max_body_bytes.min(i32::MAX as usize) as i32;
            p.validate_message_type = true;
            reply.backoff_policy = Some(backoff(
                limits.producer_max_attempts,
                Duration::from_millis(10),
                Duration::from_secs(1),
            ));
        }
        Some(PubSub::Subscription(s)) => {
            if s.receive_batch_size.is_none() {
                s.receive_batch_size = Some(crate::limits::MAX_RECEIVE_BATCH.min(32));
            }
            let requested = s
                .long_polling_timeout
                .as_ref()
                .map(crate::time::duration_ms)
                .unwrap_or(limits.max_long_polling.as_millis() as i64);
            let granted = requested.clamp(0, limits.max_long_polling.as_millis() as i64);
            s.long_polling_timeout = Some(duration(Duration::from_millis(granted as u64)));
            reply.backoff_policy = Some(backoff(
                limits.consumer_max_attempts,
                Duration::from_secs(1),
                Duration::from_secs(60),
            ));
        }
        None => {
            reply.backoff_policy = Some(backoff(
                limits.producer_max_attempts,
                Duration::from_millis(10),
                Duration::from_secs(1),
            ));
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_get_body_limit_and_exponential_backoff() {
        let client = v2::Settings {
            pub_sub: Some(PubSub::Publishing(v2::Publishing::default())),
            ..Default::default()
        };
        let reply = settings_reply(&client, &ServerLimits::default());
        match reply.pub_sub {
            Some(PubSub::Publishing(p)) => {
                assert_eq!(p.max_body_size, 4 * 1024 * 1024);
                assert!(p.validate_message_type);
            }
            other => panic!("unexpected {other:?}"),
        }
        let policy = reply.backoff_policy.expect("backoff");
        assert!(matches!(
            policy.strategy,
            Some(retry_policy::Strategy::ExponentialBackoff(_))
        ));
    }

    #[test]
    fn consumer_long_polling_is_capped() {
        let client = v2::Settings {
            pub_sub: Some(PubSub::Subscription(v2::Subscription {
                long_polling_timeout: Some(duration(Duration::from_secs(120))),
                ..Default::default()
            })),
            ..Default::default()
        };
        let reply = settings_reply(&client, &ServerLimits::default());
        let Some(PubSub::Subscription(s)) = reply.pub_sub else {
            panic!("subscription expected")
        };
        assert_eq!(
            crate::time::duration_ms(s.long_polling_timeout.as_ref().unwrap()),
            crate::limits::MAX_LONG_POLLING_MS
        );
    }
}

//! The server's answer to a client's Telemetry `Settings`.
//!
//! Official RocketMQ 5 clients open Telemetry first and send their settings;
//! they wait for the server's settings before they consider themselves
//! started. The reply echoes what the client declared and adds the server's
//! limits: the largest body a producer may send, whether message types are
//! checked, and the retry (backoff) policy.
//!
//! A consumer's reply carries its group's config: the FIFO flag, the max
//! delivery attempts and the backoff, in the form its client's language
//! accepts (from the user agent): Python's consumer honours only a customized
//! policy in whole seconds, Node's only an exponential one; every other client
//! gets the group's own form (a customized list is never empty: Go panics on
//! an empty one).

use apogee_proto::group::{GroupConfig, RetryPolicy as GroupRetry, MAX_CUSTOM_STEPS};
use apogee_proto::time::duration;
use apogee_proto::v2::{
    self, retry_policy, settings::PubSub, CustomizedBackoff, ExponentialBackoff, Language,
    RetryPolicy,
};
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
    /// Most lite topics one lite consumer may subscribe when its group sets no quota
    /// (`subscription.lite_subscription_quota` of every consumer's reply).
    pub lite_subscription_quota: u32,
    /// Longest lite topic name (`subscription.max_lite_topic_size`).
    pub max_lite_topic_len: usize,
    /// Where clients export their own metrics (OTLP over gRPC), told to every client in the
    /// reply's `metric`; None tells them to export none.
    pub client_metrics: Option<v2::Endpoints>,
}

/// `[telemetry]` of both servers' configs: what the Settings a client receives say about the
/// client's own metrics. The official 5.x clients export their send and receive histograms
/// (OTLP over gRPC) to the endpoint the server names, as RocketMQ's proxy tells them with its
/// `metricCollectorMode`; Apogee names the collector itself, so clients reach it directly.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// host:port of an OpenTelemetry collector's OTLP/gRPC receiver that clients export their
    /// metrics to; "" (the default): clients export none.
    pub client_metrics_endpoint: String,
}

impl TelemetrySection {
    /// The endpoint as the protocol's `Endpoints`, None when empty; an error names the key.
    pub fn client_metrics(&self) -> Result<Option<v2::Endpoints>, String> {
        let endpoint = self.client_metrics_endpoint.trim();
        if endpoint.is_empty() {
            return Ok(None);
        }
        crate::endpoint::parse(endpoint)
            .map(|hp| Some(hp.to_endpoints()))
            .map_err(|e| format!("telemetry.client_metrics_endpoint: {e}"))
    }
}

/// The default per-client lite subscription quota (a broker's `lite.subscription_quota`;
/// what a NameServer tells consumers whose group sets none).
pub const DEFAULT_LITE_SUBSCRIPTION_QUOTA: u32 = 1_000;

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: apogee_proto::limits::DEFAULT_MAX_BODY_BYTES,
            producer_max_attempts: 3,
            consumer_max_attempts: 16,
            max_long_polling: Duration::from_millis(
                apogee_proto::limits::MAX_LONG_POLLING_MS as u64,
            ),
            lite_subscription_quota: DEFAULT_LITE_SUBSCRIPTION_QUOTA,
            max_lite_topic_len: apogee_proto::limits::DEFAULT_MAX_LITE_TOPIC_LEN,
            client_metrics: None,
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

/// The backoff policy a consumer of `group` gets, in the form a `language` client accepts.
pub fn consumer_backoff(group: &GroupConfig, language: Language) -> RetryPolicy {
    let max_attempts = group.max_delivery_attempts.min(i32::MAX as u32) as i32;
    let ms = |v: u64| duration(Duration::from_millis(v));
    let exponential = |initial_ms: u64, max_ms: u64, multiplier: f64| {
        retry_policy::Strategy::ExponentialBackoff(ExponentialBackoff {
            initial: Some(ms(initial_ms)),
            max: Some(ms(max_ms)),
            multiplier: multiplier as f32,
        })
    };
    let customized = |steps: Vec<u64>| {
        retry_policy::Strategy::CustomizedBackoff(CustomizedBackoff {
            next: steps.into_iter().map(ms).collect(),
        })
    };
    let strategy = match &group.retry {
        policy if language == Language::Python => {
            customized(whole_second_steps(policy, max_attempts))
        }
        GroupRetry::Exponential {
            initial_ms,
            max_ms,
            multiplier,
        } => exponential(*initial_ms, *max_ms, *multiplier),
        GroupRetry::Custom(steps) if language == Language::NodeJs || steps.is_empty() => {
            let (initial, max, multiplier) = exponential_like(steps);
            exponential(initial, max, multiplier)
        }
        GroupRetry::Custom(steps) => customized(steps.clone()),
    };
    RetryPolicy {
        max_attempts,
        strategy: Some(strategy),
    }
}

/// The policy's backoffs for the first attempts, rounded up to whole seconds, without the
/// repeats of the last one at the end (a customized list repeats its last step).
fn whole_second_steps(policy: &GroupRetry, max_attempts: i32) -> Vec<u64> {
    let count = match policy {
        GroupRetry::Custom(steps) => steps.len().max(1),
        GroupRetry::Exponential { .. } => (max_attempts.max(1) as usize).min(MAX_CUSTOM_STEPS),
    };
    let mut steps: Vec<u64> = (1..=count as u32)
        .map(|attempt| policy.backoff_ms(attempt).div_ceil(1000) * 1000)
        .collect();
    while steps.len() > 1 && steps[steps.len() - 1] == steps[steps.len() - 2] {
        steps.pop();
    }
    steps
}

/// An exponential policy close to a custom list: its first step, its longest step, and the
/// growth that leads from the first to the last over the list (1 to 10).
fn exponential_like(steps: &[u64]) -> (u64, u64, f64) {
    let first = steps.first().copied().unwrap_or(1_000).max(1);
    let last = steps.last().copied().unwrap_or(first).max(1);
    let max = steps.iter().copied().max().unwrap_or(first).max(first);
    let multiplier = if steps.len() > 1 && last > first {
        (last as f64 / first as f64).powf(1.0 / (steps.len() - 1) as f64)
    } else {
        1.0
    };
    (first, max, multiplier.clamp(1.0, 10.0))
}

/// The language a client declared in its user agent.
pub fn language_of(client: &v2::Settings) -> Language {
    client
        .user_agent
        .as_ref()
        .and_then(|ua| Language::try_from(ua.language).ok())
        .unwrap_or(Language::Unspecified)
}

/// Builds the reply to the settings a client sent over Telemetry. `group` is the config of a
/// consumer's group (None: the defaults, with the server's default max attempts).
pub fn settings_reply(
    client: &v2::Settings,
    limits: &ServerLimits,
    group: Option<&GroupConfig>,
) -> v2::Settings {
    let mut reply = client.clone();
    // The server decides where (and whether) clients export their metrics.
    reply.metric = Some(v2::Metric {
        on: limits.client_metrics.is_some(),
        endpoints: limits.client_metrics.clone(),
    });
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
                s.receive_batch_size = Some(apogee_proto::limits::MAX_RECEIVE_BATCH.min(32));
            }
            let requested = s
                .long_polling_timeout
                .as_ref()
                .map(apogee_proto::time::duration_ms)
                .unwrap_or(limits.max_long_polling.as_millis() as i64);
            let granted = requested.clamp(0, limits.max_long_polling.as_millis() as i64);
            s.long_polling_timeout = Some(duration(Duration::from_millis(granted as u64)));
            let defaults;
            let group = match group {
                Some(g) => g,
                None => {
                    defaults = GroupConfig {
                        max_delivery_attempts: limits.consumer_max_attempts.max(1) as u32,
                        ..GroupConfig::with_defaults("")
                    };
                    &defaults
                }
            };
            s.fifo = Some(group.fifo);
            // Always present: the official Python client takes an absent quota for 0 and
            // then refuses every lite subscription.
            let quota = match group.lite.as_ref().map(|l| l.subscription_quota) {
                Some(q) if q > 0 => q,
                _ => limits.lite_subscription_quota,
            };
            s.lite_subscription_quota = Some(quota.min(i32::MAX as u32) as i32);
            s.max_lite_topic_size = Some(limits.max_lite_topic_len.min(i32::MAX as usize) as i32);
            reply.backoff_policy = Some(consumer_backoff(group, language_of(client)));
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
    fn clients_export_metrics_only_where_the_server_names_a_collector() {
        let client = v2::Settings {
            metric: Some(v2::Metric {
                on: true,
                endpoints: None,
            }),
            ..Default::default()
        };
        let off = settings_reply(&client, &ServerLimits::default(), None);
        assert_eq!(
            off.metric,
            Some(v2::Metric {
                on: false,
                endpoints: None
            })
        );

        let section: TelemetrySection =
            toml::from_str("client_metrics_endpoint = \"otel.example:4317\"").unwrap();
        let limits = ServerLimits {
            client_metrics: section.client_metrics().unwrap(),
            ..ServerLimits::default()
        };
        let metric = settings_reply(&client, &limits, None).metric.unwrap();
        assert!(metric.on);
        let endpoints = metric.endpoints.unwrap();
        assert_eq!(endpoints.scheme, v2::AddressScheme::DomainName as i32);
        assert_eq!(
            (
                endpoints.addresses[0].host.as_str(),
                endpoints.addresses[0].port
            ),
            ("otel.example", 4317)
        );

        assert_eq!(TelemetrySection::default().client_metrics(), Ok(None));
        let bad = TelemetrySection {
            client_metrics_endpoint: "otel.example".into(),
        };
        let e = bad.client_metrics().unwrap_err();
        assert!(e.starts_with("telemetry.client_metrics_endpoint:"), "{e}");
        assert!(toml::from_str::<TelemetrySection>("endpoint = \"x:1\"").is_err());
    }

    #[test]
    fn producer_settings_get_body_limit_and_exponential_backoff() {
        let client = v2::Settings {
            pub_sub: Some(PubSub::Publishing(v2::Publishing::default())),
            ..Default::default()
        };
        let reply = settings_reply(&client, &ServerLimits::default(), None);
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
    fn consumers_always_get_the_lite_limits_and_a_groups_own_quota() {
        let limits = ServerLimits {
            lite_subscription_quota: 7,
            max_lite_topic_len: 40,
            ..ServerLimits::default()
        };
        let lite = |quota| GroupConfig {
            lite: Some(apogee_proto::group::LiteBinding {
                bind_topic: "parent".into(),
                exclusive: false,
                subscription_quota: quota,
            }),
            ..GroupConfig::with_defaults("g")
        };
        for (group, want) in [(None, 7), (Some(lite(0)), 7), (Some(lite(3)), 3)] {
            let reply = settings_reply(&consumer(Language::Python), &limits, group.as_ref());
            let Some(PubSub::Subscription(s)) = reply.pub_sub else {
                panic!("subscription expected")
            };
            assert_eq!(s.lite_subscription_quota, Some(want));
            assert_eq!(s.max_lite_topic_size, Some(40));
        }
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
        let reply = settings_reply(&client, &ServerLimits::default(), None);
        let Some(PubSub::Subscription(s)) = reply.pub_sub else {
            panic!("subscription expected")
        };
        assert_eq!(
            apogee_proto::time::duration_ms(s.long_polling_timeout.as_ref().unwrap()),
            apogee_proto::limits::MAX_LONG_POLLING_MS
        );
    }

    fn consumer(language: Language) -> v2::Settings {
        v2::Settings {
            client_type: Some(v2::ClientType::PushConsumer as i32),
            user_agent: Some(v2::Ua {
                language: language as i32,
                ..Default::default()
            }),
            pub_sub: Some(PubSub::Subscription(v2::Subscription::default())),
            ..Default::default()
        }
    }

    fn group(retry: GroupRetry) -> GroupConfig {
        GroupConfig {
            name: "g".into(),
            max_delivery_attempts: 4,
            retry,
            fifo: true,
            lite: None,
            priority_off: false,
        }
    }

    fn exp() -> GroupRetry {
        GroupRetry::Exponential {
            initial_ms: 1_500,
            max_ms: 10_000,
            multiplier: 2.0,
        }
    }

    /// The reply's FIFO flag, max attempts and strategy.
    fn reply(language: Language, g: &GroupConfig) -> (Option<bool>, i32, retry_policy::Strategy) {
        let r = settings_reply(&consumer(language), &ServerLimits::default(), Some(g));
        let Some(PubSub::Subscription(s)) = r.pub_sub else {
            panic!("subscription expected")
        };
        let policy = r.backoff_policy.expect("backoff policy");
        (
            s.fifo,
            policy.max_attempts,
            policy.strategy.expect("strategy"),
        )
    }

    fn customized_ms(s: &retry_policy::Strategy) -> Vec<i64> {
        match s {
            retry_policy::Strategy::CustomizedBackoff(c) => {
                c.next.iter().map(apogee_proto::time::duration_ms).collect()
            }
            other => panic!("customized backoff expected, got {other:?}"),
        }
    }

    fn exponential_ms(s: &retry_policy::Strategy) -> (i64, i64, f32) {
        match s {
            retry_policy::Strategy::ExponentialBackoff(e) => (
                apogee_proto::time::duration_ms(e.initial.as_ref().unwrap()),
                apogee_proto::time::duration_ms(e.max.as_ref().unwrap()),
                e.multiplier,
            ),
            other => panic!("exponential backoff expected, got {other:?}"),
        }
    }

    #[test]
    fn java_and_go_get_the_groups_own_policy() {
        for language in [Language::Java, Language::Golang, Language::Unspecified] {
            let (fifo, attempts, s) = reply(language, &group(exp()));
            assert_eq!((fifo, attempts), (Some(true), 4));
            assert_eq!(exponential_ms(&s), (1_500, 10_000, 2.0));
            let (_, _, s) = reply(language, &group(GroupRetry::Custom(vec![1_000, 5_000])));
            assert_eq!(customized_ms(&s), vec![1_000, 5_000]);
        }
    }

    #[test]
    fn python_gets_a_customized_policy_in_whole_seconds() {
        let (fifo, attempts, s) = reply(Language::Python, &group(exp()));
        assert_eq!((fifo, attempts), (Some(true), 4));
        // 1.5s, 3s, 6s, 10s (the cap), in whole seconds.
        assert_eq!(customized_ms(&s), vec![2_000, 3_000, 6_000, 10_000]);
        let (_, _, s) = reply(
            Language::Python,
            &group(GroupRetry::Custom(vec![500, 1_000, 2_500])),
        );
        assert_eq!(customized_ms(&s), vec![1_000, 1_000, 3_000]);
    }

    #[test]
    fn node_gets_an_exponential_policy() {
        let (fifo, attempts, s) = reply(Language::NodeJs, &group(exp()));
        assert_eq!((fifo, attempts), (Some(true), 4));
        assert_eq!(exponential_ms(&s), (1_500, 10_000, 2.0));
        let (_, _, s) = reply(
            Language::NodeJs,
            &group(GroupRetry::Custom(vec![1_000, 2_000, 4_000])),
        );
        let (initial, max, multiplier) = exponential_ms(&s);
        assert_eq!((initial, max), (1_000, 4_000));
        assert!((multiplier - 2.0).abs() < 1e-6, "{multiplier}");
    }

    #[test]
    fn an_unknown_group_gets_the_defaults() {
        let r = settings_reply(&consumer(Language::Java), &ServerLimits::default(), None);
        let Some(PubSub::Subscription(s)) = &r.pub_sub else {
            panic!("subscription expected")
        };
        assert_eq!(s.fifo, Some(false));
        let policy = r.backoff_policy.unwrap();
        assert_eq!(policy.max_attempts, 16);
        assert_eq!(customized_ms(&policy.strategy.unwrap()).len(), 18);
    }
}

//! The lite-topic metrics (RocketMQ's RIP-83 lite topics), read at scrape time like every
//! gauge of [`super::BrokerMetrics`]: how many lite topics each LITE parent has and how many
//! were created and expired (the store's counts), the lite subscriptions and subscribers of
//! each consumer group, evictions and unsubscribe notices (the lite registry's counters), and
//! each group's lite lag per parent.
//!
//! No series carries a lite topic's name: the labels are `parent` (a LITE parent topic) and
//! `group` (a consumer group), so the number of series is bounded by parents and groups,
//! however many lite topics exist. One lite topic is looked at with `apogee lite describe`.

use super::{gauge_vec, registered};
use crate::consume::lite::LiteRegistry;
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::store::MessageStore;
use prometheus::{IntCounter, IntGaugeVec, Registry};
use std::collections::HashSet;

/// What the lite metrics are read from.
pub(super) struct LiteSources<'a> {
    pub store: &'a MessageStore,
    pub consume: &'a ConsumeEngine,
    pub groups: &'a GroupTable,
    pub lite: &'a LiteRegistry,
}

/// The lite-topic series of one broker.
pub(super) struct LiteGauges {
    topics: IntGaugeVec,
    created: IntCounter,
    expired: IntCounter,
    subscriptions: IntGaugeVec,
    subscribers: IntGaugeVec,
    evictions: IntCounter,
    unsubscribe_notices: IntCounter,
    lag: IntGaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    registered(r, IntCounter::new(name, help).expect("valid metric"))
}

/// Moves `c` up to `now` (a count kept elsewhere, exported as a counter).
fn catch_up(c: &IntCounter, now: u64) {
    c.inc_by(now.saturating_sub(c.get()));
}

fn clamped(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

impl LiteGauges {
    pub(super) fn new(r: &Registry) -> LiteGauges {
        LiteGauges {
            topics: gauge_vec(
                r,
                "apogee_lite_topics",
                "Lite topics on this broker, per LITE parent topic.",
                &["parent"],
            ),
            created: counter(
                r,
                "apogee_lite_topics_created_total",
                "Lite topics created (first message stored) since the broker started.",
            ),
            expired: counter(
                r,
                "apogee_lite_topics_expired_total",
                "Lite topics dropped by expiry since the broker started.",
            ),
            subscriptions: gauge_vec(
                r,
                "apogee_lite_subscriptions",
                "Lite subscriptions per consumer group: (client, lite topic) pairs, so a lite \
                 topic two clients of a shared group subscribe counts twice.",
                &["group"],
            ),
            subscribers: gauge_vec(
                r,
                "apogee_lite_subscribers",
                "Clients of the consumer group subscribing at least one lite topic.",
                &["group"],
            ),
            evictions: counter(
                r,
                "apogee_lite_evictions_total",
                "Lite subscribers evicted since the broker started: by a new subscriber in \
                 exclusive mode, or by the lite topic's expiry.",
            ),
            unsubscribe_notices: counter(
                r,
                "apogee_lite_unsubscribe_notices_total",
                "NotifyUnsubscribeLiteCommands that reached their client since the broker \
                 started.",
            ),
            lag: gauge_vec(
                r,
                "apogee_lite_lag",
                "Messages not yet consumed by the group over the lite topics it subscribes, \
                 per LITE parent topic (lite topics nobody in the group subscribes are not \
                 counted).",
                &["parent", "group"],
            ),
        }
    }

    /// Reads every lite series. The lag costs one queue-bounds read and one position look-up
    /// per (group, subscribed lite topic): bounded by the subscriptions, never by the lite
    /// topics that exist.
    pub(super) fn refresh(&self, src: &LiteSources<'_>) {
        self.topics.reset();
        for (parent, n) in src.store.lite_queue_counts() {
            self.topics.with_label_values(&[&parent]).set(clamped(n));
        }
        catch_up(&self.created, src.store.lite_queues_created());
        catch_up(&self.expired, src.store.lite_queues_removed());
        let counters = src.lite.counters();
        catch_up(&self.evictions, counters.evictions);
        catch_up(&self.unsubscribe_notices, counters.notifications);
        for v in [&self.subscriptions, &self.subscribers, &self.lag] {
            v.reset();
        }
        for (group, n) in src.lite.subscriptions_by_group() {
            self.subscriptions
                .with_label_values(&[&group])
                .set(clamped(n as u64));
            self.refresh_group(src, &group);
        }
    }

    /// `group`'s subscribers and its lag in the lite topics it subscribes under the parent it
    /// is bound to.
    fn refresh_group(&self, src: &LiteSources<'_>, group: &str) {
        let Some(parent) = src
            .groups
            .get(group)
            .and_then(|g| g.lite.as_ref().map(|b| b.bind_topic.clone()))
        else {
            return;
        };
        let mut clients: HashSet<String> = HashSet::new();
        let mut lag = 0u64;
        for queue in src.lite.subscribed_queues(group, &parent) {
            clients.extend(src.lite.subscribers(group, &queue));
            let (min, next) = match src.store.queue_bounds(&queue, 0) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("reading lite queue {queue} for the metrics: {e}");
                    continue;
                }
            };
            // A group with no position there counts from the first message still stored.
            let consumed = src
                .consume
                .lite_position(group, &queue)
                .map_or(min, |(committed, _)| committed.max(min));
            lag += next.saturating_sub(consumed);
        }
        self.subscribers
            .with_label_values(&[group])
            .set(clients.len() as i64);
        self.lag
            .with_label_values(&[&parent, group])
            .set(clamped(lag));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::BrokerConfig;
    use crate::consume::lite::{StartOffset, SyncAction, SyncRequest};
    use crate::metrics::BrokerOps;
    use crate::services::{Broker, Foundation};
    use crate::store::NewMessage;
    use crate::topics::{MessageKind, TopicConfig};
    use apogee_proto::group::{GroupConfig, LiteBinding};
    use apogee_proto::names::lite_queue_topic;
    use apogee_proto::v2;
    use apogee_server::ops::OpsSource;
    use prometheus::Encoder;
    use std::sync::Arc;

    const PARENT: &str = "chats";
    const SHARED: &str = "agents";
    const EXCLUSIVE: &str = "solo";

    fn lite_broker(dir: &std::path::Path) -> Arc<Broker> {
        let mut config = BrokerConfig {
            broker_name: "broker-a".into(),
            data_dir: dir.to_path_buf(),
            ..BrokerConfig::default()
        };
        config.store.segment_bytes = 1 << 20;
        config.store.preallocate_bytes = 0;
        let base = Foundation::in_memory(&config).expect("store");
        let broker = Broker::build(config, base).expect("services");
        broker
            .topics()
            .create(TopicConfig::new(PARENT, 1).with_kinds(&[MessageKind::Lite]))
            .expect("lite parent");
        for (group, exclusive) in [(SHARED, false), (EXCLUSIVE, true)] {
            broker
                .groups()
                .create(GroupConfig {
                    lite: Some(LiteBinding {
                        bind_topic: PARENT.into(),
                        exclusive,
                        subscription_quota: 0,
                    }),
                    ..GroupConfig::with_defaults(group)
                })
                .expect("lite group");
        }
        broker
    }

    fn subscribe(
        broker: &Broker,
        client: &str,
        group: &str,
        lites: &[&str],
        start: Option<StartOffset>,
    ) {
        let lite_topics: Vec<String> = lites.iter().map(|l| l.to_string()).collect();
        broker
            .lite()
            .sync(&SyncRequest {
                client_id: client,
                group,
                parent: PARENT,
                exclusive: group == EXCLUSIVE,
                action: SyncAction::PartialAdd,
                lite_topics: &lite_topics,
                start,
                quota: 100,
                now_ms: apogee_proto::time::now_ms(),
            })
            .expect("subscribed");
    }

    async fn send(broker: &Broker, lite: &str, count: usize) {
        let messages = (0..count)
            .map(|n| NewMessage {
                topic: lite_queue_topic(PARENT, lite),
                queue_id: 0,
                message_id: apogee_proto::message_id::new_message_id(),
                tag: None,
                keys: vec![],
                message_group: None,
                message_type: v2::MessageType::Lite as u8,
                born_timestamp_ms: 0,
                born_host: "127.0.0.1".into(),
                delivery_timestamp_ms: None,
                reconsume_times: 0,
                properties: vec![],
                internal: vec![],
                body: format!("{lite}-{n}").into_bytes().into(),
            })
            .collect();
        broker.store().append(messages).await.expect("stored");
    }

    /// The text exposition of one scrape.
    fn scrape(broker: &Broker) -> String {
        let families = BrokerOps(broker.metric_sources()).gather();
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&families, &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The value of series `name` whose labels include `labels` (None: no such series).
    fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .find(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    #[tokio::test]
    async fn lite_subscriptions_lag_and_evictions_are_exported_per_parent_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let broker = lite_broker(dir.path());
        let text = scrape(&broker);
        assert_eq!(value(&text, "apogee_lite_evictions_total", &[]), Some(0.0));
        assert_eq!(value(&text, "apogee_lite_subscriptions", &[]), None);
        // Shared group: c1 takes a and b, c2 takes b and c; the exclusive group: s1 takes a.
        subscribe(&broker, "c1", SHARED, &["alpha", "beta"], None);
        subscribe(&broker, "c2", SHARED, &["beta", "gamma"], None);
        subscribe(&broker, "s1", EXCLUSIVE, &["alpha"], None);
        send(&broker, "alpha", 3).await;
        send(&broker, "beta", 2).await;
        send(&broker, "gamma", 1).await;
        send(&broker, "zeta", 4).await; // nobody subscribes it
        let text = scrape(&broker);
        let shared = [("group", SHARED)];
        let solo = [("group", EXCLUSIVE)];
        assert_eq!(
            value(&text, "apogee_lite_topics", &[("parent", PARENT)]),
            Some(4.0)
        );
        assert_eq!(
            value(&text, "apogee_lite_subscriptions", &shared),
            Some(4.0)
        );
        assert_eq!(value(&text, "apogee_lite_subscriptions", &solo), Some(1.0));
        assert_eq!(value(&text, "apogee_lite_subscribers", &shared), Some(2.0));
        assert_eq!(value(&text, "apogee_lite_subscribers", &solo), Some(1.0));
        let lag = |text: &str, group: &str| {
            value(
                text,
                "apogee_lite_lag",
                &[("parent", PARENT), ("group", group)],
            )
        };
        // alpha 3 + beta 2 + gamma 1; zeta is subscribed by nobody.
        assert_eq!(lag(&text, SHARED), Some(6.0));
        assert_eq!(lag(&text, EXCLUSIVE), Some(3.0));

        // s2 takes alpha over in the exclusive group (s1 is told); the shared group skips
        // alpha's backlog.
        broker
            .lite()
            .set_notifier(Arc::new(|client, lite| client == "s1" && lite == "alpha"));
        subscribe(&broker, "s2", EXCLUSIVE, &["alpha"], None);
        subscribe(&broker, "c1", SHARED, &["alpha"], Some(StartOffset::Max));
        send(&broker, "gamma", 2).await;
        let text = scrape(&broker);
        assert_eq!(value(&text, "apogee_lite_evictions_total", &[]), Some(1.0));
        assert_eq!(value(&text, "apogee_lite_subscribers", &solo), Some(1.0));
        assert_eq!(value(&text, "apogee_lite_subscriptions", &solo), Some(1.0));
        assert_eq!(lag(&text, SHARED), Some(5.0), "beta 2 + gamma 3");
        assert_eq!(
            lag(&text, EXCLUSIVE),
            Some(3.0),
            "alpha's position is the group's"
        );
        assert_eq!(
            value(&text, "apogee_lite_unsubscribe_notices_total", &[]),
            Some(1.0)
        );

        // No series names a lite topic or its internal queue.
        for lite in ["alpha", "beta", "gamma", "zeta", "%LITE%"] {
            assert!(
                !text.contains(lite),
                "{lite} appears in the metrics:\n{text}"
            );
        }
    }
}

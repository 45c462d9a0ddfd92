//! The broker's Prometheus metrics, served on `/metrics` of its operations
//! endpoint (`apogee_server::ops`). RocketMQ 5's names and labels where it has
//! them (so its dashboards and alerts work), `apogee_*` where it has none.
//!
//! Counters are bumped where things happen (send, receive, pull, dead
//! letters, transaction outcomes); gauges are read from live state when
//! scraped ([`BrokerOps`]), so they are never stale and cost nothing between
//! scrapes. Every series carries the constant labels `cluster`, `node_type`
//! ("broker"), `node_id` (the broker group), `broker_id` (RocketMQ's label) and `member`:
//! both the member's own id (its configured `broker_id`), which stays with the process
//! through a failover, so a series never changes identity when the role does. The role is
//! a gauge (`apogee_failover_is_master`, with the master epoch beside it), and the build
//! runs as `apogee_build_info{version}` = 1 (docs/REPLICATION.md, "Identifiers").
//!
//! Lite topics (`%LITE%<parent>%<lite>` queues) never get a label of their own: every
//! per-topic series names their parent topic ([`topic_label`]), and the lite series
//! (`lite`: lite topics per parent, subscriptions and subscribers per group, lite lag per
//! parent and group, creations, expirations, evictions) are labelled by parent and group only.
//!
//! A labelled family with no series yet shows one at 0 with empty labels
//! (`apogee_server::ops::zero_until_first`), so dashboards read 0 on a fresh broker.

mod lite;
pub mod traffic;

use crate::consume::lag::LagSources;
use crate::consume::lite::LiteRegistry;
use crate::consume::ConsumeEngine;
use crate::groups::GroupTable;
use crate::registration::NameServerLink;
use crate::replication::Replication;
use crate::schedule::Schedule;
use crate::store::{DiskSpace, MessageStore};
use crate::topics::TopicTable;
use crate::txn::Transactions;
use crate::txn::TxnOutcomes;
use apogee_proto::v2;
use apogee_server::ops::{ClientGauges, OpsSource};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Buckets of `rocketmq_message_size` (bytes), as RocketMQ reports it: 1 KiB,
/// 4 KiB, 512 KiB, 1, 2 and 4 MiB.
const MESSAGE_SIZE_BUCKETS: [f64; 6] = [
    1024.0,
    4096.0,
    524_288.0,
    1_048_576.0,
    2_097_152.0,
    4_194_304.0,
];

/// Transactions looked at per scrape for the half-message gauges.
pub const MAX_HALF_SCAN: usize = 10_000;

/// Every metric of one broker.
pub struct BrokerMetrics {
    registry: Registry,
    scraping: parking_lot::Mutex<()>,
    /// `rocketmq_rpc_latency`, fed by `apogee_server::ops::RpcMetricsLayer`.
    pub rpc_latency: HistogramVec,
    messages_in: IntCounterVec,
    throughput_in: IntCounterVec,
    message_size: HistogramVec,
    messages_out: IntCounterVec,
    throughput_out: IntCounterVec,
    dead_lettered: IntCounterVec,
    gauges: Gauges,
    /// Messages in and out per 10 s over the last hour, read from the counters above.
    traffic: Arc<traffic::TrafficSampler>,
}

/// What is read from live state at each scrape.
struct Gauges {
    topics: IntGauge,
    groups: IntGauge,
    lag_messages: IntGaugeVec,
    lag_latency: IntGaugeVec,
    inflight: IntGaugeVec,
    ready: IntGaugeVec,
    half_messages: IntGaugeVec,
    parked: IntGaugeVec,
    scheduled: IntGauge,
    storage_size: IntGauge,
    disk_free: IntGauge,
    disk_used_ratio: prometheus::Gauge,
    flush_behind: IntGauge,
    replication_lag: IntGaugeVec,
    failover: FailoverGauges,
    clients: ClientGauges,
    lite: lite::LiteGauges,
}

/// The broker's role as the controller assigned it (controller mode; static brokers report
/// their configured role with epoch 0 and no lease).
struct FailoverGauges {
    master_epoch: IntGauge,
    is_master: IntGauge,
    in_sync_members: IntGauge,
    lease_remaining_ms: IntGauge,
}

impl FailoverGauges {
    fn new(r: &Registry) -> FailoverGauges {
        FailoverGauges {
            master_epoch: gauge(
                r,
                "apogee_failover_master_epoch",
                "The master epoch of the controller's assignment this broker follows (0: static \
                 mode or none yet).",
            ),
            is_master: gauge(
                r,
                "apogee_failover_is_master",
                "1 while this broker is its group's master, else 0.",
            ),
            in_sync_members: gauge(
                r,
                "apogee_failover_in_sync_members",
                "Members in the controller's in-sync set of this broker's group, the master \
                 among them (0 in static mode).",
            ),
            lease_remaining_ms: gauge(
                r,
                "apogee_failover_lease_remaining_ms",
                "Controller mode, master: how long its lease still runs (0: ran out, it \
                 serves nothing as master); -1 in static mode.",
            ),
        }
    }

    fn refresh(&self, membership: &crate::membership::Membership) {
        let view = membership.role_view();
        self.master_epoch
            .set(view.master_epoch.min(i64::MAX as u64) as i64);
        self.is_master.set(i64::from(view.is_master()));
        self.in_sync_members.set(view.in_sync.len() as i64);
        self.lease_remaining_ms.set(
            membership
                .lease_remaining()
                .map_or(-1, |d| d.as_millis().min(i64::MAX as u128) as i64),
        );
    }
}

/// Registers `metric` and hands it back (metric names are constants: a clash is a bug).
fn registered<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, metric: M) -> M {
    r.register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::new(name, help).expect("valid metric"))
}

impl BrokerMetrics {
    pub fn new(config: &crate::config::BrokerConfig) -> Arc<BrokerMetrics> {
        let labels = HashMap::from([
            ("cluster".to_string(), config.cluster_name.clone()),
            ("node_type".to_string(), "broker".to_string()),
            ("node_id".to_string(), config.broker_name.clone()),
            ("broker_id".to_string(), config.broker_id.to_string()),
            ("member".to_string(), config.broker_id.to_string()),
        ]);
        let r = Registry::new_custom(None, Some(labels)).expect("valid constant labels");
        gauge_vec(
            &r,
            "apogee_build_info",
            "1, labelled with the Apogee version this broker runs.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let topic_type = ["topic", "message_type"];
        let topic_group = ["topic", "consumer_group"];
        let gauges = Gauges {
            topics: gauge(&r, "rocketmq_topic_number", "Topics on this broker."),
            groups: gauge(
                &r,
                "rocketmq_consumer_group_number",
                "Consumer groups on this broker.",
            ),
            lag_messages: gauge_vec(
                &r,
                "rocketmq_consumer_lag_messages",
                "Messages stored but not yet acknowledged by the group.",
                &topic_group,
            ),
            lag_latency: gauge_vec(
                &r,
                "rocketmq_consumer_lag_latency",
                "Age of the oldest message the group has not acknowledged, in milliseconds.",
                &topic_group,
            ),
            inflight: gauge_vec(
                &r,
                "rocketmq_consumer_inflight_messages",
                "Messages received by the group and not yet acknowledged.",
                &topic_group,
            ),
            ready: gauge_vec(
                &r,
                "rocketmq_consumer_ready_messages",
                "Messages ready to be delivered to the group (lag minus in flight).",
                &topic_group,
            ),
            half_messages: gauge_vec(
                &r,
                "rocketmq_half_messages",
                "Transactional half messages waiting for their outcome.",
                &["topic"],
            ),
            parked: gauge_vec(
                &r,
                "apogee_parked_transactions",
                "Transactions parked after their last check-back, waiting for an operator.",
                &["topic"],
            ),
            scheduled: gauge(
                &r,
                "rocketmq_timing_messages",
                "Scheduled (delayed) messages waiting for their delivery time.",
            ),
            storage_size: gauge(
                &r,
                "rocketmq_storage_size",
                "Bytes of the commit log on disk (log end minus log start).",
            ),
            disk_free: gauge(
                &r,
                "apogee_storage_disk_free_bytes",
                "Bytes available on the commit log's file system.",
            ),
            disk_used_ratio: registered(
                &r,
                prometheus::Gauge::new(
                    "apogee_storage_disk_used_ratio",
                    "Used fraction of the commit log's file system, as retention measures it.",
                )
                .expect("valid metric"),
            ),
            flush_behind: gauge(
                &r,
                "rocketmq_storage_flush_behind_bytes",
                "Bytes written to the commit log but not yet synced to disk.",
            ),
            replication_lag: gauge_vec(
                &r,
                "apogee_replication_lag_bytes",
                "A master: bytes each slave is behind. A slave: bytes behind its master.",
                &["peer"],
            ),
            failover: FailoverGauges::new(&r),
            clients: ClientGauges::new(&r).expect("valid metric"),
            lite: lite::LiteGauges::new(&r),
        };
        apogee_server::ops::register_process_metrics(&r).expect("valid metric");
        let messages_in = counter(
            &r,
            "rocketmq_messages_in_total",
            "Messages sent to this broker and stored.",
            &topic_type,
        );
        let messages_out = counter(
            &r,
            "rocketmq_messages_out_total",
            "Messages delivered to consumers (receives and pulls; redeliveries count again).",
            &topic_group,
        );
        let untracked = registered(
            &r,
            prometheus::IntCounter::new(
                "apogee_traffic_untracked_samples_total",
                "Samples of message counters with traffic left out of the traffic history \
                 because it tracks its maximum of series already.",
            )
            .expect("valid metric"),
        );
        let traffic = Arc::new(traffic::TrafficSampler::new(
            messages_in.clone(),
            messages_out.clone(),
            untracked,
        ));
        Arc::new(BrokerMetrics {
            rpc_latency: apogee_server::ops::rpc_latency(&r).expect("valid metric"),
            messages_in,
            throughput_in: counter(
                &r,
                "rocketmq_throughput_in_total",
                "Body bytes of the messages stored.",
                &topic_type,
            ),
            message_size: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "rocketmq_message_size",
                        "Body sizes of the messages stored, in bytes.",
                    )
                    .buckets(MESSAGE_SIZE_BUCKETS.to_vec()),
                    &topic_type,
                )
                .expect("valid metric"),
            ),
            messages_out,
            throughput_out: counter(
                &r,
                "rocketmq_throughput_out_total",
                "Body bytes of the messages delivered.",
                &topic_group,
            ),
            dead_lettered: counter(
                &r,
                "rocketmq_send_to_dlq_messages_total",
                "Messages moved to a dead-letter topic.",
                &topic_group,
            ),
            gauges,
            traffic,
            registry: r,
            scraping: parking_lot::Mutex::new(()),
        })
    }

    /// A send request stored: its messages (one topic) by their body sizes.
    pub fn stored(
        &self,
        topic: &str,
        message_type: v2::MessageType,
        body_sizes: impl IntoIterator<Item = usize>,
    ) {
        let labels = [topic_label(topic), message_type_label(message_type)];
        let sizes = self.message_size.with_label_values(&labels);
        let (mut count, mut total) = (0u64, 0u64);
        for s in body_sizes {
            sizes.observe(s as f64);
            count += 1;
            total += s as u64;
        }
        self.messages_in.with_label_values(&labels).inc_by(count);
        self.throughput_in.with_label_values(&labels).inc_by(total);
    }

    /// Messages stored in `topic` so far, over all message types (for tests).
    #[cfg(test)]
    pub(crate) fn stored_count(&self, topic: &str) -> u64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "rocketmq_messages_in_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "topic" && l.value() == topic)
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Messages delivered to `group` from `topic`.
    pub fn delivered(&self, topic: &str, group: &str, count: usize, bytes: usize) {
        if count == 0 {
            return;
        }
        let labels = [topic_label(topic), group];
        self.messages_out
            .with_label_values(&labels)
            .inc_by(count as u64);
        self.throughput_out
            .with_label_values(&labels)
            .inc_by(bytes as u64);
    }

    /// The traffic history, read from the message counters (`traffic`).
    pub fn traffic(&self) -> &Arc<traffic::TrafficSampler> {
        &self.traffic
    }

    /// A message of `topic` dead-lettered for `group`.
    pub fn dead_lettered(&self, topic: &str, group: &str) {
        self.dead_lettered
            .with_label_values(&[topic_label(topic), group])
            .inc();
    }

    /// Exposes the transaction outcome counters `crate::txn` keeps.
    pub fn register_transactions(&self, outcomes: &TxnOutcomes) {
        registered(&self.registry, outcomes.commits.clone());
        registered(&self.registry, outcomes.rollbacks.clone());
    }

    /// Exposes the object-store tier's `apogee_tier_*` series.
    pub fn register_tier(&self, tier: &crate::tier::Tier) {
        tier.register_metrics(&self.registry)
            .expect("metric names are unique");
    }

    /// Exposes `apogee_remoting_malformed_frames_total`, read from the remoting transport's
    /// count at each scrape.
    pub fn register_remoting_frames(&self, frames: apogee_server::remoting::MalformedFrames) {
        apogee_server::remoting::register_malformed_frames_metric(&self.registry, frames)
            .expect("metric names are unique");
    }

    /// Reads every gauge from the src's state.
    fn refresh(&self, src: &Sources) {
        let g = &self.gauges;
        g.lite.refresh(&lite::LiteSources {
            store: &src.store,
            consume: &src.consume,
            groups: &src.groups,
            lite: &src.lite,
        });
        g.topics.set(src.topics.list().len() as i64);
        g.groups.set(src.groups.list().len() as i64);
        self.refresh_consumers(src);
        self.refresh_transactions(src);
        g.scheduled
            .set(src.schedule.stats().waiting.min(i64::MAX as u64) as i64);
        let store = &src.store;
        let end = store.log_end_offset();
        g.storage_size
            .set(end.saturating_sub(store.local_start_offset()) as i64);
        g.flush_behind
            .set(end.saturating_sub(store.flushed_offset()) as i64);
        if let Ok(disk) = DiskSpace::of(&src.data_dir) {
            g.disk_free.set(disk.available.min(i64::MAX as u64) as i64);
            g.disk_used_ratio.set(disk.used_ratio());
        }
        g.replication_lag.reset();
        for s in src.replication.slaves() {
            g.replication_lag
                .with_label_values(&[&format!("slave-{}", s.broker_id)])
                .set(s.lag_bytes);
        }
        if let Some(link) = src.replication.master_link() {
            g.replication_lag
                .with_label_values(&["master"])
                .set(link.master_end_offset.saturating_sub(end) as i64);
        }
        g.failover.refresh(src.replication.membership());
        g.clients.refresh(&src.sessions);
        for c in src.remoting_clients.connected() {
            let groups = c.consumer_groups.iter().map(String::as_str);
            g.clients
                .add_remoting(&c.language, c.version, c.producer, groups);
        }
        self.zero_until_first(src);
    }

    /// Every labelled family at 0 until its first series (`apogee_server::ops::
    /// zero_until_first`): a broker that has seen no message, client, slave, dead letter or
    /// transaction yet still exposes every series a dashboard queries.
    fn zero_until_first(&self, src: &Sources) {
        use apogee_server::ops::zero_until_first;
        let g = &self.gauges;
        let outcomes = &src.txns.outcomes;
        for counters in [
            &self.messages_in,
            &self.throughput_in,
            &self.messages_out,
            &self.throughput_out,
            &self.dead_lettered,
            &outcomes.commits,
            &outcomes.rollbacks,
        ] {
            zero_until_first(counters);
        }
        for gauges in [
            &g.lag_messages,
            &g.lag_latency,
            &g.inflight,
            &g.ready,
            &g.half_messages,
            &g.parked,
            &g.replication_lag,
        ] {
            zero_until_first(gauges);
        }
        zero_until_first(&self.rpc_latency);
        zero_until_first(&self.message_size);
        g.clients.zero_until_first();
    }

    /// Lag, lag latency, in flight and ready per (topic, group): every queue of every topic
    /// the group consumes here, also the ones it never received from
    /// (`crate::consume::lag`).
    fn refresh_consumers(&self, src: &Sources) {
        let g = &self.gauges;
        let now = apogee_proto::time::now_ms();
        #[derive(Default)]
        struct Sums {
            lag: u64,
            inflight: u64,
            oldest_ms: Option<i64>,
        }
        let mut sums: HashMap<(String, String), Sums> = HashMap::new();
        let lags = match src.lag_sources().all_lags() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("reading consumer lag for the metrics: {e}");
                Vec::new()
            }
        };
        for (group, queues) in lags {
            for q in queues {
                let lag = q.lag();
                let oldest = if lag > 0 {
                    src.store
                        .queue_entries(&q.topic, q.queue_id, q.consumer_offset, 1)
                        .ok()
                        .and_then(|e| e.first().map(|e| e.store_timestamp_ms))
                } else {
                    None
                };
                let topic = topic_label(&q.topic).to_string();
                let s = sums.entry((topic, group.clone())).or_default();
                s.lag += lag;
                s.inflight += q.inflight as u64;
                s.oldest_ms = match (s.oldest_ms, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        for v in [&g.lag_messages, &g.lag_latency, &g.inflight, &g.ready] {
            v.reset();
        }
        for ((topic, group), s) in sums {
            let labels = [topic.as_str(), group.as_str()];
            g.lag_messages.with_label_values(&labels).set(s.lag as i64);
            g.inflight.with_label_values(&labels).set(s.inflight as i64);
            g.ready
                .with_label_values(&labels)
                .set(s.lag.saturating_sub(s.inflight) as i64);
            g.lag_latency
                .with_label_values(&labels)
                .set(s.oldest_ms.map_or(0, |t| (now - t).max(0)));
        }
    }

    /// Pending and parked transactions per topic (at most [`MAX_HALF_SCAN`] looked at).
    fn refresh_transactions(&self, src: &Sources) {
        let g = &self.gauges;
        g.half_messages.reset();
        g.parked.reset();
        let Ok(open) = src.txns.list(true, "", MAX_HALF_SCAN) else {
            return;
        };
        for t in open {
            let parked = t.state == apogee_proto::cluster::TransactionState::Parked as i32;
            let v = if parked { &g.parked } else { &g.half_messages };
            v.with_label_values(&[&t.topic]).inc();
        }
    }
}

/// RocketMQ's `message_type` label values.
fn message_type_label(t: v2::MessageType) -> &'static str {
    match t {
        v2::MessageType::Fifo => "fifo",
        v2::MessageType::Delay => "delay",
        v2::MessageType::Transaction => "transaction",
        _ => "normal",
    }
}

/// The `topic` label of a per-topic series: a lite queue's parent topic, else the topic.
pub fn topic_label(topic: &str) -> &str {
    apogee_proto::names::split_lite_queue_topic(topic).map_or(topic, |(parent, _)| parent)
}

/// What the gauges and the readiness are read from: the pieces they count.
pub struct Sources {
    pub metrics: Arc<BrokerMetrics>,
    pub store: Arc<MessageStore>,
    /// The commit log's directory (free space of its file system).
    pub data_dir: PathBuf,
    pub topics: Arc<TopicTable>,
    pub groups: Arc<GroupTable>,
    pub consume: Arc<ConsumeEngine>,
    /// Who subscribes which lite topics (the lite subscription, subscriber and lag series).
    pub lite: Arc<LiteRegistry>,
    /// Connected clients (and who may consume what, for lag).
    pub sessions: Arc<apogee_server::telemetry::Sessions>,
    /// Connected remoting clients (RocketMQ 4.x), counted beside the gRPC ones (and the
    /// topics their consumer groups subscribe, for lag).
    pub remoting_clients: Arc<dyn RemotingClientList>,
    pub schedule: Arc<Schedule>,
    pub txns: Arc<Transactions>,
    pub replication: Arc<Replication>,
    pub nameservers: Arc<NameServerLink>,
    /// The configured NameServers, named when not registered with any.
    pub nameserver_addrs: Vec<String>,
    /// Turns true when the broker starts shutting down.
    pub closing: watch::Receiver<bool>,
}

/// One connected remoting client, as the client gauges count it.
pub struct RemotingClientRow {
    pub language: String,
    pub version: i32,
    /// A producer of at least one group.
    pub producer: bool,
    pub consumer_groups: Vec<String>,
}

/// Where the metrics read the connected remoting clients from (the remoting side's table;
/// a trait so the metrics do not import the transport).
pub trait RemotingClientList: Send + Sync {
    fn connected(&self) -> Vec<RemotingClientRow>;
    /// Consumer group -> the topics its live members subscribe, without retry topics (the
    /// consumer lag counts them).
    fn subscribed_topics(&self) -> BTreeMap<String, BTreeSet<String>>;
}

impl Sources {
    fn lag_sources(&self) -> LagSources<'_> {
        LagSources {
            consume: &self.consume,
            topics: &self.topics,
            groups: &self.groups,
            sessions: &self.sessions,
            remoting_subscriptions: self.remoting_clients.subscribed_topics(),
        }
    }
}

/// The broker as its operations endpoint sees it.
pub struct BrokerOps(pub Sources);

impl OpsSource for BrokerOps {
    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let metrics = &self.0.metrics;
        // One scrape at a time: a refresh resets the gauge families it fills.
        let _one = metrics.scraping.lock();
        metrics.refresh(&self.0);
        metrics.registry.gather()
    }

    /// Ready: the store is recovered (it is, once there are services), the broker is
    /// registered with at least one NameServer, it is not shutting down, and in controller
    /// mode it is the leased master or in the committed in-sync set
    /// ([`Membership::readiness`](crate::membership::Membership::readiness)).
    fn readiness(&self) -> Result<(), String> {
        let src = &self.0;
        if *src.closing.borrow() {
            return Err("shutting down".into());
        }
        if !src.nameservers.registered_anywhere() {
            return Err(format!(
                "not registered with any NameServer yet ({})",
                src.nameserver_addrs.join(", ")
            ));
        }
        src.replication.membership().readiness()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `name` on `metric`, if it has that label.
    fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
        metric
            .get_label()
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.value())
    }

    #[test]
    fn every_series_names_the_member_and_the_build_is_a_series_of_its_own() {
        // Member 2 of a controller-mode group: its series say 2 whatever its role.
        let config = crate::config::BrokerConfig {
            broker_id: 2,
            ..Default::default()
        };
        let metrics = BrokerMetrics::new(&config);
        let families = metrics.registry.gather();
        assert!(!families.is_empty());
        for family in &families {
            for m in family.get_metric() {
                assert_eq!(label(m, "member"), Some("2"), "{}", family.name());
                assert_eq!(label(m, "broker_id"), Some("2"), "{}", family.name());
                assert_eq!(label(m, "role"), None, "{}", family.name());
            }
        }
        let build = families
            .iter()
            .find(|f| f.name() == "apogee_build_info")
            .expect("apogee_build_info is exported from the start");
        let m = &build.get_metric()[0];
        assert_eq!(label(m, "version"), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(m.get_gauge().get_value(), 1.0);
    }
}

//! The NameServer's Prometheus metrics and readiness, served on its
//! operations endpoint (`apogee_server::ops`): gRPC latency per method, the
//! live brokers by cluster and role, the topics they host, and the clients
//! with a Telemetry session here. Gauges are read from the registry at each
//! scrape. Every series carries `node_type="nameserver"` and `node_id` (the
//! listen address).

use crate::registry::Registry as BrokerRegistry;
use apogee_proto::cluster::BrokerRole;
use apogee_server::ops::{ClientGauges, OpsSource};
use apogee_server::telemetry::Sessions;
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct NameServerMetrics {
    registry: Registry,
    pub rpc_latency: HistogramVec,
    brokers: IntGaugeVec,
    topics: IntGauge,
    clients: ClientGauges,
    controller: ControllerGauges,
    /// What brokers' registrations and session beats cost, and why brokers were dropped.
    pub liveness: LivenessCounters,
    scraping: parking_lot::Mutex<()>,
}

/// Registrations and session beats received (count and encoded bytes), and members dropped
/// by reason, so an operator sees what keeping brokers live costs (a beat stays a few bytes
/// whatever the number of topics; a registration carries them all).
#[derive(Clone)]
pub struct LivenessCounters {
    pub registrations: IntCounter,
    pub registration_bytes: IntCounter,
    pub beats: IntCounter,
    pub beat_bytes: IntCounter,
    /// Members dropped: `session_closed`, `missed_beats` or `expired`.
    pub dropped: IntCounterVec,
}

impl LivenessCounters {
    /// Counters not registered anywhere (for services built without metrics).
    pub fn unregistered() -> LivenessCounters {
        Self::build().expect("valid metric names")
    }

    fn build() -> prometheus::Result<LivenessCounters> {
        Ok(LivenessCounters {
            registrations: IntCounter::new(
                "apogee_nameserver_registrations_total",
                "RegisterBroker calls received.",
            )?,
            registration_bytes: IntCounter::new(
                "apogee_nameserver_registration_bytes_total",
                "Encoded bytes of the RegisterBroker requests received.",
            )?,
            beats: IntCounter::new(
                "apogee_nameserver_session_beats_total",
                "Beats received on brokers' sessions (the opening message included).",
            )?,
            beat_bytes: IntCounter::new(
                "apogee_nameserver_session_beat_bytes_total",
                "Encoded bytes of the session beats received.",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "apogee_nameserver_brokers_dropped_total",
                    "Brokers dropped from the table, by reason.",
                ),
                &["reason"],
            )?,
        })
    }

    fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.registrations.clone()))?;
        registry.register(Box::new(self.registration_bytes.clone()))?;
        registry.register(Box::new(self.beats.clone()))?;
        registry.register(Box::new(self.beat_bytes.clone()))?;
        registry.register(Box::new(self.dropped.clone()))
    }
}

/// The embedded controller as this NameServer sees it (absent series without one).
struct ControllerGauges {
    is_leader: IntGauge,
    term: IntGauge,
    last_applied: IntGauge,
    /// Per broker group (leader only: a follower's view may lag).
    master_epoch: IntGaugeVec,
    in_sync_members: IntGaugeVec,
    alive_members: IntGaugeVec,
    without_master: IntGauge,
}

impl ControllerGauges {
    fn new(registry: &Registry) -> prometheus::Result<ControllerGauges> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let per_group = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["broker_name"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(ControllerGauges {
            is_leader: gauge(
                "apogee_controller_is_leader",
                "1 while this NameServer's controller leads the Raft group, else 0.",
            )?,
            term: gauge("apogee_controller_term", "The controller's Raft term.")?,
            last_applied: gauge(
                "apogee_controller_last_applied_index",
                "The index of the last Raft log entry this controller applied.",
            )?,
            master_epoch: per_group(
                "apogee_controller_master_epoch",
                "Leader only: a broker group's master epoch (it rises by one with every new \
                 master, so its increase counts failovers).",
            )?,
            in_sync_members: per_group(
                "apogee_controller_in_sync_members",
                "Leader only: members in a broker group's in-sync set, the master among them.",
            )?,
            alive_members: per_group(
                "apogee_controller_alive_members",
                "Leader only: members of a broker group the leader hears from.",
            )?,
            without_master: gauge(
                "apogee_controller_groups_without_master",
                "Leader only: broker groups with no master (none elected yet, or no in-sync \
                 member alive): they take no writes.",
            )?,
        })
    }

    fn refresh(&self, controller: &apogee_controller::Controller) {
        let raft = controller.metrics();
        self.is_leader.set(i64::from(raft.is_leader));
        self.term.set(raft.term.min(i64::MAX as u64) as i64);
        self.last_applied.set(
            raft.last_applied
                .map_or(0, |id| id.index.min(i64::MAX as u64) as i64),
        );
        for g in [
            &self.master_epoch,
            &self.in_sync_members,
            &self.alive_members,
        ] {
            g.reset();
        }
        let status = controller.failover_status();
        if !status.leading {
            self.without_master.set(0);
            return;
        }
        let mut without_master = 0;
        for group in &status.groups {
            let name = [group.group.as_str()];
            self.master_epoch
                .with_label_values(&name)
                .set(group.master_epoch.min(i64::MAX as u64) as i64);
            self.in_sync_members
                .with_label_values(&name)
                .set(group.in_sync.len() as i64);
            self.alive_members
                .with_label_values(&name)
                .set(group.alive.len() as i64);
            without_master += i64::from(group.master.is_none());
        }
        self.without_master.set(without_master);
    }
}

impl NameServerMetrics {
    pub fn new(node_id: &str) -> prometheus::Result<NameServerMetrics> {
        let labels = HashMap::from([
            ("node_type".to_string(), "nameserver".to_string()),
            ("node_id".to_string(), node_id.to_string()),
        ]);
        let registry = Registry::new_custom(None, Some(labels))?;
        let brokers = IntGaugeVec::new(
            Opts::new(
                "apogee_nameserver_brokers",
                "Live brokers registered here, by cluster and role.",
            ),
            &["cluster", "role"],
        )?;
        registry.register(Box::new(brokers.clone()))?;
        let topics = IntGauge::new(
            "apogee_nameserver_topics",
            "Topics hosted by the live brokers registered here.",
        )?;
        registry.register(Box::new(topics.clone()))?;
        apogee_server::ops::register_process_metrics(&registry)?;
        let liveness = LivenessCounters::build()?;
        liveness.register(&registry)?;
        let controller = ControllerGauges::new(&registry)?;
        Ok(NameServerMetrics {
            liveness,
            rpc_latency: apogee_server::ops::rpc_latency(&registry)?,
            clients: ClientGauges::new(&registry)?,
            brokers,
            topics,
            controller,
            registry,
            scraping: parking_lot::Mutex::new(()),
        })
    }
}

impl NameServerMetrics {
    /// Exposes `apogee_remoting_malformed_frames_total`, read from the remoting transport's
    /// count at each scrape.
    pub fn register_remoting_frames(
        &self,
        frames: apogee_server::remoting::MalformedFrames,
    ) -> prometheus::Result<()> {
        apogee_server::remoting::register_malformed_frames_metric(&self.registry, frames)
    }
}

/// The NameServer as its operations endpoint sees it.
pub struct NameServerOps {
    pub metrics: Arc<NameServerMetrics>,
    pub registry: Arc<BrokerRegistry>,
    pub sessions: Arc<Sessions>,
    /// Set when the NameServer starts shutting down (it is then not ready).
    pub closing: Arc<AtomicBool>,
    /// The embedded controller, when `controller.enabled`.
    pub controller: Option<apogee_controller::Controller>,
}

fn role_label(role: i32) -> &'static str {
    match BrokerRole::try_from(role) {
        Ok(BrokerRole::SyncMaster) => "sync_master",
        Ok(BrokerRole::AsyncMaster) => "async_master",
        Ok(BrokerRole::Slave) => "slave",
        _ => "unknown",
    }
}

impl OpsSource for NameServerOps {
    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let m = &self.metrics;
        let _one = m.scraping.lock();
        m.brokers.reset();
        for group in self.registry.cluster_info() {
            for member in &group.members {
                m.brokers
                    .with_label_values(&[group.cluster_name.as_str(), role_label(member.role)])
                    .inc();
            }
        }
        m.topics.set(self.registry.topics().len() as i64);
        m.clients.refresh(&self.sessions);
        // A NameServer with no broker or client yet still shows these families, at 0.
        apogee_server::ops::zero_until_first(&m.brokers);
        apogee_server::ops::zero_until_first(&m.rpc_latency);
        m.clients.zero_until_first();
        if let Some(controller) = &self.controller {
            m.controller.refresh(controller);
        }
        m.registry.gather()
    }

    /// A NameServer is ready as soon as it serves (it holds no state to recover).
    fn readiness(&self) -> Result<(), String> {
        if self.closing.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_server::remoting::MalformedFrames;
    use prometheus::Encoder;

    /// The sample of `apogee_remoting_malformed_frames_total`, in the text exposition.
    fn malformed_frames_sample(metrics: &NameServerMetrics) -> Option<String> {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("apogee_remoting_malformed_frames_total{"))
            .map(str::to_string)
    }

    #[test]
    fn the_remoting_malformed_frame_count_is_exported_once_registered() {
        let metrics = NameServerMetrics::new("127.0.0.1:9876").unwrap();
        assert_eq!(malformed_frames_sample(&metrics), None);
        let frames = MalformedFrames::default();
        metrics.register_remoting_frames(frames.clone()).unwrap();
        let sample = malformed_frames_sample(&metrics).expect("exported");
        assert!(sample.contains("node_type=\"nameserver\""), "{sample}");
        assert!(sample.ends_with(" 0"), "{sample}");
        frames.add_one();
        let sample = malformed_frames_sample(&metrics).expect("exported");
        assert!(sample.ends_with(" 1"), "{sample}");
    }
}

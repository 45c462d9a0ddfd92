//! Consumer groups as an operator changes and reads them on this broker group: create,
//! update and delete their configs ([`crate::groups`]) with their progress, list them (with
//! every group's lag summed over its queues, from one pass over all groups), describe one
//! (per queue: broker offset, committed offset, lag, in flight, last consume, from
//! [`crate::consume::lag`], over every queue of every topic it consumes here or the request
//! names; and its clients with a live session here), and move a group's offsets on a topic
//! (a plan unless asked to execute).

use crate::consume::lag::{LagTotals, QueueLag};
use crate::services::Broker;
use apogee_proto::cluster::GroupClient;
use apogee_proto::group::GroupConfig;
use apogee_proto::{limits, ApogeeError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A group in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedGroup {
    /// Its config here, or the defaults of a group with only progress or clients here.
    pub config: Arc<GroupConfig>,
    /// Whether its config exists here.
    pub configured: bool,
    /// Summed over its queues here (0 unless the listing asked for lag).
    pub lag: u64,
    pub inflight: u64,
}

/// One group described.
#[derive(Clone, Debug)]
pub struct GroupDescription {
    /// Its config, or the defaults a receive would create it with.
    pub config: Arc<GroupConfig>,
    /// Its progress per queue.
    pub queues: Vec<QueueLag>,
    /// Its clients connected here (Telemetry sessions, then remoting clients).
    pub clients: Vec<GroupClient>,
    /// Whether the group exists here (a config or progress).
    pub known: bool,
}

/// Where an offset reset moves a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetTarget {
    /// The oldest stored message of each queue.
    Earliest,
    /// After the newest message of each queue.
    Latest,
    /// The first message stored at or after a Unix ms time.
    TimestampMs(i64),
}

/// A move of a group's offsets on one topic.
#[derive(Clone, Copy, Debug)]
pub struct OffsetReset<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    /// Where to; none is refused (BAD_REQUEST).
    pub to: Option<OffsetTarget>,
    /// Move them; otherwise only the plan.
    pub execute: bool,
}

/// One queue of an offset reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMove {
    pub queue_id: u32,
    /// The group's committed offset before.
    pub current_offset: u64,
    pub new_offset: u64,
    /// Deliveries in flight (plus FIFO messages waiting their turn) before.
    pub inflight: u64,
}

impl Broker {
    /// Creates a group; `by` is who asked (for the log).
    pub fn create_group(
        &self,
        config: GroupConfig,
        by: &str,
    ) -> Result<Arc<GroupConfig>, ApogeeError> {
        self.refuse_on_slave("a consumer group change")?;
        tracing::info!(group = %config.name, by, "creating consumer group");
        self.groups().create(config)
    }

    /// Changes a group's config; `by` is who asked (for the log).
    pub fn update_group(
        &self,
        config: GroupConfig,
        by: &str,
    ) -> Result<Arc<GroupConfig>, ApogeeError> {
        self.refuse_on_slave("a consumer group change")?;
        tracing::info!(group = %config.name, by, "updating consumer group");
        self.groups().update(config)
    }

    /// Deletes the group's config and its progress (offsets, in-flight deliveries); a group
    /// with neither here is not found. `by` is who asked (for the log).
    pub fn delete_group(&self, group: &str, by: &str) -> Result<(), ApogeeError> {
        limits::validate_group(group)?;
        self.refuse_on_slave("a consumer group deletion")?;
        let had_progress = !self.consume().group_progress(group).is_empty();
        let had_config = match self.groups().delete(group) {
            Ok(()) => true,
            Err(ApogeeError::ConsumerGroupNotFound(_)) => false,
            Err(e) => return Err(e),
        };
        if !had_config && !had_progress {
            return Err(ApogeeError::ConsumerGroupNotFound(group.to_string()));
        }
        tracing::info!(group, by, "deleting consumer group");
        self.consume().forget_group(group)
    }

    /// The group configs; `with_lag`: with every group's lag here, also of the groups with
    /// progress or clients here but no config (listed with the defaults, not configured, as
    /// a description shows them, so the NameServer adds up what every broker group holds).
    pub async fn list_groups(
        self: &Arc<Self>,
        with_lag: bool,
    ) -> Result<Vec<ListedGroup>, ApogeeError> {
        let configs = self.groups().list();
        if !with_lag {
            return Ok(listed(configs, BTreeMap::new()));
        }
        let broker = self.clone();
        let totals = tokio::task::spawn_blocking(move || broker.lag_sources().all_totals())
            .await
            .map_err(ApogeeError::internal)??;
        Ok(listed(configs, totals))
    }

    /// One group here: its config, its progress per queue of the topics it consumes here
    /// and of `topics`, its clients. A group known nowhere here is described only where it
    /// has clients or `topics` names topics it consumes elsewhere (then its messages wait
    /// here too); otherwise it is not found.
    pub fn describe_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<GroupDescription, ApogeeError> {
        limits::validate_group(group)?;
        for topic in topics {
            limits::validate_topic(topic)?;
        }
        let config = self.groups().get(group);
        let name = &self.config().broker_name;
        let clients: Vec<GroupClient> = self
            .sessions()
            .clients_of_group(group)
            .iter()
            .map(|s| s.to_group_client(name))
            .chain(self.remoting_clients().group_clients(group, name))
            .collect();
        let queues = self.lag_sources().group_lag(group, topics)?;
        let known = config.is_some() || !self.consume().group_progress(group).is_empty();
        if !known && clients.is_empty() && (topics.is_empty() || queues.is_empty()) {
            return Err(ApogeeError::ConsumerGroupNotFound(group.to_string()));
        }
        Ok(GroupDescription {
            // Not created here yet (or progress from before configs existed): the defaults
            // a receive would create it with.
            config: config.unwrap_or_else(|| Arc::new(GroupConfig::with_defaults(group))),
            queues,
            clients,
            known,
        })
    }

    /// Plans (or, with `execute`, makes) the move of a group's offsets on every queue of a
    /// topic here; `by` is who asked (for the log). A time is clamped to the stored bounds.
    pub fn reset_group_offset(
        &self,
        reset: &OffsetReset<'_>,
        by: &str,
    ) -> Result<Vec<QueueMove>, ApogeeError> {
        let (group, topic) = (reset.group, reset.topic);
        limits::validate_group(group)?;
        limits::validate_topic(topic)?;
        let to = reset.to.ok_or_else(|| {
            ApogeeError::BadRequest("say where to: earliest, latest or a time".into())
        })?;
        let config = self
            .topics()
            .get(topic)
            .ok_or_else(|| ApogeeError::TopicNotFound(topic.to_string()))?;
        let store_err = ApogeeError::internal::<crate::store::StoreError>;
        let store = self.store();
        let mut queues = Vec::with_capacity(config.queue_ids().len());
        for queue_id in config.queue_ids() {
            let (min, next) = store.queue_bounds(topic, queue_id).map_err(store_err)?;
            let new_offset = match to {
                OffsetTarget::Earliest => min,
                OffsetTarget::Latest => next,
                OffsetTarget::TimestampMs(ts) => store
                    .queue_offset_for_time(topic, queue_id, ts)
                    .map_err(store_err)?
                    .clamp(min, next),
            };
            let before = self.consume().position(group, topic, queue_id, min);
            queues.push(QueueMove {
                queue_id,
                current_offset: before.committed,
                new_offset,
                inflight: before.inflight,
            });
        }
        if reset.execute {
            self.refuse_on_slave("an offset reset")?;
            for q in &queues {
                self.consume()
                    .reset_queue(group, topic, q.queue_id, q.new_offset)?;
            }
            // Remoting consumers hold their position and commit it back: told of the move,
            // they take the new offsets (gRPC consumers' positions are the broker's).
            let moved: Vec<(u32, u64)> =
                queues.iter().map(|q| (q.queue_id, q.new_offset)).collect();
            let asked_ms = match to {
                OffsetTarget::Earliest => 0,
                OffsetTarget::Latest => -1,
                OffsetTarget::TimestampMs(ts) => ts,
            };
            let told = self.remoting_clients().tell_offsets_reset(
                group,
                topic,
                &self.config().broker_name,
                asked_ms,
                &moved,
            );
            tracing::info!(
                group,
                topic,
                ?to,
                by,
                told,
                "reset the group's offsets on {} queues",
                queues.len()
            );
        }
        Ok(queues)
    }
}

/// The configured groups with their lag from `totals`, then the groups `totals` has beyond
/// them (with the defaults, not configured).
pub(super) fn listed(
    configs: Vec<Arc<GroupConfig>>,
    mut totals: BTreeMap<String, LagTotals>,
) -> Vec<ListedGroup> {
    let mut groups: Vec<ListedGroup> = configs
        .into_iter()
        .map(|config| {
            let t = totals.remove(&config.name).unwrap_or_default();
            ListedGroup {
                config,
                configured: true,
                lag: t.lag,
                inflight: t.inflight,
            }
        })
        .collect();
    groups.extend(totals.into_iter().map(|(name, t)| ListedGroup {
        config: Arc::new(GroupConfig::with_defaults(&name)),
        configured: false,
        lag: t.lag,
        inflight: t.inflight,
    }));
    groups
}

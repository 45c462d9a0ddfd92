//! The consumer-group operations of `apogee.cluster.v1.Admin` on a broker:
//! create, update, delete and list this broker group's group configs
//! ([`crate::groups`]), and describe a group's progress here: per queue the
//! broker offset, the committed (consumer) offset, the lag, what is in flight
//! and when the group last consumed, plus the group's clients with a live
//! Telemetry session to this broker. The queues are every queue of every topic
//! the group consumes here or the request names ([`crate::consume::lag`]),
//! also the ones it never received from. The list carries, when asked, every group's lag
//! and in-flight count summed over its queues, from one pass over all groups.

use crate::consume::lag::LagTotals;
use crate::services::Broker;
use apogee_proto::cluster::{
    self, CreateGroupRequest, CreateGroupResponse, DeleteGroupRequest, DeleteGroupResponse,
    DescribeGroupRequest, DescribeGroupResponse, GroupQueueProgress, GroupSummary,
    ListGroupsRequest, ListGroupsResponse, UpdateGroupRequest, UpdateGroupResponse,
};
use apogee_proto::group::GroupConfig;
use apogee_proto::{limits, ApogeeError};
use std::collections::BTreeMap;
use std::sync::Arc;

fn me(broker: &Broker) -> Vec<String> {
    vec![broker.config().broker_name.clone()]
}

/// The config a request carries, validated (defaults filled in).
fn checked(group: Option<&cluster::GroupConfig>) -> Result<GroupConfig, ApogeeError> {
    let wire = group.ok_or_else(|| ApogeeError::BadRequest("group is required".into()))?;
    GroupConfig::try_from(wire)
}

/// Creates a group; `by` is who asked (for the log).
pub fn create(
    broker: &Broker,
    req: CreateGroupRequest,
    by: &str,
) -> Result<CreateGroupResponse, ApogeeError> {
    let config = checked(req.group.as_ref())?;
    tracing::info!(group = %config.name, by, "creating consumer group");
    let created = broker.groups().create(config)?;
    Ok(CreateGroupResponse {
        group: Some(created.as_ref().into()),
        broker_names: me(broker),
    })
}

/// Changes a group's config; `by` is who asked (for the log).
pub fn update(
    broker: &Broker,
    req: UpdateGroupRequest,
    by: &str,
) -> Result<UpdateGroupResponse, ApogeeError> {
    let config = checked(req.group.as_ref())?;
    tracing::info!(group = %config.name, by, "updating consumer group");
    let updated = broker.groups().update(config)?;
    Ok(UpdateGroupResponse {
        group: Some(updated.as_ref().into()),
        broker_names: me(broker),
    })
}

/// Deletes the group's config and its progress (offsets, in-flight deliveries); `by` is who
/// asked (for the log).
pub fn delete(
    broker: &Broker,
    req: DeleteGroupRequest,
    by: &str,
) -> Result<DeleteGroupResponse, ApogeeError> {
    limits::validate_group(&req.group)?;
    let had_progress = !broker.consume().group_progress(&req.group).is_empty();
    let had_config = match broker.groups().delete(&req.group) {
        Ok(()) => true,
        Err(ApogeeError::ConsumerGroupNotFound(_)) => false,
        Err(e) => return Err(e),
    };
    if !had_config && !had_progress {
        return Err(ApogeeError::ConsumerGroupNotFound(req.group));
    }
    tracing::info!(group = %req.group, by, "deleting consumer group");
    broker.consume().forget_group(&req.group)?;
    Ok(DeleteGroupResponse {
        broker_names: me(broker),
    })
}

/// The group configs; `with_lag`: with every group's lag here, also of the groups with
/// progress or clients here but no config (listed with the defaults and no broker names, as
/// `describe` shows them, so the NameServer adds up what every broker group holds).
pub async fn list(
    broker: &Arc<Broker>,
    req: ListGroupsRequest,
) -> Result<ListGroupsResponse, ApogeeError> {
    let mut groups: Vec<GroupSummary> = broker
        .groups()
        .list()
        .iter()
        .map(|g| GroupSummary {
            config: Some(g.as_ref().into()),
            broker_names: me(broker),
            ..Default::default()
        })
        .collect();
    if req.with_lag {
        let b = broker.clone();
        let totals = tokio::task::spawn_blocking(move || b.lag_sources().all_totals())
            .await
            .map_err(ApogeeError::internal)??;
        with_lags(&mut groups, totals);
    }
    Ok(ListGroupsResponse { groups })
}

/// Sets each listed group's lag, and lists the groups `totals` has beyond them.
fn with_lags(groups: &mut Vec<GroupSummary>, mut totals: BTreeMap<String, LagTotals>) {
    for g in groups.iter_mut() {
        let name = g.config.as_ref().map_or("", |c| c.name.as_str());
        let t = totals.remove(name).unwrap_or_default();
        (g.lag, g.inflight) = (t.lag, t.inflight);
    }
    groups.extend(totals.into_iter().map(|(name, t)| GroupSummary {
        config: Some((&GroupConfig::with_defaults(&name)).into()),
        broker_names: Vec::new(),
        lag: t.lag,
        inflight: t.inflight,
    }));
}

pub fn describe(
    broker: &Broker,
    req: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, ApogeeError> {
    limits::validate_group(&req.group)?;
    for topic in &req.topics {
        limits::validate_topic(topic)?;
    }
    let config = broker.groups().get(&req.group);
    let name = &broker.config().broker_name;
    let clients: Vec<_> = broker
        .sessions()
        .clients_of_group(&req.group)
        .iter()
        .map(|s| s.to_group_client(name))
        .chain(broker.remoting_clients().group_clients(&req.group, name))
        .collect();
    let lags = broker.lag_sources().group_lag(&req.group, &req.topics)?;
    let unknown = config.is_none() && broker.consume().group_progress(&req.group).is_empty();
    // A group known nowhere here is described only where it has clients or the caller
    // names topics it consumes elsewhere (then its messages wait here too).
    if unknown && clients.is_empty() && (req.topics.is_empty() || lags.is_empty()) {
        return Err(ApogeeError::ConsumerGroupNotFound(req.group));
    }
    let queues = lags
        .into_iter()
        .map(|q| GroupQueueProgress {
            broker_offset: q.next_offset,
            lag: q.lag(),
            consumer_offset: q.consumer_offset,
            pop_offset: q.pop_offset,
            inflight: q.inflight as u64,
            last_consume_ms: q.last_consume_ms.unwrap_or(0),
            broker_name: name.clone(),
            topic: q.topic,
            queue_id: q.queue_id,
        })
        .collect();
    Ok(DescribeGroupResponse {
        config: Some(match config {
            Some(c) => c.as_ref().into(),
            // Not created here yet (or progress from before configs existed): the defaults
            // a receive would create it with.
            None => (&GroupConfig::with_defaults(&req.group)).into(),
        }),
        queues,
        clients,
        // Listed where the group exists.
        broker_names: if unknown { Vec::new() } else { me(broker) },
    })
}

//! The consumer-group operations of `apogee.cluster.v1.Admin` on a broker:
//! create, update, delete and list this broker group's group configs, and describe a
//! group's progress here: per queue the broker offset, the committed (consumer) offset, the
//! lag, what is in flight and when the group last consumed, plus the group's clients
//! connected to this broker. The rules are the broker's admin actions
//! (`crate::actions::admin`); these functions decode and encode.

use crate::services::Broker;
use apogee_proto::cluster::{
    self, CreateGroupRequest, CreateGroupResponse, DeleteGroupRequest, DeleteGroupResponse,
    DescribeGroupRequest, DescribeGroupResponse, GroupQueueProgress, GroupSummary,
    ListGroupsRequest, ListGroupsResponse, UpdateGroupRequest, UpdateGroupResponse,
};
use apogee_proto::group::GroupConfig;
use apogee_proto::ApogeeError;
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
    let created = broker.create_group(checked(req.group.as_ref())?, by)?;
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
    let updated = broker.update_group(checked(req.group.as_ref())?, by)?;
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
    broker.delete_group(&req.group, by)?;
    Ok(DeleteGroupResponse {
        broker_names: me(broker),
    })
}

/// The group configs; `with_lag`: with every group's lag here, also of the groups with
/// progress or clients here but no config (listed with no broker names).
pub async fn list(
    broker: &Arc<Broker>,
    req: ListGroupsRequest,
) -> Result<ListGroupsResponse, ApogeeError> {
    let groups = broker
        .list_groups(req.with_lag)
        .await?
        .into_iter()
        .map(|g| GroupSummary {
            config: Some(g.config.as_ref().into()),
            broker_names: if g.configured { me(broker) } else { Vec::new() },
            lag: g.lag,
            inflight: g.inflight,
        })
        .collect();
    Ok(ListGroupsResponse { groups })
}

pub fn describe(
    broker: &Broker,
    req: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, ApogeeError> {
    let described = broker.describe_group(&req.group, &req.topics)?;
    let name = &broker.config().broker_name;
    let queues = described
        .queues
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
        config: Some(described.config.as_ref().into()),
        queues,
        clients: described.clients,
        // Listed where the group exists.
        broker_names: if described.known {
            me(broker)
        } else {
            Vec::new()
        },
    })
}

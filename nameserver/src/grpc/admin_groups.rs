//! Consumer groups seen from a NameServer: create, update and delete are
//! validated here, fanned out to every broker group's live master (over
//! [`super::brokers`]), then applied to the broker table so `ListGroups`
//! (answered from the configs brokers register) shows them at once.
//! `DescribeGroup` asks every master for the group's progress there and adds
//! the group's clients whose Telemetry session is open with this NameServer;
//! a broker group that holds a topic the group consumes elsewhere but did not
//! describe it (the group never received there) is asked again for those
//! topics, so the messages waiting there count in the lag. `ListGroups` with `with_lag`
//! asks every master for all its groups' lag at once and adds them up per group.

use super::brokers::BrokerChannels;
use super::fan_out::{broker_names, every_master, fan_out, Target};
use crate::registry::{GroupKey, Registry};
use apogee_proto::cluster::{
    self, CreateGroupRequest, CreateGroupResponse, DeleteGroupRequest, DeleteGroupResponse,
    DescribeGroupRequest, DescribeGroupResponse, GroupClient, GroupSummary, ListGroupsRequest,
    ListGroupsResponse, UpdateGroupRequest, UpdateGroupResponse,
};
use apogee_proto::group::GroupConfig;
use apogee_proto::{limits, ApogeeError};
use apogee_server::telemetry::Sessions;
use std::collections::{BTreeMap, BTreeSet};
use tonic::{Code, Status};

/// What a client's session with this NameServer is listed as.
pub(super) const HERE: &str = "nameserver";

/// The config a request carries, validated, with the defaults filled in.
fn checked(group: Option<&cluster::GroupConfig>) -> Result<cluster::GroupConfig, Status> {
    let wire = group.ok_or_else(|| Status::invalid_argument("group is required"))?;
    let config = GroupConfig::try_from(wire)?;
    Ok((&config).into())
}

fn no_master() -> Status {
    Status::unavailable("no broker group has a live master")
}

pub async fn create(
    registry: &Registry,
    channels: &BrokerChannels,
    req: CreateGroupRequest,
) -> Result<CreateGroupResponse, Status> {
    let config = checked(req.group.as_ref())?;
    if registry.group(&config.name).is_some() {
        return Err(Status::already_exists(format!(
            "consumer group {0} already exists; change it with `apogee group update {0}`",
            config.name
        )));
    }
    let what = format!("CreateGroup of {}", config.name);
    let answers = fan_out(channels, every_master(registry), what, |mut c| {
        let r = CreateGroupRequest {
            group: Some(config.clone()),
        };
        async move { c.create_group(r).await }
    })
    .await;
    if answers.is_empty() {
        return Err(no_master());
    }
    let (applied, error) = answers.applied();
    for (key, _) in &applied {
        registry.upsert_group(key, &config);
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(CreateGroupResponse {
        broker_names: broker_names(&applied),
        group: Some(config),
    })
}

pub async fn update(
    registry: &Registry,
    channels: &BrokerChannels,
    req: UpdateGroupRequest,
) -> Result<UpdateGroupResponse, Status> {
    let config = checked(req.group.as_ref())?;
    if registry.group(&config.name).is_none() {
        return Err(ApogeeError::ConsumerGroupNotFound(config.name).into());
    }
    // Every master gets the config, also one that does not hold the group yet.
    let what = format!("UpdateGroup of {}", config.name);
    let answers = fan_out(channels, every_master(registry), what, |mut c| {
        let r = UpdateGroupRequest {
            group: Some(config.clone()),
        };
        async move { c.update_group(r).await }
    })
    .await;
    if answers.is_empty() {
        return Err(no_master());
    }
    let (applied, error) = answers.applied();
    for (key, _) in &applied {
        registry.upsert_group(key, &config);
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(UpdateGroupResponse {
        broker_names: broker_names(&applied),
        group: Some(config),
    })
}

pub async fn delete(
    registry: &Registry,
    channels: &BrokerChannels,
    req: DeleteGroupRequest,
) -> Result<DeleteGroupResponse, Status> {
    limits::validate_group(&req.group)?;
    let what = format!("DeleteGroup of {}", req.group);
    let answers = fan_out(channels, every_master(registry), what, |mut c| {
        let r = req.clone();
        async move { c.delete_group(r).await }
    })
    .await;
    let (applied, error) = answers.tolerating(Code::NotFound).applied();
    for (key, _) in &applied {
        registry.remove_group(key, &req.group);
    }
    if let Some(e) = error {
        return Err(e);
    }
    if applied.is_empty() {
        return Err(ApogeeError::ConsumerGroupNotFound(req.group).into());
    }
    Ok(DeleteGroupResponse {
        broker_names: broker_names(&applied),
    })
}

/// The groups the brokers registered; `with_lag`: with each one's lag and in-flight count
/// summed over every broker group's master (one call each, all at once).
pub async fn list(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ListGroupsRequest,
) -> Result<ListGroupsResponse, Status> {
    let mut groups: Vec<GroupSummary> = registry
        .groups()
        .into_values()
        .map(|l| GroupSummary {
            config: Some(l.config),
            broker_names: l.broker_names,
            ..Default::default()
        })
        .collect();
    if req.with_lag {
        let answers = fan_out(channels, every_master(registry), "ListGroups", |mut c| {
            let r = ListGroupsRequest { with_lag: true };
            async move { c.list_groups(r).await }
        })
        .await
        .answers()?;
        let totals = lag_totals(answers.into_iter().map(|(_, a)| a));
        for g in &mut groups {
            let name = g.config.as_ref().map_or("", |c| c.name.as_str());
            (g.lag, g.inflight) = totals.get(name).copied().unwrap_or_default();
        }
    }
    Ok(ListGroupsResponse { groups })
}

/// Per group, its (lag, in flight) summed over the brokers' answers.
fn lag_totals(answers: impl Iterator<Item = ListGroupsResponse>) -> BTreeMap<String, (u64, u64)> {
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for g in answers.flat_map(|a| a.groups) {
        let name = g.config.map(|c| c.name).unwrap_or_default();
        let t = totals.entry(name).or_default();
        t.0 += g.lag;
        t.1 += g.inflight;
    }
    totals
}

pub async fn describe(
    registry: &Registry,
    channels: &BrokerChannels,
    sessions: &Sessions,
    req: DescribeGroupRequest,
) -> Result<DescribeGroupResponse, Status> {
    limits::validate_group(&req.group)?;
    let what = format!("DescribeGroup of {}", req.group);
    let found = fan_out(channels, every_master(registry), what.as_str(), |mut c| {
        let r = req.clone();
        async move { c.describe_group(r).await }
    })
    .await
    .tolerating(Code::NotFound)
    .answers()?;
    let local: Vec<GroupClient> = sessions
        .clients_of_group(&req.group)
        .iter()
        .map(|s| s.to_group_client(HERE))
        .collect();
    if found.is_empty() {
        return Err(ApogeeError::ConsumerGroupNotFound(req.group).into());
    }
    let mut by_group: BTreeMap<GroupKey, DescribeGroupResponse> = found.into_iter().collect();
    let consumed: BTreeSet<String> = by_group
        .values()
        .flat_map(|r| {
            let clients = r.clients.iter().flat_map(|c| c.topics.iter());
            r.queues.iter().map(|q| &q.topic).chain(clients)
        })
        .chain(local.iter().flat_map(|c| c.topics.iter()))
        .chain(&req.topics)
        .cloned()
        .collect();
    let lacking = lacking_topics(registry, &by_group, &consumed);
    if !lacking.is_empty() {
        let again = DescribeGroupRequest {
            group: req.group.clone(),
            topics: consumed.into_iter().collect(),
        };
        let more = fan_out(channels, lacking, what, |mut c| {
            let r = again.clone();
            async move { c.describe_group(r).await }
        })
        .await
        .tolerating(Code::NotFound)
        .answers()?;
        for (key, mut answer) in more {
            match by_group.get_mut(&key) {
                Some(known) => known.queues = answer.queues,
                None => {
                    // It does not hold the group: its queues only.
                    answer.config = None;
                    answer.broker_names.clear();
                    by_group.insert(key, answer);
                }
            }
        }
    }
    Ok(merge(by_group.into_values().collect(), local))
}

/// The live masters of broker groups that hold one of the `consumed` topics but did not
/// describe it (they answered without it, or did not know the group).
fn lacking_topics(
    registry: &Registry,
    described: &BTreeMap<GroupKey, DescribeGroupResponse>,
    consumed: &BTreeSet<String>,
) -> Vec<Target> {
    let topics = registry.topics();
    registry
        .admin_targets("")
        .into_iter()
        .filter_map(|t| Some((t.master_endpoint?, t.group)))
        .filter(|(_, key)| {
            let answered: BTreeSet<&String> = described
                .get(key)
                .map(|r| r.queues.iter().map(|q| &q.topic).collect())
                .unwrap_or_default();
            consumed.iter().any(|topic| {
                !answered.contains(topic)
                    && topics
                        .get(topic)
                        .is_some_and(|l| l.broker_names.contains(&key.broker_name))
            })
        })
        .map(|(endpoint, key)| Target::new(key, endpoint))
        .collect()
}

/// One description from the brokers' (each for its own queues and clients)
/// and the clients connected to this NameServer.
fn merge(answers: Vec<DescribeGroupResponse>, local: Vec<GroupClient>) -> DescribeGroupResponse {
    let mut merged = DescribeGroupResponse::default();
    let mut clients: BTreeMap<String, GroupClient> = BTreeMap::new();
    for a in answers {
        if merged.config.is_none() {
            merged.config = a.config;
        }
        merged.queues.extend(a.queues);
        merged.broker_names.extend(a.broker_names);
        for c in a.clients {
            add_client(&mut clients, c);
        }
    }
    for c in local {
        add_client(&mut clients, c);
    }
    merged.queues.sort_by(|a, b| {
        (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
    });
    merged.broker_names.sort();
    merged.broker_names.dedup();
    merged.clients = clients.into_values().collect();
    merged
}

/// Adds what `more` has that `known` lacks, and sorts it (a client's places or topics).
pub(super) fn union_into(known: &mut Vec<String>, more: Vec<String>) {
    for item in more {
        if !known.contains(&item) {
            known.push(item);
        }
    }
    known.sort();
}

/// Adds a client, merging where it is connected when it is already listed.
fn add_client(clients: &mut BTreeMap<String, GroupClient>, c: GroupClient) {
    match clients.get_mut(&c.client_id) {
        Some(known) => union_into(&mut known.connected_to, c.connected_to),
        None => {
            clients.insert(c.client_id.clone(), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::cluster::GroupQueueProgress;

    #[test]
    fn lags_add_up_per_group_over_the_brokers() {
        let summary = |name: &str, lag, inflight| GroupSummary {
            config: Some(cluster::GroupConfig {
                name: name.into(),
                ..Default::default()
            }),
            lag,
            inflight,
            ..Default::default()
        };
        let b1 = ListGroupsResponse {
            groups: vec![summary("a", 5, 1), summary("b", 0, 0)],
        };
        let b2 = ListGroupsResponse {
            groups: vec![summary("a", 7, 2), summary("c", 3, 3)],
        };
        let totals = lag_totals([b1, b2].into_iter());
        assert_eq!(
            totals.into_iter().collect::<Vec<_>>(),
            [
                ("a".to_string(), (12, 3)),
                ("b".to_string(), (0, 0)),
                ("c".to_string(), (3, 3))
            ]
        );
    }

    #[test]
    fn descriptions_merge_queues_and_clients() {
        let client = |id: &str, at: &str| GroupClient {
            client_id: id.into(),
            connected_to: vec![at.into()],
            ..Default::default()
        };
        let queue = |broker: &str, q: u32| GroupQueueProgress {
            topic: "t".into(),
            queue_id: q,
            broker_name: broker.into(),
            ..Default::default()
        };
        let a = DescribeGroupResponse {
            config: Some(cluster::GroupConfig {
                name: "g".into(),
                ..Default::default()
            }),
            queues: vec![queue("b2", 0)],
            clients: vec![client("c1", "b2")],
            broker_names: vec!["b2".into()],
        };
        let b = DescribeGroupResponse {
            config: None,
            queues: vec![queue("b1", 1), queue("b1", 0)],
            clients: vec![client("c1", "b1"), client("c2", "b1")],
            broker_names: vec!["b1".into()],
        };
        let m = merge(vec![a, b], vec![client("c1", HERE)]);
        assert_eq!(m.config.unwrap().name, "g");
        let order: Vec<(String, u32)> = m
            .queues
            .iter()
            .map(|q| (q.broker_name.clone(), q.queue_id))
            .collect();
        assert_eq!(
            order,
            [("b1".into(), 0), ("b1".into(), 1), ("b2".into(), 0)]
        );
        assert_eq!(m.clients.len(), 2);
        assert_eq!(m.clients[0].connected_to, ["b1", "b2", HERE]);
        assert_eq!(m.broker_names, ["b1", "b2"]);
    }
}

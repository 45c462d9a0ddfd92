//! Topics seen from a NameServer: create, update and delete ([`change`]) are validated here,
//! sent to the masters of the broker groups they concern (over [`super::fan_out`]), then
//! applied to the broker table for the groups that applied them, so routes reflect the change
//! at once. `TopicStatus` ([`status`]) asks every broker group's master for its queues of the
//! topic and lists them together (a group that does not host the topic answers NOT_FOUND and
//! is left out; any other failure names the group).

use super::brokers::BrokerChannels;
use super::fan_out::{broker_names, every_master, fan_out, Target};
use crate::registry::{AdminTarget, Registry};
use apogee_proto::auth::cluster_calls::SignedChannel;
use apogee_proto::cluster::admin_client::AdminClient;
use apogee_proto::cluster::{
    CreateTopicRequest, DeleteTopicRequest, TopicConfig, TopicStatusRequest, TopicStatusResponse,
    UpdateTopicRequest,
};
use apogee_proto::{limits, names, ApogeeError};
use tonic::{Code, Status};

/// Queue count of a topic created without one (RocketMQ's default).
pub const DEFAULT_QUEUE_COUNT: i32 = 8;

/// What a topic change does (which groups it may go to depends on it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    /// The RPC's name.
    fn name(self) -> &'static str {
        match self {
            Op::Create => "CreateTopic",
            Op::Update => "UpdateTopic",
            Op::Delete => "DeleteTopic",
        }
    }
}

/// A change to a topic, as a NameServer sends it to each broker group concerned.
#[derive(Clone, Debug)]
pub enum TopicChange {
    Create(TopicConfig),
    Update(TopicConfig),
    Delete(String),
}

impl TopicChange {
    /// A create of `topic`, validated, with the defaults filled in.
    pub fn create(topic: Option<TopicConfig>) -> Result<Self, Status> {
        normalize_topic(topic).map(TopicChange::Create)
    }

    /// An update of `topic`, validated, with the defaults filled in.
    pub fn update(topic: Option<TopicConfig>) -> Result<Self, Status> {
        normalize_topic(topic).map(TopicChange::Update)
    }

    /// A delete of the topic named `topic`, validated.
    pub fn delete(topic: String) -> Result<Self, Status> {
        check_user_topic(&topic)?;
        Ok(TopicChange::Delete(topic))
    }

    fn op(&self) -> Op {
        match self {
            TopicChange::Create(_) => Op::Create,
            TopicChange::Update(_) => Op::Update,
            TopicChange::Delete(_) => Op::Delete,
        }
    }

    fn topic(&self) -> &str {
        match self {
            TopicChange::Create(t) | TopicChange::Update(t) => &t.name,
            TopicChange::Delete(name) => name,
        }
    }

    /// Sends the change to one broker (which applies it locally).
    async fn send(self, mut broker: AdminClient<SignedChannel>) -> Result<(), Status> {
        let broker_names = Vec::new();
        match self {
            TopicChange::Create(t) => broker
                .create_topic(CreateTopicRequest {
                    topic: Some(t),
                    broker_names,
                })
                .await
                .map(drop),
            TopicChange::Update(t) => broker
                .update_topic(UpdateTopicRequest {
                    topic: Some(t),
                    broker_names,
                })
                .await
                .map(drop),
            TopicChange::Delete(topic) => broker
                .delete_topic(DeleteTopicRequest {
                    topic,
                    broker_names,
                })
                .await
                .map(drop),
        }
    }

    /// Records in the broker table that `group` applied the change.
    fn record(&self, registry: &Registry, group: &crate::registry::GroupKey) {
        match self {
            TopicChange::Create(t) | TopicChange::Update(t) => registry.upsert_topic(group, t),
            TopicChange::Delete(name) => registry.remove_topic(group, name),
        }
    }
}

/// Applies `change` on the broker groups named in `requested` (empty: every eligible group);
/// returns the names of the groups that applied it, or an error naming each one that failed
/// (and where it did apply: those are recorded all the same).
pub async fn change(
    registry: &Registry,
    channels: &BrokerChannels,
    change: TopicChange,
    requested: &[String],
) -> Result<Vec<String>, Status> {
    let topic = change.topic();
    let op = change.op();
    let targets = select_targets(registry.admin_targets(topic), requested, topic, op)?;
    check_lite_on_one_group(&change, &targets)?;
    let what = format!("{} of topic {topic}", op.name());
    let answers = fan_out(channels, targets, what, |broker| {
        let change = change.clone();
        async move { change.send(broker).await.map(tonic::Response::new) }
    })
    .await;
    let (applied, error) = answers.applied();
    for (group, ()) in &applied {
        change.record(registry, group);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(broker_names(&applied)),
    }
}

/// A LITE topic lives on exactly one broker group: its lite topics, subscriptions and lite
/// consumers are all on one broker (the official lite consumers read the first readable
/// queue of the route). A create or update that would put one on several groups is refused,
/// naming them.
fn check_lite_on_one_group(change: &TopicChange, targets: &[Target]) -> Result<(), Status> {
    let config = match change {
        TopicChange::Create(t) | TopicChange::Update(t) => t,
        TopicChange::Delete(_) => return Ok(()),
    };
    let lite = apogee_proto::v2::MessageType::Lite as i32;
    if targets.len() <= 1 || !config.message_types.contains(&lite) {
        return Ok(());
    }
    let mut groups: Vec<&str> = targets
        .iter()
        .map(|t| t.group.broker_name.as_str())
        .collect();
    groups.dedup();
    Err(Status::invalid_argument(format!(
        "a LITE topic lives on exactly one broker group, and topic {} would be on {} ({}): \
         pick one with --broker",
        config.name,
        groups.len(),
        groups.join(", ")
    )))
}

fn check_user_topic(name: &str) -> Result<(), Status> {
    limits::validate_topic(name)?;
    if names::is_system_topic(name) {
        return Err(ApogeeError::Forbidden(format!(
            "{name} is a system topic; only brokers manage it"
        ))
        .into());
    }
    Ok(())
}

/// Validates a topic config and fills in the defaults (8 queues, READ_WRITE,
/// NORMAL messages).
pub(crate) fn normalize_topic(topic: Option<TopicConfig>) -> Result<TopicConfig, Status> {
    let t = topic.ok_or_else(|| Status::invalid_argument("topic is required"))?;
    check_user_topic(&t.name)?;
    limits::normalize_topic(t, DEFAULT_QUEUE_COUNT)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The broker groups an operation goes to. `requested` are broker names
/// (empty: every eligible group).
fn select_targets(
    all: Vec<AdminTarget>,
    requested: &[String],
    topic: &str,
    op: Op,
) -> Result<Vec<Target>, Status> {
    let must_host = op != Op::Create;
    let mut chosen: Vec<AdminTarget> = Vec::new();
    if requested.is_empty() {
        chosen = all
            .into_iter()
            .filter(|t| !must_host || t.hosts_topic)
            .collect();
        if chosen.is_empty() && must_host {
            return Err(ApogeeError::TopicNotFound(topic.to_string()).into());
        }
        let skipped: Vec<String> = chosen
            .iter()
            .filter(|t| t.master_endpoint.is_none())
            .map(|t| t.group.to_string())
            .collect();
        chosen.retain(|t| t.master_endpoint.is_some());
        if chosen.is_empty() {
            return Err(Status::unavailable(if skipped.is_empty() {
                "no broker group is registered".to_string()
            } else {
                format!("no live master in broker group(s) {}", skipped.join(", "))
            }));
        }
        if !skipped.is_empty() {
            tracing::warn!(topic, skipped = %skipped.join(", "), "{}: skipping broker groups without a live master", op.name());
        }
    } else {
        for name in requested {
            let groups: Vec<&AdminTarget> = all
                .iter()
                .filter(|t| &t.group.broker_name == name)
                .collect();
            if groups.is_empty() {
                return Err(Status::not_found(format!(
                    "broker group {name} is not registered"
                )));
            }
            for g in groups {
                if must_host && !g.hosts_topic {
                    return Err(Status::not_found(format!(
                        "topic {topic} does not exist on broker group {name}"
                    )));
                }
                if g.master_endpoint.is_none() {
                    return Err(Status::unavailable(format!(
                        "broker group {} has no live master",
                        g.group
                    )));
                }
                if !chosen.iter().any(|c| c.group == g.group) {
                    chosen.push(g.clone());
                }
            }
        }
    }
    if op == Op::Create {
        if let Some(t) = chosen.iter().find(|t| t.hosts_topic) {
            return Err(Status::already_exists(format!(
                "topic {topic} already exists on broker group {}",
                t.group.broker_name
            )));
        }
    }
    Ok(chosen
        .into_iter()
        .filter_map(|t| Some(Target::new(t.group, t.master_endpoint?)))
        .collect())
}

pub async fn status(
    registry: &Registry,
    channels: &BrokerChannels,
    req: TopicStatusRequest,
) -> Result<TopicStatusResponse, Status> {
    limits::validate_topic(&req.topic)?;
    let what = format!("TopicStatus of {}", req.topic);
    let found = fan_out(channels, every_master(registry), what, |mut c| {
        let r = req.clone();
        async move { c.topic_status(r).await }
    })
    .await
    .tolerating(Code::NotFound)
    .answers()?;
    if found.is_empty() {
        return Err(ApogeeError::TopicNotFound(req.topic).into());
    }
    let mut queues: Vec<_> = found.into_iter().flat_map(|(_, r)| r.queues).collect();
    queues.sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
    Ok(TopicStatusResponse { queues })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::GroupKey;
    use apogee_proto::v2::{MessageType, Permission};

    fn target(name: &str, master: bool, hosts: bool) -> AdminTarget {
        AdminTarget {
            group: GroupKey::new("c", name),
            master_endpoint: master.then(|| format!("{name}:10911")),
            hosts_topic: hosts,
        }
    }

    #[test]
    fn topic_defaults_are_filled_in() {
        let t = normalize_topic(Some(TopicConfig {
            name: "orders".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(t.queue_count, 8);
        assert_eq!(t.permission, Permission::ReadWrite as i32);
        assert_eq!(t.message_types, vec![MessageType::Normal as i32]);
    }

    #[test]
    fn bad_topics_are_refused() {
        let cfg = |name: &str, queues: i32| {
            Some(TopicConfig {
                name: name.into(),
                queue_count: queues,
                ..Default::default()
            })
        };
        assert_eq!(
            normalize_topic(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            normalize_topic(cfg("bad name", 1)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            normalize_topic(cfg("%RETRY%g", 1)).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            normalize_topic(cfg("TBW102", 1)).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            normalize_topic(cfg("t", 1025)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            normalize_topic(cfg("t", -1)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn create_targets_every_group_with_a_live_master() {
        let all = vec![
            target("b1", true, false),
            target("b2", false, false),
            target("b3", true, false),
        ];
        let t = select_targets(all, &[], "t", Op::Create).unwrap();
        let names: Vec<_> = t.iter().map(|t| t.group.broker_name.as_str()).collect();
        assert_eq!(names, ["b1", "b3"]);
    }

    #[test]
    fn create_fails_without_masters_or_when_the_topic_exists() {
        let err =
            select_targets(vec![target("b1", false, false)], &[], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        let err = select_targets(vec![], &[], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        let err = select_targets(vec![target("b1", true, true)], &[], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
    }

    #[test]
    fn named_targets_must_exist_and_have_a_master() {
        let all = || vec![target("b1", true, false), target("b2", false, false)];
        let t = select_targets(all(), &["b1".into()], "t", Op::Create).unwrap();
        assert_eq!(t.len(), 1);
        let err = select_targets(all(), &["nope".into()], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = select_targets(all(), &["b2".into()], "t", Op::Create).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn a_lite_topic_goes_to_one_broker_group_only() {
        let lite = |name: &str| {
            TopicChange::create(Some(TopicConfig {
                name: name.into(),
                message_types: vec![apogee_proto::v2::MessageType::Lite as i32],
                ..Default::default()
            }))
            .unwrap()
        };
        let two = select_targets(
            vec![target("b1", true, false), target("b2", true, false)],
            &[],
            "chat",
            Op::Create,
        )
        .unwrap();
        let err = check_lite_on_one_group(&lite("chat"), &two).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        for says in ["b1, b2", "--broker", "exactly one broker group"] {
            assert!(err.message().contains(says), "{}", err.message());
        }
        check_lite_on_one_group(&lite("chat"), &two[..1]).unwrap();
        let normal = TopicChange::create(Some(TopicConfig {
            name: "orders".into(),
            ..Default::default()
        }))
        .unwrap();
        check_lite_on_one_group(&normal, &two).unwrap();
    }

    #[test]
    fn update_and_delete_need_an_existing_topic() {
        let all = || vec![target("b1", true, true), target("b2", true, false)];
        let t = select_targets(all(), &[], "t", Op::Delete).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].group.broker_name, "b1");
        let err =
            select_targets(vec![target("b2", true, false)], &[], "t", Op::Update).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = select_targets(all(), &["b2".into()], "t", Op::Update).unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}

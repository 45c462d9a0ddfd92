//! Message query and dead letters seen from a NameServer, which keeps no message state: a
//! message id does not name its broker group, so a lookup by id asks every group's master and
//! merges; key searches and queue reads ask the groups hosting the topic (a queue read may
//! name one group, since queue ids are per group); a consumer group's dead letters may be on
//! any group, so listing and resending ask every master.

use super::brokers::BrokerChannels;
use super::fan_out::{every_master, fan_out, Target};
use crate::registry::Registry;
use apogee_proto::cluster::{
    FindMessagesRequest, FindMessagesResponse, GetMessageRequest, GetMessageResponse,
    ListDeadLettersRequest, ListDeadLettersResponse, MessageView, ReadQueueRequest,
    ReadQueueResponse, ResendDeadLettersRequest, ResendDeadLettersResponse,
};
use apogee_proto::{names, ApogeeError};
use tonic::Status;

/// The masters of the groups a call goes to.
type Targets = Vec<Target>;

/// The live masters of the groups hosting `topic` (only the group `only` when given). A
/// system topic (e.g. a dead-letter topic) that no group reports is asked of every master.
fn hosting(registry: &Registry, topic: &str, only: Option<&str>) -> Result<Targets, ApogeeError> {
    let all = registry.admin_targets(topic);
    if let Some(name) = only {
        let Some(t) = all.iter().find(|t| t.group.broker_name == name) else {
            return Err(ApogeeError::BadRequest(format!(
                "broker group {name} is not registered"
            )));
        };
        if !t.hosts_topic && !names::is_system_topic(topic) {
            return Err(ApogeeError::TopicNotFound(format!(
                "{topic} (not on broker group {name})"
            )));
        }
        let endpoint = t.master_endpoint.clone().ok_or_else(|| {
            ApogeeError::Unavailable(format!("broker group {name} has no live master"))
        })?;
        return Ok(vec![Target::new(t.group.clone(), endpoint)]);
    }
    let hosts: Vec<_> = all.iter().filter(|t| t.hosts_topic).collect();
    let chosen = if hosts.is_empty() {
        if !names::is_system_topic(topic) {
            return Err(ApogeeError::TopicNotFound(topic.to_string()));
        }
        // As when asking every master: the groups that have one.
        all.iter().filter(|t| t.master_endpoint.is_some()).collect()
    } else {
        hosts
    };
    let missing: Vec<String> = chosen
        .iter()
        .filter(|t| t.master_endpoint.is_none())
        .map(|t| t.group.broker_name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(ApogeeError::Unavailable(format!(
            "broker group(s) {} hosting {topic} have no live master",
            missing.join(", ")
        )));
    }
    Ok(chosen
        .into_iter()
        .filter_map(|t| Some(Target::new(t.group.clone(), t.master_endpoint.clone()?)))
        .collect())
}

fn sort_views(views: &mut [MessageView]) {
    views.sort_by(|a, b| {
        (a.store_timestamp_ms, &a.broker_name, a.log_offset).cmp(&(
            b.store_timestamp_ms,
            &b.broker_name,
            b.log_offset,
        ))
    });
}

/// Every stored record with the id, from every broker group; NOT_FOUND when none has one.
pub async fn get_message(
    registry: &Registry,
    channels: &BrokerChannels,
    req: GetMessageRequest,
) -> Result<GetMessageResponse, Status> {
    if req.message_id.trim().is_empty() {
        return Err(ApogeeError::BadRequest("a message id is required".into()).into());
    }
    let what = format!("GetMessage of {}", req.message_id);
    let answers = fan_out(channels, every_master(registry), what, |mut c| {
        let req = req.clone();
        async move { c.get_message(req).await }
    })
    .await
    .answers()?;
    let mut messages: Vec<MessageView> =
        answers.into_iter().flat_map(|(_, a)| a.messages).collect();
    if messages.is_empty() {
        return Err(ApogeeError::MessageNotFound(format!(
            "no broker group stores a message with id {}",
            req.message_id
        ))
        .into());
    }
    sort_views(&mut messages);
    Ok(GetMessageResponse { messages })
}

/// Messages of the topic carrying the key, from every group hosting the topic, oldest first.
pub async fn find_messages(
    registry: &Registry,
    channels: &BrokerChannels,
    req: FindMessagesRequest,
) -> Result<FindMessagesResponse, Status> {
    let targets = hosting(registry, &req.topic, None)?;
    let what = format!("FindMessages of key {} on {}", req.key, req.topic);
    let answers = fan_out(channels, targets, what, |mut c| {
        let req = req.clone();
        async move { c.find_messages(req).await }
    })
    .await
    .answers()?;
    let mut messages: Vec<MessageView> =
        answers.into_iter().flat_map(|(_, a)| a.messages).collect();
    sort_views(&mut messages);
    Ok(FindMessagesResponse { messages })
}

/// A range of one queue, of the named group or of every group hosting the topic.
pub async fn read_queue(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ReadQueueRequest,
) -> Result<ReadQueueResponse, Status> {
    let only = Some(req.broker_name.as_str()).filter(|b| !b.is_empty());
    let targets = hosting(registry, &req.topic, only)?;
    let what = format!("ReadQueue of {} queue {}", req.topic, req.queue_id);
    let answers = fan_out(channels, targets, what, |mut c| {
        let req = ReadQueueRequest {
            broker_name: String::new(),
            ..req.clone()
        };
        async move { c.read_queue(req).await }
    })
    .await
    .answers()?;
    let mut merged = ReadQueueResponse::default();
    for (_, a) in answers {
        merged.messages.extend(a.messages);
        merged.bounds.extend(a.bounds);
    }
    merged
        .messages
        .sort_by(|a, b| (&a.broker_name, a.queue_offset).cmp(&(&b.broker_name, b.queue_offset)));
    merged
        .bounds
        .sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    Ok(merged)
}

/// The group's dead letters on every broker group, oldest first.
pub async fn list_dead_letters(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ListDeadLettersRequest,
) -> Result<ListDeadLettersResponse, Status> {
    let what = format!("ListDeadLetters of {}", req.group);
    let answers = fan_out(channels, every_master(registry), what, |mut c| {
        let req = req.clone();
        async move { c.list_dead_letters(req).await }
    })
    .await
    .answers()?;
    let mut dead_letters: Vec<_> = answers
        .into_iter()
        .flat_map(|(_, a)| a.dead_letters)
        .collect();
    let key = |d: &apogee_proto::cluster::DeadLetter| {
        d.message
            .as_ref()
            .map(|m| (m.store_timestamp_ms, m.broker_name.clone(), m.log_offset))
            .unwrap_or_default()
    };
    dead_letters.sort_by_key(key);
    Ok(ListDeadLettersResponse { dead_letters })
}

/// Resends on every broker group; NOT_FOUND when an id was given and no group has it.
/// Repeating a resend is harmless (already resent ones are reported, not written), so an
/// error from one group can be answered by asking again.
pub async fn resend_dead_letters(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ResendDeadLettersRequest,
) -> Result<ResendDeadLettersResponse, Status> {
    let what = format!("ResendDeadLetters of {}", req.group);
    let answers = fan_out(channels, every_master(registry), what, |mut c| {
        let req = req.clone();
        async move { c.resend_dead_letters(req).await }
    })
    .await
    .answers()?;
    let results: Vec<_> = answers.into_iter().flat_map(|(_, a)| a.results).collect();
    if results.is_empty() && !req.message_id.is_empty() {
        return Err(ApogeeError::MessageNotFound(format!(
            "consumer group {} has no dead letter with id {}",
            req.group, req.message_id
        ))
        .into());
    }
    Ok(ResendDeadLettersResponse { results })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ts: i64, broker: &str, off: i64) -> MessageView {
        MessageView {
            store_timestamp_ms: ts,
            broker_name: broker.into(),
            log_offset: off,
            ..Default::default()
        }
    }

    fn register(reg: &Registry, broker: &str, id: i64, topics: &[&str]) {
        use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest, TopicConfig};
        reg.register(&RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: broker.into(),
            broker_id: id,
            endpoint: format!("{broker}-{id}:10911"),
            role: if id == 0 {
                BrokerRole::AsyncMaster as i32
            } else {
                BrokerRole::Slave as i32
            },
            topics: topics
                .iter()
                .map(|t| TopicConfig {
                    name: t.to_string(),
                    queue_count: 2,
                    ..Default::default()
                })
                .collect(),
            data_version: 1,
            ..Default::default()
        })
        .unwrap();
    }

    fn names_of(t: &Targets) -> Vec<&str> {
        t.iter().map(|t| t.group.broker_name.as_str()).collect()
    }

    #[test]
    fn queue_reads_go_to_the_groups_hosting_the_topic() {
        let reg = Registry::new(std::time::Duration::from_secs(120));
        register(&reg, "b1", 0, &["t"]);
        register(&reg, "b2", 0, &[]);
        register(&reg, "b3", 0, &["t"]);
        assert_eq!(names_of(&hosting(&reg, "t", None).unwrap()), ["b1", "b3"]);
        let only = hosting(&reg, "t", Some("b3")).unwrap();
        let only: Vec<_> = only
            .iter()
            .map(|t| (t.group.broker_name.as_str(), t.endpoint.as_str()))
            .collect();
        assert_eq!(only, [("b3", "b3-0:10911")]);
        assert!(matches!(
            hosting(&reg, "t", Some("b2")),
            Err(ApogeeError::TopicNotFound(_))
        ));
        assert!(matches!(
            hosting(&reg, "t", Some("nope")),
            Err(ApogeeError::BadRequest(_))
        ));
        assert!(matches!(
            hosting(&reg, "gone", None),
            Err(ApogeeError::TopicNotFound(_))
        ));
        // A dead-letter topic nobody reports: every group with a master is asked.
        let dlq = hosting(&reg, "%DLQ%g", None).unwrap();
        assert_eq!(names_of(&dlq), ["b1", "b2", "b3"]);
        // b4 hosts the topic but has only a slave: no partial answer without it.
        register(&reg, "b4", 1, &["t"]);
        assert!(matches!(
            hosting(&reg, "t", None),
            Err(ApogeeError::Unavailable(_))
        ));
        assert!(matches!(
            hosting(&reg, "t", Some("b4")),
            Err(ApogeeError::Unavailable(_))
        ));
        assert_eq!(names_of(&hosting(&reg, "%DLQ%g", None).unwrap()).len(), 3);
    }

    #[test]
    fn views_sort_by_store_time_then_broker_then_log_offset() {
        let mut v = vec![
            view(2, "a", 0),
            view(1, "b", 5),
            view(1, "a", 9),
            view(1, "a", 3),
        ];
        sort_views(&mut v);
        let got: Vec<(i64, &str, i64)> = v
            .iter()
            .map(|m| (m.store_timestamp_ms, m.broker_name.as_str(), m.log_offset))
            .collect();
        assert_eq!(got, [(1, "a", 3), (1, "a", 9), (1, "b", 5), (2, "a", 0)]);
    }
}

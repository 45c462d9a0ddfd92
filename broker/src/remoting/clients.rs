//! The remoting clients' table ([`RemotingClients`]) and the requests that keep it:
//! HEART_BEAT (a client's producer and consumer groups with their subscriptions),
//! UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP, and the NOTIFY_CONSUMER_IDS_CHANGED
//! push that makes a group's members rebalance when one joins, leaves, changes its
//! subscriptions or its connection closes.
//!
//! One entry per connection (a client id may reconnect; its closed connection's entry goes
//! when the transport reports the close). A client silent for [`CLIENT_EXPIRY_MS`]
//! (RocketMQ's channel expiry; clients beat every 30 s) no longer counts as a member, and
//! the next heartbeat of anyone sweeps it out, closes its connection and notifies its
//! groups. The table lives in memory only: after a restart clients announce themselves
//! again within one heartbeat period.
//!
//! A consumer group a heartbeat names that the broker does not know is created the way a
//! gRPC receive creates it (`consume.auto_create_groups`); a clustering group's retry topic
//! `%RETRY%<group>` is created with one queue, as RocketMQ's broker does, so its members
//! can pull it.

pub use crate::remoting_state::clients::*;
use crate::services::Broker;
use apogee_proto::auth::acl::{Action, ResourceKind};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::time::now_ms;
use apogee_server::remoting::{Caller, RemotingConnection};
use std::sync::Arc;

/// HEART_BEAT: records the client's groups, creates unknown consumer groups (as a gRPC
/// receive would) and their retry topics, and notifies groups whose members changed.
pub fn heartbeat(
    broker: &Broker,
    conn: &Arc<RemotingConnection>,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let beat: Heartbeat = match serde_json::from_slice(&request.body) {
        Ok(b) => b,
        Err(e) => {
            return RemotingCommand::error(
                request,
                response::INVALID_PARAMETER,
                format!("the heartbeat's body is not HeartbeatData JSON: {e}"),
            )
        }
    };
    if let Err(reason) = check_heartbeat(&beat) {
        return RemotingCommand::error(request, response::INVALID_PARAMETER, reason);
    }
    for c in &beat.consumer_data_set {
        let mut resources = vec![(ResourceKind::Group, c.group_name.as_str())];
        resources.extend(
            c.subscription_data_set
                .iter()
                .filter(|s| !apogee_proto::names::is_system_topic(&s.topic))
                .map(|s| (ResourceKind::Topic, s.topic.as_str())),
        );
        if let Err(e) = caller.authorize(&resources, Action::Sub) {
            return RemotingCommand::refusal(request, &e);
        }
    }
    let now = now_ms();
    for c in &beat.consumer_data_set {
        prepare_group(broker, c, &beat.client_id);
    }
    let clients = broker.remoting_clients();
    let changed = clients.heartbeat(conn, &request.language, request.version, &beat, now);
    if !changed.is_empty() {
        tracing::info!(client = %beat.client_id, peer = %conn.peer(), groups = ?changed,
            "remoting consumer joined or changed its subscriptions");
    }
    clients.notify_changed(&changed);
    if clients.sweep_due(now) {
        let (gone, groups) = clients.expire(now);
        for c in gone {
            c.close();
        }
        clients.notify_changed(&groups);
    }
    RemotingCommand::success(request)
}

fn check_heartbeat(beat: &Heartbeat) -> Result<(), String> {
    if beat.client_id.is_empty() {
        return Err("the heartbeat has no clientID".into());
    }
    let groups = beat.producer_data_set.len() + beat.consumer_data_set.len();
    if groups > MAX_GROUPS_PER_CLIENT {
        return Err(format!(
            "the heartbeat names {groups} groups; at most {MAX_GROUPS_PER_CLIENT} are accepted"
        ));
    }
    for c in &beat.consumer_data_set {
        apogee_proto::limits::validate_group(&c.group_name).map_err(|e| e.to_string())?;
        let n = c.subscription_data_set.len();
        if n > MAX_SUBSCRIPTIONS_PER_GROUP {
            return Err(format!(
                "group {} has {n} subscriptions; at most {MAX_SUBSCRIPTIONS_PER_GROUP} are accepted",
                c.group_name
            ));
        }
    }
    Ok(())
}

/// Client `client_id` joins the consumer group of `c` (`Broker::join_consumer_group`). A
/// group that may not be created is answered as RocketMQ does: the heartbeat succeeds; its
/// pulls are refused.
fn prepare_group(broker: &Broker, c: &ConsumerData, client_id: &str) {
    let topic = c
        .subscription_data_set
        .iter()
        .map(|s| s.topic.as_str())
        .find(|t| !apogee_proto::names::is_system_topic(t))
        .unwrap_or("");
    let clustering = MessageModel::parse(&c.message_model) == MessageModel::Clustering;
    if let Err(e) = broker.join_consumer_group(&c.group_name, topic, client_id, clustering) {
        tracing::debug!(group = %c.group_name, client = client_id, "heartbeat of an unknown group: {e}");
    }
}

/// UNREGISTER_CLIENT (clientID, producerGroup, consumerGroup).
pub fn unregister_client(
    broker: &Broker,
    conn: &Arc<RemotingConnection>,
    request: &RemotingCommand,
) -> RemotingCommand {
    let client_id = match super::args::string(request, "clientID") {
        Ok(c) => c,
        Err(e) => return e.answer(request),
    };
    let group = |name| request.ext(name).filter(|g| !g.is_empty() && *g != "null");
    let clients = broker.remoting_clients();
    let changed = clients.unregister(
        conn,
        client_id,
        group("producerGroup"),
        group("consumerGroup"),
    );
    if !changed.is_empty() {
        tracing::info!(client = client_id, groups = ?changed, "remoting consumer left");
    }
    clients.notify_changed(&changed);
    RemotingCommand::success(request)
}

/// GET_CONSUMER_LIST_BY_GROUP (consumerGroup): the ids of its live remoting members.
pub fn consumer_list_by_group(
    broker: &Broker,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let group = match super::args::string(request, "consumerGroup") {
        Ok(g) => g,
        Err(e) => return e.answer(request),
    };
    if let Err(e) = caller.authorize(&[(ResourceKind::Group, group)], Action::Sub) {
        return RemotingCommand::refusal(request, &e);
    }
    let ids: Vec<String> = broker
        .remoting_clients()
        .consumers_of(group)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if ids.is_empty() {
        // RocketMQ answers SYSTEM_ERROR when the group has no member here.
        return RemotingCommand::error(
            request,
            response::SYSTEM_ERROR,
            format!("no consumer of group {group} is connected to this broker"),
        );
    }
    let body = serde_json::json!({ "consumerIdList": ids }).to_string();
    RemotingCommand::success(request).with_body(body)
}

/// `conn` closed: its client leaves its groups, whose other members rebalance.
pub fn connection_closed(broker: &Broker, conn: &Arc<RemotingConnection>) {
    let clients = broker.remoting_clients();
    let changed = clients.closed(conn.id());
    if !changed.is_empty() {
        tracing::info!(peer = %conn.peer(), groups = ?changed, "remoting consumer's connection closed");
    }
    clients.notify_changed(&changed);
}

#[cfg(test)]
#[path = "clients_tests.rs"]
pub(crate) mod tests;

//! The operations part of the Admin service on a NameServer: a group's offset
//! reset fanned out to every broker group hosting the topic (a group that does
//! not host it answers NOT_FOUND and is left out), and the clients list merged
//! from every master's sessions and this NameServer's own. A broker's config
//! is asked of the broker itself.

use super::admin_groups::{union_into, HERE};
use super::brokers::BrokerChannels;
use super::fan_out::{every_master, fan_out};
use crate::registry::Registry;
use apogee_proto::cluster::{
    ConnectedClient, ListClientsRequest, ListClientsResponse, ResetGroupOffsetRequest,
    ResetGroupOffsetResponse,
};
use apogee_proto::{limits, ApogeeError};
use apogee_server::telemetry::Sessions;
use std::collections::BTreeMap;
use tonic::{Code, Status};

pub async fn reset_offset(
    registry: &Registry,
    channels: &BrokerChannels,
    req: ResetGroupOffsetRequest,
) -> Result<ResetGroupOffsetResponse, Status> {
    limits::validate_group(&req.group)?;
    limits::validate_topic(&req.topic)?;
    let what = format!("ResetGroupOffset of {} on {}", req.group, req.topic);
    let found = fan_out(channels, every_master(registry), what, |mut c| {
        let r = req.clone();
        async move { c.reset_group_offset(r).await }
    })
    .await
    .tolerating(Code::NotFound)
    .answers()?;
    if found.is_empty() {
        return Err(ApogeeError::TopicNotFound(req.topic).into());
    }
    let mut queues: Vec<_> = found.into_iter().flat_map(|(_, r)| r.queues).collect();
    queues.sort_by(|a, b| (&a.broker_name, a.queue_id).cmp(&(&b.broker_name, b.queue_id)));
    Ok(ResetGroupOffsetResponse {
        queues,
        executed: req.execute,
    })
}

pub async fn list_clients(
    registry: &Registry,
    channels: &BrokerChannels,
    sessions: &Sessions,
) -> Result<ListClientsResponse, Status> {
    let found = fan_out(
        channels,
        every_master(registry),
        "ListClients",
        |mut c| async move { c.list_clients(ListClientsRequest {}).await },
    )
    .await
    .answers()?;
    let mut clients: BTreeMap<String, ConnectedClient> = BTreeMap::new();
    let local = sessions.list();
    let all = found
        .into_iter()
        .flat_map(|(_, r)| r.clients)
        .chain(local.iter().map(|s| s.to_connected_client(HERE)));
    for c in all {
        match clients.get_mut(&c.client_id) {
            Some(known) => {
                union_into(&mut known.connected_to, c.connected_to);
                union_into(&mut known.topics, c.topics);
                if known.address.is_empty() {
                    known.address = c.address;
                }
            }
            None => {
                clients.insert(c.client_id.clone(), c);
            }
        }
    }
    Ok(ListClientsResponse {
        clients: clients.into_values().collect(),
    })
}

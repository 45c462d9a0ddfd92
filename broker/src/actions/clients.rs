//! What clients tell the broker about themselves, whatever the transport: that a client is
//! alive or gone, which consumer group it joins, where a topic's queues are, and a
//! scheduled message it takes back.

use crate::services::Broker;
use apogee_proto::group::GroupConfig;
use apogee_proto::time::now_ms;
use apogee_proto::{names, v2, ApogeeError};
use std::sync::Arc;

impl Broker {
    /// The client `client_id` was heard from: its auto-renewed deliveries stay its own.
    pub fn client_seen(&self, client_id: &str) {
        self.consume().clients().seen(client_id, now_ms());
    }

    /// The client `client_id` said goodbye: its auto-renewed deliveries are not renewed any
    /// more (they come back when their invisible time ends), and it leaves its lite
    /// subscriptions.
    pub fn client_gone(&self, client_id: &str) {
        self.consume().clients().gone(client_id, now_ms());
        self.lite().client_gone(client_id);
    }

    /// The config of consumer group `group`: its own, the defaults of a group its first
    /// receive will create, or the refusal of an unknown one (`consume.auto_create_groups`).
    pub fn consumer_group(&self, group: &str) -> Result<Option<Arc<GroupConfig>>, ApogeeError> {
        self.groups().lookup(group)
    }

    /// Client `client_id` joins consumer group `group`, which subscribes to `topic` (its
    /// first topic of clients, or none): an unknown group is created as a receive would
    /// create it, and a clustering group gets its retry topic `%RETRY%<group>` with one
    /// queue, as RocketMQ's broker does, so its members can pull it. A group that may not be
    /// created is refused here; the caller decides what its client is answered.
    pub fn join_consumer_group(
        &self,
        group: &str,
        topic: &str,
        client_id: &str,
        clustering: bool,
    ) -> Result<(), ApogeeError> {
        self.groups()
            .resolve_for_receive(group, topic, client_id, now_ms())?;
        if clustering {
            let retry = names::retry_topic(group);
            if let Err(e) = self.topics().ensure_system_topic(&retry, 1) {
                tracing::warn!(group, "creating the retry topic {retry}: {e}");
            }
        }
        Ok(())
    }

    /// Takes back the scheduled message of `topic` whose send answered `recall_handle`,
    /// before it is delivered; answers its message id.
    pub async fn recall(&self, topic: &str, recall_handle: &str) -> Result<String, ApogeeError> {
        self.schedule().recall(topic, recall_handle).await
    }

    /// A topic's route, as the NameServers answer it.
    pub async fn route(&self, request: v2::QueryRouteRequest) -> v2::QueryRouteResponse {
        self.nameservers().query_route(request).await
    }

    /// The queues a consumer group's member reads, as the NameServers answer it.
    pub async fn assignment(
        &self,
        request: v2::QueryAssignmentRequest,
    ) -> v2::QueryAssignmentResponse {
        self.nameservers().query_assignment(request).await
    }
}

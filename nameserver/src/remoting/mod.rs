//! The NameServer's answers to RocketMQ remoting clients (4.x producers, consumers and
//! `mqadmin`-style tools), read from the same broker table as the gRPC services:
//!
//! - GET_ROUTEINFO_BY_TOPIC (`topic`): the topic's route ([`route`]), or TOPIC_NOT_EXIST.
//! - GET_BROKER_CLUSTER_INFO: every broker group with its members, and each cluster's
//!   broker names.
//! - GET_ALL_TOPIC_LIST_FROM_NAMESERVER, GET_TOPICS_BY_CLUSTER (`cluster`): topic names,
//!   with the retry topic `%RETRY%<group>` of every consumer group (how RocketMQ's tools
//!   find the groups), which [`route`] routes to the brokers holding the group.
//! - GET_KV_CONFIG: QUERY_NOT_FOUND (Apogee keeps no KV config; clients ask it for
//!   `ORDER_TOPIC_CONFIG` and go on without).
//! - DELETE_TOPIC_IN_NAMESRV (`topic`, `clusterName`): the topic forgotten ([`topic_delete`],
//!   an admin's only).
//! - any other code: REQUEST_CODE_NOT_SUPPORTED, naming the code.
//!
//! These are reads: they need the caller authenticated (by the transport) and nothing more,
//! as gRPC's QueryRoute. The bodies are RocketMQ's JSON ([`json`]).

/// The JSON bodies (shared with apogee-client, which reads routes back).
pub use apogee_proto::remoting::route as json;
pub mod route;
pub mod topic_delete;

use crate::registry::Registry;
use apogee_proto::remoting::codes::{request as code, response};
use apogee_proto::remoting::RemotingCommand;
use apogee_server::remoting::{Caller, RemotingConnection, RemotingFuture, RemotingService};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The NameServer's [`RemotingService`].
pub struct NameServerRemoting {
    registry: Arc<Registry>,
}

impl NameServerRemoting {
    pub fn new(registry: Arc<Registry>) -> NameServerRemoting {
        NameServerRemoting { registry }
    }

    /// The answer to `request` (none of the requests waits on anything).
    pub fn answer(&self, request: &RemotingCommand) -> RemotingCommand {
        match request.code {
            code::GET_ROUTEINFO_BY_TOPIC => self.topic_route(request),
            code::GET_BROKER_CLUSTER_INFO => self.cluster_info(request),
            code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => self.topic_list(request, None),
            code::GET_TOPICS_BY_CLUSTER => match request.ext("cluster") {
                Some(cluster) => self.topic_list(request, Some(cluster)),
                None => missing(request, "cluster"),
            },
            code::GET_KV_CONFIG => RemotingCommand::error(
                request,
                response::QUERY_NOT_FOUND,
                format!(
                    "no KV config {}/{} (Apogee keeps none)",
                    request.ext("namespace").unwrap_or(""),
                    request.ext("key").unwrap_or("")
                ),
            ),
            other => RemotingCommand::error(
                request,
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!(
                    "request code {other} is not supported by the Apogee NameServer \
                     (docs/COMPATIBILITY.md)"
                ),
            ),
        }
    }

    fn topic_route(&self, request: &RemotingCommand) -> RemotingCommand {
        let Some(topic) = request.ext("topic") else {
            return missing(request, "topic");
        };
        match route::topic_route(&self.registry, topic) {
            Some(route) => RemotingCommand::success(request).with_body(route.to_json()),
            None => {
                tracing::debug!(topic, "remoting route of an unknown topic");
                RemotingCommand::error(
                    request,
                    response::TOPIC_NOT_EXIST,
                    format!("No topic route info in name server for the topic: {topic}"),
                )
            }
        }
    }

    fn cluster_info(&self, request: &RemotingCommand) -> RemotingCommand {
        let groups: Vec<json::BrokerData> = self
            .registry
            .cluster_info()
            .iter()
            .filter_map(route::broker_data)
            .collect();
        RemotingCommand::success(request).with_body(json::cluster_info(&groups))
    }

    /// Every listed topic, or those a group of `cluster` hosts.
    fn topic_list(&self, request: &RemotingCommand, cluster: Option<&str>) -> RemotingCommand {
        let brokers: Option<BTreeSet<String>> = cluster.map(|cluster| {
            self.registry
                .cluster_info()
                .into_iter()
                .filter(|g| g.cluster_name == cluster)
                .map(|g| g.broker_name)
                .collect()
        });
        let topics: Vec<String> = self
            .registry
            .topics()
            .into_iter()
            .filter(|(name, _)| route::listed(name))
            .filter(|(_, listing)| {
                brokers
                    .as_ref()
                    .is_none_or(|brokers| listing.broker_names.iter().any(|b| brokers.contains(b)))
            })
            .map(|(name, _)| name)
            .collect();
        let mut topics: BTreeSet<String> = topics.into_iter().collect();
        topics.extend(route::group_retry_topics(&self.registry, brokers.as_ref()));
        let topics: Vec<String> = topics.into_iter().collect();
        RemotingCommand::success(request).with_body(json::topic_list(&topics))
    }
}

/// The answer to a request that lacks a field it needs.
fn missing(request: &RemotingCommand, field: &str) -> RemotingCommand {
    RemotingCommand::error(
        request,
        response::INVALID_PARAMETER,
        format!("the request lacks the field {field}"),
    )
}

impl RemotingService for NameServerRemoting {
    fn call(
        &self,
        _conn: &Arc<RemotingConnection>,
        caller: Caller,
        request: RemotingCommand,
    ) -> RemotingFuture {
        if request.code == code::DELETE_TOPIC_IN_NAMESRV {
            let answer = topic_delete::delete_topic(&self.registry, &caller, &request);
            return Box::pin(async move { Some(answer) });
        }
        let answer = self.answer(&request);
        Box::pin(async move { Some(answer) })
    }
}

#[cfg(test)]
mod tests;

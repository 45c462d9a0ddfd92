//! Topics through the NameServer's Admin service (created on broker groups,
//! then waited for in every running NameServer's routes) and the `apogee`
//! CLI pointed at the cluster.

use super::Cluster;
use crate::cli::{self, CliOutput};
use crate::rpc;
use apogee_proto::cluster::{CreateTopicRequest, GetRouteRequest, TopicConfig};
use apogee_proto::v2;
use std::time::{Duration, Instant};

impl Cluster {
    /// Creates a topic on every broker group through the NameServer's Admin
    /// service and waits until its route lists every group's queues.
    pub async fn create_topic(&self, topic: &str, queues: i32) -> Vec<String> {
        self.create_topic_on(topic, queues, &[]).await
    }

    /// Like [`Cluster::create_topic`], restricted to some broker groups.
    pub async fn create_topic_on(&self, topic: &str, queues: i32, brokers: &[&str]) -> Vec<String> {
        self.create_typed_topic_on(topic, queues, &[], brokers)
            .await
    }

    /// Creates a topic accepting `types` (empty: NORMAL) on every broker group.
    pub async fn create_typed_topic(
        &self,
        topic: &str,
        queues: i32,
        types: &[v2::MessageType],
    ) -> Vec<String> {
        self.create_typed_topic_on(topic, queues, types, &[]).await
    }

    async fn create_typed_topic_on(
        &self,
        topic: &str,
        queues: i32,
        types: &[v2::MessageType],
        brokers: &[&str],
    ) -> Vec<String> {
        let spec = TopicSpec {
            topic,
            queues,
            types,
            brokers,
        };
        let tls = self.client_tls();
        create_and_wait(self.admin_ns(), &self.live_ns_addrs(), tls.as_ref(), spec).await
    }

    /// Runs the `apogee` CLI against this cluster's (first running) NameServer.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli::run(&self.cli_args(args))
    }

    /// Starts the `apogee` CLI against this cluster without waiting for it (a consumer left
    /// running).
    pub fn cli_spawn(&self, args: &[&str]) -> cli::CliProcess {
        cli::spawn(&self.cli_args(args))
    }

    /// `args` after the flags that point the CLI at this cluster (NameServer, TLS, the
    /// admin's credentials).
    fn cli_args(&self, args: &[&str]) -> Vec<String> {
        let mut full = vec!["--nameserver".to_string(), self.admin_ns().to_string()];
        if let Some(certs) = self.certs() {
            full.extend([
                "--tls".to_string(),
                "--tls-ca-file".to_string(),
                certs.ca_file.display().to_string(),
            ]);
        }
        if self.authenticates() {
            full.extend(
                [
                    "--access-key",
                    rpc::ADMIN_ACCESS_KEY,
                    "--secret-key",
                    rpc::ADMIN_SECRET_KEY,
                ]
                .map(String::from),
            );
        }
        full.extend(args.iter().map(|s| s.to_string()));
        full
    }
}

/// A topic to create: its name, queues, accepted types (empty: NORMAL) and broker groups
/// (empty: every group).
pub(crate) struct TopicSpec<'a> {
    pub topic: &'a str,
    pub queues: i32,
    pub types: &'a [v2::MessageType],
    pub brokers: &'a [&'a str],
}

/// Creates `spec` through the Admin service of NameServer `admin_ns`, then waits until every
/// NameServer of `live_ns` routes it (the others learn it when the brokers register their new
/// topic); the broker groups it was placed on.
pub(crate) async fn create_and_wait(
    admin_ns: &str,
    live_ns: &[String],
    tls: Option<&apogee_client::ClientTls>,
    spec: TopicSpec<'_>,
) -> Vec<String> {
    let TopicSpec {
        topic,
        queues,
        types,
        brokers,
    } = spec;
    let req = CreateTopicRequest {
        topic: Some(TopicConfig {
            name: topic.into(),
            queue_count: queues,
            permission: 0,
            message_types: types.iter().map(|&t| t as i32).collect(),
            lite_expire_after_secs: 0,
        }),
        broker_names: brokers.iter().map(|b| b.to_string()).collect(),
    };
    let created = rpc::admin_with(admin_ns, tls)
        .create_topic(rpc::signed(req))
        .await
        .unwrap_or_else(|e| panic!("CreateTopic {topic}: {e}"))
        .into_inner()
        .broker_names;
    assert!(
        !created.is_empty(),
        "CreateTopic {topic} placed it on no broker group"
    );
    for ns in live_ns {
        wait_route(ns, tls, topic, queues, &created).await;
    }
    created
}

/// Waits until `ns` routes `topic` to every group of `created` with `queues` queues.
pub(crate) async fn wait_route(
    ns: &str,
    tls: Option<&apogee_client::ClientTls>,
    topic: &str,
    queues: i32,
    created: &[String],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut registry = rpc::registry_with(ns, tls);
    loop {
        let route = registry
            .get_route(rpc::signed(GetRouteRequest {
                topic: topic.into(),
            }))
            .await
            .map(|r| r.into_inner());
        let ready = route.as_ref().is_ok_and(|r| {
            created.iter().all(|b| {
                r.placements.iter().any(|p| {
                    p.group.as_ref().is_some_and(|g| &g.broker_name == b)
                        && p.config.as_ref().is_some_and(|c| c.queue_count == queues)
                })
            })
        });
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nameserver {ns}: route of {topic} never listed {created:?}: {route:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

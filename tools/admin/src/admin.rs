//! The admin library behind `apogee topic ...` and `apogee cluster ...`:
//! typed calls to a NameServer's Registry and Admin services, returning
//! serializable result rows. The transaction calls (`apogee txn ...`) live
//! in [`crate::txn`].

use crate::error::{ToolError, ToolResult};
use crate::spelling::Spelled;
use crate::views::info;
pub use crate::views::*;
use apogee_client::transport::request;
use apogee_client::{ClientConfig, FailoverChannel, Unreachable};
use apogee_proto::cluster::{self, admin_client::AdminClient, registry_client::RegistryClient};
use apogee_proto::v2::{MessageType, Permission};
use apogee_proto::{limits, names, time::now_ms};
use std::time::Duration;

/// The channel every admin call goes through: to the first NameServer of `--nameserver`
/// that accepts a connection ([`FailoverChannel`]).
pub type NameServerChannel = FailoverChannel;

/// Queue permission as the CLI spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    Rw,
    R,
    W,
}

impl Spelled for Perm {
    const SPELLINGS: &'static [(Perm, &'static str, &'static str)] =
        &[(Perm::Rw, "rw", ""), (Perm::R, "r", ""), (Perm::W, "w", "")];
}

impl Perm {
    /// The permission named as the CLI spells it (`rw`, `r`, `w`; any case).
    pub fn parse(name: &str) -> Option<Perm> {
        Perm::from_name(name)
    }

    pub fn to_proto(self) -> Permission {
        match self {
            Perm::Rw => Permission::ReadWrite,
            Perm::R => Permission::Read,
            Perm::W => Permission::Write,
        }
    }
}

/// Message types a topic accepts, as the CLI spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicType {
    Normal,
    Fifo,
    Delay,
    Transaction,
    /// The parent of lite topics (LITE messages with a lite topic); one broker group only.
    Lite,
    /// PRIORITY messages: priority p goes to queue min(p, queues - 1), the highest served
    /// first.
    Priority,
    /// Normal, delay and transaction messages.
    Mixed,
}

impl Spelled for TopicType {
    const SPELLINGS: &'static [(TopicType, &'static str, &'static str)] = &[
        (TopicType::Normal, "normal", ""),
        (TopicType::Fifo, "fifo", ""),
        (TopicType::Delay, "delay", ""),
        (TopicType::Transaction, "transaction", ""),
        (
            TopicType::Lite,
            "lite",
            "The parent of lite topics (LITE messages with a lite topic); one broker group only",
        ),
        (
            TopicType::Priority,
            "priority",
            "PRIORITY messages: priority p goes to queue min(p, queues - 1), the highest served \
             first",
        ),
        (
            TopicType::Mixed,
            "mixed",
            "Normal, delay and transaction messages",
        ),
    ];
}

impl TopicType {
    /// The type named as the CLI spells it (`normal`, `fifo` ...; any case).
    pub fn parse(name: &str) -> Option<TopicType> {
        TopicType::from_name(name)
    }

    /// Every type's name, upper case (what a form offers), in declaration order.
    pub fn names() -> Vec<String> {
        TopicType::SPELLINGS
            .iter()
            .map(|(_, name, _)| name.to_ascii_uppercase())
            .collect()
    }

    /// The protocol message types this name stands for.
    pub fn to_proto(self) -> &'static [MessageType] {
        match self {
            TopicType::Normal => &[MessageType::Normal],
            TopicType::Fifo => &[MessageType::Fifo],
            TopicType::Delay => &[MessageType::Delay],
            TopicType::Transaction => &[MessageType::Transaction],
            TopicType::Lite => &[MessageType::Lite],
            TopicType::Priority => &[MessageType::Priority],
            TopicType::Mixed => &[
                MessageType::Normal,
                MessageType::Delay,
                MessageType::Transaction,
            ],
        }
    }
}

pub(crate) fn check_topic_name(name: &str) -> ToolResult<()> {
    limits::validate_topic(name).map_err(|e| ToolError::Usage(e.to_string()))
}

/// A connection to the Registry and Admin services of a NameServer: the first of the
/// given ones that accepts a connection. One that cannot be reached is skipped; an answer,
/// whatever its status, is the answer. A clone shares the connection (the web console makes
/// one per request, signed with the signed-in user's credentials).
#[derive(Clone)]
pub struct Admin {
    channel: NameServerChannel,
    pub(crate) config: ClientConfig,
    registry: RegistryClient<NameServerChannel>,
    pub(crate) admin: AdminClient<NameServerChannel>,
}

impl Admin {
    /// Prepares a connection to `nameservers` (`host:port`, several separated by `;` or
    /// `,`, tried in that order); it is made on the first call.
    pub fn connect(
        nameservers: &str,
        timeout: Duration,
        tls: Option<apogee_client::ClientTls>,
    ) -> ToolResult<Admin> {
        let mut config = ClientConfig::new(nameservers).with_request_timeout(timeout);
        config.tls = tls;
        if config.nameservers.is_empty() {
            return Err(ToolError::Usage("no nameserver address given".into()));
        }
        let channel = FailoverChannel::new(&config.nameservers, timeout, config.tls.as_ref())
            .map_err(|e| ToolError::Usage(format!("--nameserver: {e}")))?;
        Ok(Admin {
            registry: RegistryClient::new(channel.clone()),
            admin: AdminClient::new(channel.clone()),
            channel,
            config,
        })
    }

    /// Signs every call with `credentials` (none: unsigned).
    pub fn with_credentials(
        mut self,
        credentials: Option<apogee_proto::auth::Credentials>,
    ) -> Self {
        self.config.credentials = credentials;
        self
    }

    /// The NameServer's Admin service, for a caller making a call this library does not
    /// offer (sign it with [`Admin::req`], map its failure with [`Admin::err`]).
    pub fn admin_service(&self) -> AdminClient<NameServerChannel> {
        self.admin.clone()
    }

    /// `message` as a request signed with this connection's credentials.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        request(&self.config, message, self.config.request_timeout)
    }

    /// Maps a failed call's status to the CLI's error, naming the NameServer that answered
    /// (or, when none could be reached, each one and why).
    pub fn err(&self, topic: Option<&str>) -> impl Fn(tonic::Status) -> ToolError + '_ {
        let topic = topic.map(str::to_string);
        move |s| match Unreachable::of(&s) {
            Some(unreachable) => ToolError::Server(unreachable.to_string()),
            None => ToolError::from_status(s, &self.channel.current(), topic.as_deref()),
        }
    }

    /// Creates a topic on the given broker groups (all when empty); a LITE topic's lite
    /// topics expire after `lite_expire` without a new message (None: never).
    pub async fn create_topic(
        &self,
        name: &str,
        queues: i32,
        brokers: Vec<String>,
        types: &[TopicType],
        lite_expire: Option<Duration>,
    ) -> ToolResult<TopicInfo> {
        check_topic_name(name)?;
        if names::is_system_topic(name) {
            return Err(ToolError::Usage(format!(
                "{name} is a reserved system topic name"
            )));
        }
        if !(1..=limits::MAX_QUEUES_PER_TOPIC).contains(&queues) {
            return Err(ToolError::Usage(format!(
                "queues must be between 1 and {}",
                limits::MAX_QUEUES_PER_TOPIC
            )));
        }
        let mut message_types: Vec<i32> = types
            .iter()
            .flat_map(|t| t.to_proto())
            .map(|m| *m as i32)
            .collect();
        message_types.sort_unstable();
        message_types.dedup();
        let lite = message_types.contains(&(MessageType::Lite as i32));
        if lite_expire.is_some() && !lite {
            return Err(ToolError::Usage(
                "--lite-expire applies to a lite topic: add --type lite".into(),
            ));
        }
        let topic = cluster::TopicConfig {
            name: name.to_string(),
            queue_count: queues,
            permission: Permission::ReadWrite as i32,
            message_types,
            lite_expire_after_secs: lite_expire.map_or(0, |d| d.as_secs().max(1)),
        };
        let resp = self
            .admin
            .clone()
            .create_topic(self.req(cluster::CreateTopicRequest {
                topic: Some(topic.clone()),
                broker_names: brokers,
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(info(&topic, resp.broker_names))
    }

    /// Changes a topic's queue count and/or permission, keeping the rest
    /// of its current configuration.
    pub async fn update_topic(
        &self,
        name: &str,
        queues: Option<i32>,
        perm: Option<Perm>,
    ) -> ToolResult<TopicInfo> {
        check_topic_name(name)?;
        let route = self.get_route(name).await?;
        let mut topic = route
            .placements
            .iter()
            .find_map(|p| p.config.clone())
            .ok_or_else(|| ToolError::Server(format!("topic not found: {name}")))?;
        topic.name = name.to_string();
        if let Some(q) = queues {
            topic.queue_count = q;
        }
        if let Some(p) = perm {
            topic.permission = p.to_proto() as i32;
        }
        let resp = self
            .admin
            .clone()
            .update_topic(self.req(cluster::UpdateTopicRequest {
                topic: Some(topic.clone()),
                broker_names: Vec::new(),
            }))
            .await
            .map_err(self.err(Some(name)))?
            .into_inner();
        Ok(info(&topic, resp.broker_names))
    }

    /// Deletes a topic from every broker group.
    pub async fn delete_topic(&self, name: &str) -> ToolResult<TopicDeleted> {
        check_topic_name(name)?;
        let resp = self
            .admin
            .clone()
            .delete_topic(self.req(cluster::DeleteTopicRequest {
                topic: name.to_string(),
                broker_names: Vec::new(),
            }))
            .await
            .map_err(self.err(Some(name)))?
            .into_inner();
        Ok(TopicDeleted {
            topic: name.to_string(),
            brokers: resp.broker_names,
        })
    }

    /// Every topic (internal ones too with `include_system`), sorted by name.
    pub async fn list_topics(&self, include_system: bool) -> ToolResult<Vec<TopicInfo>> {
        let resp = self
            .admin
            .clone()
            .list_topics(self.req(cluster::ListTopicsRequest { include_system }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        let mut rows: Vec<TopicInfo> = resp
            .topics
            .into_iter()
            .map(|t| info(&t.config.unwrap_or_default(), t.broker_names))
            .collect();
        rows.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(rows)
    }

    async fn get_route(&self, name: &str) -> ToolResult<cluster::GetRouteResponse> {
        let resp = self
            .registry
            .clone()
            .get_route(self.req(cluster::GetRouteRequest {
                topic: name.to_string(),
            }))
            .await
            .map_err(self.err(Some(name)))?
            .into_inner();
        if resp.placements.is_empty() {
            return Err(ToolError::Server(format!("topic not found: {name}")));
        }
        Ok(resp)
    }

    /// The broker groups hosting a topic.
    pub async fn topic_route(&self, name: &str) -> ToolResult<Vec<RouteRow>> {
        check_topic_name(name)?;
        Ok(route_rows(&self.get_route(name).await?))
    }

    /// The NameServer's broker groups and their members.
    pub async fn get_cluster_info(&self) -> ToolResult<cluster::GetClusterInfoResponse> {
        Ok(self
            .registry
            .clone()
            .get_cluster_info(self.req(cluster::GetClusterInfoRequest {}))
            .await
            .map_err(self.err(None))?
            .into_inner())
    }

    /// Every registered broker process, as the NameServer knows it (the replication view
    /// that asks each broker too is [`Admin::cluster_list`]).
    pub async fn cluster_info(&self) -> ToolResult<Vec<BrokerRow>> {
        Ok(broker_rows(&self.get_cluster_info().await?, now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_topics_accept_normal_delay_and_transaction() {
        assert_eq!(
            TopicType::Mixed.to_proto(),
            &[
                MessageType::Normal,
                MessageType::Delay,
                MessageType::Transaction
            ]
        );
        assert_eq!(TopicType::Fifo.to_proto(), &[MessageType::Fifo]);
    }

    #[test]
    fn types_and_permissions_parse_from_their_names_in_any_case() {
        assert_eq!(TopicType::parse("FIFO"), Some(TopicType::Fifo));
        assert_eq!(TopicType::parse(" mixed "), Some(TopicType::Mixed));
        assert_eq!(TopicType::parse("fifo2"), None);
        assert_eq!(
            TopicType::names(),
            [
                "NORMAL",
                "FIFO",
                "DELAY",
                "TRANSACTION",
                "LITE",
                "PRIORITY",
                "MIXED"
            ]
        );
        assert_eq!(Perm::parse("RW"), Some(Perm::Rw));
        assert_eq!(Perm::parse("x"), None);
    }
}

//! The server side of Telemetry streams, shared by the NameServer and the
//! broker, and the registry of the live sessions.
//!
//! Every official client opens Telemetry first and sends its Settings; the
//! server answers each Settings with [`settings_reply`] and keeps the stream
//! open until the client hangs up or the server closes (`closing` turns
//! true), so a graceful shutdown never waits on clients.
//!
//! [`Sessions`] owns the live streams: client id -> the stream's sender, the
//! client's kind, the topics it declared (or has sent to) and its group. The
//! broker uses it to push commands to a client, such as the
//! RecoverOrphanedTransactionCommand of a transaction check-back, which the
//! RocketMQ 5 protocol addresses by topic (it has no producer group). The
//! admin's group description lists the live clients of a consumer group.
//!
//! A consumer's Settings reply carries its group's config, found through the
//! server's [`GroupLookup`].

use crate::settings::{language_of, settings_reply, ServerLimits};
use apogee_proto::error::ok_status;
use apogee_proto::group::GroupConfig;
use apogee_proto::v2::{
    self, settings::PubSub, telemetry_command::Command, ClientType, TelemetryCommand,
};
use apogee_proto::ApogeeError;
use parking_lot::RwLock;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument;

/// The sending half of a Telemetry stream.
pub type Outbound = mpsc::Sender<Result<TelemetryCommand, Status>>;

/// What a live session's client declared about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub client_id: String,
    pub kind: ClientType,
    /// Topics declared in its Settings (producers) or subscribed to
    /// (consumers), plus the topics it has sent to.
    pub topics: BTreeSet<String>,
    /// The consumer group, for consumers.
    pub group: Option<String>,
    /// The client's language and version, from its user agent.
    pub language: v2::Language,
    pub version: String,
    /// The remote address (ip:port) of its Telemetry stream ("" when unknown).
    pub address: String,
    /// A consumer's subscriptions with their filters, as its Settings declare them (what
    /// RocketMQ's tools list of a group's connections).
    pub subscriptions: Vec<SessionSubscription>,
}

/// One topic a consumer subscribes to over gRPC, with its filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSubscription {
    pub topic: String,
    /// The filter's text (`*`, `a || b`, or a SQL92 expression).
    pub expression: String,
    /// A SQL92 filter; otherwise a tag filter.
    pub sql: bool,
}

impl SessionInfo {
    /// As the clients list shows it; `at` names the server its session is open with.
    pub fn to_connected_client(&self, at: &str) -> apogee_proto::cluster::ConnectedClient {
        apogee_proto::cluster::ConnectedClient {
            client_id: self.client_id.clone(),
            kind: match self.kind {
                ClientType::Producer => "producer",
                ClientType::PushConsumer => "push_consumer",
                ClientType::SimpleConsumer => "simple_consumer",
                ClientType::PullConsumer => "pull_consumer",
                _ => "unspecified",
            }
            .to_string(),
            language: match self.language {
                v2::Language::Unspecified => String::new(),
                l => l.as_str_name().to_string(),
            },
            version: self.version.clone(),
            address: self.address.clone(),
            group: self.group.clone().unwrap_or_default(),
            topics: self.topics.iter().cloned().collect(),
            connected_to: vec![at.to_string()],
        }
    }

    /// As a group description lists the client; `at` names the server its session is open with.
    pub fn to_group_client(&self, at: &str) -> apogee_proto::cluster::GroupClient {
        apogee_proto::cluster::GroupClient {
            client_id: self.client_id.clone(),
            language: match self.language {
                v2::Language::Unspecified => String::new(),
                l => l.as_str_name().to_string(),
            },
            version: self.version.clone(),
            topics: self.topics.iter().cloned().collect(),
            connected_to: vec![at.to_string()],
        }
    }
}

/// How a server finds a consumer group's config for the Settings reply:
/// `Ok(None)` when it does not know the group (the reply carries the
/// defaults), an error when the group may not consume.
pub type GroupLookup =
    Arc<dyn Fn(&str) -> Result<Option<Arc<GroupConfig>>, ApogeeError> + Send + Sync>;

/// A [`GroupLookup`] that knows no group.
pub fn no_groups() -> GroupLookup {
    Arc::new(|_| Ok(None))
}

struct Entry {
    /// Tells this stream from a later one of the same client.
    serial: u64,
    info: SessionInfo,
    outbound: Outbound,
}

/// The live Telemetry sessions of one server, by client id (a client has one
/// stream per server; a newer stream replaces an older one).
#[derive(Default)]
pub struct Sessions {
    by_client: RwLock<HashMap<String, Entry>>,
    serials: AtomicU64,
    /// Most sessions from one client IP address (0: no cap).
    max_per_address: usize,
}

impl Sessions {
    pub fn new() -> Arc<Sessions> {
        Arc::new(Sessions::default())
    }

    /// Sessions that admit at most `max_per_address` sessions from one client IP address
    /// (0: no cap); a client over it is refused with TOO_MANY_REQUESTS.
    pub fn with_cap(max_per_address: usize) -> Arc<Sessions> {
        Arc::new(Sessions {
            max_per_address,
            ..Sessions::default()
        })
    }

    /// A serial for a new stream (see [`update`](Self::update)).
    pub fn next_serial(&self) -> u64 {
        self.serials.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers (or refreshes, on a later Settings) the stream `serial` of `client_id`.
    pub fn update(
        &self,
        serial: u64,
        settings: &v2::Settings,
        client_id: &str,
        address: &str,
        outbound: &Outbound,
    ) -> Result<(), ApogeeError> {
        let kind = settings
            .client_type
            .and_then(|t| ClientType::try_from(t).ok())
            .unwrap_or(ClientType::Unspecified);
        let subscriptions: Vec<SessionSubscription> = match &settings.pub_sub {
            Some(PubSub::Subscription(s)) => s
                .subscriptions
                .iter()
                .filter_map(|e| {
                    let topic = e.topic.as_ref()?.name.clone();
                    let filter = e.expression.clone().unwrap_or_default();
                    Some(SessionSubscription {
                        topic,
                        expression: filter.expression,
                        sql: filter.r#type == v2::FilterType::Sql as i32,
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        let (declared, group): (BTreeSet<String>, _) = match &settings.pub_sub {
            Some(PubSub::Publishing(p)) => {
                (p.topics.iter().map(|t| t.name.clone()).collect(), None)
            }
            Some(PubSub::Subscription(s)) => (
                s.subscriptions
                    .iter()
                    .filter_map(|e| e.topic.as_ref().map(|t| t.name.clone()))
                    .collect(),
                s.group.as_ref().map(|g| g.name.clone()),
            ),
            None => (BTreeSet::new(), None),
        };
        let mut map = self.by_client.write();
        if self.max_per_address > 0 && !map.contains_key(client_id) {
            let ip = ip_of(address);
            let from_there = map
                .values()
                .filter(|e| ip_of(&e.info.address) == ip)
                .count();
            if !ip.is_empty() && from_there >= self.max_per_address {
                return Err(ApogeeError::TooManyRequests(format!(
                    "{ip} holds its maximum of {} Telemetry sessions",
                    self.max_per_address
                )));
            }
        }
        let topics = match map.get(client_id) {
            // Keep the topics it has sent to over a settings update.
            Some(e) if e.serial == serial => e.info.topics.union(&declared).cloned().collect(),
            _ => declared,
        };
        map.insert(
            client_id.to_string(),
            Entry {
                serial,
                info: SessionInfo {
                    client_id: client_id.to_string(),
                    kind,
                    topics,
                    group,
                    language: language_of(settings),
                    version: settings
                        .user_agent
                        .as_ref()
                        .map(|ua| ua.version.clone())
                        .unwrap_or_default(),
                    address: address.to_string(),
                    subscriptions,
                },
                outbound: outbound.clone(),
            },
        );
        Ok(())
    }

    fn remove(&self, client_id: &str, serial: u64) {
        let mut map = self.by_client.write();
        if map.get(client_id).is_some_and(|e| e.serial == serial) {
            map.remove(client_id);
        }
    }

    /// Whether `client_id` has a live session here.
    pub fn contains(&self, client_id: &str) -> bool {
        self.by_client.read().contains_key(client_id)
    }

    /// Records that `client_id` sent to `topic` (a producer that sends to a
    /// topic is a candidate for its check-backs, declared or not).
    pub fn note_sent_topic(&self, client_id: &str, topic: &str) {
        if self
            .by_client
            .read()
            .get(client_id)
            .is_none_or(|e| e.info.topics.contains(topic))
        {
            return;
        }
        if let Some(e) = self.by_client.write().get_mut(client_id) {
            e.info.topics.insert(topic.to_string());
        }
    }

    /// Live producers that declared or sent to `topic`; `preferred` first
    /// when it is one of them.
    pub fn producers_of(&self, topic: &str, preferred: &str) -> Vec<String> {
        let map = self.by_client.read();
        let mut out: Vec<String> = map
            .values()
            .filter(|e| e.info.kind == ClientType::Producer && e.info.topics.contains(topic))
            .map(|e| e.info.client_id.clone())
            .collect();
        out.sort_by_key(|id| (id != preferred, id.clone()));
        out
    }

    /// Pushes `command` on the client's stream; false when the client has no
    /// live session or its stream is full or closed.
    pub fn push(&self, client_id: &str, command: Command) -> bool {
        let Some(outbound) = self
            .by_client
            .read()
            .get(client_id)
            .map(|e| e.outbound.clone())
        else {
            return false;
        };
        outbound
            .try_send(Ok(TelemetryCommand {
                status: Some(ok_status()),
                command: Some(command),
            }))
            .is_ok()
    }

    /// Pushes `command` to a live producer of `topic` (`preferred` first); returns the client
    /// it reached, None when no producer of the topic took it.
    pub fn push_to_producer_of(
        &self,
        topic: &str,
        preferred: &str,
        command: Command,
    ) -> Option<String> {
        self.producers_of(topic, preferred)
            .into_iter()
            .find(|client| self.push(client, command.clone()))
    }

    /// The live sessions of consumers of `group`, by client id.
    pub fn clients_of_group(&self, group: &str) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .by_client
            .read()
            .values()
            .filter(|e| e.info.group.as_deref() == Some(group))
            .map(|e| e.info.clone())
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Every live session.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self
            .by_client
            .read()
            .values()
            .map(|e| e.info.clone())
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }
}

/// The reply to a client's Settings: a consumer's carries its group's config;
/// a group that may not consume gets its error status (with the default
/// settings, so the client does not wait for them).
fn reply_to(
    settings: &v2::Settings,
    limits: &ServerLimits,
    groups: &GroupLookup,
) -> TelemetryCommand {
    let group = match &settings.pub_sub {
        Some(PubSub::Subscription(s)) => s.group.as_ref().map(|g| g.name.as_str()),
        _ => None,
    };
    let (status, config) = match group.map(|g| groups(g)) {
        Some(Err(e)) => (e.to_status(), None),
        Some(Ok(config)) => (ok_status(), config),
        None => (ok_status(), None),
    };
    TelemetryCommand {
        status: Some(status),
        command: Some(Command::Settings(settings_reply(
            settings,
            limits,
            config.as_deref(),
        ))),
    }
}

/// Runs one Telemetry session in a task, registered in `sessions` while it
/// lives; returns the outbound stream. `groups` finds consumers' group configs.
pub fn serve_session(
    client_id: String,
    address: String,
    mut inbound: Streaming<TelemetryCommand>,
    limits: ServerLimits,
    sessions: Arc<Sessions>,
    groups: GroupLookup,
    mut closing: watch::Receiver<bool>,
) -> ReceiverStream<Result<TelemetryCommand, Status>> {
    let (tx, rx) = mpsc::channel(64);
    let serial = sessions.next_serial();
    let session = async move {
        tracing::debug!(client = %client_id, "telemetry stream opened");
        loop {
            let command = tokio::select! {
                command = inbound.message() => command,
                _ = closing.wait_for(|closing| *closing) => break,
            };
            match command {
                Ok(Some(TelemetryCommand {
                    command: Some(Command::Settings(settings)),
                    ..
                })) => {
                    if let Err(e) = sessions.update(serial, &settings, &client_id, &address, &tx) {
                        tracing::warn!(client = %client_id, %address, "telemetry refused: {e}");
                        let refusal = TelemetryCommand {
                            status: Some(e.to_status()),
                            command: None,
                        };
                        let _ = tx.send(Ok(refusal)).await;
                        break;
                    }
                    let reply = reply_to(&settings, &limits, &groups);
                    if tx.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
                Ok(Some(other)) => {
                    tracing::trace!(client = %client_id, ?other, "ignoring telemetry command")
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(client = %client_id, error = %e, "telemetry stream failed");
                    break;
                }
            }
        }
        sessions.remove(&client_id, serial);
        tracing::debug!(client = %client_id, "telemetry stream closed");
    };
    // The session logs in the span of the call that opened it (`rpc_span`), when there is one.
    tokio::spawn(session.in_current_span());
    ReceiverStream::new(rx)
}

/// The IP part of an ip:port address ("" stays "").
fn ip_of(address: &str) -> &str {
    address
        .rsplit_once(':')
        .map_or(address, |(ip, _)| ip)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// The remote address (ip:port) a request came from, or "" when unknown.
pub fn peer_address<T>(request: &tonic::Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// The client id a request carries in its `x-mq-client-id` header, or "-".
pub fn client_id<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get("x-mq-client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_settings(topics: &[&str]) -> v2::Settings {
        v2::Settings {
            client_type: Some(ClientType::Producer as i32),
            pub_sub: Some(PubSub::Publishing(v2::Publishing {
                topics: topics
                    .iter()
                    .map(|t| v2::Resource {
                        name: t.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn producers_are_found_by_declared_or_sent_topic_preferred_first() {
        let sessions = Sessions::new();
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_b, _rx_b) = mpsc::channel(4);
        sessions
            .update(
                1,
                &producer_settings(&["orders"]),
                "a",
                "127.0.0.1:1",
                &tx_a,
            )
            .unwrap();
        sessions
            .update(2, &producer_settings(&[]), "b", "127.0.0.1:1", &tx_b)
            .unwrap();
        assert_eq!(sessions.producers_of("orders", "zzz"), vec!["a"]);
        assert!(sessions.producers_of("payments", "a").is_empty());
        sessions.note_sent_topic("b", "orders");
        assert_eq!(sessions.producers_of("orders", "b"), vec!["b", "a"]);
        // A settings update keeps the topics the client sent to.
        sessions
            .update(2, &producer_settings(&["x"]), "b", "127.0.0.1:1", &tx_b)
            .unwrap();
        assert_eq!(sessions.producers_of("orders", "a"), vec!["a", "b"]);
        assert!(sessions.push("a", Command::Settings(v2::Settings::default())));
        assert!(rx_a.try_recv().is_ok());
        assert!(!sessions.push("nobody", Command::Settings(v2::Settings::default())));
    }

    #[test]
    fn consumers_are_listed_by_group_and_get_their_groups_settings() {
        let sessions = Sessions::new();
        let (tx, _rx) = mpsc::channel(4);
        let consumer = |group: &str| v2::Settings {
            client_type: Some(ClientType::SimpleConsumer as i32),
            user_agent: Some(v2::Ua {
                language: v2::Language::Java as i32,
                version: "5.0.7".into(),
                ..Default::default()
            }),
            pub_sub: Some(PubSub::Subscription(v2::Subscription {
                group: Some(v2::Resource {
                    name: group.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        sessions
            .update(1, &consumer("g1"), "c1", "127.0.0.1:1", &tx)
            .unwrap();
        sessions
            .update(2, &consumer("g2"), "c2", "127.0.0.1:1", &tx)
            .unwrap();
        sessions
            .update(3, &producer_settings(&["t"]), "p", "127.0.0.1:1", &tx)
            .unwrap();
        let g1 = sessions.clients_of_group("g1");
        assert_eq!(g1.len(), 1);
        assert_eq!(
            (
                g1[0].client_id.as_str(),
                g1[0].language,
                g1[0].version.as_str()
            ),
            ("c1", v2::Language::Java, "5.0.7")
        );

        let fifo: GroupLookup = Arc::new(|name| match name {
            "g1" => Ok(Some(Arc::new(GroupConfig {
                fifo: true,
                max_delivery_attempts: 3,
                ..GroupConfig::with_defaults("g1")
            }))),
            _ => Err(ApogeeError::ConsumerGroupNotFound(name.into())),
        });
        let limits = ServerLimits::default();
        let reply = reply_to(&consumer("g1"), &limits, &fifo);
        assert_eq!(reply.status.as_ref().unwrap().code, v2::Code::Ok as i32);
        let Some(Command::Settings(s)) = reply.command else {
            panic!("settings expected")
        };
        assert_eq!(s.backoff_policy.unwrap().max_attempts, 3);
        assert!(matches!(s.pub_sub, Some(PubSub::Subscription(sub)) if sub.fifo == Some(true)));
        let refused = reply_to(&consumer("nope"), &limits, &fifo);
        assert_eq!(
            refused.status.unwrap().code,
            v2::Code::ConsumerGroupNotFound as i32
        );
        assert!(matches!(refused.command, Some(Command::Settings(_))));
    }

    #[test]
    fn an_old_stream_closing_does_not_remove_the_newer_one() {
        let sessions = Sessions::new();
        let (tx, _rx) = mpsc::channel(4);
        sessions
            .update(1, &producer_settings(&["t"]), "c", "127.0.0.1:1", &tx)
            .unwrap();
        sessions
            .update(2, &producer_settings(&["t"]), "c", "127.0.0.1:1", &tx)
            .unwrap();
        sessions.remove("c", 1);
        assert_eq!(sessions.list().len(), 1);
        sessions.remove("c", 2);
        assert!(sessions.list().is_empty());
    }

    #[test]
    fn sessions_from_one_address_are_capped_and_a_known_client_may_refresh() {
        let sessions = Sessions::with_cap(2);
        let (tx, _rx) = mpsc::channel(4);
        let settings = producer_settings(&["t"]);
        sessions
            .update(1, &settings, "a", "10.0.0.1:1000", &tx)
            .unwrap();
        sessions
            .update(2, &settings, "b", "10.0.0.1:1001", &tx)
            .unwrap();
        let e = sessions
            .update(3, &settings, "c", "10.0.0.1:1002", &tx)
            .unwrap_err();
        assert!(matches!(e, ApogeeError::TooManyRequests(_)), "{e}");
        // Another address, and a refresh of a known client, are not counted against it.
        sessions
            .update(4, &settings, "d", "10.0.0.2:1000", &tx)
            .unwrap();
        sessions
            .update(1, &settings, "a", "10.0.0.1:1000", &tx)
            .unwrap();
        assert_eq!(ip_of("[::1]:5"), "::1");
    }
}

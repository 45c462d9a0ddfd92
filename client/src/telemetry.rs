//! Telemetry sessions: on the first use of an endpoint the client opens the
//! bidirectional Telemetry stream, sends its Settings (client type, access
//! point, request timeout, publishing topics or subscription, user agent),
//! waits for the server's settings (keeping `publishing.max_body_size`), and
//! then keeps the stream open in a background task that answers the
//! server's commands. A stream that ends is reopened on the next use; one
//! that could not be opened is retried after [`RETRY_AFTER`]. Transaction
//! check-backs go to the client's [`TransactionChecker`] (if any), whose
//! answer is sent to the endpoint of the stream that asked.

use crate::transaction::{CheckResponder, TransactionChecker};
use crate::transport::{request_metadata, to_endpoints, MessagingClient, CLIENT_VERSION};
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::time::duration;
use apogee_proto::v2::{self, settings::PubSub, telemetry_command::Command};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OnceCell};
use tokio::task::AbortHandle;
use tokio_stream::wrappers::ReceiverStream;

/// How long after a failed open the stream is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the client declares itself to be.
#[derive(Clone, Debug)]
pub(crate) enum Role {
    Producer,
    SimpleConsumer {
        group: String,
        subscriptions: Vec<(String, v2::FilterExpression)>,
    },
    PushConsumer {
        group: String,
        subscriptions: Vec<(String, v2::FilterExpression)>,
    },
    /// A lite consumer of `group`, bound to one LITE parent topic (`push`: a
    /// LITE_PUSH_CONSUMER, else a LITE_SIMPLE_CONSUMER).
    LiteConsumer {
        group: String,
        bind_topic: String,
        push: bool,
    },
}

impl Role {
    pub(crate) fn client_type(&self) -> v2::ClientType {
        match self {
            Role::Producer => v2::ClientType::Producer,
            Role::SimpleConsumer { .. } => v2::ClientType::SimpleConsumer,
            Role::PushConsumer { .. } => v2::ClientType::PushConsumer,
            Role::LiteConsumer { push: true, .. } => v2::ClientType::LitePushConsumer,
            Role::LiteConsumer { push: false, .. } => v2::ClientType::LiteSimpleConsumer,
        }
    }
}

fn resource(config: &ClientConfig, name: &str) -> v2::Resource {
    v2::Resource {
        resource_namespace: config.namespace.clone(),
        name: name.to_string(),
    }
}

/// The Settings a client sends over Telemetry.
pub(crate) fn build_settings(
    config: &ClientConfig,
    role: &Role,
    topics: &[String],
) -> v2::Settings {
    let pub_sub = match role {
        Role::Producer => PubSub::Publishing(v2::Publishing {
            topics: topics.iter().map(|t| resource(config, t)).collect(),
            max_body_size: 0,
            validate_message_type: true,
        }),
        Role::SimpleConsumer {
            group,
            subscriptions,
        }
        | Role::PushConsumer {
            group,
            subscriptions,
        } => PubSub::Subscription(v2::Subscription {
            group: Some(resource(config, group)),
            subscriptions: subscriptions
                .iter()
                .map(|(t, f)| v2::SubscriptionEntry {
                    topic: Some(resource(config, t)),
                    expression: Some(f.clone()),
                })
                .collect(),
            fifo: Some(false),
            receive_batch_size: None,
            long_polling_timeout: Some(duration(Duration::from_millis(
                apogee_proto::limits::MAX_LONG_POLLING_MS as u64,
            ))),
            ..Default::default()
        }),
        Role::LiteConsumer {
            group, bind_topic, ..
        } => PubSub::Subscription(v2::Subscription {
            group: Some(resource(config, group)),
            subscriptions: vec![v2::SubscriptionEntry {
                topic: Some(resource(config, bind_topic)),
                expression: Some(v2::FilterExpression {
                    r#type: v2::FilterType::Tag as i32,
                    expression: "*".into(),
                }),
            }],
            fifo: Some(false),
            receive_batch_size: None,
            long_polling_timeout: Some(duration(Duration::from_millis(
                apogee_proto::limits::MAX_LONG_POLLING_MS as u64,
            ))),
            ..Default::default()
        }),
    };
    v2::Settings {
        client_type: Some(role.client_type() as i32),
        access_point: config
            .nameservers
            .first()
            .and_then(|ns| to_endpoints(ns).ok()),
        backoff_policy: Some(v2::RetryPolicy {
            max_attempts: config.max_attempts as i32,
            strategy: Some(v2::retry_policy::Strategy::ExponentialBackoff(
                v2::ExponentialBackoff {
                    initial: Some(duration(Duration::from_millis(10))),
                    max: Some(duration(Duration::from_secs(1))),
                    multiplier: 2.0,
                },
            )),
        }),
        request_timeout: Some(duration(config.request_timeout)),
        pub_sub: Some(pub_sub),
        user_agent: Some(v2::Ua {
            language: v2::Language::Rust as i32,
            version: CLIENT_VERSION.to_string(),
            platform: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            hostname: crate::config::hostname(),
        }),
        metric: Some(v2::Metric {
            on: false,
            endpoints: None,
        }),
        client_properties: HashMap::new(),
    }
}

/// Largest body the servers accept, learned from their settings (the
/// smallest value any server reported; the protocol default until then).
#[derive(Default)]
pub(crate) struct BodyLimit(AtomicUsize);

impl BodyLimit {
    pub(crate) fn get(&self) -> usize {
        match self.0.load(Ordering::Relaxed) {
            0 => apogee_proto::limits::DEFAULT_MAX_BODY_BYTES,
            n => n,
        }
    }

    pub(crate) fn learn(&self, settings: &v2::Settings) {
        if let Some(PubSub::Publishing(p)) = &settings.pub_sub {
            if p.max_body_size > 0 {
                let new = p.max_body_size as usize;
                let _ = self
                    .0
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                        Some(if cur == 0 { new } else { cur.min(new) })
                    });
            }
        }
    }
}

/// One endpoint's stream.
struct Slot {
    ready: OnceCell<bool>,
    created: Instant,
    tx: Mutex<Option<mpsc::Sender<v2::TelemetryCommand>>>,
    task: Mutex<Option<AbortHandle>>,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            ready: OnceCell::new(),
            created: Instant::now(),
            tx: Mutex::new(None),
            task: Mutex::new(None),
        })
    }
}

type SlotMap = Arc<Mutex<HashMap<String, Arc<Slot>>>>;

/// The telemetry sessions of one client, by endpoint.
pub(crate) struct Sessions {
    slots: SlotMap,
    pub(crate) body_limit: Arc<BodyLimit>,
    /// The latest Settings any server sent (consumers read their group's
    /// retry policy and FIFO flag from it).
    pub(crate) server_settings: Arc<Mutex<Option<v2::Settings>>>,
    checker: Option<Arc<dyn TransactionChecker>>,
    /// Where a server's NotifyUnsubscribeLiteCommand goes (a lite consumer sets it).
    pub(crate) lite_unsubscribed: LiteUnsubscribed,
}

/// The handler of NotifyUnsubscribeLiteCommand: called with the lite topic a server took
/// away from this client.
pub(crate) type LiteUnsubscribed = Arc<std::sync::OnceLock<Arc<dyn Fn(String) + Send + Sync>>>;

impl Sessions {
    pub(crate) fn new(checker: Option<Arc<dyn TransactionChecker>>) -> Self {
        Sessions {
            slots: Arc::new(Mutex::new(HashMap::new())),
            body_limit: Arc::new(BodyLimit::default()),
            server_settings: Arc::new(Mutex::new(None)),
            checker,
            lite_unsubscribed: Arc::default(),
        }
    }

    /// Whether transaction check-backs are answered.
    pub(crate) fn has_checker(&self) -> bool {
        self.checker.is_some()
    }

    /// Endpoints with an open stream.
    pub(crate) fn open_endpoints(&self) -> Vec<String> {
        self.slots
            .lock()
            .iter()
            .filter(|(_, s)| s.ready.get() == Some(&true))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Opens the endpoint's stream unless it is open (or failed recently).
    /// Never fails: a server without Telemetry still gets its requests.
    pub(crate) async fn ensure(
        &self,
        addr: &str,
        client: impl FnOnce() -> Result<MessagingClient>,
        config: &ClientConfig,
        settings: impl FnOnce() -> v2::Settings,
    ) {
        let slot = {
            let mut map = self.slots.lock();
            let slot = map.entry(addr.to_string()).or_insert_with(Slot::new);
            if slot.ready.get() == Some(&false) && slot.created.elapsed() >= RETRY_AFTER {
                *slot = Slot::new();
            }
            slot.clone()
        };
        if slot.ready.initialized() {
            return;
        }
        slot.ready
            .get_or_init(|| async {
                let opened = match client() {
                    Ok(c) => self.open(addr, c, config, settings(), &slot).await,
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(endpoint = addr, error = %e, "telemetry stream not opened");
                        false
                    }
                }
            })
            .await;
    }

    async fn open(
        &self,
        addr: &str,
        mut client: MessagingClient,
        config: &ClientConfig,
        settings: v2::Settings,
        slot: &Arc<Slot>,
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel(16);
        let hello = v2::TelemetryCommand {
            status: None,
            command: Some(Command::Settings(settings)),
        };
        tx.send(hello)
            .await
            .map_err(|_| ClientError::Transport("telemetry channel closed".into()))?;
        let responder = self.checker.as_ref().map(|checker| CheckResponder {
            checker: checker.clone(),
            client: client.clone(),
            config: config.clone(),
            endpoint: addr.to_string(),
        });
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        *req.metadata_mut() = request_metadata(config);
        let wait = config.request_timeout;
        let mut stream = tokio::time::timeout(wait, client.telemetry(req))
            .await??
            .into_inner();
        let first = tokio::time::timeout(wait, stream.message())
            .await??
            .ok_or_else(|| ClientError::Transport("telemetry stream closed at once".into()))?;
        if let Some(status) = &first.status {
            ClientError::check(Some(status))?;
        }
        match &first.command {
            Some(Command::Settings(s)) => {
                self.body_limit.learn(s);
                *self.server_settings.lock() = Some(s.clone());
            }
            other => tracing::debug!(
                endpoint = addr,
                ?other,
                "telemetry: first reply is not settings"
            ),
        }
        *slot.tx.lock() = Some(tx.clone());
        let slots = self.slots.clone();
        let limit = self.body_limit.clone();
        let learned = self.server_settings.clone();
        let lite = self.lite_unsubscribed.clone();
        let key = addr.to_string();
        let me = slot.clone();
        let task = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(cmd)) => {
                        let ctx = Handlers {
                            limit: &limit,
                            learned: &learned,
                            responder: responder.as_ref(),
                            lite: &lite,
                        };
                        handle_command(cmd, &tx, ctx).await
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(endpoint = %key, error = %e, "telemetry stream ended");
                        break;
                    }
                }
            }
            let mut map = slots.lock();
            if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &me)) {
                map.remove(&key);
            }
        });
        *slot.task.lock() = Some(task.abort_handle());
        Ok(())
    }

    /// Sends fresh settings on every open stream (e.g. a new topic).
    pub(crate) fn broadcast(&self, settings: v2::Settings) {
        for slot in self.slots.lock().values() {
            if let Some(tx) = slot.tx.lock().as_ref() {
                let _ = tx.try_send(v2::TelemetryCommand {
                    status: None,
                    command: Some(Command::Settings(settings.clone())),
                });
            }
        }
    }

    /// Closes every stream.
    pub(crate) fn close_all(&self) {
        for (_, slot) in self.slots.lock().drain() {
            slot.tx.lock().take();
            if let Some(task) = slot.task.lock().take() {
                task.abort();
            }
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// What a session's commands are handed to.
struct Handlers<'a> {
    limit: &'a BodyLimit,
    learned: &'a Mutex<Option<v2::Settings>>,
    responder: Option<&'a CheckResponder>,
    lite: &'a LiteUnsubscribed,
}

/// Answers one server command.
async fn handle_command(
    cmd: v2::TelemetryCommand,
    tx: &mpsc::Sender<v2::TelemetryCommand>,
    ctx: Handlers<'_>,
) {
    let Handlers {
        limit,
        learned,
        responder,
        lite,
    } = ctx;
    let reply = match cmd.command {
        Some(Command::Settings(s)) => {
            limit.learn(&s);
            *learned.lock() = Some(s);
            None
        }
        Some(Command::NotifyUnsubscribeLiteCommand(c)) => {
            match lite.get() {
                Some(handler) => handler(c.lite_topic),
                None => tracing::debug!(
                    lite_topic = %c.lite_topic,
                    "lite unsubscribe notice for a client that is not a lite consumer"
                ),
            }
            None
        }
        Some(Command::PrintThreadStackTraceCommand(c)) => Some(v2::TelemetryCommand {
            status: Some(apogee_proto::error::ok_status()),
            command: Some(Command::ThreadStackTrace(v2::ThreadStackTrace {
                nonce: c.nonce,
                thread_stack_trace: Some(
                    "thread stacks are not available from the Rust client".into(),
                ),
            })),
        }),
        Some(Command::VerifyMessageCommand(c)) => Some(v2::TelemetryCommand {
            status: Some(
                apogee_proto::ApogeeError::Unsupported("message verification".into()).to_status(),
            ),
            command: Some(Command::VerifyMessageResult(v2::VerifyMessageResult {
                nonce: c.nonce,
            })),
        }),
        Some(Command::RecoverOrphanedTransactionCommand(c)) => {
            match responder {
                Some(r) => r.spawn(c),
                None => tracing::warn!(
                    transaction_id = %c.transaction_id,
                    "transaction check received, but this client has no transaction checker"
                ),
            }
            None
        }
        other => {
            tracing::debug!(?other, "telemetry command ignored");
            None
        }
    };
    if let Some(reply) = reply {
        let _ = tx.send(reply).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_declare_topics_and_language() {
        let config = ClientConfig::new("127.0.0.1:9876").with_namespace("ns");
        let s = build_settings(&config, &Role::Producer, &["T".to_string()]);
        assert_eq!(s.client_type, Some(v2::ClientType::Producer as i32));
        assert_eq!(
            s.user_agent.as_ref().unwrap().language,
            v2::Language::Rust as i32
        );
        assert_eq!(
            crate::transport::endpoint_addr(s.access_point.as_ref().unwrap()).unwrap(),
            "127.0.0.1:9876"
        );
        assert_eq!(
            apogee_proto::time::duration_ms(s.request_timeout.as_ref().unwrap()),
            5000
        );
        let Some(PubSub::Publishing(p)) = s.pub_sub else {
            panic!("publishing expected")
        };
        assert_eq!(p.topics.len(), 1);
        assert_eq!(p.topics[0].name, "T");
        assert_eq!(p.topics[0].resource_namespace, "ns");
    }

    #[test]
    fn consumer_settings_declare_group_and_subscriptions() {
        let role = Role::SimpleConsumer {
            group: "G".into(),
            subscriptions: vec![("T".into(), crate::FilterExpression::default().to_v2())],
        };
        let s = build_settings(&ClientConfig::default(), &role, &[]);
        assert_eq!(s.client_type, Some(v2::ClientType::SimpleConsumer as i32));
        let Some(PubSub::Subscription(sub)) = s.pub_sub else {
            panic!("subscription expected")
        };
        assert_eq!(sub.group.unwrap().name, "G");
        assert_eq!(sub.subscriptions.len(), 1);
        let f = sub.subscriptions[0].expression.as_ref().unwrap();
        assert_eq!(f.r#type, v2::FilterType::Tag as i32);
        assert_eq!(f.expression, "*");
    }

    #[tokio::test]
    async fn push_consumers_declare_their_type_and_keep_the_servers_settings() {
        let role = Role::PushConsumer {
            group: "G".into(),
            subscriptions: vec![("T".into(), crate::FilterExpression::default().to_v2())],
        };
        let s = build_settings(&ClientConfig::default(), &role, &[]);
        assert_eq!(s.client_type, Some(v2::ClientType::PushConsumer as i32));
        assert!(matches!(s.pub_sub, Some(PubSub::Subscription(_))));

        let (tx, _rx) = mpsc::channel(1);
        let learned = Mutex::new(None);
        let pushed = v2::Settings {
            backoff_policy: Some(v2::RetryPolicy {
                max_attempts: 3,
                strategy: None,
            }),
            ..Default::default()
        };
        let cmd = v2::TelemetryCommand {
            status: None,
            command: Some(Command::Settings(pushed.clone())),
        };
        let lite = LiteUnsubscribed::default();
        let ctx = Handlers {
            limit: &BodyLimit::default(),
            learned: &learned,
            responder: None,
            lite: &lite,
        };
        handle_command(cmd, &tx, ctx).await;
        assert_eq!(learned.lock().as_ref(), Some(&pushed));
    }

    #[tokio::test]
    async fn lite_unsubscribe_notices_reach_the_lite_consumers_handler() {
        let (tx, _rx) = mpsc::channel(1);
        let learned = Mutex::new(None);
        let lite = LiteUnsubscribed::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let _ = lite.set(Arc::new(move |name: String| sink.lock().push(name)));
        let notice = |name: &str| v2::TelemetryCommand {
            status: None,
            command: Some(Command::NotifyUnsubscribeLiteCommand(
                v2::NotifyUnsubscribeLiteCommand {
                    lite_topic: name.into(),
                },
            )),
        };
        for name in ["a", "b"] {
            let ctx = Handlers {
                limit: &BodyLimit::default(),
                learned: &learned,
                responder: None,
                lite: &lite,
            };
            handle_command(notice(name), &tx, ctx).await;
        }
        assert_eq!(*seen.lock(), vec!["a".to_string(), "b".to_string()]);
        let role = Role::LiteConsumer {
            group: "G".into(),
            bind_topic: "P".into(),
            push: false,
        };
        let s = build_settings(&ClientConfig::default(), &role, &[]);
        assert_eq!(
            s.client_type,
            Some(v2::ClientType::LiteSimpleConsumer as i32)
        );
        let Some(PubSub::Subscription(sub)) = s.pub_sub else {
            panic!("subscription expected")
        };
        assert_eq!(sub.subscriptions[0].topic.as_ref().unwrap().name, "P");
        let push = Role::LiteConsumer {
            group: "G".into(),
            bind_topic: "P".into(),
            push: true,
        };
        assert_eq!(push.client_type(), v2::ClientType::LitePushConsumer);
    }

    #[test]
    fn body_limit_keeps_the_smallest_reported_value() {
        let limit = BodyLimit::default();
        assert_eq!(limit.get(), apogee_proto::limits::DEFAULT_MAX_BODY_BYTES);
        let with = |n| v2::Settings {
            pub_sub: Some(PubSub::Publishing(v2::Publishing {
                max_body_size: n,
                ..Default::default()
            })),
            ..Default::default()
        };
        limit.learn(&with(8 << 20));
        assert_eq!(limit.get(), 8 << 20);
        limit.learn(&with(1024));
        limit.learn(&with(0));
        limit.learn(&with(4096));
        assert_eq!(limit.get(), 1024);
    }
}

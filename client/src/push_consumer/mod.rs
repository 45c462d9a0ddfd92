//! The push consumer: a listener-based consumer built on receive, ack and
//! ChangeInvisibleDuration (the [`SimpleConsumer`] calls).
//!
//! - **Receiving** (`poller`): one loop per subscribed topic and broker
//!   group. A loop takes free slots (see `slots`: `concurrency` slots, one
//!   per message from its receipt to the end of its ack or nack) and asks
//!   for no more messages than it holds. While a broker has messages the
//!   loop receives greedily without waiting; once it finds none it
//!   long-polls with a single slot, so idle brokers do not hold the slots
//!   busy ones could use.
//! - **Handling** (`worker`): every message gets its own task that calls
//!   the listener, acks on [`ConsumeResult::Success`], and on
//!   [`ConsumeResult::Failure`] (or a panic) nacks with
//!   ChangeInvisibleDuration set to the group's backoff for that delivery
//!   attempt (from the servers' Settings, see `settings`). By default the
//!   receives ask the broker to keep messages invisible until they are
//!   acked or nacked (`auto_renew`, as the official push consumers do; the
//!   broker bounds it by its `consume.max_auto_renew_ms`). With
//!   [`PushConsumerBuilder::invisible_duration`] the consumer renews instead:
//!   while a message is held longer than about 2/3 of that duration, its
//!   invisibility is renewed, and the newest receipt handle is used.
//! - **FIFO** (forced with [`PushConsumerBuilder::fifo`] or learned from the
//!   Settings at start): the messages of one message group reach the
//!   listener one at a time, in receive order (`fifo`); a failed one is
//!   retried locally after the backoff until the group's max attempts, then
//!   forwarded with ForwardMessageToDeadLetterQueue.
//! - **Shutdown**: stops receiving (a receive under way is dropped; what it
//!   carried comes back after its invisible duration), leaves messages not
//!   yet handed to the listener, waits a bounded time for the running
//!   handlers and their acks, then closes the session
//!   (NotifyClientTermination).

mod fifo;
mod lite;
mod poller;
mod settings;
mod slots;
mod worker;

pub use lite::{LitePushConsumer, LitePushConsumerBuilder};
pub use settings::BackoffPolicy;

use crate::consumer::SimpleConsumer;
use crate::message::{FilterExpression, ReceivedMessage};
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::{limits, ApogeeError};
use fifo::FifoOrder;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use settings::Learned;
use slots::{Slot, Slots};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// Default number of messages handled at once.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default bound on how long shutdown waits for running handlers.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a listener made of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Handled: the message is acknowledged.
    Success,
    /// Not handled: the message is delivered again after the group's backoff.
    Failure,
}

type Listener = Arc<dyn Fn(ReceivedMessage) -> BoxFuture<'static, ConsumeResult> + Send + Sync>;

/// Configures and starts a [`PushConsumer`].
pub struct PushConsumerBuilder {
    config: ClientConfig,
    group: String,
    subscriptions: Vec<(String, FilterExpression)>,
    concurrency: usize,
    /// None: the broker renews (`auto_renew`).
    invisible: Option<Duration>,
    fifo: bool,
    shutdown_timeout: Duration,
    listener: Option<Listener>,
}

impl PushConsumerBuilder {
    /// Subscribes to a topic (a second call for the same topic replaces its
    /// filter).
    pub fn subscribe(mut self, topic: impl Into<String>, filter: FilterExpression) -> Self {
        let topic = topic.into();
        self.subscriptions.retain(|(t, _)| *t != topic);
        self.subscriptions.push((topic, filter));
        self
    }

    /// How many messages are handled at once (default 16); the consumer
    /// never holds more received messages than this.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Receive with this invisible duration and renew it from the client
    /// while a handler runs longer, instead of the default: the broker keeps
    /// messages invisible until they are acked or nacked (`auto_renew`).
    pub fn invisible_duration(mut self, d: Duration) -> Self {
        self.invisible = Some(d);
        self
    }

    /// Consumes in FIFO mode even if the servers do not say the group is
    /// FIFO (they are asked at start either way).
    pub fn fifo(mut self, on: bool) -> Self {
        self.fifo = on;
        self
    }

    /// How long [`PushConsumer::shutdown`] waits for running handlers
    /// (default 30 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// The function that handles each message.
    pub fn listener<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        self.listener = Some(Arc::new(move |m| Box::pin(f(m))));
        self
    }

    /// Checks the configuration, fetches the subscribed topics' routes
    /// (which brings the servers' Settings), and starts receiving.
    pub async fn start(mut self) -> Result<PushConsumer> {
        self.check()?;
        let topics: Vec<String> = self.subscriptions.iter().map(|(t, _)| t.clone()).collect();
        let subscriptions = std::mem::take(&mut self.subscriptions);
        let consumer = SimpleConsumer::connect_as(
            self.config.clone(),
            self.group.clone(),
            subscriptions,
            true,
        )?;
        self.launch(consumer, topics).await
    }

    /// Checks the builder: a listener, a concurrency, an invisible time within bounds.
    fn check(&self) -> Result<()> {
        if self.listener.is_none() {
            return Err(ClientError::Config(
                "a push consumer needs a listener".into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(ClientError::Config("concurrency must be at least 1".into()));
        }
        let ms = self
            .invisible
            .map_or(limits::MIN_INVISIBLE_MS, |d| d.as_millis() as i64);
        if !(limits::MIN_INVISIBLE_MS..=limits::MAX_INVISIBLE_MS).contains(&ms) {
            return Err(ApogeeError::IllegalInvisibleTime(format!(
                "{ms} ms is outside {}..={} ms",
                limits::MIN_INVISIBLE_MS,
                limits::MAX_INVISIBLE_MS
            ))
            .into());
        }
        Ok(())
    }

    /// Starts receiving `topics` with `consumer` (the lite push consumer brings its own).
    async fn launch(self, consumer: SimpleConsumer, topics: Vec<String>) -> Result<PushConsumer> {
        let listener = self
            .listener
            .ok_or_else(|| ClientError::Config("a push consumer needs a listener".into()))?;
        for topic in &topics {
            if let Err(e) = consumer.core().route(topic).await {
                consumer.shutdown().await;
                return Err(e);
            }
        }
        let fifo = self.fifo || learned(&consumer).fifo;
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            consumer,
            listener,
            slots: Slots::new(self.concurrency),
            order: FifoOrder::default(),
            invisible: self.invisible,
            fifo,
            stop,
            tasks: Mutex::new((0, HashMap::new())),
            loops: AtomicUsize::new(0),
        });
        let pollers = topics
            .into_iter()
            .map(|t| tokio::spawn(poller::topic_loop(shared.clone(), t)))
            .collect();
        Ok(PushConsumer {
            shared,
            pollers: Mutex::new(pollers),
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

/// Receives messages of its subscriptions and hands each to the listener;
/// see the module documentation. Stop it with [`PushConsumer::shutdown`]
/// (dropping it stops receiving too, without waiting or notifying).
pub struct PushConsumer {
    shared: Arc<Shared>,
    pollers: Mutex<Vec<JoinHandle<()>>>,
    shutdown_timeout: Duration,
}

impl PushConsumer {
    /// Starts configuring a push consumer of `group`.
    pub fn builder(config: ClientConfig, group: impl Into<String>) -> PushConsumerBuilder {
        PushConsumerBuilder {
            config,
            group: group.into(),
            subscriptions: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            invisible: None,
            fifo: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            listener: None,
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        self.shared.consumer.group()
    }

    /// Whether messages of one message group are handled one at a time.
    pub fn is_fifo(&self) -> bool {
        self.shared.fifo
    }

    /// Messages held right now (received and not yet acked or nacked).
    pub fn in_flight(&self) -> usize {
        self.shared.slots.in_use()
    }

    /// The group's backoff as the servers last sent it (RocketMQ's default
    /// when they sent none).
    pub fn backoff_policy(&self) -> BackoffPolicy {
        self.shared.learned().backoff
    }

    /// The group's maximum delivery attempts as the servers last sent it.
    pub fn max_delivery_attempts(&self) -> u32 {
        self.shared.learned().max_attempts
    }

    /// Stops receiving, waits (up to the shutdown timeout) for the running
    /// handlers and their acks or nacks, abandons what is left, and closes
    /// the session. Messages never handed to the listener come back to the
    /// group after their invisible duration.
    pub async fn shutdown(self) {
        self.drain().await;
        self.shared.consumer.clone().shutdown().await;
    }

    /// Stops receiving and waits (up to the shutdown timeout) for the running handlers;
    /// the session stays open.
    async fn drain(&self) {
        self.shared.stop.send_replace(true);
        let pollers: Vec<JoinHandle<()>> = std::mem::take(&mut *self.pollers.lock());
        for p in pollers {
            let _ = p.await;
        }
        if !self.shared.slots.wait_idle(self.shutdown_timeout).await {
            let left: Vec<AbortHandle> =
                self.shared.tasks.lock().1.drain().map(|(_, h)| h).collect();
            tracing::warn!(
                group = self.group(),
                handlers = left.len(),
                "shutdown timeout passed: abandoning running handlers (their messages come back)"
            );
            for h in left {
                h.abort();
            }
        }
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
    }
}

/// What the receive loops and message tasks share.
pub(crate) struct Shared {
    consumer: SimpleConsumer,
    listener: Listener,
    slots: Slots,
    order: FifoOrder,
    /// None: the broker renews (`auto_renew`).
    invisible: Option<Duration>,
    fifo: bool,
    stop: watch::Sender<bool>,
    /// Running message tasks, by number (the first field numbers them).
    tasks: Mutex<(u64, HashMap<u64, AbortHandle>)>,
    /// Receive loops running (across topics and brokers).
    loops: AtomicUsize,
}

fn learned(consumer: &SimpleConsumer) -> Learned {
    Learned::from_settings(consumer.core().sessions.server_settings.lock().as_ref())
}

impl Shared {
    fn learned(&self) -> Learned {
        learned(&self.consumer)
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves once shutdown has begun.
    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Hands a received message, holding `slot`, to its own task (after
    /// taking its FIFO turn, in receive order).
    fn dispatch(self: &Arc<Self>, message: ReceivedMessage, slot: Slot) {
        // A lite topic is one ordered queue: its messages take turns like a message group's.
        let turn = match (&message.lite_topic, &message.message_group, self.fifo) {
            (Some(l), _, _) => Some(self.order.enqueue(format!("{}\u{2}{l}", message.topic))),
            (None, Some(g), true) => Some(self.order.enqueue(format!("{}\u{1}{g}", message.topic))),
            _ => None,
        };
        let mut tasks = self.tasks.lock();
        tasks.0 += 1;
        let id = tasks.0;
        let done = TaskDone(self.clone(), id);
        let handle = tokio::spawn(async move {
            let shared = done.0.clone();
            worker::process(shared, message, slot, turn).await;
            drop(done);
        });
        tasks.1.insert(id, handle.abort_handle());
    }
}

/// Removes a message task from the registry when it ends (or is aborted).
struct TaskDone(Arc<Shared>, u64);

impl Drop for TaskDone {
    fn drop(&mut self) {
        self.0.tasks.lock().1.remove(&self.1);
    }
}

//! A load that feeds a [`Checker`] from real clients: producers of apogee-client and of
//! RocketMQ's official Rust crate (`rocketmq` 5.0.0) sending keyed messages at a bounded
//! rate (apogee-client's also FIFO messages in message groups), and consumers of both receiving and acking, every send attempt and every received
//! message recorded (apogee-client's with the endpoint of the broker that answered; the
//! official crate does not say), and every receive call that failed (an empty answer is no
//! failure).
//!
//! A message's key and body are `<producer>-<n>`. A producer sends one message at a time
//! (at most `rate` a second); a failed send is recorded and the producer goes on with the
//! next message. A consumer records a message before it acks it (an ack that fails means
//! the message comes again: a duplicate). Outcomes: an OK answer is
//! [`Outcome::Acknowledged`]; a timeout, a broken connection, or apogee-client's "stored on
//! the master, not replicated" is [`Outcome::Unknown`]; any other error is
//! [`Outcome::Failed`] (the official crate's errors other than a refused message or no
//! broker are unknown: it does not say more).

use crate::checker::{Checker, Outcome, ReceiveEvent, ReceiveFailure, SendEvent};
use apogee_client::{ClientConfig, ClientError, FilterExpression, Message};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a consumer keeps a received message invisible to others.
const INVISIBLE: Duration = Duration::from_secs(10);

/// A consumer's long-polling wait (short, so stopping is quick).
const POLL: Duration = Duration::from_secs(1);

/// The pause after a failed connect or receive.
const BACKOFF: Duration = Duration::from_millis(200);

/// Messages per receive.
const BATCH: u32 = 16;

/// A drain gives up when no missing message arrived for this long: longer than a
/// message's invisible time and a restarted master's wait for its slave's handback.
pub const STALLED: Duration = Duration::from_secs(30);

/// Producer and consumer tasks recording into one checker.
pub struct Workload {
    checker: Arc<Checker>,
    producing: Arc<AtomicBool>,
    consuming: Arc<AtomicBool>,
    /// Messages a second each consumer takes while producers run (`None`: as many as come).
    consumer_rate: Option<u32>,
    producers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
}

/// The outcome of an apogee-client send error.
fn apogee_outcome(e: &ClientError) -> Outcome {
    if e.is_stored_not_replicated() || matches!(e, ClientError::Transport(_) | ClientError::Timeout)
    {
        Outcome::Unknown
    } else {
        Outcome::Failed
    }
}

/// The outcome of an official-crate send error.
fn official_outcome(e: &rocketmq::error::ClientError) -> Outcome {
    use rocketmq::error::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidMessage | ErrorKind::NoBrokerAvailable | ErrorKind::Config => {
            Outcome::Failed
        }
        _ => Outcome::Unknown,
    }
}

/// Records that `consumer`'s receive call failed now.
fn record_failure(checker: &Checker, consumer: &str) {
    checker.record_receive_failure(ReceiveFailure {
        consumer: consumer.to_string(),
        at: checker.now(),
    });
}

/// The official crate's options: the access point, TLS off, short timeouts.
fn official_option(access_url: &str) -> rocketmq::conf::ClientOption {
    let mut option = rocketmq::conf::ClientOption::default();
    option.set_access_url(access_url);
    option.set_enable_tls(false);
    option.set_timeout(Duration::from_secs(3));
    option.set_long_polling_timeout(POLL);
    option
}

/// A consumer's pace: at most `rate` messages a second while `producing`.
struct Pace {
    rate: Option<u32>,
    producing: Arc<AtomicBool>,
}

impl Pace {
    /// Waits as long as taking `received` messages takes at the pace.
    async fn after(&self, received: usize) {
        if let Some(rate) = self.rate {
            if self.producing.load(Ordering::SeqCst) && received > 0 {
                tokio::time::sleep(Duration::from_secs_f64(received as f64 / f64::from(rate)))
                    .await;
            }
        }
    }
}

/// Ticks at most `rate` times a second (at least 1).
fn ticker(rate: u32) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

impl Workload {
    pub fn new(checker: Arc<Checker>) -> Workload {
        Workload {
            checker,
            producing: Arc::new(AtomicBool::new(true)),
            consuming: Arc::new(AtomicBool::new(true)),
            consumer_rate: None,
            producers: Vec::new(),
            consumers: Vec::new(),
        }
    }

    /// Consumers added from now on take at most `rate` messages a second while the
    /// producers run (so a backlog builds up and a fault finds unread messages), and as
    /// many as come once the producers stopped.
    pub fn throttle_consumers(&mut self, rate: u32) {
        self.consumer_rate = Some(rate.max(1));
    }

    /// What a new consumer needs to pace itself.
    fn pace(&self) -> Pace {
        Pace {
            rate: self.consumer_rate,
            producing: self.producing.clone(),
        }
    }

    pub fn checker(&self) -> &Arc<Checker> {
        &self.checker
    }

    /// An apogee-client producer `name` sending to `topic`.
    pub fn apogee_producer(&mut self, name: &str, config: ClientConfig, topic: &str, rate: u32) {
        self.spawn_apogee_producer(name, config, topic, rate, 0);
    }

    /// An apogee-client producer `name` sending FIFO messages to `topic` (a FIFO topic),
    /// message `n` in message group `<name>-g<n % message_groups>`, so the checker can judge
    /// the order per group.
    pub fn apogee_fifo_producer(
        &mut self,
        name: &str,
        config: ClientConfig,
        topic: &str,
        message_groups: usize,
        rate: u32,
    ) {
        self.spawn_apogee_producer(name, config, topic, rate, message_groups.max(1));
    }

    /// An apogee-client producer; with `message_groups` > 0 its messages are FIFO.
    fn spawn_apogee_producer(
        &mut self,
        name: &str,
        config: ClientConfig,
        topic: &str,
        rate: u32,
        message_groups: usize,
    ) {
        let (name, topic) = (name.to_string(), topic.to_string());
        let (checker, producing) = (self.checker.clone(), self.producing.clone());
        self.producers.push(tokio::spawn(async move {
            let producer = loop {
                match apogee_client::Producer::builder(config.clone())
                    .topic(&topic)
                    .connect()
                    .await
                {
                    Ok(p) => break p,
                    Err(_) if producing.load(Ordering::SeqCst) => tokio::time::sleep(BACKOFF).await,
                    Err(_) => return,
                }
            };
            let mut tick = ticker(rate);
            let mut n = 0u64;
            while producing.load(Ordering::SeqCst) {
                tick.tick().await;
                let key = format!("{name}-{n}");
                let message_group =
                    (message_groups > 0).then(|| format!("{name}-g{}", n % message_groups as u64));
                n += 1;
                let mut message = Message::builder(&topic, key.clone()).key(&key);
                if let Some(g) = &message_group {
                    message = message.message_group(g);
                }
                let result = producer.send(message.build()).await;
                let (outcome, broker_group, served_by) = match &result {
                    Ok(receipt) => (
                        Outcome::Acknowledged,
                        Some(receipt.broker_name.clone()),
                        Some(receipt.endpoint.clone()),
                    ),
                    Err(e) => (apogee_outcome(e), None, None),
                };
                checker.record_send(SendEvent {
                    key,
                    message_group,
                    broker_group,
                    producer: name.clone(),
                    at: checker.now(),
                    outcome,
                    served_by,
                });
            }
            producer.shutdown().await;
        }));
    }

    /// An official-crate producer `name` sending to `topic` through the access point
    /// `access_url` (a NameServer).
    pub fn official_producer(&mut self, name: &str, access_url: &str, topic: &str, rate: u32) {
        use rocketmq::conf::ProducerOption;
        use rocketmq::model::message::MessageBuilder;
        let (name, topic, access_url) =
            (name.to_string(), topic.to_string(), access_url.to_string());
        let (checker, producing) = (self.checker.clone(), self.producing.clone());
        self.producers.push(tokio::spawn(async move {
            let producer = loop {
                let mut option = ProducerOption::default();
                option.set_topics(vec![topic.clone()]);
                let started = match rocketmq::Producer::new(option, official_option(&access_url)) {
                    Ok(mut p) => p.start().await.map(|_| p),
                    Err(e) => Err(e),
                };
                match started {
                    Ok(p) => break p,
                    Err(_) if producing.load(Ordering::SeqCst) => tokio::time::sleep(BACKOFF).await,
                    Err(_) => return,
                }
            };
            let mut tick = ticker(rate);
            let mut n = 0u64;
            while producing.load(Ordering::SeqCst) {
                tick.tick().await;
                let key = format!("{name}-{n}");
                n += 1;
                let message = MessageBuilder::builder()
                    .set_topic(&topic)
                    .set_keys(vec![key.clone()])
                    .set_body(key.clone().into_bytes())
                    .build()
                    .expect("a valid message");
                let outcome = match producer.send(message).await {
                    Ok(_) => Outcome::Acknowledged,
                    Err(e) => official_outcome(&e),
                };
                checker.record_send(SendEvent {
                    key,
                    message_group: None,
                    broker_group: None,
                    producer: name.clone(),
                    at: checker.now(),
                    outcome,
                    served_by: None,
                });
            }
            let _ = producer.shutdown().await;
        }));
    }

    /// An apogee-client simple consumer `name` of consumer group `group` on `topic`.
    pub fn apogee_consumer(&mut self, name: &str, config: ClientConfig, group: &str, topic: &str) {
        let (name, topic, group) = (name.to_string(), topic.to_string(), group.to_string());
        let (checker, consuming, pace) =
            (self.checker.clone(), self.consuming.clone(), self.pace());
        self.consumers.push(tokio::spawn(async move {
            let subscription = vec![(topic.clone(), FilterExpression::default())];
            let consumer = loop {
                match apogee_client::SimpleConsumer::connect(
                    config.clone(),
                    &group,
                    subscription.clone(),
                )
                .await
                {
                    Ok(c) => break c,
                    Err(_) if consuming.load(Ordering::SeqCst) => tokio::time::sleep(BACKOFF).await,
                    Err(_) => return,
                }
            };
            while consuming.load(Ordering::SeqCst) {
                let batch = match consumer.receive(&topic, BATCH, INVISIBLE, POLL).await {
                    Ok(batch) => batch,
                    Err(_) => {
                        record_failure(&checker, &name);
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                };
                let received = batch.len();
                for m in batch {
                    let key = m
                        .keys
                        .first()
                        .cloned()
                        .unwrap_or_else(|| m.body_lossy().into_owned());
                    checker.record_receive(ReceiveEvent {
                        key,
                        message_group: m.message_group.clone(),
                        broker_group: Some(m.broker_name.clone()),
                        consumer: name.clone(),
                        at: checker.now(),
                        served_by: Some(m.endpoint.clone()),
                    });
                    let _ = consumer.ack(&m).await;
                }
                pace.after(received).await;
            }
            consumer.shutdown().await;
        }));
    }

    /// An official-crate simple consumer `name` of consumer group `group` on `topic`.
    pub fn official_consumer(&mut self, name: &str, access_url: &str, group: &str, topic: &str) {
        use rocketmq::conf::SimpleConsumerOption;
        use rocketmq::model::common::{FilterExpression, FilterType};
        let (name, topic, group, access_url) = (
            name.to_string(),
            topic.to_string(),
            group.to_string(),
            access_url.to_string(),
        );
        let (checker, consuming, pace) =
            (self.checker.clone(), self.consuming.clone(), self.pace());
        self.consumers.push(tokio::spawn(async move {
            let consumer = loop {
                let mut option = SimpleConsumerOption::default();
                option.set_topics(vec![topic.clone()]);
                option.set_consumer_group(&group);
                let started =
                    match rocketmq::SimpleConsumer::new(option, official_option(&access_url)) {
                        Ok(mut c) => c.start().await.map(|_| c),
                        Err(e) => Err(e),
                    };
                match started {
                    Ok(c) => break c,
                    Err(_) if consuming.load(Ordering::SeqCst) => tokio::time::sleep(BACKOFF).await,
                    Err(_) => return,
                }
            };
            let filter = FilterExpression::new(FilterType::Tag, "*");
            while consuming.load(Ordering::SeqCst) {
                let batch = match consumer
                    .receive_with(&topic, &filter, BATCH as i32, INVISIBLE)
                    .await
                {
                    Ok(batch) => batch,
                    Err(_) => {
                        record_failure(&checker, &name);
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                };
                let received = batch.len();
                for m in batch {
                    let key = m
                        .keys()
                        .first()
                        .cloned()
                        .unwrap_or_else(|| String::from_utf8_lossy(m.body()).into_owned());
                    checker.record_receive(ReceiveEvent {
                        key,
                        message_group: m.message_group().map(str::to_string),
                        broker_group: None,
                        consumer: name.clone(),
                        at: checker.now(),
                        served_by: None,
                    });
                    let _ = consumer.ack(&m).await;
                }
                pace.after(received).await;
            }
            let _ = consumer.shutdown().await;
        }));
    }

    /// Stops the producers (each finishes the send it is in) and waits for them.
    pub async fn stop_producers(&mut self) {
        self.producing.store(false, Ordering::SeqCst);
        for p in self.producers.drain(..) {
            p.await.expect("a producer task panicked");
        }
    }

    /// After [`Workload::stop_producers`]: lets the consumers run until at most
    /// `allowed_missing` acknowledged messages were not received yet, `timeout` passed, or
    /// nothing missing was received for [`STALLED`], then stops them. Returns how many are
    /// missing.
    pub async fn drain(&mut self, allowed_missing: usize, timeout: Duration) -> usize {
        let now = tokio::time::Instant::now;
        let deadline = now() + timeout;
        let (mut missing, mut progress_at) = (self.checker.missing(), now());
        while missing > allowed_missing && now() < deadline && progress_at.elapsed() < STALLED {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let still = self.checker.missing();
            if still < missing {
                progress_at = now();
            }
            missing = still;
        }
        self.consuming.store(false, Ordering::SeqCst);
        for c in self.consumers.drain(..) {
            c.await.expect("a consumer task panicked");
        }
        self.checker.missing()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        for task in self.producers.iter().chain(&self.consumers) {
            task.abort();
        }
    }
}

//! The lite push consumer: a [`PushConsumer`] of one LITE parent topic whose lite topics
//! are subscribed one by one ([`crate::lite_consumer::LiteSubscriptions`]: partial syncs,
//! the periodic complete sync, the limits from Settings, the broker's unsubscribe notices).
//!
//! Messages of one lite topic reach the listener one at a time, in receive order (a lite
//! topic is one ordered queue, handed to one consumer at a time); different lite topics are
//! handled concurrently, up to the concurrency. Acks, nacks and dead-letter forwards carry
//! the message's lite topic.

use super::{ConsumeResult, PushConsumer, PushConsumerBuilder};
use crate::lite_consumer::{LiteOffset, LiteSubscriptions, DEFAULT_LITE_SYNC_INTERVAL};
use crate::message::ReceivedMessage;
use crate::{ClientConfig, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Configures and starts a [`LitePushConsumer`].
pub struct LitePushConsumerBuilder {
    push: PushConsumerBuilder,
    bind_topic: String,
    sync_interval: Duration,
}

impl LitePushConsumerBuilder {
    /// How many messages are handled at once (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.push = self.push.concurrency(n);
        self
    }

    /// Receive with this invisible duration and renew it from the client (default: the
    /// broker keeps messages invisible until they are acked or nacked).
    pub fn invisible_duration(mut self, d: Duration) -> Self {
        self.push = self.push.invisible_duration(d);
        self
    }

    /// How long [`LitePushConsumer::shutdown`] waits for running handlers (default 30 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.push = self.push.shutdown_timeout(d);
        self
    }

    /// How often the whole set of lite topics is sent again (default 30 s).
    pub fn sync_interval(mut self, every: Duration) -> Self {
        self.sync_interval = every;
        self
    }

    /// The function that handles each message.
    pub fn listener<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        self.push = self.push.listener(f);
        self
    }

    /// Checks the configuration, opens the session with the parent's broker and starts
    /// receiving (nothing arrives until a lite topic is subscribed).
    pub async fn start(self) -> Result<LitePushConsumer> {
        self.push.check()?;
        let lite = LiteSubscriptions::start(
            self.push.config.clone(),
            self.push.group.clone(),
            self.bind_topic.clone(),
            true,
            self.sync_interval,
        )
        .await?;
        let push = self
            .push
            .launch(lite.consumer().clone(), vec![self.bind_topic])
            .await?;
        Ok(LitePushConsumer { push, lite })
    }
}

/// Hands each message of its lite topics to a listener; see the module documentation.
/// Stop it with [`LitePushConsumer::shutdown`].
pub struct LitePushConsumer {
    push: PushConsumer,
    lite: Arc<LiteSubscriptions>,
}

impl LitePushConsumer {
    /// Starts configuring a lite push consumer of `group` bound to the LITE topic
    /// `bind_topic`.
    pub fn builder(
        config: ClientConfig,
        group: impl Into<String>,
        bind_topic: impl Into<String>,
    ) -> LitePushConsumerBuilder {
        LitePushConsumerBuilder {
            push: PushConsumer::builder(config, group),
            bind_topic: bind_topic.into(),
            sync_interval: DEFAULT_LITE_SYNC_INTERVAL,
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        self.push.group()
    }

    /// The subscriptions: the set, its syncs, the notices.
    pub fn subscriptions(&self) -> &LiteSubscriptions {
        &self.lite
    }

    /// Subscribes to one lite topic (PARTIAL_ADD; the broker's default start).
    pub async fn subscribe_lite(&self, lite_topic: &str) -> Result<()> {
        self.lite.subscribe(&[lite_topic], None).await
    }

    /// Subscribes to one lite topic starting at `offset` when it is new to the broker.
    pub async fn subscribe_lite_from(&self, lite_topic: &str, offset: LiteOffset) -> Result<()> {
        self.lite.subscribe(&[lite_topic], Some(offset)).await
    }

    /// Unsubscribes from one lite topic (PARTIAL_REMOVE; nothing when not subscribed).
    pub async fn unsubscribe_lite(&self, lite_topic: &str) -> Result<()> {
        self.lite.unsubscribe(&[lite_topic]).await
    }

    /// The lite topics subscribed, sorted.
    pub fn lite_topics(&self) -> Vec<String> {
        self.lite.lite_topics()
    }

    /// The lite topics the servers took away since the last call.
    pub fn take_unsubscribed(&self) -> Vec<String> {
        self.lite.take_unsubscribed()
    }

    /// Messages held right now (received and not yet acked or nacked).
    pub fn in_flight(&self) -> usize {
        self.push.in_flight()
    }

    /// Stops receiving, waits (up to the shutdown timeout) for the running handlers, drops
    /// the subscriptions at the broker (COMPLETE_REMOVE) and closes the session.
    pub async fn shutdown(self) {
        self.push.drain().await;
        self.lite.shutdown().await;
    }
}

//! Lite consumers (RocketMQ's RIP-83 lite topics): a consumer bound to one LITE parent
//! topic that subscribes to lite topics under it one by one.
//!
//! - [`LiteSubscriptions`], shared by [`LiteSimpleConsumer`] and
//!   [`crate::LitePushConsumer`]: the client's set of lite topics and its syncs with the
//!   broker hosting the parent (SyncLiteSubscription to the parent's broker group, which
//!   opens the Telemetry session the broker's notices come back on). `subscribe_lite` sends
//!   PARTIAL_ADD (with an optional [`LiteOffset`] saying where a new subscription starts),
//!   `unsubscribe_lite` PARTIAL_REMOVE; every sync interval (30 s by default, as the
//!   official clients do) a COMPLETE_ADD re-sends the whole set, so subscriptions come back
//!   after a broker restart; shutdown sends COMPLETE_REMOVE. Syncs run one at a time, so a
//!   complete set never overtakes a partial change made after it was read.
//! - The limits come from the servers' Settings (`subscription.max_lite_topic_size`,
//!   `subscription.lite_subscription_quota`) and are checked before a sync is sent (ILLEGAL_LITE_TOPIC,
//!   LITE_SUBSCRIPTION_QUOTA_EXCEEDED); a server that names no quota leaves the check to
//!   the broker.
//! - A NotifyUnsubscribeLiteCommand on a Telemetry stream (an exclusive group's lite topic
//!   taken by another client, or an expired lite topic) removes that lite topic from the set;
//!   [`LiteSubscriptions::take_unsubscribed`] hands those notices out.
//! - Messages are received on the parent topic; each carries its `lite_topic`, and ack,
//!   ChangeInvisibleDuration and dead-letter forwards carry it back.

use crate::consumer::SimpleConsumer;
use crate::message::{FilterExpression, ReceivedMessage};
use crate::telemetry::Role;
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::v2::{self, settings::PubSub, LiteSubscriptionAction};
use apogee_proto::{limits, ApogeeError};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;

/// How often a lite consumer re-sends its whole set by default (as the official clients do).
pub const DEFAULT_LITE_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Where a new lite subscription starts reading (`OffsetOption`); without one the broker
/// decides (by default the lite topic's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiteOffset {
    /// The group's last committed position, else the broker's default.
    Last,
    /// The first message still stored.
    Min,
    /// The end: only messages sent from now on.
    Max,
    /// This queue offset.
    Offset(i64),
    /// The last N messages.
    TailN(i64),
    /// The first message stored at or after this time (ms since the epoch).
    Timestamp(i64),
}

impl LiteOffset {
    pub(crate) fn to_v2(self) -> v2::OffsetOption {
        use v2::offset_option::{OffsetType, Policy};
        let offset_type = match self {
            LiteOffset::Last => OffsetType::Policy(Policy::Last as i32),
            LiteOffset::Min => OffsetType::Policy(Policy::Min as i32),
            LiteOffset::Max => OffsetType::Policy(Policy::Max as i32),
            LiteOffset::Offset(o) => OffsetType::Offset(o),
            LiteOffset::TailN(n) => OffsetType::TailN(n),
            LiteOffset::Timestamp(t) => OffsetType::Timestamp(t),
        };
        v2::OffsetOption {
            offset_type: Some(offset_type),
        }
    }
}

/// The lite limits a server's Settings name (None: not named).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiteLimits {
    /// Most lite topics this client may subscribe.
    pub subscription_quota: Option<u32>,
    /// Longest lite topic name.
    pub max_lite_topic_len: Option<usize>,
}

impl LiteLimits {
    pub(crate) fn from_settings(settings: Option<&v2::Settings>) -> LiteLimits {
        let sub = settings.and_then(|s| match &s.pub_sub {
            Some(PubSub::Subscription(sub)) => Some(sub),
            _ => None,
        });
        LiteLimits {
            subscription_quota: sub
                .and_then(|s| s.lite_subscription_quota)
                .filter(|q| *q > 0)
                .map(|q| q as u32),
            max_lite_topic_len: sub
                .and_then(|s| s.max_lite_topic_size)
                .filter(|n| *n > 0)
                .map(|n| n as usize),
        }
    }

    /// Checks adding `new` (names not yet in the set) to a set of `current` lite topics.
    pub(crate) fn check_add(&self, current: usize, new: &[&str]) -> Result<()> {
        let max_len = self
            .max_lite_topic_len
            .unwrap_or(limits::DEFAULT_MAX_LITE_TOPIC_LEN);
        for name in new {
            limits::validate_lite_topic(name, max_len)?;
        }
        if let Some(quota) = self.subscription_quota {
            if current + new.len() > quota as usize {
                return Err(ApogeeError::LiteSubscriptionQuotaExceeded(format!(
                    "{} lite topics subscribed, {} more asked for, the quota is {quota}",
                    current,
                    new.len()
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// One lite consumer's set of lite topics and its syncs with the broker; see the module
/// documentation.
pub struct LiteSubscriptions {
    consumer: SimpleConsumer,
    bind_topic: String,
    topics: Mutex<BTreeSet<String>>,
    /// Lite topics the servers took away, not yet handed out.
    unsubscribed: Mutex<Vec<String>>,
    /// One sync at a time.
    syncing: tokio::sync::Mutex<()>,
    periodic: Mutex<Option<AbortHandle>>,
}

impl LiteSubscriptions {
    /// A lite consumer of `group` bound to `bind_topic`: the consumer under it, the
    /// NotifyUnsubscribeLiteCommand handler and the periodic sync. `push` declares a
    /// LITE_PUSH_CONSUMER.
    pub(crate) async fn start(
        config: ClientConfig,
        group: String,
        bind_topic: String,
        push: bool,
        sync_interval: Duration,
    ) -> Result<Arc<LiteSubscriptions>> {
        limits::validate_group(&group)?;
        limits::validate_topic(&bind_topic)?;
        if sync_interval.is_zero() {
            return Err(ClientError::Config(
                "the lite sync interval must be positive".into(),
            ));
        }
        let role = Role::LiteConsumer {
            group: group.clone(),
            bind_topic: bind_topic.clone(),
            push,
        };
        let subscriptions = vec![(bind_topic.clone(), FilterExpression::default())];
        let consumer = SimpleConsumer::with_role(config, group, subscriptions, role)?;
        let lite = Arc::new(LiteSubscriptions {
            consumer,
            bind_topic,
            topics: Mutex::new(BTreeSet::new()),
            unsubscribed: Mutex::new(Vec::new()),
            syncing: tokio::sync::Mutex::new(()),
            periodic: Mutex::new(None),
        });
        let weak = Arc::downgrade(&lite);
        let _ = lite
            .consumer
            .core()
            .sessions
            .lite_unsubscribed
            .set(Arc::new(move |name: String| {
                if let Some(lite) = weak.upgrade() {
                    lite.on_unsubscribed(name);
                }
            }));
        // The parent's route and a session with its broker: the servers' Settings (the
        // lite limits) arrive before the first subscribe.
        if let Err(e) = lite.open_sessions().await {
            lite.consumer.clone().shutdown().await;
            return Err(e);
        }
        let task = tokio::spawn(periodic_sync(Arc::downgrade(&lite), sync_interval));
        *lite.periodic.lock() = Some(task.abort_handle());
        Ok(lite)
    }

    async fn open_sessions(&self) -> Result<()> {
        let core = self.consumer.core();
        let route = core.route(&self.bind_topic).await?;
        for target in route.readable_brokers() {
            core.client(&target.endpoint).await?;
        }
        Ok(())
    }

    fn on_unsubscribed(&self, name: String) {
        let removed = self.topics.lock().remove(&name);
        tracing::info!(
            topic = %self.bind_topic,
            lite_topic = %name,
            was_subscribed = removed,
            "the broker ended this client's lite subscription"
        );
        self.unsubscribed.lock().push(name);
    }

    /// The consumer under the lite consumer.
    pub(crate) fn consumer(&self) -> &SimpleConsumer {
        &self.consumer
    }

    /// The parent topic.
    pub fn bind_topic(&self) -> &str {
        &self.bind_topic
    }

    /// The lite topics subscribed, sorted.
    pub fn lite_topics(&self) -> Vec<String> {
        self.topics.lock().iter().cloned().collect()
    }

    /// The lite topics the servers ended this client's subscription to
    /// (NotifyUnsubscribeLiteCommand) since the last call, in arrival order.
    pub fn take_unsubscribed(&self) -> Vec<String> {
        std::mem::take(&mut *self.unsubscribed.lock())
    }

    /// The lite limits the servers last named.
    pub fn limits(&self) -> LiteLimits {
        let settings = self.consumer.core().sessions.server_settings.lock();
        LiteLimits::from_settings(settings.as_ref())
    }

    /// Subscribes to lite topics (one PARTIAL_ADD), starting where `offset` says for those
    /// new to the broker.
    pub async fn subscribe(&self, names: &[&str], offset: Option<LiteOffset>) -> Result<()> {
        let _one = self.syncing.lock().await;
        let new: Vec<&str> = {
            let set = self.topics.lock();
            let mut seen = BTreeSet::new();
            names
                .iter()
                .copied()
                .filter(|n| !set.contains(*n) && seen.insert(*n))
                .collect()
        };
        let current = self.topics.lock().len();
        self.limits().check_add(current, &new)?;
        let all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.send(LiteSubscriptionAction::PartialAdd, all.clone(), offset)
            .await?;
        self.topics.lock().extend(all);
        Ok(())
    }

    /// Unsubscribes from lite topics (one PARTIAL_REMOVE); names not subscribed are left
    /// out (none left: nothing is sent).
    pub async fn unsubscribe(&self, names: &[&str]) -> Result<()> {
        let _one = self.syncing.lock().await;
        let present: Vec<String> = {
            let set = self.topics.lock();
            names
                .iter()
                .filter(|n| set.contains(**n))
                .map(|n| n.to_string())
                .collect()
        };
        if present.is_empty() {
            return Ok(());
        }
        self.send(LiteSubscriptionAction::PartialRemove, present.clone(), None)
            .await?;
        let mut set = self.topics.lock();
        for n in &present {
            set.remove(n);
        }
        Ok(())
    }

    /// Sends the whole set (COMPLETE_ADD): what the periodic sync does.
    pub async fn sync_all(&self) -> Result<()> {
        let _one = self.syncing.lock().await;
        let all = self.lite_topics();
        self.send(LiteSubscriptionAction::CompleteAdd, all, None)
            .await
    }

    /// One SyncLiteSubscription to every broker group of the parent's route (one, for a
    /// LITE parent).
    async fn send(
        &self,
        action: LiteSubscriptionAction,
        lite_topics: Vec<String>,
        offset: Option<LiteOffset>,
    ) -> Result<()> {
        let core = self.consumer.core();
        let route = core.route(&self.bind_topic).await?;
        let targets = route.readable_brokers();
        if targets.is_empty() {
            return Err(ClientError::NoRoute(format!(
                "topic {} has no readable queue",
                self.bind_topic
            )));
        }
        let req = v2::SyncLiteSubscriptionRequest {
            action: action as i32,
            topic: Some(core.resource(&self.bind_topic)),
            group: Some(core.resource(self.consumer.group())),
            lite_topic_set: lite_topics,
            version: None,
            offset_option: offset.map(LiteOffset::to_v2),
        };
        for target in &targets {
            let res = core
                .call(
                    &target.endpoint,
                    req.clone(),
                    core.config.request_timeout,
                    |mut c, r| async move { c.sync_lite_subscription(r).await },
                )
                .await
                .and_then(|r| ClientError::check(r.status.as_ref()));
            if let Err(e) = res {
                if e.may_mean_stale_route() {
                    core.routes.invalidate(&self.bind_topic);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops the periodic sync, drops the client's subscriptions at the broker
    /// (COMPLETE_REMOVE) and closes the session.
    pub(crate) async fn shutdown(&self) {
        if let Some(task) = self.periodic.lock().take() {
            task.abort();
        }
        {
            let _one = self.syncing.lock().await;
            let all = self.lite_topics();
            if let Err(e) = self
                .send(LiteSubscriptionAction::CompleteRemove, all, None)
                .await
            {
                tracing::debug!(topic = %self.bind_topic, error = %e,
                    "lite subscriptions not removed at shutdown (the broker drops them when the session ends)");
            }
        }
        self.consumer.clone().shutdown().await;
    }
}

impl Drop for LiteSubscriptions {
    fn drop(&mut self) {
        if let Some(task) = self.periodic.lock().take() {
            task.abort();
        }
    }
}

async fn periodic_sync(lite: Weak<LiteSubscriptions>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(lite) = lite.upgrade() else { return };
        if let Err(e) = lite.sync_all().await {
            tracing::info!(topic = %lite.bind_topic, error = %e, "lite subscription sync failed; retried at the next interval");
        }
    }
}

/// Configures and connects a [`LiteSimpleConsumer`].
pub struct LiteSimpleConsumerBuilder {
    config: ClientConfig,
    group: String,
    bind_topic: String,
    sync_interval: Duration,
}

impl LiteSimpleConsumerBuilder {
    /// How often the whole set is sent again (default 30 s).
    pub fn sync_interval(mut self, every: Duration) -> Self {
        self.sync_interval = every;
        self
    }

    /// Checks the names, fetches the parent's route and opens the session with its broker.
    pub async fn connect(self) -> Result<LiteSimpleConsumer> {
        let lite = LiteSubscriptions::start(
            self.config,
            self.group,
            self.bind_topic,
            false,
            self.sync_interval,
        )
        .await?;
        Ok(LiteSimpleConsumer { lite })
    }
}

/// A simple consumer of lite topics under one LITE parent topic: subscribe to lite topics,
/// receive from the parent (messages of the subscribed lite topics), ack.
#[derive(Clone)]
pub struct LiteSimpleConsumer {
    lite: Arc<LiteSubscriptions>,
}

impl LiteSimpleConsumer {
    /// Starts configuring a lite consumer of `group` bound to the LITE topic `bind_topic`.
    pub fn builder(
        config: ClientConfig,
        group: impl Into<String>,
        bind_topic: impl Into<String>,
    ) -> LiteSimpleConsumerBuilder {
        LiteSimpleConsumerBuilder {
            config,
            group: group.into(),
            bind_topic: bind_topic.into(),
            sync_interval: DEFAULT_LITE_SYNC_INTERVAL,
        }
    }

    /// Connects with the defaults (see [`LiteSimpleConsumer::builder`]).
    pub async fn connect(
        config: ClientConfig,
        group: impl Into<String>,
        bind_topic: impl Into<String>,
    ) -> Result<LiteSimpleConsumer> {
        LiteSimpleConsumer::builder(config, group, bind_topic)
            .connect()
            .await
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        self.lite.consumer.group()
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

    /// Receives up to `max_messages` (1 to 64) messages of the subscribed lite topics, as
    /// [`SimpleConsumer::receive`] does on the parent topic.
    pub async fn receive(
        &self,
        max_messages: u32,
        invisible_duration: Duration,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        self.lite
            .consumer
            .receive(
                &self.lite.bind_topic,
                max_messages,
                invisible_duration,
                wait,
            )
            .await
    }

    /// Acknowledges one message (its lite topic goes with it).
    pub async fn ack(&self, message: &ReceivedMessage) -> Result<()> {
        self.lite.consumer.ack(message).await
    }

    /// Acknowledges messages; one result per message, in order.
    pub async fn ack_many(&self, messages: &[ReceivedMessage]) -> Vec<Result<()>> {
        self.lite.consumer.ack_many(messages).await
    }

    /// Changes how long a received message stays hidden (a nack: it comes back after
    /// `invisible_duration`); returns the new receipt handle.
    pub async fn change_invisible_duration(
        &self,
        message: &ReceivedMessage,
        invisible_duration: Duration,
    ) -> Result<String> {
        self.lite
            .consumer
            .change_invisible_duration(message, invisible_duration)
            .await
    }

    /// Drops the subscriptions at the broker (COMPLETE_REMOVE), notifies the servers and
    /// closes the sessions.
    pub async fn shutdown(self) {
        self.lite.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(quota: Option<i32>, max_len: Option<i32>) -> v2::Settings {
        v2::Settings {
            pub_sub: Some(PubSub::Subscription(v2::Subscription {
                lite_subscription_quota: quota,
                max_lite_topic_size: max_len,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn limits_come_from_the_settings_and_absent_ones_stay_unknown() {
        let l = LiteLimits::from_settings(Some(&settings(Some(3), Some(10))));
        assert_eq!(l.subscription_quota, Some(3));
        assert_eq!(l.max_lite_topic_len, Some(10));
        assert_eq!(LiteLimits::from_settings(None), LiteLimits::default());
        // The Python client reads an absent quota as 0 and refuses everything: an unnamed
        // (or zero) quota is left to the broker here.
        let l = LiteLimits::from_settings(Some(&settings(Some(0), None)));
        assert_eq!(l, LiteLimits::default());
    }

    #[test]
    fn adds_are_checked_against_the_name_rule_and_the_quota() {
        let l = LiteLimits::from_settings(Some(&settings(Some(3), Some(8))));
        assert!(l.check_add(1, &["a", "b"]).is_ok());
        let code = |r: Result<()>| r.unwrap_err().code();
        assert_eq!(
            code(l.check_add(2, &["c", "d"])),
            Some(v2::Code::LiteSubscriptionQuotaExceeded)
        );
        assert_eq!(
            code(l.check_add(0, &["nine-char"])),
            Some(v2::Code::IllegalLiteTopic)
        );
        assert_eq!(
            code(l.check_add(0, &["a%b"])),
            Some(v2::Code::IllegalLiteTopic)
        );
        assert_eq!(
            code(l.check_add(0, &[""])),
            Some(v2::Code::IllegalLiteTopic)
        );
        // Without a named length the protocol default (64) applies; without a quota, none.
        let open = LiteLimits::default();
        assert!(open.check_add(1_000_000, &[&"x".repeat(64)]).is_ok());
        assert!(open.check_add(0, &[&"x".repeat(65)]).is_err());
    }

    #[test]
    fn offsets_become_the_protocols_option() {
        use v2::offset_option::{OffsetType, Policy};
        let t = |o: LiteOffset| o.to_v2().offset_type.unwrap();
        assert_eq!(t(LiteOffset::Min), OffsetType::Policy(Policy::Min as i32));
        assert_eq!(t(LiteOffset::Max), OffsetType::Policy(Policy::Max as i32));
        assert_eq!(t(LiteOffset::Last), OffsetType::Policy(Policy::Last as i32));
        assert_eq!(t(LiteOffset::Offset(7)), OffsetType::Offset(7));
        assert_eq!(t(LiteOffset::TailN(3)), OffsetType::TailN(3));
        assert_eq!(t(LiteOffset::Timestamp(9)), OffsetType::Timestamp(9));
    }
}

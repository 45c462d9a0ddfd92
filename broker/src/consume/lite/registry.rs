//! The lite subscription registry: per client its group, parent and set of lite queues
//! ([`LiteClient`]), per (group, lite queue) its subscribers ([`QueueSubscribers`], which
//! listens to the store's appends to that lite queue and marks it ready for each of them).
//! Memory is bounded by the subscriptions: nothing here for a lite topic nobody subscribes.

use super::client::{LiteClient, QueueName};
use super::StartOffset;
use crate::consume::ConsumeEngine;
use crate::store::wakeups::AppendListener;
use crate::store::MessageStore;
use apogee_proto::{names, ApogeeError};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Tells a client it no longer subscribes a lite topic (NotifyUnsubscribeLiteCommand on its
/// Telemetry stream): (client id, lite topic) -> whether it reached the client.
pub type UnsubscribeNotifier = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;
/// Whether a client has a live Telemetry session on this broker.
pub type SessionCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How often idle and disconnected clients are looked for (on the calls that come in).
const SWEEP_EVERY_MS: i64 = 5_000;

/// What a SyncLiteSubscription asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Adds the named lite topics to the client's set.
    PartialAdd,
    /// Removes them.
    PartialRemove,
    /// Replaces the set with them (the official clients resend their whole set every 30 s).
    CompleteAdd,
    /// Drops the client.
    CompleteRemove,
}

/// One SyncLiteSubscription, validated.
pub struct SyncRequest<'a> {
    pub client_id: &'a str,
    pub group: &'a str,
    pub parent: &'a str,
    /// Exclusive mode: a lite topic has one subscriber in the group; a new one evicts it.
    pub exclusive: bool,
    pub action: SyncAction,
    /// Lite topic names (validated).
    pub lite_topics: &'a [String],
    /// Where the group starts in the named lite topics (see [`StartOffset`]).
    pub start: Option<StartOffset>,
    /// Most lite topics the client may hold.
    pub quota: usize,
    pub now_ms: i64,
}

/// The subscribers of one lite queue in one group; listens to the queue's appends.
pub struct QueueSubscribers {
    queue: QueueName,
    subscribers: Mutex<Vec<Arc<LiteClient>>>,
}

impl AppendListener for QueueSubscribers {
    fn appended(&self, _topic: &str, _queue_id: u32) {
        for c in self.subscribers.lock().iter() {
            c.mark_ready(&self.queue);
        }
    }
}

#[derive(Default)]
struct Maps {
    clients: HashMap<Arc<str>, Arc<LiteClient>>,
    /// (group, lite queue) -> its subscribers.
    queues: HashMap<(String, QueueName), Arc<QueueSubscribers>>,
}

/// Counters of the registry (metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiteCounters {
    /// Subscribers evicted from a lite topic by another client (exclusive mode) or by expiry.
    pub evictions: u64,
    /// NotifyUnsubscribeLiteCommands that reached their client.
    pub notifications: u64,
}

/// Every lite subscription of this broker.
pub struct LiteRegistry {
    store: Arc<MessageStore>,
    engine: Arc<ConsumeEngine>,
    maps: Mutex<Maps>,
    notifier: Mutex<Option<UnsubscribeNotifier>>,
    sessions: Mutex<Option<SessionCheck>>,
    idle_ms: AtomicI64,
    last_sweep_ms: AtomicI64,
    evictions: AtomicU64,
    notifications: AtomicU64,
}

impl LiteRegistry {
    /// A registry whose clients lose their subscriptions after `idle_ms` without a sync.
    pub fn new(store: Arc<MessageStore>, engine: Arc<ConsumeEngine>, idle_ms: i64) -> Self {
        LiteRegistry {
            store,
            engine,
            maps: Mutex::default(),
            notifier: Mutex::new(None),
            sessions: Mutex::new(None),
            idle_ms: AtomicI64::new(idle_ms),
            last_sweep_ms: AtomicI64::new(0),
            evictions: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
        }
    }

    /// How evicted subscribers are told (the broker's Telemetry sessions).
    pub fn set_notifier(&self, notifier: UnsubscribeNotifier) {
        *self.notifier.lock() = Some(notifier);
    }

    /// How a client's Telemetry session is checked (a client whose stream closed is gone).
    pub fn set_session_check(&self, check: SessionCheck) {
        *self.sessions.lock() = Some(check);
    }

    pub fn counters(&self) -> LiteCounters {
        LiteCounters {
            evictions: self.evictions.load(Ordering::Relaxed),
            notifications: self.notifications.load(Ordering::Relaxed),
        }
    }

    /// The client, if it has a registration here.
    pub fn client(&self, client_id: &str) -> Option<Arc<LiteClient>> {
        self.maps.lock().clients.get(client_id).cloned()
    }

    /// The client a receive of `group` on `parent` serves, registered (with no lite topic)
    /// when it has not synced yet: its first sync then wakes this receive.
    pub fn client_for_receive(
        &self,
        client_id: &str,
        group: &str,
        parent: &str,
        now_ms: i64,
    ) -> Arc<LiteClient> {
        self.sweep(now_ms);
        let mut maps = self.maps.lock();
        match maps.clients.get(client_id) {
            Some(c) if c.group == group && c.parent == parent => c.clone(),
            _ => {
                if let Some(old) = maps.clients.remove(client_id) {
                    self.drop_client(&mut maps, &old);
                }
                let c = Arc::new(LiteClient::new(client_id, group, parent, now_ms));
                maps.clients.insert(c.id.clone(), c.clone());
                c
            }
        }
    }

    /// Applies one SyncLiteSubscription. Over the quota nothing changes.
    pub fn sync(&self, req: &SyncRequest<'_>) -> Result<(), ApogeeError> {
        self.sweep(req.now_ms);
        let queues: Vec<QueueName> = req
            .lite_topics
            .iter()
            .map(|l| QueueName::from(names::lite_queue_topic(req.parent, l)))
            .collect();
        let mut maps = self.maps.lock();
        if req.action == SyncAction::CompleteRemove {
            if let Some(old) = maps.clients.remove(req.client_id) {
                self.drop_client(&mut maps, &old);
            }
            return Ok(());
        }
        let client = match maps.clients.get(req.client_id) {
            Some(c) if c.group == req.group && c.parent == req.parent => c.clone(),
            _ => {
                if let Some(old) = maps.clients.remove(req.client_id) {
                    self.drop_client(&mut maps, &old);
                }
                let c = Arc::new(LiteClient::new(
                    req.client_id,
                    req.group,
                    req.parent,
                    req.now_ms,
                ));
                maps.clients.insert(c.id.clone(), c.clone());
                c
            }
        };
        client.touch(req.now_ms);
        let current: HashSet<QueueName> = client.subscribed().into_iter().collect();
        let (adds, removes): (Vec<QueueName>, Vec<QueueName>) = match req.action {
            SyncAction::PartialAdd => (queues.clone(), vec![]),
            SyncAction::PartialRemove => (vec![], queues.clone()),
            SyncAction::CompleteAdd => {
                let target: HashSet<&QueueName> = queues.iter().collect();
                let removes = current
                    .iter()
                    .filter(|q| !target.contains(q))
                    .cloned()
                    .collect();
                (queues.clone(), removes)
            }
            SyncAction::CompleteRemove => unreachable!("handled above"),
        };
        let after: HashSet<&QueueName> = current
            .iter()
            .filter(|q| !removes.contains(q))
            .chain(adds.iter())
            .collect();
        if after.len() > req.quota {
            return Err(ApogeeError::LiteSubscriptionQuotaExceeded(format!(
                "client {} would subscribe {} lite topics of {}; its quota is {}",
                req.client_id,
                after.len(),
                req.parent,
                req.quota
            )));
        }
        for q in &removes {
            self.unsubscribe(&mut maps, &client, q);
        }
        for q in &adds {
            let explicit = req.action == SyncAction::PartialAdd;
            self.engine
                .lite_start(req.group, q, req.start.filter(|_| explicit))?;
            if req.exclusive {
                self.evict_others(&mut maps, &client, q);
            }
            if client.add(q) {
                self.subscriber_entry(&mut maps, req.group, q)
                    .subscribers
                    .lock()
                    .push(client.clone());
            }
            // Whatever it holds is looked at by the next receive.
            client.mark_ready(q);
        }
        Ok(())
    }

    fn subscriber_entry(
        &self,
        maps: &mut Maps,
        group: &str,
        queue: &QueueName,
    ) -> Arc<QueueSubscribers> {
        let key = (group.to_string(), queue.clone());
        if let Some(e) = maps.queues.get(&key) {
            return e.clone();
        }
        let entry = Arc::new(QueueSubscribers {
            queue: queue.clone(),
            subscribers: Mutex::default(),
        });
        let listener: Arc<dyn AppendListener> = entry.clone();
        self.store.wakeups().listen(queue, 0, listener);
        maps.queues.insert(key, entry.clone());
        entry
    }

    /// Removes `client` from `queue`'s subscribers (and the listener with the last one).
    fn unsubscribe(&self, maps: &mut Maps, client: &Arc<LiteClient>, queue: &str) {
        client.remove(queue);
        let key = (client.group.clone(), QueueName::from(queue));
        let Some(entry) = maps.queues.get(&key).cloned() else {
            return;
        };
        let empty = {
            let mut subs = entry.subscribers.lock();
            subs.retain(|c| !Arc::ptr_eq(c, client));
            subs.is_empty()
        };
        if empty {
            maps.queues.remove(&key);
            let listener: Arc<dyn AppendListener> = entry;
            self.store.wakeups().unlisten(queue, 0, &listener);
        }
    }

    /// Exclusive mode: every other subscriber of `queue` in the group loses it and is told.
    fn evict_others(&self, maps: &mut Maps, client: &Arc<LiteClient>, queue: &QueueName) {
        let key = (client.group.clone(), queue.clone());
        let others: Vec<Arc<LiteClient>> = match maps.queues.get(&key) {
            Some(e) => e
                .subscribers
                .lock()
                .iter()
                .filter(|c| !Arc::ptr_eq(c, client))
                .cloned()
                .collect(),
            None => return,
        };
        for other in others {
            tracing::info!(
                group = %client.group,
                lite_queue = %queue,
                evicted = %other.id,
                by = %client.id,
                "exclusive lite subscription taken over"
            );
            self.unsubscribe(maps, &other, queue);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            self.tell_unsubscribed(&other.id, queue);
        }
    }

    fn tell_unsubscribed(&self, client_id: &str, queue: &str) {
        let Some((_, lite)) = names::split_lite_queue_topic(queue) else {
            return;
        };
        let notifier = self.notifier.lock().clone();
        if let Some(notify) = notifier {
            if notify(client_id, lite) {
                self.notifications.fetch_add(1, Ordering::Relaxed);
            } else {
                tracing::debug!(
                    client = client_id,
                    lite,
                    "no Telemetry session on this broker to tell of the unsubscription"
                );
            }
        }
    }

    fn drop_client(&self, maps: &mut Maps, client: &Arc<LiteClient>) {
        for q in client.subscribed() {
            self.unsubscribe(maps, client, &q);
        }
        // A receive waiting for it looks again (and finds nothing).
        client.notify().notify_waiters();
    }

    /// The client is gone (NotifyClientTermination, its Telemetry stream closed): it loses
    /// its subscriptions.
    pub fn client_gone(&self, client_id: &str) {
        let mut maps = self.maps.lock();
        if let Some(old) = maps.clients.remove(client_id) {
            tracing::debug!(
                client = client_id,
                "lite client gone: subscriptions dropped"
            );
            self.drop_client(&mut maps, &old);
        }
    }

    /// Drops the clients with no sync for the idle time and those whose Telemetry stream
    /// with this broker closed; runs at most every few seconds, on the calls that come in.
    pub fn sweep(&self, now_ms: i64) {
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms - last < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep_now(now_ms);
    }

    /// [`sweep`](Self::sweep) at once.
    pub fn sweep_now(&self, now_ms: i64) {
        let idle_ms = self.idle_ms.load(Ordering::Relaxed);
        let check = self.sessions.lock().clone();
        let mut maps = self.maps.lock();
        let gone: Vec<Arc<LiteClient>> = maps
            .clients
            .values()
            .filter(|c| {
                let closed = check
                    .as_ref()
                    .is_some_and(|live| c.session_closed(live(&c.id)));
                closed || now_ms - c.last_sync_ms() > idle_ms
            })
            .cloned()
            .collect();
        for c in gone {
            tracing::info!(
                client = %c.id,
                group = %c.group,
                "lite client idle or disconnected: its subscriptions are dropped"
            );
            maps.clients.remove(&c.id);
            self.drop_client(&mut maps, &c);
        }
    }

    /// A lite topic expired (its queue was purged): it leaves every set, and its
    /// subscribers are told.
    pub fn lite_topic_expired(&self, queue: &str) {
        let mut maps = self.maps.lock();
        let keys: Vec<(String, QueueName)> = maps
            .queues
            .keys()
            .filter(|(_, q)| &**q == queue)
            .cloned()
            .collect();
        for key in keys {
            let Some(entry) = maps.queues.get(&key).cloned() else {
                continue;
            };
            let subs: Vec<Arc<LiteClient>> = entry.subscribers.lock().clone();
            for c in subs {
                self.unsubscribe(&mut maps, &c, queue);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.tell_unsubscribed(&c.id, queue);
            }
        }
    }

    /// Marks `queue` ready for its subscribers in `group` (an ack or nack may let its next
    /// message go).
    pub fn mark_ready(&self, group: &str, queue: &str) {
        let entry = self
            .maps
            .lock()
            .queues
            .get(&(group.to_string(), QueueName::from(queue)))
            .cloned();
        if let Some(e) = entry {
            e.appended(queue, 0);
        }
    }

    /// Has `queue`'s subscribers in `group` look at it again at `at_ms` (its delivery in
    /// flight comes due then).
    pub fn due_at(&self, group: &str, queue: &str, at_ms: i64) {
        let entry = self
            .maps
            .lock()
            .queues
            .get(&(group.to_string(), QueueName::from(queue)))
            .cloned();
        if let Some(e) = entry {
            for c in e.subscribers.lock().iter() {
                c.due_at(&e.queue, at_ms);
            }
        }
    }

    /// Subscriptions (client, lite topic) per group.
    pub fn subscriptions_by_group(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for c in self.maps.lock().clients.values() {
            *out.entry(c.group.clone()).or_default() += c.subscription_count();
        }
        out
    }

    /// The lite queues `group` subscribes under `parent` (each once).
    pub fn subscribed_queues(&self, group: &str, parent: &str) -> Vec<QueueName> {
        let prefix = names::lite_queue_prefix(parent);
        let mut out: Vec<QueueName> = self
            .maps
            .lock()
            .queues
            .keys()
            .filter(|(g, q)| g == group && q.starts_with(&prefix))
            .map(|(_, q)| q.clone())
            .collect();
        out.sort();
        out
    }

    /// The clients subscribing `queue` in `group`.
    pub fn subscribers(&self, group: &str, queue: &str) -> Vec<String> {
        let entry = self
            .maps
            .lock()
            .queues
            .get(&(group.to_string(), QueueName::from(queue)))
            .cloned();
        let mut out: Vec<String> = entry
            .map(|e| {
                e.subscribers
                    .lock()
                    .iter()
                    .map(|c| c.id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Groups with a subscriber of `queue`.
    pub fn groups_of(&self, queue: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .maps
            .lock()
            .queues
            .keys()
            .filter(|(_, q)| &**q == queue)
            .map(|(g, _)| g.clone())
            .collect();
        out.sort();
        out
    }
}

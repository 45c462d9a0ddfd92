//! Topic routes: the queues a NameServer reports for a topic, the choices a
//! client makes from them (writable queues for a producer, one endpoint per
//! broker group for a consumer), and a per-topic cache that is refreshed
//! when older than [`ROUTE_TTL`] or after a failure. A refresh that fails
//! (every NameServer down, or one restarted that knows nothing yet) keeps the
//! cached route in use and is tried again [`REFRESH_RETRY`] later, so sends
//! and receives go on against the brokers the client already knows.

use crate::transport::endpoint_addr;
use apogee_proto::v2::{self, Permission};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fetched route is used before it is fetched again.
pub const ROUTE_TTL: Duration = Duration::from_secs(30);

/// How long a cached route is used as it is after a refresh failed, before
/// the next refresh is tried.
pub const REFRESH_RETRY: Duration = Duration::from_secs(2);

/// The queues of one topic.
#[derive(Clone, Debug, Default)]
pub struct Route {
    pub topic: String,
    /// Every queue the NameServer reported; private, so [`Route::writable_queues`], derived
    /// from it in [`Route::new`], always agrees with it.
    queues: Vec<v2::MessageQueue>,
    /// The queues a producer may send to, chosen once when the route is fetched (every send
    /// picks from them).
    writable: Vec<v2::MessageQueue>,
}

/// One broker group a consumer can receive from.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerTarget {
    /// Broker group name.
    pub broker_name: String,
    /// `host:port` of the member to talk to.
    pub endpoint: String,
    /// The broker as the route describes it.
    pub broker: v2::Broker,
}

fn can_write(q: &v2::MessageQueue) -> bool {
    matches!(
        Permission::try_from(q.permission),
        Ok(Permission::Write | Permission::ReadWrite)
    )
}

fn can_read(q: &v2::MessageQueue) -> bool {
    matches!(
        Permission::try_from(q.permission),
        Ok(Permission::Read | Permission::ReadWrite)
    )
}

/// Broker group name of a queue ("" when the route omits it).
pub fn broker_name(q: &v2::MessageQueue) -> &str {
    q.broker.as_ref().map(|b| b.name.as_str()).unwrap_or("")
}

/// `host:port` of a queue's broker.
pub fn queue_endpoint(q: &v2::MessageQueue) -> Option<String> {
    q.broker
        .as_ref()
        .and_then(|b| b.endpoints.as_ref())
        .and_then(endpoint_addr)
}

impl Route {
    /// The route of `topic` over `queues`.
    pub fn new(topic: impl Into<String>, queues: Vec<v2::MessageQueue>) -> Route {
        let writable = queues
            .iter()
            .filter(|q| can_write(q))
            .filter(|q| q.broker.as_ref().is_some_and(|b| b.id == 0))
            .filter(|q| queue_endpoint(q).is_some())
            .cloned()
            .collect();
        Route {
            topic: topic.into(),
            queues,
            writable,
        }
    }

    /// Queues a producer may send to: writable, on a master, with an endpoint.
    pub fn writable_queues(&self) -> &[v2::MessageQueue] {
        &self.writable
    }

    /// One member per broker group that has a readable queue, preferring the
    /// master (lowest broker id); sorted by broker name.
    pub fn readable_brokers(&self) -> Vec<BrokerTarget> {
        let mut best: HashMap<&str, (&v2::Broker, String)> = HashMap::new();
        for q in self.queues.iter().filter(|q| can_read(q)) {
            let (Some(b), Some(ep)) = (q.broker.as_ref(), queue_endpoint(q)) else {
                continue;
            };
            match best.get(b.name.as_str()) {
                Some((cur, _)) if cur.id <= b.id => {}
                _ => {
                    best.insert(b.name.as_str(), (b, ep));
                }
            }
        }
        let mut out: Vec<BrokerTarget> = best
            .into_iter()
            .map(|(name, (b, ep))| BrokerTarget {
                broker_name: name.to_string(),
                endpoint: ep,
                broker: b.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        out
    }
}

/// Picks the queue at `start` (round-robin position) or the next one whose
/// broker is not in `avoid`; falls back to the one at `start` when every
/// broker is to be avoided. `None` only for an empty list.
pub fn select_queue<'a>(
    queues: &'a [v2::MessageQueue],
    start: usize,
    avoid: &[String],
) -> Option<&'a v2::MessageQueue> {
    select_avoiding(queues, start, avoid, broker_name)
}

/// [`select_queue`] over queues of any kind, `broker` naming each one's broker group (the
/// remoting producer's queues as well as the protocol's).
pub(crate) fn select_avoiding<'a, Q>(
    queues: &'a [Q],
    start: usize,
    avoid: &[String],
    broker: impl Fn(&Q) -> &str,
) -> Option<&'a Q> {
    if queues.is_empty() {
        return None;
    }
    let n = queues.len();
    (0..n)
        .map(|i| &queues[(start + i) % n])
        .find(|q| !avoid.iter().any(|a| a == broker(q)))
        .or_else(|| Some(&queues[start % n]))
}

/// A cached route with when it was fetched (`None` once marked stale) and
/// when a refresh may be tried again after one failed.
struct CacheEntry {
    route: Arc<Route>,
    fetched: Option<Instant>,
    retry_at: Option<Instant>,
}

impl CacheEntry {
    fn freshness(&self, now: Instant) -> Freshness {
        if self.fetched.is_some_and(|t| now < t + ROUTE_TTL) {
            Freshness::Fresh
        } else if self.retry_at.is_some_and(|t| now < t) {
            Freshness::RetryLater
        } else {
            Freshness::Stale
        }
    }
}

/// What a cached route is good for right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Fetched within [`ROUTE_TTL`] and not marked stale: use it.
    Fresh,
    /// Due for a refresh: fetch it, and fall back to it if that fails.
    Stale,
    /// Due, but a refresh failed less than [`REFRESH_RETRY`] ago: use it as it is.
    RetryLater,
}

/// Per-topic route cache.
#[derive(Default)]
pub(crate) struct RouteCache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

impl RouteCache {
    /// The cached route and what it is good for.
    pub(crate) fn get(&self, topic: &str) -> Option<(Arc<Route>, Freshness)> {
        let now = Instant::now();
        self.entries
            .lock()
            .get(topic)
            .map(|e| (e.route.clone(), e.freshness(now)))
    }

    pub(crate) fn put(&self, route: Route) -> Arc<Route> {
        let route = Arc::new(route);
        let entry = CacheEntry {
            route: route.clone(),
            fetched: Some(Instant::now()),
            retry_at: None,
        };
        self.entries.lock().insert(route.topic.clone(), entry);
        route
    }

    /// Marks a topic's route as stale so the next use fetches it again (the
    /// old one stays usable if the fetch fails).
    pub(crate) fn invalidate(&self, topic: &str) {
        if let Some(e) = self.entries.lock().get_mut(topic) {
            e.fetched = None;
        }
    }

    /// Records that refreshing a topic's route failed: the cached route is used
    /// as it is for [`REFRESH_RETRY`].
    pub(crate) fn refresh_failed(&self, topic: &str) {
        if let Some(e) = self.entries.lock().get_mut(topic) {
            e.retry_at = Some(Instant::now() + REFRESH_RETRY);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn queue(
        broker: &str,
        id: i32,
        broker_id: i32,
        perm: Permission,
    ) -> v2::MessageQueue {
        v2::MessageQueue {
            topic: Some(v2::Resource {
                resource_namespace: String::new(),
                name: "T".into(),
            }),
            id,
            permission: perm as i32,
            broker: Some(v2::Broker {
                name: broker.into(),
                id: broker_id,
                endpoints: crate::transport::to_endpoints(&format!(
                    "{broker}.local:{}",
                    10911 + broker_id
                ))
                .ok(),
            }),
            accept_message_types: vec![v2::MessageType::Normal as i32],
        }
    }

    fn route() -> Route {
        Route::new(
            "T",
            vec![
                queue("a", 0, 0, Permission::ReadWrite),
                queue("a", 1, 0, Permission::ReadWrite),
                queue("b", 0, 0, Permission::Read),
                queue("c", 0, 1, Permission::ReadWrite),
                queue("c", 0, 2, Permission::ReadWrite),
                queue("d", 0, 0, Permission::Write),
            ],
        )
    }

    #[test]
    fn writable_queues_are_on_masters_with_write_permission() {
        let route = route();
        let w = route.writable_queues();
        let names: Vec<(&str, i32)> = w.iter().map(|q| (broker_name(q), q.id)).collect();
        assert_eq!(names, vec![("a", 0), ("a", 1), ("d", 0)]);
    }

    #[test]
    fn readable_brokers_pick_one_member_per_group() {
        let r = route().readable_brokers();
        let got: Vec<(&str, i32, &str)> = r
            .iter()
            .map(|t| (t.broker_name.as_str(), t.broker.id, t.endpoint.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 0, "a.local:10911"),
                ("b", 0, "b.local:10911"),
                ("c", 1, "c.local:10912"),
            ]
        );
    }

    #[test]
    fn selection_is_round_robin_and_avoids_failed_brokers() {
        let route = route();
        let w = route.writable_queues();
        let picks: Vec<(String, i32)> = (0..4)
            .map(|i| {
                let q = select_queue(w, i, &[]).unwrap();
                (broker_name(q).to_string(), q.id)
            })
            .collect();
        assert_eq!(
            picks,
            vec![
                ("a".into(), 0),
                ("a".into(), 1),
                ("d".into(), 0),
                ("a".into(), 0)
            ]
        );
        let q = select_queue(w, 0, &["a".to_string()]).unwrap();
        assert_eq!(broker_name(q), "d");
        let q = select_queue(w, 1, &["a".to_string(), "d".to_string()]).unwrap();
        assert_eq!((broker_name(q), q.id), ("a", 1));
        assert!(select_queue(&[], 0, &[]).is_none());
    }

    #[test]
    fn cache_invalidation_makes_routes_stale() {
        let cache = RouteCache::default();
        cache.put(route());
        assert_eq!(cache.get("T").unwrap().1, Freshness::Fresh);
        cache.invalidate("T");
        assert_eq!(cache.get("T").unwrap().1, Freshness::Stale);
        assert!(cache.get("U").is_none());
    }

    #[test]
    fn a_failed_refresh_keeps_the_route_until_the_retry() {
        let cache = RouteCache::default();
        cache.put(route());
        cache.invalidate("T");
        cache.refresh_failed("T");
        let (kept, state) = cache.get("T").unwrap();
        assert_eq!(state, Freshness::RetryLater);
        assert_eq!(kept.queues.len(), route().queues.len());
        // A fetched route clears the failure.
        cache.put(route());
        assert_eq!(cache.get("T").unwrap().1, Freshness::Fresh);
        // Failing for a topic never cached records nothing.
        cache.refresh_failed("U");
        assert!(cache.get("U").is_none());
    }

    #[test]
    fn freshness_follows_the_fetch_time_and_the_retry_time() {
        let t0 = Instant::now();
        let mut e = CacheEntry {
            route: Arc::new(route()),
            fetched: Some(t0),
            retry_at: None,
        };
        assert_eq!(e.freshness(t0 + ROUTE_TTL / 2), Freshness::Fresh);
        assert_eq!(e.freshness(t0 + ROUTE_TTL), Freshness::Stale);
        let failed = t0 + ROUTE_TTL;
        e.retry_at = Some(failed + REFRESH_RETRY);
        assert_eq!(
            e.freshness(failed + REFRESH_RETRY / 2),
            Freshness::RetryLater
        );
        assert_eq!(e.freshness(failed + REFRESH_RETRY), Freshness::Stale);
    }
}

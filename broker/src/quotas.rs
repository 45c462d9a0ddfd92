//! Abuse limits of one broker: send rates per client and per topic (token
//! buckets; a send over quota gets TOO_MANY_REQUESTS, which the official
//! producers back off on) and a cap on the long polls (receives and pulls
//! waiting for messages) held at once. Every limit is off at 0. (The cap on
//! connections per client address is applied where connections are
//! accepted, `apogee_server::net`.)
//!
//! Buckets live in maps split into shards by key, each behind its own lock,
//! so senders do not all queue on one lock; a map prunes buckets idle for a
//! minute once it holds many.

use apogee_proto::ApogeeError;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The `[limits]` section of the broker config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Messages per second one client (by client id) may send; 0: no limit.
    pub send_rate_per_client: u32,
    /// Messages per second all clients together may send to one topic; 0: no limit.
    pub send_rate_per_topic: u32,
    /// Receives and pulls waiting for messages at once; more are refused at once; 0: no limit.
    pub max_long_polls: usize,
    /// Connections one client IP address may hold open at once; more are closed when
    /// accepted; 0: no limit.
    pub max_connections_per_address: usize,
    /// Telemetry sessions (clients) from one IP address; more are refused with
    /// TOO_MANY_REQUESTS; 0: no limit.
    pub max_sessions_per_address: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            send_rate_per_client: 0,
            send_rate_per_topic: 0,
            max_long_polls: 10_000,
            max_connections_per_address: 1024,
            max_sessions_per_address: 1024,
        }
    }
}

const SHARDS: usize = 16;
/// A map prunes idle buckets once one shard holds this many.
const PRUNE_AT: usize = 4096;
const IDLE: Duration = Duration::from_secs(60);

/// A token bucket: `rate` tokens a second, holding at most one second's worth.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            at: now,
        }
    }

    /// Takes `n` tokens if there are that many (a request larger than the bucket passes
    /// when the bucket is full, and empties it).
    fn take(&mut self, n: u32, rate: u32, now: Instant) -> bool {
        let capacity = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.at = now;
        let want = f64::from(n).min(capacity);
        if self.tokens + 1e-9 >= want {
            self.tokens -= want;
            true
        } else {
            false
        }
    }
}

/// Buckets by key, in shards.
struct Buckets {
    rate: u32,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl Buckets {
    fn new(rate: u32) -> Buckets {
        Buckets {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn take(&self, key: &str, n: u32, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let mut shard = self.shards[(h.finish() as usize) % SHARDS].lock();
        if shard.len() >= PRUNE_AT {
            shard.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
        }
        match shard.get_mut(key) {
            Some(b) => b.take(n, self.rate, now),
            None => {
                let mut b = Bucket::full(self.rate, now);
                let ok = b.take(n, self.rate, now);
                shard.insert(key.to_string(), b);
                ok
            }
        }
    }
}

/// The broker's limits in force.
pub struct Quotas {
    per_client: Buckets,
    per_topic: Buckets,
    max_long_polls: usize,
    long_polls: AtomicUsize,
}

/// A long poll's place; dropping it frees the place.
pub struct LongPoll<'a>(&'a AtomicUsize);

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Quotas {
    pub fn new(limits: &LimitsSection) -> Quotas {
        Quotas {
            per_client: Buckets::new(limits.send_rate_per_client),
            per_topic: Buckets::new(limits.send_rate_per_topic),
            max_long_polls: limits.max_long_polls,
            long_polls: AtomicUsize::new(0),
        }
    }

    /// Admits a send of `n` messages by `client` to `topic`, or says which quota it exceeds.
    pub fn admit_send(&self, client: &str, topic: &str, n: usize) -> Result<(), ApogeeError> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let now = Instant::now();
        if !self.per_client.take(client, n, now) {
            return Err(ApogeeError::TooManyRequests(format!(
                "client {client} sends more than {} messages a second; slow down and retry",
                self.per_client.rate
            )));
        }
        if !self.per_topic.take(topic, n, now) {
            return Err(ApogeeError::TooManyRequests(format!(
                "topic {topic} takes at most {} messages a second; slow down and retry",
                self.per_topic.rate
            )));
        }
        Ok(())
    }

    /// A place for a long poll, or TOO_MANY_REQUESTS when all are taken.
    pub fn long_poll(&self) -> Result<LongPoll<'_>, ApogeeError> {
        let held = self.long_polls.fetch_add(1, Ordering::Relaxed);
        let poll = LongPoll(&self.long_polls);
        if self.max_long_polls > 0 && held >= self.max_long_polls {
            return Err(ApogeeError::TooManyRequests(format!(
                "this broker holds its maximum of {} waiting receives; retry later",
                self.max_long_polls
            )));
        }
        Ok(poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_and_holds_one_second() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10, t0);
        for _ in 0..10 {
            assert!(b.take(1, 10, t0));
        }
        assert!(!b.take(1, 10, t0), "empty");
        assert!(
            b.take(1, 10, t0 + Duration::from_millis(100)),
            "one token back"
        );
        assert!(!b.take(1, 10, t0 + Duration::from_millis(100)));
        // Idle for long: at most one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(10, 10, later));
        assert!(!b.take(1, 10, later));
        // A batch larger than the bucket passes only when it is full.
        let mut b = Bucket::full(5, t0);
        assert!(b.take(50, 5, t0));
        assert!(!b.take(50, 5, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn clients_have_their_own_quota_and_topics_a_shared_one() {
        let q = Quotas::new(&LimitsSection {
            send_rate_per_client: 3,
            send_rate_per_topic: 5,
            max_long_polls: 0,
            max_connections_per_address: 0,
            max_sessions_per_address: 0,
        });
        for _ in 0..3 {
            q.admit_send("a", "t", 1).unwrap();
        }
        let e = q.admit_send("a", "t", 1).unwrap_err();
        assert!(matches!(e, ApogeeError::TooManyRequests(_)), "{e}");
        assert!(e.to_string().contains("client a"), "{e}");
        q.admit_send("b", "t", 1).unwrap();
        q.admit_send("b", "t", 1).unwrap();
        let e = q.admit_send("c", "t", 1).unwrap_err();
        assert!(e.to_string().contains("topic t"), "{e}");
        q.admit_send("c", "other", 1).unwrap();
    }

    #[test]
    fn no_limit_at_zero() {
        let q = Quotas::new(&LimitsSection {
            send_rate_per_client: 0,
            send_rate_per_topic: 0,
            max_long_polls: 0,
            max_connections_per_address: 0,
            max_sessions_per_address: 0,
        });
        for _ in 0..10_000 {
            q.admit_send("a", "t", 64).unwrap();
        }
        let polls: Vec<_> = (0..100).map(|_| q.long_poll().unwrap()).collect();
        assert_eq!(polls.len(), 100);
    }

    #[test]
    fn long_polls_are_capped_and_places_come_back() {
        let q = Quotas::new(&LimitsSection {
            max_long_polls: 2,
            ..LimitsSection::default()
        });
        let a = q.long_poll().unwrap();
        let _b = q.long_poll().unwrap();
        assert!(q.long_poll().is_err());
        drop(a);
        assert!(q.long_poll().is_ok());
    }
}

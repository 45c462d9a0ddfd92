//! Which consumer clients are still there, for auto-renew deliveries: the
//! broker renews a push consumer's messages only while that client is alive
//! (it sent a request in the last [`ALIVE_MS`], as its 10 s heartbeats do, and
//! did not announce its termination). A client that crashed or left gets its
//! messages back within one renewal period instead of after the operator's
//! whole auto-renew bound.

use parking_lot::RwLock;
use std::collections::HashMap;

/// A client silent this long is taken for gone.
pub const ALIVE_MS: i64 = 30_000;
/// Entries older than this are dropped when the table is pruned.
const FORGET_MS: i64 = 10 * 60 * 1000;
/// Prune the table when it grows past this many clients.
const PRUNE_AT: usize = 10_000;
/// A request this soon after the last recorded one changes nothing worth a write lock.
const REFRESH_MS: i64 = 1_000;

#[derive(Clone, Copy, Debug)]
struct Seen {
    last_ms: i64,
    gone: bool,
}

#[derive(Default)]
pub struct Clients {
    seen: RwLock<HashMap<String, Seen>>,
}

impl Clients {
    /// Notes a request from `client_id` at `now_ms`. Called on every receive and
    /// ack: a shared lock only, unless the record is a second old.
    pub fn seen(&self, client_id: &str, now_ms: i64) {
        let fresh = self
            .seen
            .read()
            .get(client_id)
            .is_some_and(|s| !s.gone && now_ms - s.last_ms < REFRESH_MS);
        if fresh {
            return;
        }
        let mut seen = self.seen.write();
        if seen.len() >= PRUNE_AT {
            seen.retain(|_, s| now_ms - s.last_ms < FORGET_MS);
        }
        seen.insert(
            client_id.to_string(),
            Seen {
                last_ms: now_ms,
                gone: false,
            },
        );
    }

    /// Notes that `client_id` announced its termination.
    pub fn gone(&self, client_id: &str, now_ms: i64) {
        self.seen.write().insert(
            client_id.to_string(),
            Seen {
                last_ms: now_ms,
                gone: true,
            },
        );
    }

    /// Whether deliveries of `client_id` should still be renewed (a client
    /// never seen, e.g. after a broker restart, counts as alive).
    pub fn alive(&self, client_id: &str, now_ms: i64) -> bool {
        match self.seen.read().get(client_id) {
            Some(s) => !s.gone && now_ms - s.last_ms <= ALIVE_MS,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_alive_until_silent_or_gone() {
        let c = Clients::default();
        assert!(c.alive("x", 0), "unknown counts as alive");
        c.seen("x", 1_000);
        assert!(c.alive("x", 1_000 + ALIVE_MS));
        assert!(!c.alive("x", 1_001 + ALIVE_MS), "silent too long");
        c.seen("x", 50_000);
        c.gone("x", 50_001);
        assert!(!c.alive("x", 50_002));
        c.seen("x", 60_000);
        assert!(c.alive("x", 60_000), "back after a restart of the client");
    }
}

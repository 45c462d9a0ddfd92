//! The console's sessions: every browser gets one on its first page (the cookie
//! [`COOKIE`]), holding the CSRF token its forms carry and, once it signs in, the user's
//! credentials, which sign every call the console makes for it.
//!
//! Limits, each explicit: a session ends [`IDLE`] after its last request and [`LIFETIME`]
//! after it began; at most [`MAX_SESSIONS`] exist at once. When the table is full, expired
//! sessions go first, then the least recently used session nobody signed in to; when every
//! session is signed in and live, a new browser is refused (503) rather than signing anyone
//! out.

use apogee_proto::auth::Credentials;
use parking_lot::Mutex;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "apogee_console";
/// A session unused for this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after it began, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once.
pub const MAX_SESSIONS: usize = 10_000;

/// Who a session is signed in as.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub credentials: Credentials,
    /// Whether the user has the admin role (the Admin service answers it).
    pub admin: bool,
}

impl SignedIn {
    pub fn access_key(&self) -> &str {
        self.credentials.access_key()
    }
}

/// What a request's session holds.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    pub user: Option<SignedIn>,
}

struct Entry {
    csrf: String,
    user: Option<SignedIn>,
    began: Instant,
    last_seen: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < IDLE && now.duration_since(self.began) < LIFETIME
    }
}

/// The table is full of live signed-in sessions.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Every session of one console.
#[derive(Clone)]
pub struct Sessions {
    table: Arc<Mutex<HashMap<String, Entry>>>,
    random: SystemRandom,
    max: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_limit(MAX_SESSIONS)
    }
}

impl Sessions {
    pub fn with_limit(max: usize) -> Sessions {
        Sessions {
            table: Arc::default(),
            random: SystemRandom::new(),
            max,
        }
    }

    /// 32 random bytes, hex.
    fn token(&self) -> String {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .expect("the system's random source");
        hex::encode(bytes)
    }

    /// The live session `id` names (its idle time starts again), or none.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut table = self.table.lock();
        let entry = table.get_mut(id)?;
        if !entry.live(now) {
            table.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(Session {
            id: id.to_string(),
            csrf: entry.csrf.clone(),
            user: entry.user.clone(),
        })
    }

    /// A new session nobody is signed in to.
    pub fn begin(&self) -> Result<Session, Full> {
        let now = Instant::now();
        let id = self.token();
        let csrf = self.token();
        let mut table = self.table.lock();
        if table.len() >= self.max {
            table.retain(|_, e| e.live(now));
        }
        if table.len() >= self.max {
            let oldest_anonymous = table
                .iter()
                .filter(|(_, e)| e.user.is_none())
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(id, _)| id.clone());
            match oldest_anonymous {
                Some(old) => table.remove(&old),
                None => return Err(Full),
            };
        }
        table.insert(
            id.clone(),
            Entry {
                csrf: csrf.clone(),
                user: None,
                began: now,
                last_seen: now,
            },
        );
        Ok(Session {
            id,
            csrf,
            user: None,
        })
    }

    /// Signs `user` in: a new session (new id and CSRF token, so an id known before signing
    /// in is worth nothing after it), the old one ended.
    pub fn sign_in(&self, old: &str, user: SignedIn) -> Result<Session, Full> {
        self.end(old);
        let mut session = self.begin()?;
        if let Some(entry) = self.table.lock().get_mut(&session.id) {
            entry.user = Some(user.clone());
        }
        session.user = Some(user);
        Ok(session)
    }

    /// Ends session `id`.
    pub fn end(&self, id: &str) {
        self.table.lock().remove(id);
    }

    #[cfg(test)]
    fn age(&self, id: &str, by: Duration) {
        if let Some(e) = self.table.lock().get_mut(id) {
            e.last_seen -= by;
            e.began -= by;
        }
    }
}

/// Whether two tokens are equal, in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str) -> SignedIn {
        SignedIn {
            credentials: Credentials::new(key, "secret").unwrap(),
            admin: false,
        }
    }

    #[test]
    fn a_session_has_distinct_random_id_and_token_and_ends_when_idle() {
        let s = Sessions::default();
        let a = s.begin().unwrap();
        let b = s.begin().unwrap();
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, a.csrf);
        assert_eq!(s.get(&a.id).unwrap().csrf, a.csrf);
        s.age(&a.id, IDLE);
        assert!(s.get(&a.id).is_none(), "idle for IDLE: ended");
        assert!(s.get(&b.id).is_some());
        assert!(s.get("nonsense").is_none());
    }

    #[test]
    fn signing_in_replaces_the_session_so_an_earlier_id_is_worth_nothing() {
        let s = Sessions::default();
        let before = s.begin().unwrap();
        let after = s.sign_in(&before.id, user("alice")).unwrap();
        assert!(s.get(&before.id).is_none());
        assert_ne!(after.csrf, before.csrf);
        let got = s.get(&after.id).unwrap();
        assert_eq!(got.user.unwrap().access_key(), "alice");
        s.end(&after.id);
        assert!(s.get(&after.id).is_none());
    }

    #[test]
    fn a_full_table_drops_the_oldest_anonymous_session_and_never_a_signed_in_one() {
        let s = Sessions::with_limit(2);
        let a = s.begin().unwrap();
        let signed = s.sign_in(&a.id, user("alice")).unwrap();
        let anonymous = s.begin().unwrap();
        let newer = s.begin().unwrap();
        assert!(
            s.get(&anonymous.id).is_none(),
            "the anonymous one made room"
        );
        assert!(s.get(&signed.id).is_some() && s.get(&newer.id).is_some());
        let bob = s.sign_in(&newer.id, user("bob")).unwrap();
        assert_eq!(
            s.begin().unwrap_err(),
            Full,
            "two live signed-in sessions: full"
        );
        s.age(&bob.id, LIFETIME);
        assert!(s.begin().is_ok(), "an expired session makes room");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}

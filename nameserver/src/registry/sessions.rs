//! The brokers' liveness sessions (`BrokerSession`) in the broker table. A broker opens
//! one per NameServer and beats on it; the session gets an id, and becomes its member's
//! current session (a newer one of the same member replaces it). A member registered by
//! the same process (same `instance_id` and endpoint) is bound to it: while bound, it is
//! live only for `missed_heartbeats` of the session's announced intervals after it was
//! last heard from, and the session's end drops it. Only the member's current session
//! drops it, so the close of a restarted broker's old stream, seen after the new process
//! registered, drops nothing.

use super::{Expired, GroupKey, Member, Registry};
use apogee_proto::ApogeeError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A member identity's current session.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    id: u64,
    instance: u64,
    endpoint: String,
    interval: Duration,
}

/// What opening a session tells the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOpened {
    /// The session's id, named by its beats and its end.
    pub id: u64,
    /// The member is unknown (from this process) or has another data version.
    pub register_required: bool,
}

/// The answer to a beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeatAnswer {
    /// Still the member's current session; register again when asked.
    Live { register_required: bool },
    /// No longer the member's current session (replaced, or its member was dropped): the
    /// stream is to be ended so that the broker opens a new one.
    Ended,
}

/// Who opens a session.
#[derive(Clone, Copy, Debug)]
pub struct SessionMember<'a> {
    pub group: &'a GroupKey,
    pub broker_id: i64,
    pub endpoint: &'a str,
    pub instance: u64,
    /// The beat interval the broker announced.
    pub interval: Duration,
}

impl Lease {
    /// Whether `m` was registered by this session's process.
    fn is_of(&self, m: &Member) -> bool {
        self.instance != 0 && m.instance == self.instance && m.endpoint == self.endpoint
    }
}

impl Registry {
    /// How many announced intervals a session may pass without a beat.
    pub fn missed_heartbeats(&self) -> u32 {
        self.missed_heartbeats
    }

    /// The silence a member bound to a session beating every `interval` is allowed.
    pub fn session_silence_limit(&self, interval: Duration) -> Duration {
        interval.saturating_mul(self.missed_heartbeats)
    }

    /// Opens `who`'s session, replacing its current one. Refused (ALREADY_EXISTS) while
    /// a live member of the same identity runs at another endpoint.
    pub fn open_session(
        &self,
        who: SessionMember<'_>,
        data_version: i64,
    ) -> Result<SessionOpened, ApogeeError> {
        self.open_session_at(who, data_version, Instant::now())
    }

    pub(crate) fn open_session_at(
        &self,
        who: SessionMember<'_>,
        data_version: i64,
        now: Instant,
    ) -> Result<SessionOpened, ApogeeError> {
        let mut groups = self.groups.write();
        let member = groups
            .get_mut(who.group)
            .and_then(|g| g.members.get_mut(&who.broker_id));
        if let Some(m) = &member {
            if m.endpoint != who.endpoint && self.is_live(m, now) {
                return Err(ApogeeError::AlreadyExists(format!(
                    "broker {} id {} is registered from {}; refusing the session from {}",
                    who.group, who.broker_id, m.endpoint, who.endpoint
                )));
            }
        }
        let lease = Lease {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            instance: who.instance,
            endpoint: who.endpoint.to_string(),
            interval: who.interval,
        };
        let id = lease.id;
        let register_required = match member {
            Some(m) if lease.is_of(m) => {
                self.bind(m, &lease, now);
                m.data_version != data_version
            }
            _ => true,
        };
        self.sessions
            .lock()
            .insert((who.group.clone(), who.broker_id), lease);
        Ok(SessionOpened {
            id,
            register_required,
        })
    }

    /// A beat on session `session` of member `broker_id` of `group`.
    pub fn beat(
        &self,
        group: &GroupKey,
        broker_id: i64,
        session: u64,
        data_version: i64,
    ) -> BeatAnswer {
        self.beat_at(group, broker_id, session, data_version, Instant::now())
    }

    pub(crate) fn beat_at(
        &self,
        group: &GroupKey,
        broker_id: i64,
        session: u64,
        data_version: i64,
        now: Instant,
    ) -> BeatAnswer {
        let mut groups = self.groups.write();
        let sessions = self.sessions.lock();
        let Some(lease) = sessions
            .get(&(group.clone(), broker_id))
            .filter(|l| l.id == session)
        else {
            return BeatAnswer::Ended;
        };
        let member = groups
            .get_mut(group)
            .and_then(|g| g.members.get_mut(&broker_id));
        let register_required = match member {
            Some(m) if lease.is_of(m) => {
                self.bind(m, lease, now);
                m.data_version != data_version
            }
            _ => true,
        };
        BeatAnswer::Live { register_required }
    }

    /// Ends session `session` (its stream closed, or it missed its beats): when it is the
    /// member's current session, it is forgotten, and the member bound to it is dropped
    /// and returned.
    pub fn end_session(&self, group: &GroupKey, broker_id: i64, session: u64) -> Option<Expired> {
        self.end_session_at(group, broker_id, session, Instant::now())
    }

    pub(crate) fn end_session_at(
        &self,
        group: &GroupKey,
        broker_id: i64,
        session: u64,
        now: Instant,
    ) -> Option<Expired> {
        let mut groups = self.groups.write();
        let key = (group.clone(), broker_id);
        let mut sessions = self.sessions.lock();
        if sessions.get(&key).is_some_and(|l| l.id == session) {
            sessions.remove(&key);
        }
        let members = &mut groups.get_mut(group)?.members;
        if members.get(&broker_id)?.session != Some(session) {
            return None;
        }
        let m = members.remove(&broker_id)?;
        if members.is_empty() {
            groups.remove(group);
        }
        Some(Expired {
            group: group.clone(),
            broker_id,
            endpoint: m.endpoint,
            silent_for: now.saturating_duration_since(m.last_seen),
            silence_limit: m.silence_limit,
            session: m.session,
        })
    }

    /// Binds a member registered now to its process's current session, if one is open.
    pub(super) fn bind_session(&self, group: &GroupKey, broker_id: i64, m: &mut Member) {
        let sessions = self.sessions.lock();
        if let Some(lease) = sessions.get(&(group.clone(), broker_id)) {
            if lease.is_of(m) {
                m.session = Some(lease.id);
                m.silence_limit = self.session_silence_limit(lease.interval);
            }
        }
    }

    /// Forgets the sessions of members the expiry scan dropped (their next beat is told
    /// so, and their streams end).
    pub(super) fn end_leases(&self, expired: &[Expired]) {
        let mut sessions = self.sessions.lock();
        for e in expired {
            let key = (e.group.clone(), e.broker_id);
            if e.session.is_some() && sessions.get(&key).map(|l| l.id) == e.session {
                sessions.remove(&key);
            }
        }
    }

    /// Binds `m` to `lease` and records that it was heard from now.
    fn bind(&self, m: &mut Member, lease: &Lease, now: Instant) {
        m.session = Some(lease.id);
        m.silence_limit = self.session_silence_limit(lease.interval);
        m.last_seen = now;
        m.last_seen_ms = apogee_proto::time::now_ms();
    }
}

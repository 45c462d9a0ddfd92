//! What the controller leader knows of each member's liveness: its last report and, per
//! NameServer it beats through, the instant of its last beat there and how that session
//! ended. Leader-local and pure, like [`crate::failover`], which owns one [`Liveness`] per
//! member and decides elections on it.
//!
//! - Alive: one of the sessions that beat within the timeout is open.
//! - Exited: every such session (and there was one) was closed from the member's side, its
//!   stream ended or its connection broke, as the kernel does to the sockets of a process
//!   that exits. A session that went silent, or a NameServer that stopped, is `Lost` and
//!   proves nothing of the process.

use apogee_proto::cluster::MemberReport;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Sessions remembered per member: one per NameServer it beats through.
pub const MAX_SESSIONS_PER_MEMBER: usize = 16;

/// The NameServer a beat came through: the random non-zero id of its process.
pub type NameServerId = u64;

/// How a member's session with one NameServer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The member's side closed it: its stream ended or its connection broke, as happens
    /// to every session of a broker process that exits.
    ClosedByMember,
    /// It went silent, or the NameServer stopped: nothing is known of the member.
    Lost,
}

/// One member's last report and its sessions.
#[derive(Clone, Debug)]
pub(crate) struct Liveness {
    pub(crate) report: MemberReport,
    /// Per NameServer the member beats through.
    sessions: BTreeMap<NameServerId, SessionSeen>,
}

#[derive(Clone, Copy, Debug)]
struct SessionSeen {
    last_beat: Instant,
    ended: Option<SessionEnd>,
}

impl Liveness {
    /// A member first heard of with `report`, no session yet.
    pub(crate) fn new(report: MemberReport) -> Self {
        Liveness {
            report,
            sessions: BTreeMap::new(),
        }
    }

    /// A beat through `via` at `now`: that session is open. Sessions silent for `timeout`
    /// and ended are forgotten first; past [`MAX_SESSIONS_PER_MEMBER`], the stalest.
    pub(crate) fn beat_through(&mut self, via: NameServerId, now: Instant, timeout: Duration) {
        if !self.sessions.contains_key(&via) {
            self.sessions
                .retain(|_, s| s.ended.is_none() || s.recent(now, timeout));
            if self.sessions.len() >= MAX_SESSIONS_PER_MEMBER {
                let stalest = self.sessions.iter().min_by_key(|(_, s)| s.last_beat);
                if let Some(stalest) = stalest.map(|(id, _)| *id) {
                    self.sessions.remove(&stalest);
                }
            }
        }
        self.sessions.insert(
            via,
            SessionSeen {
                last_beat: now,
                ended: None,
            },
        );
    }

    /// The session through `via` ended as `end` says (a session not known is ignored).
    pub(crate) fn session_ended(&mut self, via: NameServerId, end: SessionEnd) {
        if let Some(session) = self.sessions.get_mut(&via) {
            session.ended = Some(end);
        }
    }

    /// The sessions it beat through within `timeout`.
    fn recent(&self, now: Instant, timeout: Duration) -> impl Iterator<Item = &SessionSeen> {
        self.sessions
            .values()
            .filter(move |s| s.recent(now, timeout))
    }

    /// One of its recent sessions is open.
    pub(crate) fn alive(&self, now: Instant, timeout: Duration) -> bool {
        self.recent(now, timeout).any(|s| s.ended.is_none())
    }

    /// Every recent session was closed from its side (and there was one): its process
    /// exited.
    pub(crate) fn exited(&self, now: Instant, timeout: Duration) -> bool {
        let mut recent = self.recent(now, timeout).peekable();
        recent.peek().is_some() && recent.all(|s| s.ended == Some(SessionEnd::ClosedByMember))
    }
}

impl SessionSeen {
    fn recent(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_beat) < timeout
    }
}

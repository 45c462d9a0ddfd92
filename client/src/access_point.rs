//! The client's access points (its NameServers) and the order to ask them in:
//! the one that answered last comes first, and one whose last call failed at
//! the transport level is put last for [`DOWN_FOR`], so a dead NameServer costs
//! one failed attempt per period rather than one per route lookup. Every
//! access point stays in the order: when all the others fail, a NameServer
//! marked down is still tried.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// How long an access point that failed is asked only after the others.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// The NameServers of one client and what it learned about them.
pub(crate) struct AccessPoints {
    addrs: Vec<String>,
    state: Mutex<State>,
}

struct State {
    /// Index of the access point that answered last.
    preferred: usize,
    /// Per access point: asked only after the others until then.
    down_until: Vec<Option<Instant>>,
}

impl AccessPoints {
    pub(crate) fn new(addrs: Vec<String>) -> Self {
        let n = addrs.len();
        AccessPoints {
            addrs,
            state: Mutex::new(State {
                preferred: 0,
                down_until: vec![None; n],
            }),
        }
    }

    /// The access points in the order to try them now.
    pub(crate) fn order(&self) -> Vec<&str> {
        self.order_at(Instant::now())
    }

    fn order_at(&self, now: Instant) -> Vec<&str> {
        let state = self.state.lock();
        let n = self.addrs.len();
        let rotated = (0..n).map(|i| (state.preferred + i) % n);
        let (up, down): (Vec<usize>, Vec<usize>) =
            rotated.partition(|&i| state.down_until[i].is_none_or(|t| now >= t));
        up.into_iter()
            .chain(down)
            .map(|i| self.addrs[i].as_str())
            .collect()
    }

    /// `addr` answered: it is asked first from now on.
    pub(crate) fn answered(&self, addr: &str) {
        if let Some(i) = self.index(addr) {
            let mut state = self.state.lock();
            state.preferred = i;
            state.down_until[i] = None;
        }
    }

    /// `addr` could not be reached: it is asked last for [`DOWN_FOR`].
    pub(crate) fn unreachable(&self, addr: &str) {
        self.unreachable_at(addr, Instant::now());
    }

    fn unreachable_at(&self, addr: &str, now: Instant) {
        if let Some(i) = self.index(addr) {
            self.state.lock().down_until[i] = Some(now + DOWN_FOR);
        }
    }

    fn index(&self, addr: &str) -> Option<usize> {
        self.addrs.iter().position(|a| a == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> AccessPoints {
        AccessPoints::new(vec!["a:1".into(), "b:2".into(), "c:3".into()])
    }

    #[test]
    fn the_configured_order_until_one_answers() {
        let ap = three();
        assert_eq!(ap.order(), vec!["a:1", "b:2", "c:3"]);
        ap.answered("b:2");
        assert_eq!(ap.order(), vec!["b:2", "c:3", "a:1"]);
        ap.answered("nowhere:9");
        assert_eq!(ap.order(), vec!["b:2", "c:3", "a:1"]);
    }

    #[test]
    fn an_unreachable_one_goes_last_for_a_while() {
        let ap = three();
        let t0 = Instant::now();
        ap.unreachable_at("a:1", t0);
        assert_eq!(ap.order_at(t0), vec!["b:2", "c:3", "a:1"]);
        ap.unreachable_at("b:2", t0);
        assert_eq!(ap.order_at(t0), vec!["c:3", "a:1", "b:2"]);
        // Every one down: all are still tried.
        ap.unreachable_at("c:3", t0);
        assert_eq!(ap.order_at(t0).len(), 3);
        // Back in the rotation once the period is over.
        assert_eq!(ap.order_at(t0 + DOWN_FOR), vec!["a:1", "b:2", "c:3"]);
        // Answering clears the mark at once.
        ap.answered("b:2");
        assert_eq!(ap.order_at(t0)[0], "b:2");
    }
}

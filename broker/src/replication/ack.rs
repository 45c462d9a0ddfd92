//! The acknowledgement rule of a master in controller mode (`failover.ack`): from the written
//! offsets of the committed in-sync members other than the master, up to where a send is
//! acknowledged.
//!
//! - `all_in_sync` (the default): every committed in-sync member has it, so the slowest
//!   member's written offset; a member of the set that stalls holds acks back until the
//!   controller commits a set without it.
//! - `min_in_sync`: at least `min_in_sync_replicas` members, the master included, have it, so
//!   the written offset of the (`min_in_sync_replicas` - 1)-th fastest slave of the set.
//!   Fewer slaves in the set than that: nothing more is acknowledged (sends are refused before
//!   the append then, see `Membership::check_writable`; this covers those already appended).

use crate::config::AckMode;

/// Up to where sends are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckTarget {
    /// The master alone has enough: sends do not wait for a slave.
    MasterAlone,
    /// Everything below this log offset is held by enough members.
    Replicated(u64),
}

/// The rule. `written` holds one entry per committed in-sync member but the master: the log
/// offset it has written up to as last reported (0 for a member never heard from).
pub(crate) fn ack_target(mode: AckMode, min_in_sync_replicas: u32, written: &[u64]) -> AckTarget {
    match mode {
        AckMode::AllInSync => match written.iter().min() {
            None => AckTarget::MasterAlone,
            Some(&slowest) => AckTarget::Replicated(slowest),
        },
        AckMode::MinInSync => {
            let slaves_needed = min_in_sync_replicas.saturating_sub(1) as usize;
            if slaves_needed == 0 {
                return AckTarget::MasterAlone;
            }
            let mut fastest_first = written.to_vec();
            fastest_first.sort_unstable_by(|a, b| b.cmp(a));
            AckTarget::Replicated(fastest_first.get(slaves_needed - 1).copied().unwrap_or(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AckMode::{AllInSync, MinInSync};
    use AckTarget::{MasterAlone, Replicated};

    #[test]
    fn all_in_sync_waits_for_the_slowest_member_of_the_set() {
        assert_eq!(ack_target(AllInSync, 1, &[]), MasterAlone);
        assert_eq!(ack_target(AllInSync, 1, &[500]), Replicated(500));
        // A stalled member (or one not connected: 0) holds every ack back, whatever
        // min_in_sync_replicas says.
        assert_eq!(ack_target(AllInSync, 2, &[900, 100]), Replicated(100));
        assert_eq!(ack_target(AllInSync, 1, &[900, 0, 700]), Replicated(0));
    }

    #[test]
    fn min_in_sync_counts_the_master_and_the_fastest_members() {
        // 3 members, 2 needed: the fastest slave is enough, a stalled one does not matter.
        assert_eq!(ack_target(MinInSync, 2, &[900, 100]), Replicated(900));
        assert_eq!(ack_target(MinInSync, 2, &[100, 900]), Replicated(900));
        assert_eq!(ack_target(MinInSync, 2, &[0, 900]), Replicated(900));
        // 3 of 4 needed: the second fastest slave.
        assert_eq!(ack_target(MinInSync, 3, &[300, 900, 600]), Replicated(600));
        // All members needed: the same as all_in_sync.
        assert_eq!(
            ack_target(MinInSync, 3, &[300, 900]),
            ack_target(AllInSync, 3, &[300, 900])
        );
        // The master alone is enough with min_in_sync_replicas = 1 (no slave waited for).
        assert_eq!(ack_target(MinInSync, 1, &[0, 900]), MasterAlone);
        assert_eq!(ack_target(MinInSync, 1, &[]), MasterAlone);
    }

    #[test]
    fn min_in_sync_acknowledges_nothing_more_while_the_set_is_too_small() {
        assert_eq!(ack_target(MinInSync, 2, &[]), Replicated(0));
        assert_eq!(ack_target(MinInSync, 3, &[900]), Replicated(0));
    }
}

//! Transactions committed and rolled back, by topic (`rocketmq_commit_messages_total`,
//! `rocketmq_rollback_messages_total`): counted here where an outcome is recorded, exposed
//! on `/metrics` once `crate::metrics::BrokerMetrics::register_transactions` registers them.

use prometheus::{IntCounterVec, Opts};

/// The commit and rollback counters of one broker.
pub struct TxnOutcomes {
    pub(crate) commits: IntCounterVec,
    pub(crate) rollbacks: IntCounterVec,
}

impl Default for TxnOutcomes {
    fn default() -> Self {
        let vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["topic"]).expect("valid metric")
        };
        TxnOutcomes {
            commits: vec("rocketmq_commit_messages_total", "Transactions committed."),
            rollbacks: vec(
                "rocketmq_rollback_messages_total",
                "Transactions rolled back.",
            ),
        }
    }
}

impl TxnOutcomes {
    /// A transaction of `topic` committed (true) or rolled back (false).
    pub fn ended(&self, topic: &str, committed: bool) {
        let c = if committed {
            &self.commits
        } else {
            &self.rollbacks
        };
        c.with_label_values(&[topic]).inc();
    }
}

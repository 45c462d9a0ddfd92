//! The admin library behind `apogee txn ...`: lists transactions (half
//! messages) through a NameServer's Admin service, which asks every broker
//! group's master and merges the answers, and lets an operator commit or
//! roll back a pending or parked one.

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use crate::views::format_ago;
use apogee_proto::cluster::{self, TransactionState};
use apogee_proto::time::now_ms;
use serde::Serialize;

/// One transaction as `txn list`, `txn commit` and `txn rollback` show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TxnRow {
    pub topic: String,
    pub transaction_id: String,
    pub message_id: String,
    /// Client id of the producer that sent the half message.
    pub producer: String,
    /// How long ago the half message was stored.
    pub age_ms: i64,
    pub checks: u32,
    /// PENDING, COMMITTED, ROLLED_BACK, PARKED (or UNSPECIFIED).
    pub state: String,
    /// Broker group holding the half message.
    pub broker: String,
    pub store_timestamp_ms: i64,
    /// When the next check-back is due (0 unless pending).
    pub next_check_ms: i64,
}

impl TableRow for TxnRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "TOPIC",
            "TRANSACTION ID",
            "MESSAGE ID",
            "PRODUCER",
            "AGE",
            "CHECKS",
            "STATE",
            "BROKER",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        vec![
            self.topic.clone(),
            self.transaction_id.clone(),
            self.message_id.clone(),
            dash(&self.producer),
            format_ago(self.age_ms),
            self.checks.to_string(),
            self.state.clone(),
            self.broker.clone(),
        ]
    }
}

/// The name of a transaction state: the protocol's (PENDING, COMMITTED,
/// ROLLED_BACK, PARKED), UNSPECIFIED otherwise.
pub fn state_name(state: i32) -> String {
    match TransactionState::try_from(state) {
        Ok(TransactionState::Unspecified) | Err(_) => "UNSPECIFIED",
        Ok(s) => s.as_str_name(),
    }
    .to_string()
}

/// A row from a TransactionInfo, `now` in Unix ms.
pub fn txn_row(t: &cluster::TransactionInfo, now: i64) -> TxnRow {
    TxnRow {
        topic: t.topic.clone(),
        transaction_id: t.transaction_id.clone(),
        message_id: t.message_id.clone(),
        producer: t.producer.clone(),
        age_ms: (now - t.store_timestamp_ms).max(0),
        checks: t.checks,
        state: state_name(t.state),
        broker: t.broker_name.clone(),
        store_timestamp_ms: t.store_timestamp_ms,
        next_check_ms: t.next_check_ms,
    }
}

/// Rows of `txn list`: oldest first, at most `limit` (all when `None`).
pub fn txn_rows(list: &[cluster::TransactionInfo], now: i64, limit: Option<usize>) -> Vec<TxnRow> {
    let mut rows: Vec<TxnRow> = list.iter().map(|t| txn_row(t, now)).collect();
    rows.sort_by(|a, b| {
        (a.store_timestamp_ms, &a.broker, &a.transaction_id).cmp(&(
            b.store_timestamp_ms,
            &b.broker,
            &b.transaction_id,
        ))
    });
    if let Some(n) = limit {
        rows.truncate(n);
    }
    rows
}

impl Admin {
    /// Transactions of every broker group: only pending and parked ones
    /// with `unresolved_only`, only `topic`'s when given, at most `limit`
    /// (the servers' default cap per broker group when `None`).
    pub async fn list_transactions(
        &self,
        unresolved_only: bool,
        topic: Option<&str>,
        limit: Option<u32>,
    ) -> ToolResult<Vec<TxnRow>> {
        let resp = self
            .admin
            .clone()
            .list_transactions(self.req(cluster::ListTransactionsRequest {
                unresolved_only,
                topic: topic.unwrap_or_default().to_string(),
                limit: limit.unwrap_or(0),
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(txn_rows(
            &resp.transactions,
            now_ms(),
            limit.map(|n| n as usize),
        ))
    }

    /// Commits (publishes) or rolls back a transaction; returns it as it
    /// now stands.
    pub async fn resolve_transaction(&self, id: &str, commit: bool) -> ToolResult<TxnRow> {
        if id.trim().is_empty() {
            return Err(ToolError::Usage("the transaction id is empty".into()));
        }
        let resp = self
            .admin
            .clone()
            .resolve_transaction(self.req(cluster::ResolveTransactionRequest {
                transaction_id: id.to_string(),
                commit,
            }))
            .await
            .map_err(|s| {
                if s.code() == tonic::Code::NotFound && s.message().is_empty() {
                    ToolError::Refused {
                        code: tonic::Code::NotFound,
                        text: format!("transaction not found: {id}"),
                    }
                } else {
                    self.err(None)(s)
                }
            })?
            .into_inner();
        let info = resp
            .transaction
            .ok_or_else(|| ToolError::Server("the nameserver returned no transaction".into()))?;
        Ok(txn_row(&info, now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    fn info(
        id: &str,
        broker: &str,
        stored: i64,
        state: TransactionState,
    ) -> cluster::TransactionInfo {
        cluster::TransactionInfo {
            transaction_id: id.into(),
            topic: "T".into(),
            message_id: format!("M{id}"),
            producer: String::new(),
            store_timestamp_ms: stored,
            checks: 2,
            state: state as i32,
            broker_name: broker.into(),
            next_check_ms: 0,
        }
    }

    #[test]
    fn rows_are_oldest_first_and_limited() {
        let list = vec![
            info("b", "b1", 2_000, TransactionState::Parked),
            info("a", "b2", 1_000, TransactionState::Pending),
            info("c", "b1", 3_000, TransactionState::RolledBack),
        ];
        let rows = txn_rows(&list, 10_000, None);
        let ids: Vec<&str> = rows.iter().map(|r| r.transaction_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert_eq!(rows[0].age_ms, 9_000);
        let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
        assert_eq!(states, vec!["PENDING", "PARKED", "ROLLED_BACK"]);
        assert_eq!(txn_rows(&list, 10_000, Some(2)).len(), 2);
        assert_eq!(state_name(TransactionState::Committed as i32), "COMMITTED");
        assert_eq!(state_name(99), "UNSPECIFIED");
        assert_eq!(state_name(0), "UNSPECIFIED");
    }

    #[test]
    fn rows_render_as_table_and_json() {
        let rows = txn_rows(
            &[info("X1", "b1", 1_000, TransactionState::Pending)],
            2_500,
            None,
        );
        assert_eq!(
            render_list(&rows, Format::Table),
            "TOPIC  TRANSACTION ID  MESSAGE ID  PRODUCER  AGE   CHECKS  STATE    BROKER\n\
             T      X1              MX1         -         1.5s  2       PENDING  b1\n"
        );
        assert_eq!(TxnRow::headers().len(), rows[0].cells().len());
        let v: serde_json::Value = serde_json::from_str(&render_list(&rows, Format::Json)).unwrap();
        for key in [
            "topic",
            "transaction_id",
            "message_id",
            "producer",
            "age_ms",
            "checks",
            "state",
            "broker",
            "store_timestamp_ms",
            "next_check_ms",
        ] {
            assert!(v[0].get(key).is_some(), "missing {key}");
        }
        assert_eq!(v[0]["state"], "PENDING");
        assert_eq!(v[0]["age_ms"], 1_500);
    }
}

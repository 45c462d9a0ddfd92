//! Transaction facts derived from the commit log, in the `Transaction` column family.
//!
//! The log is the truth for transactions too: a half message, each check-back, a park, a
//! rollback and a commit are records (see `crate::txn`), and dispatch turns each into puts of
//! this column family in the same index batch as the record's other entries. So the state is
//! rebuilt by recovery like every other index entry, and nothing here is read while
//! dispatching (a group may hold a half message and records about it).
//!
//! Rows: a half message (`h`), its outcome (`o`), its check-backs (`n`) and the check-back
//! schedule (`d`); keys and value layouts are in [`super::keys`], values are encoded here.
//!
//! A `d` entry is stale once its transaction has an outcome or a later `n`; readers skip
//! and delete such entries.

use super::keys::prefix_end;
use super::keys::{be_at, decode_due_key, decode_id_row, due_from, due_key, id_row, tag};
use super::kv::{Cf, KvBatch, KvStore};
use super::record::{internal, NewMessage};
use super::StoreError;
use apogee_proto::names;

const VERSION: u8 = 1;

/// What ended a transaction (or parked it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed = 1,
    RolledBack = 2,
    Parked = 3,
}

/// Where a half message sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfRef {
    pub log_offset: u64,
    pub size: u32,
    pub store_timestamp_ms: i64,
}

/// Check-backs made so far and when the next one is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    pub count: u32,
    pub next_due_ms: i64,
}

/// Everything the index knows of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnFacts {
    pub half: HalfRef,
    pub outcome: Option<(Outcome, i64)>,
    pub checks: Checks,
}

/// The record kinds of the transaction op topic.
pub mod op {
    pub const ROLLBACK: &str = "rollback";
    pub const CHECK: &str = "check";
    pub const PARK: &str = "park";
}

fn put_checks(batch: &mut KvBatch, id: &str, checks: Checks) {
    let mut v = vec![VERSION];
    v.extend_from_slice(&checks.count.to_be_bytes());
    v.extend_from_slice(&checks.next_due_ms.to_be_bytes());
    batch.put(Cf::Transaction, id_row(tag::CHECKS, id), v);
    batch.put(Cf::Transaction, due_key(checks.next_due_ms, id), [VERSION]);
}

fn put_outcome(batch: &mut KvBatch, id: &str, outcome: Outcome, at_ms: i64) {
    let mut v = vec![VERSION, outcome as u8];
    v.extend_from_slice(&at_ms.to_be_bytes());
    batch.put(Cf::Transaction, id_row(tag::OUTCOME, id), v);
}

pub(super) fn int_prop(msg: &NewMessage, name: &str) -> i64 {
    msg.internal(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Adds the transaction entries of one record, if it carries a transaction id.
pub(crate) fn dispatch(
    batch: &mut KvBatch,
    msg: &NewMessage,
    log_offset: u64,
    size: u32,
    store_timestamp_ms: i64,
) {
    let Some(id) = msg.internal(internal::TXN_ID) else {
        return;
    };
    match msg.topic.as_str() {
        names::HALF_TOPIC => {
            let mut v = vec![VERSION];
            v.extend_from_slice(&log_offset.to_be_bytes());
            v.extend_from_slice(&size.to_be_bytes());
            v.extend_from_slice(&store_timestamp_ms.to_be_bytes());
            batch.put(Cf::Transaction, id_row(tag::HALF, id), v);
            let next_due_ms = int_prop(msg, internal::CHECK_AT);
            put_checks(
                batch,
                id,
                Checks {
                    count: 0,
                    next_due_ms,
                },
            );
        }
        names::HALF_OUTCOME_TOPIC => match msg.internal(internal::TXN_OP) {
            Some(op::ROLLBACK) => put_outcome(batch, id, Outcome::RolledBack, store_timestamp_ms),
            Some(op::PARK) => put_outcome(batch, id, Outcome::Parked, store_timestamp_ms),
            Some(op::CHECK) => {
                let checks = Checks {
                    count: int_prop(msg, internal::CHECKS) as u32,
                    next_due_ms: int_prop(msg, internal::CHECK_AT),
                };
                put_checks(batch, id, checks);
            }
            other => tracing::warn!(txn = id, ?other, "unknown transaction op record ignored"),
        },
        // The published message of a commit carries its transaction id.
        _ => put_outcome(batch, id, Outcome::Committed, store_timestamp_ms),
    }
}

fn bad(what: &str, id: &str) -> StoreError {
    StoreError::Index(format!("malformed transaction {what} entry for {id}"))
}

/// The facts of transaction `id`, or None when no half message has that id.
pub fn load(kv: &dyn KvStore, id: &str) -> Result<Option<TxnFacts>, StoreError> {
    let Some(h) = kv.get(Cf::Transaction, &id_row(tag::HALF, id))? else {
        return Ok(None);
    };
    if h.first() != Some(&VERSION) {
        return Err(bad("half", id));
    }
    let half = (|| {
        Some(HalfRef {
            log_offset: u64::from_be_bytes(be_at(&h, 1)?),
            size: u32::from_be_bytes(be_at(&h, 9)?),
            store_timestamp_ms: i64::from_be_bytes(be_at(&h, 13)?),
        })
    })()
    .ok_or_else(|| bad("half", id))?;
    let outcome = match kv.get(Cf::Transaction, &id_row(tag::OUTCOME, id))? {
        None => None,
        Some(o) => {
            let parsed = (|| {
                let kind = match (o.first()?, o.get(1)?) {
                    (&VERSION, 1) => Outcome::Committed,
                    (&VERSION, 2) => Outcome::RolledBack,
                    (&VERSION, 3) => Outcome::Parked,
                    _ => return None,
                };
                Some((kind, i64::from_be_bytes(be_at(&o, 2)?)))
            })();
            Some(parsed.ok_or_else(|| bad("outcome", id))?)
        }
    };
    let checks = match kv.get(Cf::Transaction, &id_row(tag::CHECKS, id))? {
        None => Checks {
            count: 0,
            next_due_ms: 0,
        },
        Some(n) if n.first() == Some(&VERSION) => (|| {
            Some(Checks {
                count: u32::from_be_bytes(be_at(&n, 1)?),
                next_due_ms: i64::from_be_bytes(be_at(&n, 5)?),
            })
        })()
        .ok_or_else(|| bad("checks", id))?,
        Some(_) => return Err(bad("checks", id)),
    };
    Ok(Some(TxnFacts {
        half,
        outcome,
        checks,
    }))
}

/// Up to `max` transactions whose check is due at or before `now_ms`, oldest due first:
/// (due ts, txn id). Stale schedule entries (resolved, or superseded by a later check) are
/// deleted on the way and not returned.
pub fn due(kv: &dyn KvStore, now_ms: i64, max: usize) -> Result<Vec<(i64, String)>, StoreError> {
    let from = [tag::DUE];
    let to = due_from(now_ms.saturating_add(1));
    let rows = kv.scan(Cf::Transaction, &from, &to, max)?;
    let mut out = Vec::new();
    let mut stale = KvBatch::new();
    for (k, _) in rows {
        let Some((due_ms, id)) = decode_due_key(&k) else {
            stale.delete(Cf::Transaction, k);
            continue;
        };
        match load(kv, &id)? {
            Some(f) if f.outcome.is_none() && f.checks.next_due_ms.max(0) == due_ms => {
                out.push((due_ms, id));
            }
            _ => stale.delete(Cf::Transaction, k),
        }
    }
    if !stale.is_empty() {
        kv.write(stale)?;
    }
    Ok(out)
}

/// Every transaction id with a half message, in id order, from `after` (exclusive), at most
/// `max`.
pub fn ids(kv: &dyn KvStore, after: Option<&str>, max: usize) -> Result<Vec<String>, StoreError> {
    let from = match after {
        Some(a) => {
            let mut k = id_row(tag::HALF, a);
            k.push(0);
            k
        }
        None => vec![tag::HALF],
    };
    let rows = kv.scan(Cf::Transaction, &from, &prefix_end(&[tag::HALF]), max)?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, _)| decode_id_row(&k).map(|(_, id)| id))
        .collect())
}

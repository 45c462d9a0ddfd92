//! The check-back loop: every `transaction.scan_interval_ms` it takes the half messages whose
//! check is due (the `d` schedule of `store::txn_index`, ordered by due time, so the cost is
//! the number due, not the number waiting) and, for each one still without an outcome:
//!
//! - after `max_checks` checks: writes a park record. A parked message is never delivered by
//!   itself; an operator resolves it (`apogee txn commit|rollback`);
//! - otherwise: writes a check record (count + 1, next due after `check_interval_ms`) FIRST,
//!   then pushes RecoverOrphanedTransactionCommand (transaction id + the full message as it
//!   would be published) on the Telemetry stream of a live producer of the topic, preferring
//!   the one that sent it; when none is connected here, the NameServers are asked to push it
//!   to a producer connected to them (some clients keep Telemetry open only with their access
//!   point); a message with a producer group (`PGROUP`, sent by a remoting producer) goes
//!   first to a remoting producer of that group (`producers`). Writing first means a crash can lose a check but never send more
//!   than `max_checks`. Unknown answers, no live producer and silence all count as a check.
//!
//! The producer answers with EndTransaction (source SERVER_CHECK), served as any other.

use super::{op_record, ResolvedBy, Transactions};
use crate::store::record::internal;
use crate::store::txn_index::{self, op};
use crate::v2_message::to_v2_message;
use apogee_proto::v2::{telemetry_command::Command, RecoverOrphanedTransactionCommand};
use apogee_proto::ApogeeError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The property naming a message's producer group (RocketMQ's `PGROUP`), set by remoting
/// producers on a transaction's half message.
const PRODUCER_GROUP_PROPERTY: &str = apogee_proto::remoting::message::property::PGROUP;

/// Most transactions checked per scan (the rest wait for the next scan).
const MAX_PER_SCAN: usize = 1024;

impl Transactions {
    /// Runs the check-back loop until `closing` turns true, checking back only while `gate`
    /// allows (controller mode: while this master's lease runs).
    pub fn spawn_checker(
        self: Arc<Self>,
        store_host: String,
        gate: crate::consume::ServingGate,
        mut closing: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let every = Duration::from_millis(self.config.scan_interval_ms);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = closing.wait_for(|c| *c) => break,
                }
                if let Err(why) = gate() {
                    tracing::debug!("transaction check-backs wait: {why}");
                    continue;
                }
                if let Err(e) = self.check_due(&store_host).await {
                    tracing::warn!(error = %e, "transaction check-back scan failed");
                }
            }
        })
    }

    /// One scan: checks or parks every transaction due now.
    pub async fn check_due(&self, store_host: &str) -> Result<usize, apogee_proto::ApogeeError> {
        let now = apogee_proto::time::now_ms();
        let due = txn_index::due(self.store.kv().as_ref(), now, MAX_PER_SCAN)
            .map_err(ApogeeError::from)?;
        let count = due.len();
        for (due_ms, id) in due {
            self.check_one(&id, due_ms, store_host).await?;
        }
        Ok(count)
    }

    #[tracing::instrument(skip(self, store_host), fields(txn = id))]
    async fn check_one(
        &self,
        id: &str,
        due_ms: i64,
        store_host: &str,
    ) -> Result<(), apogee_proto::ApogeeError> {
        let _serial = self.lock_for(id).lock().await;
        let (facts, half) = self.facts(id)?;
        if facts.outcome.is_some() || facts.checks.next_due_ms.max(0) != due_ms {
            return Ok(()); // resolved or rescheduled meanwhile
        }
        if facts.checks.count >= self.max_checks() {
            let park = op_record(id, op::PARK, ResolvedBy::CheckBack, &[]);
            self.store
                .append_internal(vec![park])
                .await
                .map_err(ApogeeError::from)?;
            tracing::warn!(
                checks = facts.checks.count,
                "transaction parked: no outcome after the last check-back; \
                 resolve it with `apogee txn commit|rollback`"
            );
            return Ok(());
        }
        let checks = facts.checks.count + 1;
        let next = apogee_proto::time::now_ms() + self.config.check_interval_ms as i64;
        let check = op_record(
            id,
            op::CHECK,
            ResolvedBy::CheckBack,
            &[
                (internal::CHECKS, checks.to_string()),
                (internal::CHECK_AT, next.to_string()),
            ],
        );
        self.store
            .append_internal(vec![check])
            .await
            .map_err(ApogeeError::from)?;

        let topic = half.msg.internal(internal::REAL_TOPIC).unwrap_or_default();
        let producer = half.msg.internal(internal::PRODUCER).unwrap_or_default();
        let mut published = half.clone();
        published.msg.topic = topic.to_string();
        published.msg.queue_id = half
            .msg
            .internal(internal::REAL_QUEUE)
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        let message = to_v2_message(&published, "", store_host);
        let command =
            Command::RecoverOrphanedTransactionCommand(RecoverOrphanedTransactionCommand {
                message: Some(message.clone()),
                transaction_id: id.to_string(),
            });
        let mut reached = self
            .sessions()
            .push_to_producer_of(topic, producer, command);
        // A producer of another protocol (remoting): by the producer group the message names.
        let group = published
            .msg
            .properties
            .iter()
            .find(|(k, _)| k == PRODUCER_GROUP_PROPERTY)
            .map(|(_, v)| v.as_str());
        if let (None, Some(group)) = (&reached, group) {
            let producers = self.producer_check_back.read().clone();
            if let Some(producers) = producers {
                reached = producers.check_back(&super::producers::CheckBack {
                    transaction_id: id,
                    message: &published,
                    producer_group: group,
                    preferred_producer: producer,
                });
            }
        }
        // Some clients keep Telemetry open only with their access point (a NameServer).
        if let (None, Some(nameservers)) = (&reached, &self.relay) {
            let req = apogee_proto::cluster::RelayCheckBackRequest {
                topic: topic.to_string(),
                preferred_producer: producer.to_string(),
                transaction_id: id.to_string(),
                message: Some(message),
            };
            reached = nameservers.relay_check_back(req).await;
        }
        match reached {
            Some(client) => tracing::debug!(check = checks, client, "check-back sent"),
            None => tracing::debug!(
                check = checks,
                topic,
                "no live producer of the topic to ask"
            ),
        }
        Ok(())
    }
}

//! The admin library behind `apogee dlq list|resend`: a consumer group's dead letters (the
//! messages it gave up on after its maximum delivery attempts, kept in `%DLQ%<group>`) listed
//! through a NameServer, which asks every broker group, and written back to their original
//! topics. Resending is idempotent: a dead letter resent before is reported "already resent"
//! and not written again, so a resend that failed halfway can simply be repeated.

use crate::admin::Admin;
use crate::error::{ToolError, ToolResult};
use crate::message_query::{body_text, dash, rfc3339, short_body};
use crate::output::TableRow;
use apogee_proto::cluster::{self, ResendOutcome};
use serde::Serialize;
use std::collections::BTreeMap;

/// One dead letter as `dlq list` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DeadLetterRow {
    pub message_id: String,
    pub group: String,
    /// Where it came from.
    pub original_topic: String,
    pub original_queue_id: i32,
    pub original_queue_offset: i64,
    /// Delivery attempts it used up.
    pub attempts: u32,
    /// When it was dead-lettered (stored in the dead-letter topic).
    pub store_timestamp_ms: i64,
    pub store_time: String,
    pub tag: Option<String>,
    pub keys: Vec<String>,
    pub properties: BTreeMap<String, String>,
    /// Its place in `%DLQ%<group>` (queue 0).
    pub dlq_offset: i64,
    pub broker: String,
    /// When an operator resent it; null if never.
    pub resent_at_ms: Option<i64>,
    /// With --show-body: UTF-8 text, or hex (see `body_format`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_format: Option<String>,
}

impl DeadLetterRow {
    pub fn new(d: &cluster::DeadLetter, show_body: bool) -> Self {
        let m = d.message.clone().unwrap_or_default();
        let (body, format) = body_text(&m.body);
        DeadLetterRow {
            message_id: m.message_id,
            group: d.group.clone(),
            original_topic: d.original_topic.clone(),
            original_queue_id: d.original_queue_id,
            original_queue_offset: d.original_queue_offset,
            attempts: d.attempts,
            store_timestamp_ms: m.store_timestamp_ms,
            store_time: rfc3339(m.store_timestamp_ms),
            tag: Some(m.tag).filter(|t| !t.is_empty()),
            keys: m.keys,
            properties: m.user_properties.into_iter().collect(),
            dlq_offset: m.queue_offset,
            broker: m.broker_name,
            resent_at_ms: Some(d.resent_at_ms).filter(|t| *t > 0),
            body: show_body.then_some(body),
            body_format: show_body.then(|| format.to_string()),
        }
    }
}

impl TableRow for DeadLetterRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "MESSAGE ID",
            "TOPIC",
            "ATTEMPTS",
            "STORED",
            "TAG",
            "KEYS",
            "RESENT",
            "BROKER",
            "BODY",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.message_id.clone(),
            dash(&self.original_topic),
            self.attempts.to_string(),
            self.store_time.clone(),
            dash(self.tag.as_deref().unwrap_or("")),
            dash(&self.keys.join(",")),
            self.resent_at_ms.map_or("-".into(), rfc3339),
            self.broker.clone(),
            self.body.as_deref().map_or("-".into(), short_body),
        ]
    }
}

/// What one resend did.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ResendRow {
    pub message_id: String,
    pub original_topic: String,
    /// RESENT, ALREADY_RESENT or FAILED.
    pub outcome: String,
    /// Where the resent copy is in the original topic (this resend's or the earlier one).
    pub queue_id: Option<i32>,
    pub queue_offset: Option<i64>,
    pub resent_at_ms: Option<i64>,
    pub dlq_offset: i64,
    pub broker: String,
    /// Why it failed.
    pub detail: String,
}

impl From<&cluster::ResendResult> for ResendRow {
    fn from(r: &cluster::ResendResult) -> Self {
        let d = r.dead_letter.clone().unwrap_or_default();
        let m = d.message.unwrap_or_default();
        let outcome = match ResendOutcome::try_from(r.outcome) {
            Ok(ResendOutcome::Resent) => "RESENT",
            Ok(ResendOutcome::AlreadyResent) => "ALREADY_RESENT",
            _ => "FAILED",
        };
        ResendRow {
            message_id: m.message_id,
            original_topic: d.original_topic,
            outcome: outcome.into(),
            queue_id: Some(r.queue_id).filter(|q| *q >= 0),
            queue_offset: Some(r.queue_offset).filter(|o| *o >= 0),
            resent_at_ms: Some(d.resent_at_ms).filter(|t| *t > 0),
            dlq_offset: m.queue_offset,
            broker: m.broker_name,
            detail: r.detail.clone(),
        }
    }
}

impl TableRow for ResendRow {
    fn headers() -> Vec<&'static str> {
        vec!["MESSAGE ID", "TOPIC", "RESULT", "QUEUE", "OFFSET", "BROKER"]
    }
    fn cells(&self) -> Vec<String> {
        let result = match self.outcome.as_str() {
            "RESENT" => "resent".to_string(),
            "ALREADY_RESENT" => "already resent".to_string(),
            _ => format!("failed: {}", self.detail),
        };
        let num = |n: Option<i64>| n.map_or("-".into(), |n| n.to_string());
        vec![
            self.message_id.clone(),
            dash(&self.original_topic),
            result,
            num(self.queue_id.map(i64::from)),
            num(self.queue_offset),
            self.broker.clone(),
        ]
    }
}

impl Admin {
    /// The group's dead letters on every broker group, oldest first.
    pub async fn list_dead_letters(
        &self,
        group: &str,
        limit: Option<u32>,
        show_body: bool,
    ) -> ToolResult<Vec<DeadLetterRow>> {
        let resp = self
            .big_admin()
            .list_dead_letters(self.req(cluster::ListDeadLettersRequest {
                group: group.to_string(),
                limit: limit.unwrap_or(0),
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        let mut rows: Vec<DeadLetterRow> = resp
            .dead_letters
            .iter()
            .map(|d| DeadLetterRow::new(d, show_body))
            .collect();
        if let Some(n) = limit {
            rows.truncate(n as usize);
        }
        Ok(rows)
    }

    /// Resends the group's dead letters (those with `id` only, when given).
    pub async fn resend_dead_letters(
        &self,
        group: &str,
        id: Option<&str>,
    ) -> ToolResult<Vec<ResendRow>> {
        if id.is_some_and(|i| i.trim().is_empty()) {
            return Err(ToolError::Usage("the message id is empty".into()));
        }
        let resp = self
            .big_admin()
            .resend_dead_letters(self.req(cluster::ResendDeadLettersRequest {
                group: group.to_string(),
                message_id: id.unwrap_or_default().to_string(),
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(resp.results.iter().map(ResendRow::from).collect())
    }
}

/// The error for the resends that failed, if any.
pub fn resend_failures(rows: &[ResendRow]) -> Option<ToolError> {
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome == "FAILED")
        .map(|r| format!("{}: {}", r.message_id, r.detail))
        .collect();
    (!failed.is_empty()).then(|| {
        ToolError::Server(format!(
            "{} dead letter(s) could not be resent: {}",
            failed.len(),
            failed.join("; ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    fn dead_letter(resent_at_ms: i64) -> cluster::DeadLetter {
        cluster::DeadLetter {
            message: Some(cluster::MessageView {
                topic: "%DLQ%G".into(),
                queue_offset: 4,
                message_id: "M1".into(),
                keys: vec!["k".into()],
                user_properties: [("p".to_string(), "v".to_string())].into_iter().collect(),
                body: vec![0xff, 0x01],
                store_timestamp_ms: 1_700_000_000_000,
                broker_name: "b1".into(),
                ..Default::default()
            }),
            group: "G".into(),
            original_topic: "T".into(),
            original_queue_id: 1,
            original_queue_offset: 9,
            attempts: 3,
            resent_at_ms,
        }
    }

    #[test]
    fn dead_letters_show_their_origin_and_the_body_only_when_asked() {
        let hidden = DeadLetterRow::new(&dead_letter(0), false);
        assert_eq!(hidden.body, None);
        assert_eq!(hidden.resent_at_ms, None);
        let v: serde_json::Value =
            serde_json::from_str(&render_list(std::slice::from_ref(&hidden), Format::Json))
                .unwrap();
        assert!(v[0].get("body").is_none());
        assert_eq!(v[0]["original_topic"], "T");
        assert_eq!(v[0]["attempts"], 3);
        assert_eq!(v[0]["properties"]["p"], "v");
        assert_eq!(v[0]["dlq_offset"], 4);
        let shown = DeadLetterRow::new(&dead_letter(1_700_000_001_000), true);
        assert_eq!(shown.body.as_deref(), Some("ff01"));
        assert_eq!(shown.body_format.as_deref(), Some("hex"));
        let table = render_list(&[hidden, shown], Format::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("MESSAGE ID  TOPIC  ATTEMPTS"),
            "{table}"
        );
        assert_eq!(lines[1].split_whitespace().last(), Some("-"), "{table}");
        assert!(lines[2].contains("2023-11-14T22:13:21.000Z"), "{table}");
        assert!(lines[2].ends_with("ff01"), "{table}");
    }

    #[test]
    fn resend_outcomes_read_plainly_and_failures_fail_the_command() {
        let result = |outcome: ResendOutcome, queue: i32, detail: &str| cluster::ResendResult {
            dead_letter: Some(dead_letter(5)),
            outcome: outcome as i32,
            queue_id: queue,
            queue_offset: if queue >= 0 { 12 } else { -1 },
            detail: detail.into(),
        };
        let rows: Vec<ResendRow> = [
            result(ResendOutcome::Resent, 1, ""),
            result(ResendOutcome::AlreadyResent, 1, ""),
        ]
        .iter()
        .map(ResendRow::from)
        .collect();
        assert_eq!(rows[0].outcome, "RESENT");
        assert_eq!(rows[1].outcome, "ALREADY_RESENT");
        assert_eq!(
            (rows[1].queue_id, rows[1].queue_offset),
            (Some(1), Some(12))
        );
        let table = render_list(&rows, Format::Table);
        assert!(table.contains("already resent"), "{table}");
        assert!(resend_failures(&rows).is_none());
        let failed = ResendRow::from(&result(ResendOutcome::ResendFailed, -1, "topic T is gone"));
        assert_eq!((failed.queue_id, failed.queue_offset), (None, None));
        let e = resend_failures(std::slice::from_ref(&failed)).unwrap();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("M1: topic T is gone"), "{e}");
        assert!(render_list(&[failed], Format::Table).contains("failed: topic T is gone"));
    }
}

//! `apogee tier status`: per broker process, where its uploads to the object-store tier
//! stand, from each member's own status (Admin.GetBrokerStatus, asked all at once as
//! `cluster list` does). A member without a tier is left out; one that does not answer is
//! shown as unreachable.

use std::time::Duration;

use serde::Serialize;

use crate::admin::Admin;
use crate::broker_status::{probe_members, MEMBER_STATUS_TIMEOUT};
use crate::error::ToolResult;
use crate::output::{one_line, render_list, Format, TableRow};
use apogee_proto::cluster::{BrokerRole, TierStatus};

/// One member's tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TierRow {
    pub broker_name: String,
    pub broker_id: i64,
    /// master or slave, as the member said; "" when it did not answer.
    pub role: String,
    /// Endpoint, bucket and prefix.
    pub location: String,
    pub local_segments: u64,
    pub local_bytes: u64,
    /// The base offset of the segment being uploaded.
    pub uploading_base: Option<u64>,
    pub tiered_segments: u64,
    pub tiered_bytes: u64,
    pub lag_bytes: u64,
    pub lag_secs: u64,
    /// The last failure (None after a success), or why the member could not be asked.
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
}

impl TierRow {
    pub fn of(broker_name: &str, broker_id: i64, role: i32, t: TierStatus) -> TierRow {
        let role = match BrokerRole::try_from(role) {
            Ok(BrokerRole::Slave) => "slave",
            Ok(_) => "master",
            Err(_) => "",
        };
        TierRow {
            broker_name: broker_name.to_string(),
            broker_id,
            role: role.to_string(),
            location: t.location,
            local_segments: t.local_segments,
            local_bytes: t.local_bytes,
            uploading_base: t.uploading.then_some(t.uploading_base),
            tiered_segments: t.tiered_segments,
            tiered_bytes: t.tiered_bytes,
            lag_bytes: t.lag_bytes,
            lag_secs: t.lag_secs,
            last_error: (!t.last_error.is_empty()).then_some(t.last_error),
            last_error_at_ms: (t.last_error_at_ms != 0).then_some(t.last_error_at_ms),
        }
    }
}

impl TableRow for TierRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "BROKER",
            "ID",
            "ROLE",
            "LOCAL",
            "UPLOADING",
            "TIERED",
            "LAG",
            "LAST ERROR",
            "WHERE",
        ]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.broker_name.clone(),
            self.broker_id.to_string(),
            self.role.clone(),
            format!("{} ({})", self.local_segments, bytes(self.local_bytes)),
            self.uploading_base
                .map_or_else(|| "-".to_string(), |b| format!("at {b}")),
            format!("{} ({})", self.tiered_segments, bytes(self.tiered_bytes)),
            format!("{} / {} s", bytes(self.lag_bytes), self.lag_secs),
            self.last_error
                .as_deref()
                .map_or_else(|| "-".into(), one_line),
            self.location.clone(),
        ]
    }
}

/// Bytes in a unit a reader takes in at once.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Admin {
    /// Every registered member's tier, each asked for at most `member_timeout`.
    pub async fn tier_status(&self, member_timeout: Duration) -> ToolResult<Vec<TierRow>> {
        let info = self.get_cluster_info().await?;
        let probes = probe_members(&info, &self.config, member_timeout).await;
        let mut rows = Vec::new();
        for ((_, broker_name, broker_id), probe) in probes {
            match probe {
                Ok(status) => {
                    if let Some(t) = status.tier {
                        rows.push(TierRow::of(&broker_name, broker_id, status.role, t));
                    }
                }
                Err(failure) => rows.push(TierRow {
                    broker_name,
                    broker_id,
                    role: String::new(),
                    location: String::new(),
                    local_segments: 0,
                    local_bytes: 0,
                    uploading_base: None,
                    tiered_segments: 0,
                    tiered_bytes: 0,
                    lag_bytes: 0,
                    lag_secs: 0,
                    last_error: Some(format!("unreachable: {}", failure.message)),
                    last_error_at_ms: None,
                }),
            }
        }
        rows.sort_by(|a, b| (&a.broker_name, a.broker_id).cmp(&(&b.broker_name, b.broker_id)));
        Ok(rows)
    }
}

/// `apogee tier status`.
pub async fn tier_status(admin: &Admin, timeout: Duration, f: Format) -> ToolResult<String> {
    let rows = admin
        .tier_status(timeout.min(MEMBER_STATUS_TIMEOUT))
        .await?;
    if rows.is_empty() && !f.is_json() {
        return Ok("no broker has a tier ([tier] names no bucket)\n".into());
    }
    Ok(render_list(&rows, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_shows_what_waits_what_is_tiered_and_the_last_error() {
        let t = TierStatus {
            local_segments: 2,
            local_bytes: 3 << 30,
            uploading_base: 1 << 30,
            uploading_bytes: 1 << 30,
            uploading: true,
            tiered_segments: 5,
            tiered_bytes: 5 << 30,
            lag_bytes: 3 << 30,
            lag_secs: 40,
            last_error: "the object store at http://s3:9000 cannot be reached".into(),
            last_error_at_ms: 1,
            location: "http://s3:9000 s3://b/prod".into(),
        };
        let row = TierRow::of("broker-a", 0, BrokerRole::AsyncMaster as i32, t);
        assert_eq!(
            row.cells(),
            vec![
                "broker-a",
                "0",
                "master",
                "2 (3.0 GiB)",
                "at 1073741824",
                "5 (5.0 GiB)",
                "3.0 GiB / 40 s",
                "the object store at http://s3:9000 cannot be reached",
                "http://s3:9000 s3://b/prod",
            ]
        );
        let idle = TierRow::of(
            "broker-a",
            1,
            BrokerRole::Slave as i32,
            TierStatus::default(),
        );
        assert_eq!(idle.cells()[4], "-");
        assert_eq!(idle.cells()[7], "-");
        assert_eq!(bytes(512), "512 B");
    }
}

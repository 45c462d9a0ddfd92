//! `--broker-pid`: the broker's CPU seconds over a run (utime + stime from `/proc/PID/stat`)
//! and its memory at the end (VmRSS and VmHWM from `/proc/PID/status`). Linux only; a broker
//! on another machine has no PID here, so the flag is optional.

use crate::error::{ToolError, ToolResult};
use serde::Serialize;

/// What the broker used during a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BrokerUsage {
    pub pid: u32,
    /// User plus system CPU time spent during the run, in seconds.
    pub cpu_secs: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory since the broker started, MiB.
    pub peak_rss_mib: f64,
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ: 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU ticks (utime + stime) of `pid` so far.
pub fn cpu_ticks(pid: u32) -> ToolResult<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| ToolError::Usage(format!("--broker-pid {pid}: {e}")))?;
    parse_ticks(&stat)
        .ok_or_else(|| ToolError::Server(format!("unexpected /proc/{pid}/stat format")))
}

/// utime + stime: fields 14 and 15, counted after the `)` that ends the command name.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The usage since `start_ticks` (from [`cpu_ticks`] at the start of the run).
pub fn finish(pid: u32, start_ticks: u64) -> ToolResult<BrokerUsage> {
    let end = cpu_ticks(pid)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| ToolError::Server(format!("--broker-pid {pid}: {e}")))?;
    Ok(BrokerUsage {
        pid,
        cpu_secs: end.saturating_sub(start_ticks) as f64 / TICKS_PER_SEC,
        rss_mib: status_kib(&status, "VmRSS:").unwrap_or(0.0) / 1024.0,
        peak_rss_mib: status_kib(&status, "VmHWM:").unwrap_or(0.0) / 1024.0,
    })
}

/// A table cell: the value with `digits` decimals, or "-" without `--broker-pid`.
pub fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_utime_plus_stime_even_with_spaces_in_the_name() {
        let stat = "4242 (apogee broker) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(parse_ticks(stat), Some(325));
        assert_eq!(parse_ticks("garbage"), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = std::process::id();
        let start = cpu_ticks(me).unwrap();
        let u = finish(me, start).unwrap();
        assert!(u.rss_mib > 0.0 && u.peak_rss_mib >= u.rss_mib);
        assert_eq!(cell(None, 1), "-");
        assert_eq!(cell(Some(1.26), 1), "1.3");
    }
}

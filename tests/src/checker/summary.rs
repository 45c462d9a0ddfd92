//! Figures of many rounds of one scenario each, per scenario: acknowledged, lost and
//! duplicated messages, the send and receive calls that failed within the fault's window,
//! FIFO order violations, lease violations, and the median, p99 (nearest rank) and worst
//! time from the round's fault to the first read and the first write of the affected group
//! and of the longest pause one producer saw in its acknowledged writes and one consumer in
//! its messages within the fault's window ("never" counts as the worst of all).

use super::{seconds, Report};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Rounds per scenario.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    scenarios: BTreeMap<String, Rounds>,
}

#[derive(Clone, Debug, Default)]
struct Rounds {
    acknowledged: Vec<usize>,
    lost: Vec<usize>,
    duplicated: Vec<usize>,
    failed_sends: Vec<usize>,
    failed_receives: Vec<usize>,
    order_violations: Vec<usize>,
    lease_violations: Vec<usize>,
    to_read: Vec<Option<Duration>>,
    to_write: Vec<Option<Duration>>,
    write_pause: Vec<Option<Duration>>,
    read_pause: Vec<Option<Duration>>,
}

/// Median, p99 and worst of some times (`None` standing for "never", later than any time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub median: Option<Duration>,
    pub p99: Option<Duration>,
    pub worst: Option<Duration>,
}

/// The [`Spread`] of `times`; the percentiles by nearest rank (of 20 rounds the p99 is the
/// worst).
fn spread(times: &[Option<Duration>]) -> Spread {
    let mut sorted = times.to_vec();
    // None sorts first in Option's order; "never" must sort last.
    sorted.sort_by_key(|t| (t.is_none(), *t));
    let rank = |p: f64| {
        let n = sorted.len();
        let at = ((p * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        sorted.get(at).copied().flatten()
    };
    Spread {
        median: rank(0.5),
        p99: rank(0.99),
        worst: sorted.last().copied().flatten(),
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {} / {}",
            seconds(self.median),
            seconds(self.p99),
            seconds(self.worst)
        )
    }
}

impl Summary {
    pub fn new() -> Summary {
        Summary::default()
    }

    /// Adds one round of `scenario`: its counts, and the failed calls and times of its first
    /// fault.
    pub fn add(&mut self, scenario: &str, report: &Report) {
        let rounds = self.scenarios.entry(scenario.to_string()).or_default();
        rounds.acknowledged.push(report.acknowledged);
        rounds.lost.push(report.lost.len());
        rounds.duplicated.push(report.duplicated);
        rounds.order_violations.push(report.order_violations.len());
        rounds.lease_violations.push(report.lease_violations.len());
        let first = report.faults.first();
        rounds
            .failed_sends
            .push(first.map_or(0, |f| f.failed_sends));
        rounds
            .failed_receives
            .push(first.map_or(0, |f| f.failed_receives));
        rounds.to_read.push(first.and_then(|f| f.to_read));
        rounds.to_write.push(first.and_then(|f| f.to_write));
        rounds.write_pause.push(first.and_then(|f| f.write_pause));
        rounds.read_pause.push(first.and_then(|f| f.read_pause));
    }

    /// Rounds of `scenario` so far.
    pub fn rounds(&self, scenario: &str) -> usize {
        self.scenarios.get(scenario).map_or(0, |r| r.lost.len())
    }

    /// The spread of one kind of time of the rounds of `scenario`.
    fn spread_of(&self, scenario: &str, times: fn(&Rounds) -> &[Option<Duration>]) -> Spread {
        spread(self.scenarios.get(scenario).map_or(&[][..], times))
    }

    /// The times to the first read after the fault of `scenario`.
    pub fn to_read(&self, scenario: &str) -> Spread {
        self.spread_of(scenario, |r| &r.to_read)
    }

    /// The times to the first write after the fault of `scenario`.
    pub fn to_write(&self, scenario: &str) -> Spread {
        self.spread_of(scenario, |r| &r.to_write)
    }

    /// The longest pauses of one producer's acknowledged writes in the fault's window of
    /// `scenario`.
    pub fn write_pause(&self, scenario: &str) -> Spread {
        self.spread_of(scenario, |r| &r.write_pause)
    }

    /// The longest pauses of one consumer's messages in the fault's window of `scenario`.
    pub fn read_pause(&self, scenario: &str) -> Spread {
        self.spread_of(scenario, |r| &r.read_pause)
    }

    /// The sends and receive calls that failed within the fault's window of every round of
    /// `scenario`.
    pub fn failed_calls(&self, scenario: &str) -> (usize, usize) {
        self.scenarios.get(scenario).map_or((0, 0), |r| {
            (r.failed_sends.iter().sum(), r.failed_receives.iter().sum())
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<30} {:>6} {:>12} {:>6} {:>10} {:>12} {:>15} {:>16} {:>16}  {:<36} {:<36} {:<36} {:<36}",
            "scenario",
            "rounds",
            "acknowledged",
            "lost",
            "duplicated",
            "failed sends",
            "failed receives",
            "order violations",
            "lease violations",
            "to read: median / p99 / worst",
            "to write: median / p99 / worst",
            "write pause: median / p99 / worst",
            "read pause: median / p99 / worst"
        )?;
        for (name, r) in &self.scenarios {
            let sum = |v: &[usize]| v.iter().sum::<usize>();
            writeln!(
                f,
                "{:<30} {:>6} {:>12} {:>6} {:>10} {:>12} {:>15} {:>16} {:>16}  {:<36} {:<36} {:<36} {:<36}",
                name,
                r.lost.len(),
                sum(&r.acknowledged),
                sum(&r.lost),
                sum(&r.duplicated),
                sum(&r.failed_sends),
                sum(&r.failed_receives),
                sum(&r.order_violations),
                sum(&r.lease_violations),
                spread(&r.to_read).to_string(),
                spread(&r.to_write).to_string(),
                spread(&r.write_pause).to_string(),
                spread(&r.read_pause).to_string(),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::FaultRecovery;

    fn round(
        acknowledged: usize,
        lost: usize,
        read_ms: Option<u64>,
        write_ms: Option<u64>,
    ) -> Report {
        Report {
            acknowledged,
            lost: (0..lost).map(|i| format!("k{i}")).collect(),
            duplicated: 1,
            faults: vec![FaultRecovery {
                kind: "kill".into(),
                member: "a-0".into(),
                broker_group: Some("a".into()),
                at: Duration::ZERO,
                to_read: read_ms.map(Duration::from_millis),
                to_write: write_ms.map(Duration::from_millis),
                write_pause: write_ms.map(|ms| Duration::from_millis(2 * ms)),
                read_pause: read_ms.map(|ms| Duration::from_millis(2 * ms)),
                failed_sends: acknowledged / 10,
                failed_receives: lost,
                clients: Default::default(),
            }],
            ..Report::default()
        }
    }

    #[test]
    fn medians_and_worsts_count_never_as_the_longest() {
        let mut s = Summary::new();
        s.add("kill", &round(100, 0, Some(3000), Some(500)));
        let mut out_of_order = round(120, 2, Some(1000), None);
        out_of_order.order_violations = vec![crate::checker::OrderViolation {
            message_group: "g".into(),
            key: "k1".into(),
            after: "k2".into(),
        }];
        s.add("kill", &out_of_order);
        s.add("kill", &round(90, 0, Some(2000), Some(700)));
        s.add("pause", &round(50, 0, Some(4000), Some(4000)));
        assert_eq!(s.rounds("kill"), 3);
        let secs = |ms: u64| Some(Duration::from_millis(ms));
        let spread = |median, p99, worst| Spread { median, p99, worst };
        assert_eq!(
            s.to_read("kill"),
            spread(secs(2000), secs(3000), secs(3000))
        );
        assert_eq!(s.to_write("kill"), spread(secs(700), None, None));
        assert_eq!(
            s.to_read("pause"),
            spread(secs(4000), secs(4000), secs(4000))
        );
        assert_eq!(s.to_read("absent"), spread(None, None, None));
        let text = s.to_string();
        let kill = text
            .lines()
            .find(|l| l.starts_with("kill"))
            .expect("a kill line");
        let fields: Vec<&str> = kill.split_whitespace().collect();
        assert_eq!(
            &fields[..9],
            ["kill", "3", "310", "2", "3", "31", "2", "1", "0"],
            "{text}"
        );
        assert_eq!(s.failed_calls("kill"), (31, 2));
        assert_eq!(s.failed_calls("absent"), (0, 0));
        assert_eq!(s.write_pause("kill"), spread(secs(1400), None, None));
        assert_eq!(
            s.read_pause("kill"),
            spread(secs(4000), secs(6000), secs(6000))
        );
        assert!(
            kill.contains("2.000 s / 3.000 s / 3.000 s")
                && kill.contains("0.700 s / never / never")
                && kill.contains("1.400 s / never / never")
                && kill.contains("4.000 s / 6.000 s / 6.000 s"),
            "{text}"
        );
    }

    #[test]
    fn the_p99_of_many_rounds_is_below_the_worst() {
        let mut s = Summary::new();
        for ms in 1..=200 {
            s.add("kill", &round(1, 0, Some(ms * 10), Some(ms)));
        }
        let secs = |ms: u64| Some(Duration::from_millis(ms));
        assert_eq!(
            s.to_write("kill"),
            Spread {
                median: secs(100),
                p99: secs(198),
                worst: secs(200)
            }
        );
    }
}

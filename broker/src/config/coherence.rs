//! Settings that are each valid alone but contradict each other (a refusal point below the
//! cleaning point, a renewal period longer than the renewal bound, a scan slower than what
//! it scans for): every such pair of the broker's config, checked in one place
//! ([`BrokerConfig::check_pairs`], part of `BrokerConfig::validate`, so `--check-config`
//! refuses them too). The error names both settings with their values.
//!
//! The disk ratios are also set at runtime (`apogee broker config set`): their rule is the
//! store's ([`disk_ratios`]), which its retention policy checks on every change.

use super::BrokerConfig;
use crate::store::disk_ratios;

/// One pair: `lower` must not be above `upper`.
struct Pair {
    lower: (&'static str, f64),
    upper: (&'static str, f64),
    /// What goes wrong otherwise.
    why: &'static str,
}

impl Pair {
    fn check(&self) -> Result<(), String> {
        let ((low_key, low), (up_key, up)) = (self.lower, self.upper);
        if low <= up {
            return Ok(());
        }
        Err(format!(
            "{low_key} = {low} is above {up_key} = {up}: {}; lower {low_key} or raise {up_key}",
            self.why
        ))
    }
}

impl BrokerConfig {
    /// Every pair of settings that must agree.
    pub(super) fn check_pairs(&self) -> Result<(), String> {
        disk_ratios(self.store.disk_clean_ratio, self.store.disk_refuse_ratio)?;
        let ms = |v: u64| v as f64;
        let pairs = [
            Pair {
                lower: (
                    "store.retention_check_ms",
                    ms(self.store.retention_check_ms),
                ),
                upper: (
                    "store.retention_hours (in ms)",
                    ms(self.store.retention_hours.saturating_mul(3_600_000)),
                ),
                why: "segments would outlive their retention by more than the retention itself",
            },
            Pair {
                lower: (
                    "consume.auto_renew_period_ms",
                    ms(self.consume.auto_renew_period_ms),
                ),
                upper: (
                    "consume.max_auto_renew_ms",
                    ms(self.consume.max_auto_renew_ms),
                ),
                why: "one renewal period would already pass the bound on renewing",
            },
            Pair {
                lower: (
                    "transaction.scan_interval_ms",
                    ms(self.transaction.scan_interval_ms),
                ),
                upper: (
                    "transaction.check_interval_ms",
                    ms(self.transaction.check_interval_ms),
                ),
                why: "check-backs would come at the scan's pace, not every check interval",
            },
            Pair {
                lower: (
                    "schedule.scan_interval_ms",
                    ms(self.schedule.scan_interval_ms),
                ),
                upper: ("schedule.max_delay_ms", ms(self.schedule.max_delay_ms)),
                why: "the delivery loop would sleep past the latest delivery time accepted",
            },
            Pair {
                lower: (
                    "heartbeat_interval_ms",
                    self.heartbeat_interval().as_millis() as f64,
                ),
                upper: (
                    "register_interval_secs (in ms)",
                    ms(self.register_interval_secs.saturating_mul(1000)),
                ),
                why: "the session's beats, which keep the broker registered between two full \
                      registrations, would come less often than the registrations",
            },
        ];
        pairs.iter().try_for_each(Pair::check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(change: impl FnOnce(&mut BrokerConfig)) -> String {
        let mut c = BrokerConfig::default();
        change(&mut c);
        c.validate()
            .expect_err("a contradicting pair is refused")
            .to_string()
    }

    #[test]
    fn the_defaults_agree() {
        BrokerConfig::default().check_pairs().unwrap();
    }

    #[test]
    fn contradicting_settings_are_refused_naming_both() {
        let e = refused(|c| {
            c.store.disk_refuse_ratio = 0.5;
            c.store.disk_clean_ratio = 0.8;
        });
        assert!(
            e.contains("store.disk_clean_ratio = 0.8")
                && e.contains("store.disk_refuse_ratio = 0.5"),
            "{e}"
        );
        for (change, first, second) in [
            (
                (|c: &mut BrokerConfig| c.consume.auto_renew_period_ms = 3_600_000)
                    as fn(&mut BrokerConfig),
                "consume.auto_renew_period_ms = 3600000",
                "consume.max_auto_renew_ms = 1800000",
            ),
            (
                |c| c.transaction.scan_interval_ms = 60_000,
                "transaction.scan_interval_ms = 60000",
                "transaction.check_interval_ms = 30000",
            ),
            (
                |c| c.schedule.max_delay_ms = 500,
                "schedule.scan_interval_ms = 1000",
                "schedule.max_delay_ms = 500",
            ),
            (
                |c| {
                    c.store.retention_hours = 1;
                    c.store.retention_check_ms = 7_200_000;
                },
                "store.retention_check_ms = 7200000",
                "store.retention_hours (in ms) = 3600000",
            ),
            (
                |c| {
                    c.register_interval_secs = 1;
                    c.heartbeat_interval_ms = 5_000;
                },
                "heartbeat_interval_ms = 5000",
                "register_interval_secs (in ms) = 1000",
            ),
        ] {
            let e = refused(change);
            assert!(e.contains(first) && e.contains(second), "{e}");
        }
    }

    #[test]
    fn equal_values_agree() {
        let mut c = BrokerConfig::default();
        c.store.disk_clean_ratio = 1.0;
        c.store.disk_refuse_ratio = 1.0;
        c.validate().unwrap();
    }
}

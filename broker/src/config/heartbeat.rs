//! The session heartbeat interval: `heartbeat_interval_ms`, the deprecated
//! `heartbeat_interval_secs` of earlier releases (still read, with a warning), and their
//! check in `BrokerConfig::validate`.

use super::{BrokerConfig, DEFAULT_HEARTBEAT_INTERVAL_MS};
use std::time::Duration;

impl BrokerConfig {
    /// The interval between session beats: `heartbeat_interval_ms`, or the deprecated
    /// `heartbeat_interval_secs` when a config file of an earlier release sets it.
    pub fn heartbeat_interval(&self) -> Duration {
        match self.heartbeat_interval_secs {
            Some(secs) => Duration::from_secs(secs),
            None => Duration::from_millis(self.heartbeat_interval_ms),
        }
    }

    /// The warning to log when the deprecated `heartbeat_interval_secs` is set.
    pub fn heartbeat_deprecation(&self) -> Option<String> {
        self.heartbeat_interval_secs.map(|secs| {
            format!(
                "heartbeat_interval_secs is deprecated: replace heartbeat_interval_secs = {secs} \
                 with heartbeat_interval_ms = {}",
                secs.saturating_mul(1000)
            )
        })
    }

    pub(super) fn validate_heartbeat(&self) -> Result<(), String> {
        use apogee_proto::limits::{MAX_HEARTBEAT_INTERVAL_MS, MIN_HEARTBEAT_INTERVAL_MS};
        if self.heartbeat_interval_secs.is_some()
            && self.heartbeat_interval_ms != DEFAULT_HEARTBEAT_INTERVAL_MS
        {
            return Err(
                "heartbeat_interval_secs (deprecated) and heartbeat_interval_ms are \
                 both set: keep only heartbeat_interval_ms"
                    .into(),
            );
        }
        let ms = self.heartbeat_interval().as_millis();
        if !(u128::from(MIN_HEARTBEAT_INTERVAL_MS)..=u128::from(MAX_HEARTBEAT_INTERVAL_MS))
            .contains(&ms)
        {
            let key = match self.heartbeat_interval_secs {
                Some(s) => format!("heartbeat_interval_secs = {s}"),
                None => format!("heartbeat_interval_ms = {ms}"),
            };
            return Err(format!(
                "{key}: the heartbeat interval must be within \
                 {MIN_HEARTBEAT_INTERVAL_MS}..={MAX_HEARTBEAT_INTERVAL_MS} ms"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deprecated_heartbeat_key_in_seconds_is_still_read() {
        let old: BrokerConfig = toml::from_str("heartbeat_interval_secs = 3").unwrap();
        old.validate().unwrap();
        assert_eq!(old.heartbeat_interval(), Duration::from_secs(3));
        let warning = old.heartbeat_deprecation().expect("a deprecation warning");
        assert!(
            warning.contains("heartbeat_interval_ms = 3000"),
            "{warning}"
        );

        let new: BrokerConfig = toml::from_str("heartbeat_interval_ms = 250").unwrap();
        assert_eq!(new.heartbeat_interval(), Duration::from_millis(250));
        assert!(new.heartbeat_deprecation().is_none());
        assert_eq!(
            BrokerConfig::default().heartbeat_interval(),
            Duration::from_secs(1)
        );

        let both: BrokerConfig =
            toml::from_str("heartbeat_interval_secs = 3\nheartbeat_interval_ms = 250").unwrap();
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("keep only heartbeat_interval_ms"), "{err}");
    }

    #[test]
    fn the_heartbeat_interval_is_bounded() {
        for (text, ok) in [
            ("heartbeat_interval_ms = 0", false),
            ("heartbeat_interval_ms = 9", false),
            ("heartbeat_interval_ms = 10", true),
            (
                "heartbeat_interval_ms = 60000\nregister_interval_secs = 60",
                true,
            ),
            (
                "heartbeat_interval_ms = 60001\nregister_interval_secs = 120",
                false,
            ),
            ("heartbeat_interval_secs = 0", false),
            (
                "heartbeat_interval_secs = 60\nregister_interval_secs = 60",
                true,
            ),
            (
                "heartbeat_interval_secs = 61\nregister_interval_secs = 120",
                false,
            ),
        ] {
            let c: BrokerConfig = toml::from_str(text).unwrap();
            match c.validate() {
                Ok(()) => assert!(ok, "{text} accepted"),
                Err(e) => {
                    assert!(!ok, "{text} refused: {e}");
                    let key = text.split(' ').next().unwrap();
                    assert!(e.to_string().contains(key), "{e}");
                }
            }
        }
    }
}

//! Conversions between protobuf time types and milliseconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A protobuf timestamp for Unix milliseconds.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Unix milliseconds of a protobuf timestamp (saturating: a time too far out for i64
/// milliseconds stays the furthest, never wraps around to the other side).
pub fn timestamp_ms(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// Milliseconds of a protobuf duration (negative stays negative; saturating like
/// [`timestamp_ms`]).
pub fn duration_ms(d: &prost_types::Duration) -> i64 {
    d.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(d.nanos) / 1_000_000)
}

/// A protobuf duration for a Rust one.
pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(
            timestamp_ms(&timestamp(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(duration_ms(&duration(Duration::from_millis(1500))), 1500);
    }

    #[test]
    fn times_beyond_i64_milliseconds_saturate() {
        let far = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(timestamp_ms(&far(i64::MAX, 999_000_000)), i64::MAX);
        assert_eq!(timestamp_ms(&far(i64::MIN, -999_000_000)), i64::MIN);
        let long = prost_types::Duration {
            seconds: i64::MAX,
            nanos: 999_000_000,
        };
        assert_eq!(duration_ms(&long), i64::MAX);
    }
}

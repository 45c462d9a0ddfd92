//! The one parser of every duration flag of the CLI (`--timeout`, `--wait`, `--invisible`,
//! `--delay`, `--duration`, the groups' retry steps ...): a number with a unit `ms`, `s`,
//! `m`, `h` or `d` ("1500ms", "30s", "5m", "2h", "1d"), or a bare number of seconds ("30").

use std::time::Duration;

/// What the help of a duration flag says about its syntax.
pub const SYNTAX: &str = "a number with a unit ms, s, m, h or d (e.g. 500ms, 30s, 5m); \
                          a bare number is seconds";

/// Parses a duration: `<n><unit>` with the unit `ms`, `s`, `m`, `h` or `d`, or a bare number
/// of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("{s:?} is not a duration: use {SYNTAX}"));
    }
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is too long"))?;
    let ms_per: u64 = match unit.trim() {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m, h or d (a bare number is seconds)"
            ))
        }
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// A duration within `lo..=hi` (the bounds are named in the error as durations).
pub fn parse_within(s: &str, lo: Duration, hi: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < lo || d > hi {
        return Err(format!(
            "must be between {} and {}",
            display(lo),
            display(hi)
        ));
    }
    Ok(d)
}

/// A positive duration (zero is refused).
pub fn parse_positive(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A duration in the largest unit that divides it ("1500ms", "30s", "12h", "7d").
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= per && ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("3w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("99999999999999999d").is_err(), "overflows");
    }

    #[test]
    fn bounds_are_named_as_durations() {
        let (lo, hi) = (Duration::from_secs(1), Duration::from_secs(12 * 3600));
        assert_eq!(parse_within("90", lo, hi), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_within("500ms", lo, hi).unwrap_err(),
            "must be between 1s and 12h"
        );
        assert!(parse_positive("0s").is_err());
        assert_eq!(display(Duration::from_millis(1500)), "1500ms");
        assert_eq!(display(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(display(Duration::ZERO), "0ms");
    }
}

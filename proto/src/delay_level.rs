//! The 18 classic delay levels of RocketMQ 4.x, a shorthand for common delays:
//! level 1 is 1 s, level 18 is 2 h. Apogee accepts any delivery time up to the broker's
//! maximum; levels only name a few.

use std::time::Duration;

/// The delay of each level, level 1 first.
pub const LEVELS_SECS: [u64; 18] = [
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200,
];

/// The delay of `level` (1..=18), or None for any other level.
pub fn delay_of(level: u32) -> Option<Duration> {
    let i = usize::try_from(level).ok()?.checked_sub(1)?;
    LEVELS_SECS.get(i).map(|&s| Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_run_from_one_second_to_two_hours() {
        assert_eq!(delay_of(1), Some(Duration::from_secs(1)));
        assert_eq!(delay_of(5), Some(Duration::from_secs(60)));
        assert_eq!(delay_of(18), Some(Duration::from_secs(7200)));
        assert_eq!(delay_of(0), None);
        assert_eq!(delay_of(19), None);
    }
}

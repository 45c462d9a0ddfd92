//! The names of the commit log's segment files: each is its base log offset as
//! [`SEGMENT_NAME_DIGITS`] zero-padded digits. The log (`super::commitlog`) names and lists
//! its segments with them, and `super::foreign` tells Apogee's files from others' by them.

/// Digits in a segment file name.
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// File name of the segment whose first byte is at log offset `base`.
pub fn segment_file_name(base: u64) -> String {
    format!("{base:0width$}", width = SEGMENT_NAME_DIGITS)
}

/// The base offset a segment file name stands for, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    (name.len() == SEGMENT_NAME_DIGITS && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

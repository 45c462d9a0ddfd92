//! RocketMQ 5 message ids: 17 bytes shown as 34 upper-case hex characters.
//!
//! Layout: version byte `0x01`, 6 bytes identifying the host (random per
//! process here, as no MAC address is read), the low 2 bytes of the process
//! id, 4 bytes of seconds since 2021-01-01T00:00:00Z and a 4-byte sequence.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of 2021-01-01T00:00:00Z, the epoch of the id's time field.
const ID_EPOCH_SECS: u64 = 1_609_459_200;
/// Length of an id in hex characters.
pub const MESSAGE_ID_HEX_LEN: usize = 34;
/// Longest message id a server accepts from a client (ids of older clients
/// have other shapes, so only the character set and length are checked).
pub const MAX_MESSAGE_ID_LEN: usize = 128;

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn host_prefix() -> &'static [u8; 8] {
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut p = [0u8; 8];
        let host: [u8; 6] = rand::random();
        p[..6].copy_from_slice(&host);
        p[6..].copy_from_slice(&(std::process::id() as u16).to_be_bytes());
        p
    })
}

/// A new, process-unique message id.
pub fn new_message_id() -> String {
    message_id_at(epoch_secs())
}

/// `n` new, process-unique message ids (one clock read for all of them: a batch's ids).
pub fn new_message_ids(n: usize) -> Vec<String> {
    let secs = epoch_secs();
    (0..n).map(|_| message_id_at(secs)).collect()
}

/// Seconds since the id epoch, now.
fn epoch_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(ID_EPOCH_SECS)
        .saturating_sub(ID_EPOCH_SECS) as u32
}

/// The next id of this process, stamped with `secs`.
fn message_id_at(secs: u32) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut raw = [0u8; 17];
    raw[0] = 0x01;
    raw[1..9].copy_from_slice(host_prefix());
    raw[9..13].copy_from_slice(&secs.to_be_bytes());
    raw[13..17].copy_from_slice(&seq.to_be_bytes());
    let mut id = String::with_capacity(MESSAGE_ID_HEX_LEN);
    for b in raw {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// Whether a client-supplied id is acceptable: 1 to 128 ASCII letters,
/// digits, '-' or '_'.
pub fn is_acceptable_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_17_bytes_of_hex_and_unique() {
        let a = new_message_id();
        let b = new_message_id();
        assert_eq!(a.len(), MESSAGE_ID_HEX_LEN);
        assert!(a.starts_with("01"));
        assert_ne!(a, b);
        assert!(is_acceptable_message_id(&a));
        assert!(!is_acceptable_message_id(""));
        assert!(!is_acceptable_message_id("has space"));
    }

    #[test]
    fn a_batch_of_ids_is_distinct_upper_hex_of_the_same_layout() {
        let ids = new_message_ids(3);
        assert_eq!(ids.len(), 3);
        for id in &ids {
            assert_eq!(id.len(), MESSAGE_ID_HEX_LEN);
            assert!(id.starts_with("01"));
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
            // Host and process (bytes 1..9) and time (9..13) are shared; the sequence differs.
            assert_eq!(id[2..26], ids[0][2..26]);
        }
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        let raw = hex::decode(&ids[0]).unwrap();
        assert_eq!(&raw[1..9], host_prefix());
    }
}

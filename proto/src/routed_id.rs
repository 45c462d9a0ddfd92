//! Ids that name the broker group holding what they refer to, so any NameServer can route a
//! request carrying one (EndTransaction, RecallMessage, an operator's resolve) without keeping
//! state: `<prefix><32 hex digits of randomness>-<broker name>`.
//!
//! Two kinds exist: transaction ids (`T1-`, see [`crate::txn_id`]) and the recall handles of
//! scheduled messages (`R1-`).

const RANDOM_HEX: usize = 32;

/// Prefix of a transaction id.
pub const TRANSACTION: &str = "T1-";
/// Prefix of a scheduled message's recall handle.
pub const RECALL: &str = "R1-";

/// A new id of kind `prefix` for something stored by `broker_name`.
pub fn new_id(prefix: &str, broker_name: &str) -> String {
    format!("{prefix}{:032x}-{broker_name}", rand::random::<u128>())
}

/// The broker group named in `id`, if it is an id of kind `prefix`.
pub fn broker_of<'a>(prefix: &str, id: &'a str) -> Option<&'a str> {
    let rest = id.strip_prefix(prefix)?;
    let (random, name) = (rest.get(..RANDOM_HEX)?, rest.get(RANDOM_HEX..)?);
    if !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let name = name.strip_prefix('-')?;
    (!name.is_empty()).then_some(name)
}

/// A new recall handle for a scheduled message stored by `broker_name`.
pub fn new_recall_handle(broker_name: &str) -> String {
    new_id(RECALL, broker_name)
}

/// The broker group named in a recall handle, if it is one of ours.
pub fn broker_of_recall_handle(handle: &str) -> Option<&str> {
    broker_of(RECALL, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_do_not_mix() {
        let handle = new_recall_handle("broker-a");
        assert_eq!(broker_of_recall_handle(&handle), Some("broker-a"));
        assert_eq!(broker_of(TRANSACTION, &handle), None);
        let txn = new_id(TRANSACTION, "b");
        assert_eq!(broker_of_recall_handle(&txn), None);
    }
}

//! Transaction ids. A transaction id names the broker group that holds the
//! half message, so any NameServer can route an EndTransaction (or an
//! operator's resolve) to it without keeping state:
//! `T1-<32 hex digits of randomness>-<broker name>` (a [`crate::routed_id`]).

use crate::routed_id::{self, TRANSACTION};

/// A new transaction id for a half message stored by `broker_name`.
pub fn new_transaction_id(broker_name: &str) -> String {
    routed_id::new_id(TRANSACTION, broker_name)
}

/// The broker group named in `transaction_id`, if it is one of ours.
pub fn broker_of(transaction_id: &str) -> Option<&str> {
    routed_id::broker_of(TRANSACTION, transaction_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_name_is_read_back_even_with_dashes() {
        let id = new_transaction_id("broker-a");
        assert_eq!(broker_of(&id), Some("broker-a"));
        assert_ne!(id, new_transaction_id("broker-a"));
    }

    #[test]
    fn foreign_or_malformed_ids_name_no_broker() {
        for bad in [
            "",
            "T1-",
            "7F000001ABCD",
            "T1-0123456789abcdef0123456789abcdef",
            "T1-0123456789abcdef0123456789abcdef-",
            "T1-0123456789abcdef0123456789abcdeX-b",
            "T2-0123456789abcdef0123456789abcdef-b",
        ] {
            assert_eq!(broker_of(bad), None, "{bad:?}");
        }
    }
}

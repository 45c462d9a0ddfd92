//! Deliveries as v2 messages: a stored message (`crate::v2_message`) with its receipt
//! handle, delivery attempt and invisible duration. (A producer's v2 message is decoded in
//! [`super::send`].)

use crate::consume::Delivery;
pub use crate::v2_message::to_v2_message;
use apogee_proto::time::duration;
use apogee_proto::v2;
use std::time::Duration;

/// A delivered message: the stored one plus its receipt handle, delivery
/// attempt and invisible duration.
pub fn delivery_to_v2(d: &Delivery, namespace: &str, store_host: &str) -> v2::Message {
    let mut m = to_v2_message(&d.message, namespace, store_host);
    if let Some(sp) = m.system_properties.as_mut() {
        sp.receipt_handle = Some(d.receipt_handle.clone());
        sp.delivery_attempt = Some(d.attempt as i32);
        sp.invisible_duration = Some(duration(
            Duration::from_millis(d.invisible_ms.max(0) as u64),
        ));
    }
    m
}

//! A stored message as a remoting client reads it ([`MessageExt`]), and a stored message
//! found by its commit-log offset (what an offset message id names).
//!
//! The same stored record is read by both protocols, so the mapping keeps what a client
//! sees the same whichever protocol sent the message: the Apogee message id is the
//! `UNIQ_KEY` (a remoting producer's `UNIQ_KEY` becomes the message id when it is sent), the
//! tag is `TAGS`, the keys are `KEYS` (space separated), a message group is the sharding key,
//! user properties are properties, the reconsume count is the record's, and the flag is the
//! one a remoting producer set (0 for a gRPC producer's message), and a producer's trace
//! context is `TRACE_CONTEXT`, as RocketMQ's proxy keeps a 5.x client's.

use crate::store::record::{self, StoredMessage};
use crate::v2_message::GZIP;
use apogee_proto::limits;
use apogee_proto::remoting::message::{self, property, MessageExt, Properties};
use bytes::Bytes;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address a record's born host names: `ip:port`, a bare ip (port 0), or 0.0.0.0:0
/// when it is neither (a host name).
pub fn host_of(text: &str) -> SocketAddr {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return addr;
    }
    let ip = text
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, 0)
}

/// The properties a remoting client reads of `stored`: its user properties, then its
/// message id, tag, keys and message group under their RocketMQ names, and the broker's
/// region (`MSG_REGION`, which RocketMQ's broker stores on every message: a 4.x consumer with
/// message trace on drops the trace record of a message that names none).
pub fn properties_of(stored: &StoredMessage) -> Properties {
    let msg = &stored.msg;
    let mut properties: Properties = msg.properties.iter().cloned().collect();
    properties.insert(property::MSG_REGION.into(), super::send::REGION.into());
    if !msg.message_id.is_empty() {
        properties.insert(property::UNIQ_KEY.into(), msg.message_id.clone());
    }
    if let Some(tag) = &msg.tag {
        properties.insert(property::TAGS.into(), tag.clone());
    }
    if !msg.keys.is_empty() {
        properties.insert(
            property::KEYS.into(),
            msg.keys.join(property::KEY_SEPARATOR),
        );
    }
    if let Some(group) = &msg.message_group {
        properties.insert(property::SHARDING_KEY.into(), group.clone());
    }
    if let Some(context) = msg.internal(record::internal::TRACE_CONTEXT) {
        properties.insert(property::TRACE_CONTEXT.into(), context.to_string());
    }
    if msg.reconsume_times > 0 {
        properties.insert(
            property::RECONSUME_TIME.into(),
            msg.reconsume_times.to_string(),
        );
    }
    properties
}

/// The body a remoting client reads: a gzip body (sent over gRPC with `Encoding::GZIP`)
/// inflated, as a remoting client knows only zlib; as stored when it does not inflate.
pub fn body_of(stored: &StoredMessage) -> Bytes {
    let msg = &stored.msg;
    if msg.internal(record::internal::BODY_ENCODING) != Some(GZIP) {
        return msg.body.clone();
    }
    match message::gunzip(&msg.body, limits::MAX_BATCH_BYTES) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            tracing::warn!(error = %e, id = msg.message_id, "a gzip body does not inflate");
            msg.body.clone()
        }
    }
}

/// `stored` as a remoting client reads it, stored by `store_host` (the broker's remoting
/// address the client reaches: the offset message id is made of it).
pub fn to_message_ext(stored: &StoredMessage, store_host: SocketAddr) -> MessageExt {
    let msg = &stored.msg;
    MessageExt {
        topic: msg.topic.clone(),
        queue_id: msg.queue_id as i32,
        queue_offset: stored.queue_offset as i64,
        commit_log_offset: stored.log_offset as i64,
        sys_flag: 0,
        flag: msg.flag(),
        born_timestamp: msg.born_timestamp_ms,
        born_host: host_of(&msg.born_host),
        store_timestamp: stored.store_timestamp_ms,
        store_host,
        store_size: stored.record_size as i32,
        reconsume_times: msg.reconsume_times as i32,
        prepared_transaction_offset: 0,
        body: body_of(stored),
        properties: properties_of(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;
    use apogee_proto::remoting::message::{offset_message_id, parse_offset_message_id};
    use bytes::BytesMut;

    fn record() -> NewMessage {
        NewMessage {
            topic: "orders".into(),
            queue_id: 1,
            message_id: "7F0000010001ABCDEF0123456789ABCD".into(),
            tag: Some("TagA".into()),
            keys: vec!["k1".into(), "k2".into()],
            message_group: None,
            message_type: 1,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "10.1.2.3:4567".into(),
            delivery_timestamp_ms: None,
            reconsume_times: 2,
            properties: vec![("color".into(), "blue".into())],
            internal: Vec::new(),
            body: Bytes::from_static(b"payload"),
        }
    }

    #[tokio::test]
    async fn a_stored_message_reads_as_message_ext_and_is_found_by_its_offset_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::MessageStore::open_with_kv(
            crate::store::StoreConfig::for_tests(dir.path()),
            std::sync::Arc::new(crate::store::MemKv::new()),
        )
        .unwrap();
        let first = store.append(vec![record()]).await.unwrap();
        let second = store
            .append(vec![NewMessage {
                message_id: "second".into(),
                ..record()
            }])
            .await
            .unwrap();
        let at = second[0].log_offset;
        let stored = store.message_at(at).unwrap().expect("the second record");
        assert_eq!(stored.msg.message_id, "second");
        let host: SocketAddr = "10.0.0.9:10911".parse().unwrap();
        let ext = to_message_ext(&stored, host);
        assert_eq!(ext.topic, "orders");
        assert_eq!(ext.queue_id, 1);
        assert_eq!(ext.queue_offset, 1);
        assert_eq!(ext.commit_log_offset, at as i64);
        assert_eq!(ext.born_host, "10.1.2.3:4567".parse().unwrap());
        assert_eq!(ext.reconsume_times, 2);
        let p = &ext.properties;
        assert_eq!(p["UNIQ_KEY"], "second");
        assert_eq!(p["TAGS"], "TagA");
        assert_eq!(p["KEYS"], "k1 k2");
        assert_eq!(p["color"], "blue");
        assert_eq!(p["RECONSUME_TIME"], "2");
        // The offset id names this record, and it encodes in the stored layout.
        let (h, off) = parse_offset_message_id(&ext.offset_message_id()).unwrap();
        assert_eq!((h, off), (host, at as i64));
        assert_eq!(ext.offset_message_id(), offset_message_id(host, at as i64));
        let mut out = BytesMut::new();
        ext.encode(&mut out).unwrap();
        assert_eq!(
            MessageExt::decode_all(out.freeze()).unwrap()[0].body,
            "payload"
        );
        // A gzip body (a gRPC producer's) is read inflated.
        let mut gz = flate2_free_gzip(b"packed");
        let zipped = store
            .append(vec![NewMessage {
                message_id: "zipped".into(),
                internal: vec![(record::internal::BODY_ENCODING.into(), GZIP.into())],
                body: Bytes::from(std::mem::take(&mut gz)),
                ..record()
            }])
            .await
            .unwrap();
        let stored = store.message_at(zipped[0].log_offset).unwrap().unwrap();
        assert_eq!(&to_message_ext(&stored, host).body[..], b"packed");
        // Not the start of a record, past the end: nothing.
        assert_eq!(store.message_at(first[0].log_offset + 1).unwrap(), None);
        assert_eq!(
            store.message_at(store.log_end_offset() + 100).unwrap(),
            None
        );
    }

    /// `body` as a gzip stream of one stored (uncompressed) deflate block.
    fn flate2_free_gzip(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        let len = body.len() as u16;
        out.push(1);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn born_hosts_read_as_addresses_whatever_their_form() {
        assert_eq!(host_of("1.2.3.4:5"), "1.2.3.4:5".parse().unwrap());
        assert_eq!(host_of("1.2.3.4"), "1.2.3.4:0".parse().unwrap());
        assert_eq!(host_of("[::1]:9"), "[::1]:9".parse().unwrap());
        assert_eq!(host_of("producer-host"), "0.0.0.0:0".parse().unwrap());
    }
}

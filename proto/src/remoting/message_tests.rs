use super::*;

fn sample() -> MessageExt {
    let mut properties = Properties::new();
    properties.insert(property::TAGS.into(), "TagA".into());
    properties.insert(
        property::UNIQ_KEY.into(),
        "7F000001000018B4AAC20000000000FF".into(),
    );
    MessageExt {
        topic: "orders".into(),
        queue_id: 3,
        queue_offset: 42,
        commit_log_offset: 4096,
        sys_flag: 0,
        flag: 7,
        born_timestamp: 1_700_000_000_000,
        born_host: "10.0.0.5:50123".parse().unwrap(),
        store_timestamp: 1_700_000_000_123,
        store_host: "10.0.0.1:10911".parse().unwrap(),
        store_size: 0,
        reconsume_times: 2,
        prepared_transaction_offset: 0,
        body: Bytes::from_static(b"hello"),
        properties,
    }
}

#[test]
fn a_message_encodes_in_rocketmq_stored_layout_byte_for_byte() {
    let mut properties = Properties::new();
    properties.insert("k".into(), "v".into());
    let m = MessageExt {
        topic: "t".into(),
        queue_id: 1,
        queue_offset: 2,
        commit_log_offset: 3,
        flag: 4,
        born_timestamp: 5,
        born_host: "127.0.0.1:10".parse().unwrap(),
        store_timestamp: 6,
        store_host: "127.0.0.2:11".parse().unwrap(),
        reconsume_times: 8,
        prepared_transaction_offset: 9,
        body: Bytes::from_static(b"ab"),
        properties,
        ..MessageExt::default()
    };
    let mut out = BytesMut::new();
    m.encode(&mut out).unwrap();
    // CRC-32 of "ab" is 0x9E83486D; RocketMQ clears its top bit.
    let expected: Vec<u8> = [
        &(98i32).to_be_bytes()[..],
        &[0xDA, 0xA3, 0x20, 0xA7],
        &0x1E83_486Di32.to_be_bytes(),
        &1i32.to_be_bytes(),
        &4i32.to_be_bytes(),
        &2i64.to_be_bytes(),
        &3i64.to_be_bytes(),
        &0i32.to_be_bytes(),
        &5i64.to_be_bytes(),
        &[127, 0, 0, 1, 0, 0, 0, 10],
        &6i64.to_be_bytes(),
        &[127, 0, 0, 2, 0, 0, 0, 11],
        &8i32.to_be_bytes(),
        &9i64.to_be_bytes(),
        &[0, 0, 0, 2, b'a', b'b'],
        &[1, b't'],
        &[0, 4, b'k', 1, b'v', 2],
    ]
    .concat();
    assert_eq!(out.len(), expected.len());
    assert_eq!(&out[..], &expected[..]);
    let back = MessageExt::decode_all(out.freeze()).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].store_size, 98);
    assert_eq!(
        MessageExt {
            store_size: 0,
            ..back[0].clone()
        },
        m
    );
}

#[test]
fn many_messages_with_ipv6_hosts_and_long_topics_round_trip() {
    let a = sample();
    let b = MessageExt {
        topic: "x".repeat(200),
        born_host: "[2001:db8::1]:40000".parse().unwrap(),
        store_host: "[2001:db8::2]:10911".parse().unwrap(),
        body: Bytes::from(vec![9u8; 10_000]),
        ..sample()
    };
    let mut out = BytesMut::new();
    a.encode(&mut out).unwrap();
    b.encode(&mut out).unwrap();
    assert_eq!(out.len(), a.encoded_len() + b.encoded_len());
    // The V2 magic code for the 200-byte topic, the IPv6 bits in its sys flag.
    let second = &out[a.encoded_len()..];
    assert_eq!(
        i32::from_be_bytes(second[4..8].try_into().unwrap()),
        MAGIC_CODE_V2
    );
    let back = MessageExt::decode_all(out.freeze()).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].body, a.body);
    assert_eq!(back[0].properties, a.properties);
    assert_eq!(back[1].topic, b.topic);
    assert_eq!(back[1].born_host, b.born_host);
    assert_eq!(back[1].store_host, b.store_host);
    assert_eq!(
        back[1].sys_flag,
        sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6
    );
}

#[test]
fn truncated_or_foreign_bytes_are_errors() {
    let mut out = BytesMut::new();
    sample().encode(&mut out).unwrap();
    let whole = out.freeze();
    assert!(matches!(
        MessageExt::decode_all(whole.slice(..whole.len() - 1)),
        Err(MessageCodecError::BadSize { .. })
    ));
    let mut bad = BytesMut::from(&whole[..]);
    bad[4..8].copy_from_slice(&0i32.to_be_bytes());
    assert_eq!(
        MessageExt::decode_all(bad.freeze()),
        Err(MessageCodecError::BadMagic(0))
    );
    // A size that claims less than the fields it holds.
    let mut short = BytesMut::from(&whole[..40]);
    short[..4].copy_from_slice(&40i32.to_be_bytes());
    assert!(matches!(
        MessageExt::decode_all(short.freeze()),
        Err(MessageCodecError::Truncated(_))
    ));
    assert_eq!(MessageExt::decode_all(Bytes::new()), Ok(vec![]));
}

#[test]
fn a_properties_string_longer_than_an_i16_is_refused() {
    let mut m = sample();
    m.properties
        .insert("big".into(), "v".repeat(MAX_PROPERTIES_BYTES));
    assert!(matches!(
        m.encode(&mut BytesMut::new()),
        Err(MessageCodecError::PropertiesTooLong(_))
    ));
}

#[test]
fn the_properties_string_reads_both_ways_and_skips_malformed_entries() {
    let mut p = Properties::new();
    p.insert("KEYS".into(), "a b".into());
    p.insert("TAGS".into(), "T".into());
    let text = properties_to_string(&p);
    assert_eq!(text, "KEYS\u{1}a b\u{2}TAGS\u{1}T\u{2}");
    assert_eq!(properties_from_str(&text), p);
    let read = properties_from_str("a\u{1}1\u{2}novalue\u{2}\u{1}x\u{2}b\u{1}\u{2}");
    assert_eq!(read.get("a").map(String::as_str), Some("1"));
    assert_eq!(read.get("b").map(String::as_str), Some(""));
    assert_eq!(read.len(), 2);
}

#[test]
fn a_batch_body_decodes_into_its_messages() {
    let entries = vec![
        BatchEntry {
            flag: 1,
            body: Bytes::from_static(b"one"),
            properties: [("UNIQ_KEY".to_string(), "A".to_string())].into(),
        },
        BatchEntry {
            flag: 0,
            body: Bytes::new(),
            properties: Properties::new(),
        },
    ];
    let mut out = BytesMut::new();
    for e in &entries {
        encode_batch_entry(e, &mut out).unwrap();
    }
    // The first entry's fixed layout: size, magic 0, crc 0, flag, body, properties.
    assert_eq!(
        &out[..4],
        &(4 + 4 + 4 + 4 + 4 + 3 + 2 + 11i32).to_be_bytes()
    );
    assert_eq!(&out[16..23], &[0, 0, 0, 3, b'o', b'n', b'e']);
    assert_eq!(decode_batch(out.clone().freeze()).unwrap(), entries);
    assert!(decode_batch(out.freeze().slice(..10)).is_err());
}

#[test]
fn offset_message_ids_round_trip_for_ipv4_and_ipv6() {
    let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
    let id = offset_message_id(host, 0x1234);
    assert_eq!(id, "0A00000100002A9F0000000000001234");
    assert_eq!(parse_offset_message_id(&id).unwrap(), (host, 0x1234));
    let v6: SocketAddr = "[::1]:10911".parse().unwrap();
    let id6 = offset_message_id(v6, 7);
    assert_eq!(id6.len(), 56);
    assert_eq!(parse_offset_message_id(&id6).unwrap(), (v6, 7));
    assert!(parse_offset_message_id("0A000001").is_err());
    assert!(parse_offset_message_id("not hex at all, not hex at all!!").is_err());
}

#[test]
fn a_zlib_body_inflates_within_its_limit() {
    let body = vec![b'z'; 10_000];
    let packed = deflate(&body);
    assert!(packed.len() < body.len());
    assert_eq!(
        inflate(&packed, sys_flag::COMPRESSED, 10_000).unwrap(),
        body
    );
    assert_eq!(
        inflate(
            &packed,
            sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB,
            10_000
        )
        .unwrap(),
        body
    );
    assert_eq!(
        inflate(&packed, sys_flag::COMPRESSED, 9_999),
        Err(MessageCodecError::InflatedTooLarge(9_999))
    );
    assert_eq!(
        inflate(&packed, sys_flag::COMPRESSED | (1 << 8), 10_000),
        Err(MessageCodecError::UnsupportedCompression(1))
    );
    assert!(matches!(
        inflate(b"not zlib", sys_flag::COMPRESSED, 10),
        Err(MessageCodecError::BadCompression(_))
    ));
}

#[test]
fn the_body_crc_is_rocketmq_crc32_without_its_top_bit() {
    assert_eq!(body_crc(b""), 0);
    // CRC-32("123456789") = 0xCBF43926.
    assert_eq!(body_crc(b"123456789"), 0x4BF4_3926);
}

#[test]
fn a_gzip_body_inflates_within_its_limit() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[7u8; 3000]).unwrap();
    let packed = gz.finish().unwrap();
    assert_eq!(gunzip(&packed, 3000).unwrap(), vec![7u8; 3000]);
    assert_eq!(
        gunzip(&packed, 2999),
        Err(MessageCodecError::InflatedTooLarge(2999))
    );
    assert!(matches!(
        gunzip(&deflate(b"zlib, not gzip"), 100),
        Err(MessageCodecError::BadCompression(_))
    ));
}

use super::*;
use crate::remoting::command::{FLAG_ONEWAY, FLAG_RESPONSE};

fn limits() -> FrameLimits {
    FrameLimits {
        max_frame_bytes: 4096,
        max_header_bytes: 1024,
    }
}

fn sample(serialization: Serialization) -> RemotingCommand {
    RemotingCommand {
        code: 310,
        language: "JAVA".into(),
        version: 401,
        opaque: 77,
        flag: FLAG_ONEWAY,
        remark: Some("why".into()),
        ext_fields: [("b", "2"), ("a", "x\u{1}y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        serialization,
        body: Bytes::from_static(b"hello body"),
    }
}

fn encoded(command: &RemotingCommand) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(command, &mut buf).unwrap();
    buf
}

/// A frame of `kind` around `header` and `body`, built by hand.
fn frame(kind: u8, header: &[u8], body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i32((4 + header.len() + body.len()) as i32);
    buf.put_u32((u32::from(kind) << 24) | header.len() as u32);
    buf.put_slice(header);
    buf.put_slice(body);
    buf
}

#[test]
fn both_encodings_round_trip() {
    for serialization in [Serialization::Json, Serialization::Binary] {
        let command = sample(serialization);
        let mut buf = encoded(&command);
        let decoded = decode(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(decoded, command, "{serialization:?}");
        assert!(buf.is_empty());
    }
}

#[test]
fn the_binary_header_is_rocketmqs_byte_for_byte() {
    let command = RemotingCommand {
        code: 34,
        language: "RUST".into(),
        version: 401,
        opaque: 0x0102_0304,
        flag: FLAG_RESPONSE,
        remark: Some("ok".into()),
        ext_fields: [("k".to_string(), "vv".to_string())].into(),
        serialization: Serialization::Binary,
        body: Bytes::from_static(b"B"),
    };
    let buf = encoded(&command);
    #[rustfmt::skip]
    let header: &[u8] = &[
        0x00, 0x22,             // code 34 (i16)
        12,                     // language RUST
        0x01, 0x91,             // version 401 (i16)
        0x01, 0x02, 0x03, 0x04, // opaque
        0x00, 0x00, 0x00, 0x01, // flag: response
        0x00, 0x00, 0x00, 0x02, b'o', b'k', // remark
        0x00, 0x00, 0x00, 0x09, // extension fields: 9 bytes
        0x00, 0x01, b'k',       // key (i16 length)
        0x00, 0x00, 0x00, 0x02, b'v', b'v', // value (i32 length)
    ];
    let mut want = Vec::new();
    want.extend_from_slice(&((4 + header.len() + 1) as u32).to_be_bytes());
    want.extend_from_slice(&[1, 0, 0, header.len() as u8]);
    want.extend_from_slice(header);
    want.push(b'B');
    assert_eq!(&buf[..], &want[..]);
}

#[test]
fn a_binary_header_without_remark_or_fields_has_zero_lengths() {
    let command = RemotingCommand {
        code: 0,
        language: "JAVA".into(),
        serialization: Serialization::Binary,
        ..RemotingCommand::default()
    };
    let buf = encoded(&command);
    assert_eq!(&buf[4..8], &[1, 0, 0, 21]);
    assert_eq!(&buf[8 + 13..], &[0u8; 8]);
}

#[test]
fn the_json_header_has_rocketmqs_fields() {
    let buf = encoded(&sample(Serialization::Json));
    let header_len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    assert_eq!(buf[4], 0, "JSON type byte");
    let text = std::str::from_utf8(&buf[8..8 + header_len]).unwrap();
    assert_eq!(
        text,
        r#"{"code":310,"extFields":{"a":"x\u0001y","b":"2"},"flag":2,"language":"JAVA","opaque":77,"remark":"why","serializeTypeCurrentRPC":"JSON","version":401}"#
    );
    assert_eq!(&buf[8 + header_len..], b"hello body");
}

#[test]
fn a_json_header_is_read_leniently() {
    let header = br#"{"code":11,"language":"GO","opaque":5,"unknown":[1,2],"remark":null,
        "extFields":{"queueId":3,"sysFlag":false,"maxMsgNums":1.5,"gone":null,"topic":"T"}}"#;
    let mut buf = frame(0, header, b"");
    let c = decode(&mut buf, &limits()).unwrap().unwrap();
    assert_eq!((c.code, c.opaque, c.flag, c.version), (11, 5, 0, 0));
    assert_eq!(c.language, "GO");
    assert_eq!(c.remark, None);
    assert_eq!(c.ext("queueId"), Some("3"));
    assert_eq!(c.ext("sysFlag"), Some("false"));
    assert_eq!(c.ext("maxMsgNums"), Some("1.5"));
    assert_eq!(c.ext("topic"), Some("T"));
    assert_eq!(c.ext("gone"), None);
    assert!(c.body.is_empty());
    // A language by number, no extension fields at all.
    let mut buf = frame(0, br#"{"code":34,"language":9,"flag":1}"#, b"xy");
    let c = decode(&mut buf, &limits()).unwrap().unwrap();
    assert_eq!((c.language.as_ref(), c.is_response()), ("GO", true));
    assert!(c.ext_fields.is_empty());
    assert_eq!(&c.body[..], b"xy");
}

#[test]
fn nothing_is_decoded_until_the_whole_frame_is_there() {
    let whole = encoded(&sample(Serialization::Binary));
    for cut in [0, 1, 3, 4, 7, 8, whole.len() - 1] {
        let mut part = BytesMut::from(&whole[..cut]);
        assert_eq!(decode(&mut part, &limits()), Ok(None), "cut at {cut}");
        assert_eq!(part.len(), cut, "nothing consumed");
    }
    // Two frames back to back: one at a time.
    let mut two = whole.clone();
    two.extend_from_slice(&whole);
    assert!(decode(&mut two, &limits()).unwrap().is_some());
    assert_eq!(two.len(), whole.len());
    assert!(decode(&mut two, &limits()).unwrap().is_some());
    assert!(two.is_empty());
}

#[test]
fn an_oversize_length_is_refused_from_its_four_bytes() {
    let mut buf = BytesMut::from(&4097u32.to_be_bytes()[..]);
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(FrameError::FrameTooLarge {
            length: 4097,
            max: 4096
        })
    );
    // The HTTP/2 preface read as a length is over any cap.
    let mut preface = BytesMut::from(&b"PRI * HTTP/2.0"[..]);
    assert!(matches!(
        decode(&mut preface, &FrameLimits::default()),
        Err(FrameError::FrameTooLarge { .. })
    ));
}

#[test]
fn a_negative_or_too_short_length_is_refused() {
    let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(FrameError::NegativeLength(-1))
    );
    let mut buf = BytesMut::from(&3i32.to_be_bytes()[..]);
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(FrameError::FrameTooShort(3))
    );
}

#[test]
fn a_header_longer_than_its_frame_is_refused_from_the_prefix() {
    let mut buf = BytesMut::new();
    buf.put_i32(10);
    buf.put_u32(7); // JSON, 7 bytes, but only 6 follow
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(FrameError::HeaderLongerThanFrame {
            header: 7,
            available: 6
        })
    );
}

#[test]
fn a_header_over_its_cap_is_refused_from_the_prefix() {
    let mut buf = BytesMut::new();
    buf.put_i32(2000);
    buf.put_u32(1025);
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(FrameError::HeaderTooLarge {
            length: 1025,
            max: 1024
        })
    );
}

#[test]
fn an_unknown_serialization_type_is_refused() {
    let mut buf = frame(2, b"{}", b"");
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(FrameError::UnknownSerialization(2))
    );
}

#[test]
fn malformed_headers_are_refused_and_name_the_fault() {
    for header in [&b"{\"code\":"[..], b"[1,2]", b"{\"code\":\"ten\"}", b"\xff"] {
        let mut buf = frame(0, header, b"");
        assert!(
            matches!(
                decode(&mut buf, &limits()),
                Err(FrameError::MalformedJson(_))
            ),
            "{header:?}"
        );
    }
    let good = encoded(&sample(Serialization::Binary));
    let header_len = u32::from_be_bytes([0, good[5], good[6], good[7]]) as usize;
    let header = &good[8..8 + header_len];
    // Cut short, with trailing bytes, an extension value of negative length, bad UTF-8.
    let mut trailing = header.to_vec();
    trailing.push(0);
    let mut no_fields = header[..13].to_vec();
    no_fields.extend_from_slice(&[0u8; 8]);
    let mut bad_value = header[..13].to_vec();
    bad_value.extend_from_slice(&0i32.to_be_bytes()); // no remark
    bad_value.extend_from_slice(&7i32.to_be_bytes());
    bad_value.extend_from_slice(&[0, 1, b'k', 0xff, 0xff, 0xff, 0xff]);
    let mut bad_utf8 = header[..13].to_vec();
    bad_utf8.extend_from_slice(&2i32.to_be_bytes());
    bad_utf8.extend_from_slice(&[0xc3, 0x28]);
    bad_utf8.extend_from_slice(&0i32.to_be_bytes());
    for (what, header) in [
        ("short", header[..header.len() - 1].to_vec()),
        ("fixed fields cut", header[..10].to_vec()),
        ("trailing", trailing),
        ("negative value", bad_value),
        ("bad utf-8", bad_utf8),
    ] {
        let mut buf = frame(1, &header, b"");
        let got = decode(&mut buf, &limits());
        assert!(
            matches!(got, Err(FrameError::MalformedBinary(_))),
            "{what}: {got:?}"
        );
    }
    // No remark and no extension fields (both lengths 0) is fine.
    let mut buf = frame(1, &no_fields, b"");
    assert!(decode(&mut buf, &limits()).unwrap().is_some());
}

#[test]
fn a_response_is_written_in_its_requests_serialization() {
    for serialization in [Serialization::Json, Serialization::Binary] {
        let request = sample(serialization);
        let response = RemotingCommand::success(&request).with_ext("offset", 9);
        let buf = encoded(&response);
        assert_eq!(buf[4], serialization_byte(serialization));
        let mut buf = buf;
        let back = decode(&mut buf, &limits()).unwrap().unwrap();
        assert_eq!(back.opaque, 77);
        assert!(back.is_response());
        assert_eq!(back.ext("offset"), Some("9"));
        assert_eq!(back.language, "RUST");
    }
}

#[test]
fn languages_map_both_ways() {
    assert_eq!(language_code("JAVA"), 0);
    assert_eq!(language_code("RUST"), 12);
    assert_eq!(language_code("COBOL"), 7);
    assert_eq!(language_name(9), "GO");
    assert_eq!(language_name(200), "OTHER");
}

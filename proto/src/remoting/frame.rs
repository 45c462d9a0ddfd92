//! The remoting frame codec: [`decode`] one [`RemotingCommand`] from the bytes read so far,
//! [`encode`] one into the bytes to write.
//!
//! A frame is an int32 length (of everything after it), an int32 whose top byte is the
//! header's serialization and whose low 24 bits are the header's length, the header, then
//! the body (all big-endian). Two header encodings:
//!
//! - JSON (0): the object RocketMQ's clients write (`code`, `language` by name, `version`,
//!   `opaque`, `flag`, `remark`, `extFields`, `serializeTypeCurrentRPC`). Read leniently:
//!   unknown fields are ignored, missing ones take their zero value, an extension field
//!   whose value is a JSON number or boolean is kept as its text.
//! - Binary (1, RocketMQ's `RocketMQSerializable`): code i16, language u8
//!   ([`codes::LANGUAGES`]), version i16, opaque i32, flag i32, remark (i32 length +
//!   UTF-8), extension fields (i32 total length, then per field an i16 key length + key and
//!   an i32 value length + value). Code and version are 16 bits wide there, as in RocketMQ.
//!
//! Limits ([`FrameLimits`]): a frame longer than `max_frame_bytes` is refused as soon as its
//! length is read, before any of it is buffered; so is a header longer than
//! `max_header_bytes`, once the second word is read. A response is written in the
//! serialization of its request ([`RemotingCommand::serialization`]).

use super::codes;
use super::command::{RemotingCommand, Serialization};
use super::ExtFields;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// The length word and the serialization/header-length word before a header.
pub const FRAME_PREFIX_BYTES: usize = 8;

/// The largest header the 24-bit header length can announce.
pub const MAX_HEADER_LENGTH_FIELD: usize = 0x00FF_FFFF;

/// The size caps a decoder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// The largest frame length accepted (the first int32: everything after it).
    pub max_frame_bytes: usize,
    /// The largest header accepted.
    pub max_header_bytes: usize,
}

impl FrameLimits {
    /// RocketMQ's frame cap (16 MiB, its `frameMaxLength`).
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
    /// Headers carry a request's arguments and a message's properties (at most
    /// [`crate::limits::MAX_PROPERTIES_BYTES`] each): 1 MiB leaves room for JSON escaping.
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 1024 * 1024;

    /// Limits with `max_frame_bytes` and the default header cap (never above the frame's).
    pub fn with_max_frame(max_frame_bytes: usize) -> FrameLimits {
        FrameLimits {
            max_frame_bytes,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES.min(max_frame_bytes),
        }
    }
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits::with_max_frame(Self::DEFAULT_MAX_FRAME_BYTES)
    }
}

/// Why bytes are not a frame. The connection they came on cannot be read any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame length {length} is over the limit of {max} bytes")]
    FrameTooLarge { length: usize, max: usize },
    #[error("frame length {0} is shorter than its header-length word (4 bytes)")]
    FrameTooShort(usize),
    #[error("header length {header} is longer than the frame's {available} bytes after the header-length word")]
    HeaderLongerThanFrame { header: usize, available: usize },
    #[error("header length {length} is over the limit of {max} bytes")]
    HeaderTooLarge { length: usize, max: usize },
    #[error("unknown header serialization type {0} (0 JSON, 1 RocketMQ binary)")]
    UnknownSerialization(u8),
    #[error("malformed JSON header: {0}")]
    MalformedJson(String),
    #[error("malformed binary header: {0}")]
    MalformedBinary(String),
    #[error("header of {0} bytes does not fit the 24-bit header length")]
    HeaderTooLong(usize),
}

/// The serialization a header-type byte names.
pub fn serialization_of(byte: u8) -> Option<Serialization> {
    match byte {
        0 => Some(Serialization::Json),
        1 => Some(Serialization::Binary),
        _ => None,
    }
}

fn serialization_byte(serialization: Serialization) -> u8 {
    match serialization {
        Serialization::Json => 0,
        Serialization::Binary => 1,
    }
}

/// Checks the prefix of the frame at the start of `buf` as far as it is there: its length
/// as soon as 4 bytes are, the header word as soon as 8 are. `Ok(Some(total))`: the whole
/// frame's size (the length word included).
fn check_prefix(buf: &[u8], limits: &FrameLimits) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if length < 0 {
        return Err(FrameError::NegativeLength(length));
    }
    let length = length as usize;
    if length > limits.max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            length,
            max: limits.max_frame_bytes,
        });
    }
    if length < 4 {
        return Err(FrameError::FrameTooShort(length));
    }
    if buf.len() >= FRAME_PREFIX_BYTES {
        let word = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let kind = (word >> 24) as u8;
        let header = (word & MAX_HEADER_LENGTH_FIELD as u32) as usize;
        if serialization_of(kind).is_none() {
            return Err(FrameError::UnknownSerialization(kind));
        }
        if header > length - 4 {
            return Err(FrameError::HeaderLongerThanFrame {
                header,
                available: length - 4,
            });
        }
        if header > limits.max_header_bytes {
            return Err(FrameError::HeaderTooLarge {
                length: header,
                max: limits.max_header_bytes,
            });
        }
    }
    Ok(Some(4 + length))
}

/// Takes one whole frame off the front of `buf`: `Ok(None)` until it is all there (room
/// for the rest is reserved then, within the limits). The body is not copied.
pub fn decode(
    buf: &mut BytesMut,
    limits: &FrameLimits,
) -> Result<Option<RemotingCommand>, FrameError> {
    let Some(total) = check_prefix(buf, limits)? else {
        return Ok(None);
    };
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(4);
    let word = frame.get_u32();
    let serialization = serialization_of((word >> 24) as u8).expect("checked");
    let header_len = (word & MAX_HEADER_LENGTH_FIELD as u32) as usize;
    let header = frame.split_to(header_len);
    let mut command = match serialization {
        Serialization::Json => decode_json_header(&header)?,
        Serialization::Binary => decode_binary_header(header)?,
    };
    command.serialization = serialization;
    command.body = frame;
    Ok(Some(command))
}

/// Appends `command` as one frame to `buf`, its header in `command.serialization`.
pub fn encode(command: &RemotingCommand, buf: &mut BytesMut) -> Result<(), FrameError> {
    let start = buf.len();
    buf.reserve(FRAME_PREFIX_BYTES + 128 + command.body.len());
    buf.put_u64(0); // both words, filled in below
    match command.serialization {
        Serialization::Json => encode_json_header(command, buf),
        Serialization::Binary => encode_binary_header(command, buf),
    }
    let header_len = buf.len() - start - FRAME_PREFIX_BYTES;
    if header_len > MAX_HEADER_LENGTH_FIELD {
        buf.truncate(start);
        return Err(FrameError::HeaderTooLong(header_len));
    }
    buf.put_slice(&command.body);
    let length = (buf.len() - start - 4) as u32;
    let word = (u32::from(serialization_byte(command.serialization)) << 24) | header_len as u32;
    buf[start..start + 4].copy_from_slice(&length.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&word.to_be_bytes());
    Ok(())
}

/// A language's number in the binary header (OTHER for a name RocketMQ does not have).
pub fn language_code(name: &str) -> u8 {
    codes::LANGUAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(7, |(_, c)| *c)
}

/// A language's name from its number (OTHER for a number RocketMQ does not have).
pub fn language_name(code: u8) -> &'static str {
    codes::LANGUAGES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("OTHER", |(n, _)| n)
}

// ---- JSON header ----

/// The JSON header as read: every field optional.
#[derive(Deserialize)]
struct JsonHeaderIn {
    #[serde(default)]
    code: i32,
    #[serde(default)]
    language: Option<JsonLanguage>,
    #[serde(default)]
    version: i32,
    #[serde(default)]
    opaque: i32,
    #[serde(default)]
    flag: i32,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default, rename = "extFields")]
    ext_fields: Option<BTreeMap<String, JsonExtValue>>,
}

/// The JSON header as written (RocketMQ's field order: by name).
#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    #[serde(rename = "extFields", skip_serializing_if = "ExtFields::is_empty")]
    ext_fields: &'a ExtFields,
    flag: i32,
    language: &'a str,
    opaque: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: &'a Option<String>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type: &'static str,
    version: i32,
}

/// `language`: a name, or (leniently) its number.
struct JsonLanguage(String);

impl<'de> Deserialize<'de> for JsonLanguage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonLanguage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a language name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonLanguage, E> {
                Ok(JsonLanguage(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonLanguage, E> {
                let name = u8::try_from(v).map_or("OTHER", language_name);
                Ok(JsonLanguage(name.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonLanguage, E> {
                let name = u8::try_from(v).map_or("OTHER", language_name);
                Ok(JsonLanguage(name.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An extension field's value: a string, or a number or boolean kept as its text; `null`
/// drops the field.
struct JsonExtValue(Option<String>);

impl<'de> Deserialize<'de> for JsonExtValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = JsonExtValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(Some(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<JsonExtValue, E> {
                Ok(JsonExtValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    // An object only (serde would also read a struct from an array).
    if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(FrameError::MalformedJson("not a JSON object".into()));
    }
    let read: JsonHeaderIn =
        serde_json::from_slice(header).map_err(|e| FrameError::MalformedJson(e.to_string()))?;
    Ok(RemotingCommand {
        code: read.code,
        language: read.language.map_or(Cow::Borrowed(""), |l| Cow::Owned(l.0)),
        version: read.version,
        opaque: read.opaque,
        flag: read.flag,
        remark: read.remark,
        ext_fields: read
            .ext_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.0.map(|v| (k, v)))
            .collect(),
        serialization: Serialization::Json,
        body: Bytes::new(),
    })
}

fn encode_json_header(command: &RemotingCommand, buf: &mut BytesMut) {
    let language = language_name(language_code(&command.language));
    let header = JsonHeaderOut {
        code: command.code,
        ext_fields: &command.ext_fields,
        flag: command.flag,
        language,
        opaque: command.opaque,
        remark: &command.remark,
        serialize_type: "JSON",
        version: command.version,
    };
    serde_json::to_writer(buf.writer(), &header).expect("a JSON header of strings and numbers");
}

// ---- binary header ----

fn malformed(what: impl Into<String>) -> FrameError {
    FrameError::MalformedBinary(what.into())
}

fn take<'a>(header: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], FrameError> {
    if header.len() < n {
        return Err(malformed(format!(
            "{what}: {n} bytes needed, {} left",
            header.len()
        )));
    }
    let (taken, rest) = header.split_at(n);
    *header = rest;
    Ok(taken)
}

fn take_str<'a>(header: &mut &'a [u8], n: usize, what: &str) -> Result<&'a str, FrameError> {
    let bytes = take(header, n, what)?;
    std::str::from_utf8(bytes).map_err(|_| malformed(format!("{what} is not UTF-8")))
}

fn decode_binary_header(header: Bytes) -> Result<RemotingCommand, FrameError> {
    let mut h: &[u8] = &header;
    let fixed = take(&mut h, 13, "the fixed fields")?;
    let code = i16::from_be_bytes([fixed[0], fixed[1]]);
    let language = language_name(fixed[2]);
    let version = i16::from_be_bytes([fixed[3], fixed[4]]);
    let opaque = i32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]);
    let flag = i32::from_be_bytes([fixed[9], fixed[10], fixed[11], fixed[12]]);
    let remark_len = i32::from_be_bytes(take(&mut h, 4, "the remark length")?.try_into().unwrap());
    let remark = if remark_len > 0 {
        Some(take_str(&mut h, remark_len as usize, "the remark")?.to_string())
    } else {
        None
    };
    let ext_len = i32::from_be_bytes(
        take(&mut h, 4, "the extension fields' length")?
            .try_into()
            .unwrap(),
    );
    let mut ext_fields = ExtFields::new();
    if ext_len > 0 {
        let mut fields = take(&mut h, ext_len as usize, "the extension fields")?;
        // Names and values are at most the section's bytes; a send has about a dozen.
        ext_fields = ExtFields::with_capacity(16, fields.len());
        while !fields.is_empty() {
            let key_len = u16::from_be_bytes(
                take(&mut fields, 2, "an extension key's length")?
                    .try_into()
                    .unwrap(),
            );
            let key = take_str(&mut fields, key_len as usize, "an extension key")?;
            let value_len = i32::from_be_bytes(
                take(&mut fields, 4, "an extension value's length")?
                    .try_into()
                    .unwrap(),
            );
            if value_len < 0 {
                return Err(malformed(format!(
                    "extension value of {key:?} has negative length {value_len}"
                )));
            }
            let value = take_str(&mut fields, value_len as usize, "an extension value")?;
            ext_fields.insert(key, value);
        }
    }
    if !h.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the extension fields",
            h.len()
        )));
    }
    Ok(RemotingCommand {
        code: i32::from(code),
        language: Cow::Borrowed(language),
        version: i32::from(version),
        opaque,
        flag,
        remark,
        ext_fields,
        serialization: Serialization::Binary,
        body: Bytes::new(),
    })
}

fn encode_binary_header(command: &RemotingCommand, buf: &mut BytesMut) {
    // 16-bit code and version, as RocketMQ writes them.
    buf.put_i16(command.code as i16);
    buf.put_u8(language_code(&command.language));
    buf.put_i16(command.version as i16);
    buf.put_i32(command.opaque);
    buf.put_i32(command.flag);
    match command.remark.as_deref() {
        Some(remark) if !remark.is_empty() => {
            buf.put_i32(remark.len() as i32);
            buf.put_slice(remark.as_bytes());
        }
        _ => buf.put_i32(0),
    }
    let length_at = buf.len();
    buf.put_i32(0);
    for (key, value) in command.ext_fields.iter() {
        if key.is_empty() {
            continue;
        }
        buf.put_u16(key.len() as u16);
        buf.put_slice(key.as_bytes());
        buf.put_i32(value.len() as i32);
        buf.put_slice(value.as_bytes());
    }
    let ext_len = (buf.len() - length_at - 4) as i32;
    buf[length_at..length_at + 4].copy_from_slice(&ext_len.to_be_bytes());
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;

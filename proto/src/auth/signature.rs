//! The RocketMQ 5 request signature: clients with credentials send the time in
//! `x-mq-date-time` and `authorization: MQv2-HMAC-SHA1 Credential=<access key>,
//! SignedHeaders=x-mq-date-time, Signature=<hex HMAC-SHA1 of that time, keyed with the secret
//! key>`. This module makes that header (for our client and CLI) and checks it (for the
//! servers): the signature in constant time, the time within a configurable skew of the
//! server's clock.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use std::time::Duration;

/// The header carrying the signature.
pub const AUTHORIZATION: &str = "authorization";
/// The header carrying the signed time.
pub const DATE_TIME: &str = "x-mq-date-time";
/// The only signing algorithm the clients use.
pub const ALGORITHM: &str = "MQv2-HMAC-SHA1";

/// An access key and its secret key. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ..)", self.access_key)
    }
}

/// Whether `key` can travel in the authorization header as an access key.
pub fn valid_access_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=')
}

impl Credentials {
    /// Credentials from an access key (printable ASCII without `,` or `=`) and a non-empty
    /// secret key.
    pub fn new(
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Result<Credentials, String> {
        let access_key = access_key.into();
        let secret_key = secret_key.into();
        if !valid_access_key(&access_key) {
            return Err(format!(
                "access key {access_key:?} must be 1 to 128 printable ASCII characters \
                 without ',' or '='"
            ));
        }
        if secret_key.is_empty() {
            return Err(format!("the secret key of {access_key} is empty"));
        }
        Ok(Credentials {
            access_key,
            secret_key,
        })
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The `authorization` header value for a request whose `x-mq-date-time` is `date_time`.
    pub fn authorization(&self, date_time: &str) -> String {
        let signature = mac(self.secret_key.as_bytes(), date_time)
            .finalize()
            .into_bytes();
        format!(
            "{ALGORITHM} Credential={}, SignedHeaders={DATE_TIME}, Signature={}",
            self.access_key,
            hex::encode(signature)
        )
    }

    /// Signs outgoing metadata: sets `x-mq-date-time` to now (UTC, the Java client's
    /// `yyyyMMdd'T'HHmmss'Z'`) unless it is set, and the `authorization` over it.
    pub fn sign(&self, metadata: &mut tonic::metadata::MetadataMap) {
        let date_time = match metadata.get(DATE_TIME).and_then(|v| v.to_str().ok()) {
            Some(v) => v.to_string(),
            None => {
                let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
                metadata.insert(
                    DATE_TIME,
                    now.parse().expect("digits and letters are a header value"),
                );
                now
            }
        };
        let value = self
            .authorization(&date_time)
            .parse()
            .expect("a checked access key and hex are a valid header value");
        metadata.insert(AUTHORIZATION, value);
    }
}

fn mac(secret: &[u8], date_time: &str) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(date_time.as_bytes());
    mac
}

/// Why a request's credentials were not accepted. The text names the access key, never the
/// secret or the signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no {AUTHORIZATION} header (this server requires credentials)")]
    MissingAuthorization,
    #[error("no {DATE_TIME} header to check the signature against")]
    MissingDateTime,
    #[error("a malformed {AUTHORIZATION} header: {0}")]
    Malformed(&'static str),
    #[error("{DATE_TIME} {0:?} is neither RFC 3339 nor yyyyMMdd'T'HHmmss'Z'")]
    BadDateTime(String),
    #[error("unknown access key {0}")]
    UnknownAccessKey(String),
    #[error("the signature of access key {0} does not match (wrong secret key?)")]
    BadSignature(String),
    #[error(
        "the request of access key {access_key} was signed {skew_secs} s away from this \
         server's clock (at most {max_secs} s)"
    )]
    Stale {
        access_key: String,
        skew_secs: u64,
        max_secs: u64,
    },
}

/// The parts of an `authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signature: Vec<u8>,
}

/// Parses `MQv2-HMAC-SHA1 Credential=<ak>, SignedHeaders=x-mq-date-time, Signature=<hex>`
/// (parts in any order, hex in either case).
pub fn parse_authorization(header: &str) -> Result<Authorization, SignatureError> {
    let rest = header
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or(SignatureError::Malformed("not MQv2-HMAC-SHA1"))?;
    let (mut access_key, mut signature, mut signed) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("a part without '='"))?;
        match name.trim() {
            "Credential" => access_key = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            "SignedHeaders" => signed = Some(value.trim()),
            _ => {}
        }
    }
    let access_key = access_key.ok_or(SignatureError::Malformed("no Credential"))?;
    // Some clients put "<access key>/<scope>" in Credential.
    let access_key = access_key.split('/').next().unwrap_or(access_key);
    if !valid_access_key(access_key) {
        return Err(SignatureError::Malformed("an invalid access key"));
    }
    if signed.is_some_and(|s| !s.eq_ignore_ascii_case(DATE_TIME)) {
        return Err(SignatureError::Malformed(
            "SignedHeaders other than x-mq-date-time",
        ));
    }
    let signature = hex::decode(signature.ok_or(SignatureError::Malformed("no Signature"))?)
        .map_err(|_| SignatureError::Malformed("a Signature that is not hex"))?;
    Ok(Authorization {
        access_key: access_key.to_string(),
        signature,
    })
}

/// The instant an `x-mq-date-time` value names, in Unix ms: RFC 3339 with an offset or `Z`
/// (the Rust client's local time), or `yyyyMMdd'T'HHmmss'Z'` in UTC (the Java client's).
pub fn parse_date_time(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Checks a parsed header against the secret `secret_key` of its access key: the signature
/// over `date_time` (constant time), then that `date_time` is within `max_skew` of `now_ms`.
pub fn verify(
    authorization: &Authorization,
    secret_key: &[u8],
    date_time: &str,
    now_ms: i64,
    max_skew: Duration,
) -> Result<(), SignatureError> {
    mac(secret_key, date_time)
        .verify_slice(&authorization.signature)
        .map_err(|_| SignatureError::BadSignature(authorization.access_key.clone()))?;
    let at = parse_date_time(date_time)
        .ok_or_else(|| SignatureError::BadDateTime(date_time.to_string()))?;
    let skew_ms = now_ms.abs_diff(at);
    if skew_ms > max_skew.as_millis() as u64 {
        return Err(SignatureError::Stale {
            access_key: authorization.access_key.clone(),
            skew_secs: skew_ms / 1000,
            max_secs: max_skew.as_secs(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(900);

    fn creds() -> Credentials {
        Credentials::new("alice", "alice-secret").unwrap()
    }

    #[test]
    fn both_time_formats_name_the_same_instant() {
        let java = parse_date_time("20240102T030405Z").unwrap();
        assert_eq!(java, 1_704_164_645_000);
        assert_eq!(parse_date_time("2024-01-02T03:04:05Z"), Some(java));
        // The Rust client's local time with its offset.
        assert_eq!(parse_date_time("2024-01-02T11:04:05.000+08:00"), Some(java));
        assert_eq!(parse_date_time("yesterday"), None);
    }

    #[test]
    fn a_signature_verifies_with_the_right_secret_in_either_time_format() {
        let now = parse_date_time("20240102T030405Z").unwrap();
        for date_time in ["20240102T030405Z", "2024-01-02T11:04:05.123+08:00"] {
            let header = creds().authorization(date_time);
            let parsed = parse_authorization(&header).unwrap();
            assert_eq!(parsed.access_key, "alice");
            assert!(verify(&parsed, b"alice-secret", date_time, now, SKEW).is_ok());
            assert_eq!(
                verify(&parsed, b"other-secret", date_time, now, SKEW),
                Err(SignatureError::BadSignature("alice".into()))
            );
            // The time is what is signed: another time breaks the signature.
            assert!(matches!(
                verify(&parsed, b"alice-secret", "20240102T030406Z", now, SKEW),
                Err(SignatureError::BadSignature(_))
            ));
        }
    }

    #[test]
    fn the_skew_applies_to_the_absolute_time() {
        let date_time = "2024-01-02T11:04:05+08:00";
        let at = parse_date_time(date_time).unwrap();
        let parsed = parse_authorization(&creds().authorization(date_time)).unwrap();
        assert!(verify(&parsed, b"alice-secret", date_time, at + 899_000, SKEW).is_ok());
        assert!(verify(&parsed, b"alice-secret", date_time, at - 899_000, SKEW).is_ok());
        let stale = verify(&parsed, b"alice-secret", date_time, at + 901_000, SKEW).unwrap_err();
        assert_eq!(
            stale,
            SignatureError::Stale {
                access_key: "alice".into(),
                skew_secs: 901,
                max_secs: 900
            }
        );
        // Local time written with a Z is an offset away: accepted only within the window.
        let wrong_zone = "2024-01-02T11:04:05Z";
        let parsed = parse_authorization(&creds().authorization(wrong_zone)).unwrap();
        assert!(verify(&parsed, b"alice-secret", wrong_zone, at, SKEW).is_err());
        let wide = Duration::from_secs(9 * 3600);
        assert!(verify(&parsed, b"alice-secret", wrong_zone, at, wide).is_ok());
    }

    #[test]
    fn headers_are_parsed_strictly_and_upper_case_hex_is_accepted() {
        let header = creds().authorization("20240102T030405Z");
        let upper = header.replace(
            header.rsplit_once('=').unwrap().1,
            &header.rsplit_once('=').unwrap().1.to_uppercase(),
        );
        assert_eq!(
            parse_authorization(&upper).unwrap(),
            parse_authorization(&header).unwrap()
        );
        for bad in [
            "",
            "Basic abc",
            "MQv2-HMAC-SHA1 Credential=alice, Signature=zz",
            "MQv2-HMAC-SHA1 Signature=00",
            "MQv2-HMAC-SHA1 Credential=alice, SignedHeaders=host, Signature=00",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signing_metadata_sets_the_time_and_keeps_the_secret_out_of_debug() {
        let mut md = tonic::metadata::MetadataMap::new();
        creds().sign(&mut md);
        let date_time = md.get(DATE_TIME).unwrap().to_str().unwrap().to_string();
        let header = md.get(AUTHORIZATION).unwrap().to_str().unwrap();
        let parsed = parse_authorization(header).unwrap();
        let now = parse_date_time(&date_time).unwrap();
        assert!(verify(&parsed, b"alice-secret", &date_time, now, SKEW).is_ok());
        assert!(!format!("{:?}", creds()).contains("alice-secret"));
        assert!(Credentials::new("a,b", "s").is_err());
        assert!(Credentials::new("a", "").is_err());
    }
}

//! The connection layer: one lazily connected tonic `Channel` per endpoint
//! (cached for the client's lifetime; TLS when the config has it), the request metadata
//! every RocketMQ 5 client sends, per-request deadlines, and conversions between
//! `host:port` strings and the protocol's `Endpoints`.

use crate::{ClientConfig, ClientError, Result};
use apogee_proto::tls::ClientTls;
use apogee_proto::{limits, v2};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;

use crate::end_on_data::EndingChannel;

/// Version this client reports in `x-mq-client-version` and its user agent.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The client stub type used for every v2 call (over a channel whose unary requests take two
/// HTTP/2 frames, not three: [`EndingChannel`]).
pub type MessagingClient = v2::messaging_service_client::MessagingServiceClient<EndingChannel>;

/// Splits `host:port` (IPv6 hosts in brackets) and checks the port.
pub fn parse_host_port(addr: &str) -> Result<(String, u16)> {
    apogee_proto::names::parse_host_port(addr)
        .map_err(|e| ClientError::Config(format!("invalid address: {e}")))
}

/// The protocol's `Endpoints` for a `host:port` address.
pub fn to_endpoints(addr: &str) -> Result<v2::Endpoints> {
    let (host, port) = parse_host_port(addr)?;
    let scheme = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => v2::AddressScheme::IPv4,
        Ok(IpAddr::V6(_)) => v2::AddressScheme::IPv6,
        Err(_) => v2::AddressScheme::DomainName,
    };
    Ok(v2::Endpoints {
        scheme: scheme as i32,
        addresses: vec![v2::Address {
            host,
            port: i32::from(port),
        }],
    })
}

/// The `host:port` to dial for an `Endpoints` (its first address).
pub fn endpoint_addr(endpoints: &v2::Endpoints) -> Option<String> {
    let a = endpoints.addresses.first()?;
    if a.host.is_empty() || a.port <= 0 {
        return None;
    }
    if a.host.contains(':') {
        Some(format!("[{}]:{}", a.host, a.port))
    } else {
        Some(format!("{}:{}", a.host, a.port))
    }
}

/// A lazily connected channel to `host:port`, for any gRPC service; over TLS with `tls`.
pub fn connect_channel(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Channel> {
    Ok(endpoint(addr, connect_timeout, tls)?.connect_lazy())
}

/// The endpoint of `host:port` every channel of the client is made from (timeouts,
/// keepalive, TLS with `tls`).
pub(crate) fn endpoint(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<tonic::transport::Endpoint> {
    let (host, port) = parse_host_port(addr)?;
    let host_port = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = apogee_proto::tls::endpoint(&host_port, tls)
        .map_err(|e| ClientError::Config(format!("invalid {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true);
    Ok(endpoint)
}

/// The metadata headers one request carries.
pub fn request_metadata(config: &ClientConfig) -> MetadataMap {
    let mut md = MetadataMap::with_capacity(8);
    let mut put = |key: &'static str, value: &str| {
        if let Ok(v) = AsciiMetadataValue::try_from(value) {
            md.insert(key, v);
        }
    };
    put("x-mq-client-id", &config.client_id);
    let mut id = uuid::Uuid::encode_buffer();
    put(
        "x-mq-request-id",
        request_id().hyphenated().encode_lower(&mut id),
    );
    if !config.namespace.is_empty() {
        put("x-mq-namespace", &config.namespace);
    }
    md.insert("x-mq-language", AsciiMetadataValue::from_static("RUST"));
    md.insert("x-mq-protocol", AsciiMetadataValue::from_static("v2"));
    md.insert(
        "x-mq-client-version",
        AsciiMetadataValue::from_static(CLIENT_VERSION),
    );
    md.insert("x-mq-date-time", date_time_now());
    if let Some(credentials) = &config.credentials {
        credentials.sign(&mut md);
    }
    md
}

/// A request id unique in this process and, with a random base drawn once, across
/// processes: no system call per request, unlike a fresh v4 UUID.
fn request_id() -> uuid::Uuid {
    static BASE: OnceLock<u128> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| uuid::Uuid::new_v4().as_u128());
    uuid::Uuid::from_u128(base.wrapping_add(u128::from(NEXT.fetch_add(1, Ordering::Relaxed))))
}

/// Wraps a message into a request with metadata and a deadline.
pub fn request<T>(config: &ClientConfig, message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    *req.metadata_mut() = request_metadata(config);
    req.set_timeout(timeout);
    req
}

/// UTC now as `yyyyMMdd'T'HHmmss'Z'` (the `x-mq-date-time` format); formatted once a second
/// per thread, shared after that.
fn date_time_now() -> AsciiMetadataValue {
    thread_local! {
        static LAST: RefCell<Option<(i64, AsciiMetadataValue)>> = const { RefCell::new(None) };
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    LAST.with_borrow_mut(|last| match last {
        Some((at, value)) if *at == secs => value.clone(),
        _ => {
            let value = AsciiMetadataValue::try_from(format_date_time(secs))
                .expect("digits, 'T' and 'Z' are ASCII");
            *last = Some((secs, value.clone()));
            value
        }
    })
}

/// Formats Unix seconds as `yyyyMMdd'T'HHmmss'Z'` in UTC.
pub(crate) fn format_date_time(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// One cached channel per endpoint address.
pub(crate) struct Connections {
    connect_timeout: Duration,
    tls: Option<ClientTls>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Connections {
    pub(crate) fn new(connect_timeout: Duration, tls: Option<ClientTls>) -> Self {
        Connections {
            connect_timeout,
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The v2 client stub for `addr`, creating its channel on first use.
    pub(crate) fn client(&self, addr: &str) -> Result<MessagingClient> {
        let channel = {
            let mut map = self.channels.lock();
            match map.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let c = connect_channel(addr, self.connect_timeout, self.tls.as_ref())?;
                    map.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(MessagingClient::new(EndingChannel::new(channel))
            .max_decoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(limits::MAX_GRPC_MESSAGE_BYTES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parsing() {
        assert_eq!(
            parse_host_port("127.0.0.1:9876").unwrap(),
            ("127.0.0.1".into(), 9876)
        );
        assert_eq!(
            parse_host_port("[::1]:10911").unwrap(),
            ("::1".into(), 10911)
        );
        assert!(parse_host_port("localhost").is_err());
        assert!(parse_host_port(":1").is_err());
        assert!(parse_host_port("h:0").is_err());
        assert!(parse_host_port("h:99999").is_err());
    }

    #[test]
    fn endpoints_round_trip_with_schemes() {
        let e = to_endpoints("10.0.0.1:10911").unwrap();
        assert_eq!(e.scheme, v2::AddressScheme::IPv4 as i32);
        assert_eq!(endpoint_addr(&e).unwrap(), "10.0.0.1:10911");
        let e = to_endpoints("broker-a.local:10911").unwrap();
        assert_eq!(e.scheme, v2::AddressScheme::DomainName as i32);
        let e = to_endpoints("[::1]:1").unwrap();
        assert_eq!(e.scheme, v2::AddressScheme::IPv6 as i32);
        assert_eq!(endpoint_addr(&e).unwrap(), "[::1]:1");
        assert_eq!(endpoint_addr(&v2::Endpoints::default()), None);
    }

    #[test]
    fn metadata_carries_the_official_headers() {
        let config = ClientConfig::default()
            .with_client_id("host-1-abc")
            .with_namespace("ns");
        let md = request_metadata(&config);
        assert_eq!(md.get("x-mq-client-id").unwrap(), "host-1-abc");
        assert_eq!(md.get("x-mq-language").unwrap(), "RUST");
        assert_eq!(md.get("x-mq-protocol").unwrap(), "v2");
        assert_eq!(md.get("x-mq-client-version").unwrap(), CLIENT_VERSION);
        assert_eq!(md.get("x-mq-namespace").unwrap(), "ns");
        let id1 = md
            .get("x-mq-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let id2 = request_metadata(&config)
            .get("x-mq-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_ne!(id1, id2);
        let date_time = md.get("x-mq-date-time").unwrap().to_str().unwrap();
        assert_eq!(date_time.len(), 16, "{date_time}");
        assert_eq!((&date_time[8..9], &date_time[15..]), ("T", "Z"));
        let no_ns = request_metadata(&ClientConfig::default());
        assert!(no_ns.get("x-mq-namespace").is_none());
    }

    #[test]
    fn credentials_sign_the_date_time_header() {
        use apogee_proto::auth::signature;
        let credentials = apogee_proto::auth::Credentials::new("app", "app-secret").unwrap();
        let md = request_metadata(&ClientConfig::default().with_credentials(credentials));
        let date_time = md.get("x-mq-date-time").unwrap().to_str().unwrap();
        let header = md.get("authorization").unwrap().to_str().unwrap();
        let parsed = signature::parse_authorization(header).unwrap();
        assert_eq!(parsed.access_key, "app");
        let now = signature::parse_date_time(date_time).unwrap();
        let skew = Duration::from_secs(1);
        assert!(signature::verify(&parsed, b"app-secret", date_time, now, skew).is_ok());
        assert!(request_metadata(&ClientConfig::default())
            .get("authorization")
            .is_none());
    }

    #[test]
    fn date_time_header_format() {
        assert_eq!(format_date_time(0), "19700101T000000Z");
        assert_eq!(format_date_time(1_700_000_000), "20231114T221320Z");
        assert_eq!(format_date_time(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn requests_carry_a_deadline() {
        let req = request(&ClientConfig::default(), (), Duration::from_millis(1500));
        assert_eq!(req.metadata().get("grpc-timeout").unwrap(), "1500000u");
    }
}

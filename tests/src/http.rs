//! A minimal HTTP/1.1 client for the servers' operations endpoints (`/metrics`, `/healthz`,
//! `/readyz`) and the S3 test server's unsigned bucket creation: status code and body, over
//! a plain TCP connection.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from `addr` (host:port); returns (status, body). Panics on a
/// connection error or a malformed answer.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let (status, body) = exchange(addr, "GET", path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// PUTs an empty body to `path` at `addr`; returns (status, body).
pub async fn put_empty(addr: &str, path: &str) -> (u16, String) {
    let (status, body) = exchange(addr, "PUT", path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn exchange(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} http://{addr}{path} timed out"))
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} http://{addr}{path}: no header end"));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} http://{addr}{path}: no status in {head:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked answers are not decoded here: {head}"
    );
    (status, raw[end + 4..].to_vec())
}

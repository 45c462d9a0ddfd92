//! A minimal HTTP/1.1 GET for the servers' operations endpoints (`/metrics`,
//! `/healthz`, `/readyz`): status code and body, over a plain TCP connection.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from `addr` (host:port); returns (status, body). Panics on a
/// connection error or a malformed answer.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET http://{addr}{path} timed out"))
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET http://{addr}{path}: no header end in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET http://{addr}{path}: no status in {head:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked answers are not decoded here: {head}"
    );
    (status, body.to_string())
}

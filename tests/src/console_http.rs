//! A browser-like HTTP/1.1 client for the web console's HTTP-level tests: it keeps the
//! session cookie, sends the console's own Origin on every POST and the CSRF token the last
//! page held, and follows no redirect (a test asserts the 303 and its Location itself).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Where a redirect goes.
    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location in {} {:?}", self.status, self.headers))
    }

    /// The text of the first element with `id="<id>"` (tags stripped, entities as sent).
    pub fn text_of(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let open_end = at + self.body[at..].find('>')? + 1;
        let rest = &self.body[open_end..];
        let close = rest.find("</")?;
        Some(strip_tags(&rest[..close]).trim().to_string())
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: u16) -> Answer {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.body
        );
        self
    }
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// A console session from one "browser".
pub struct ConsoleClient {
    addr: String,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl ConsoleClient {
    /// A client of the console on `addr` (host:port of the NameServer's ops listener).
    pub fn new(addr: &str) -> ConsoleClient {
        ConsoleClient {
            addr: addr.to_string(),
            cookie: None,
            csrf: None,
        }
    }

    pub fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let answer = self.exchange("GET", path, &[], "").await;
        self.learn(&answer);
        answer
    }

    /// POSTs `fields` form-encoded with this session's CSRF token (from the last page).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let csrf = self
            .csrf
            .clone()
            .expect("GET a console page before posting (it hands out the CSRF token)");
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &form(&all), true).await
    }

    /// POSTs `body` as a form, with this console's Origin or none, no token added.
    pub async fn post_raw(&mut self, path: &str, body: &str, with_origin: bool) -> Answer {
        let mut headers = vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        )];
        if with_origin {
            headers.push(("Origin", format!("http://{}", self.addr)));
        }
        let answer = self.exchange("POST", path, &headers, body).await;
        self.learn(&answer);
        answer
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> Answer {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(c) = &self.cookie {
            request.push_str(&format!("Cookie: {c}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let addr = self.addr.clone();
        let exchange = async move {
            let mut stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {path} timed out"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        parse(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: malformed answer {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// Keeps a new session cookie and the CSRF token of a page (every page names it in its
    /// `csrf-token` meta element).
    fn learn(&mut self, answer: &Answer) {
        for (name, value) in &answer.headers {
            if name == "set-cookie" {
                if let Some(pair) = value.split(';').next() {
                    self.cookie = Some(pair.trim().to_string());
                }
            }
        }
        if let Some(token) = answer
            .body
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .filter(|t| !t.is_empty())
        {
            self.csrf = Some(token.to_string());
        }
    }
}

/// Form-encodes `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "chunked answers are not decoded here"
    );
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

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

    /// The text of the first element with `id="<id>"`, as a browser shows it: tags
    /// stripped, character references decoded.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let open_end = at + self.body[at..].find('>')? + 1;
        let rest = &self.body[open_end..];
        let close = rest.find("</")?;
        Some(decode_references(strip_tags(&rest[..close]).trim()))
    }

    /// Whether the page links to `href` (compared after decoding character references, so
    /// `&` may be written `&amp;` or `&#38;`).
    pub fn links_to(&self, href: &str) -> bool {
        self.body
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .any(|h| decode_references(h) == href)
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

/// `s` with HTML's character references decoded: the named ones a template escapes with
/// (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`) and numeric ones (`&#38;`, `&#x26;`); anything
/// else is kept as written.
pub fn decode_references(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => match name.strip_prefix('#') {
                    Some(hex) if hex.starts_with(['x', 'X']) => u32::from_str_radix(&hex[1..], 16)
                        .ok()
                        .and_then(char::from_u32),
                    Some(dec) => dec.parse().ok().and_then(char::from_u32),
                    None => None,
                },
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::decode_references;

    #[test]
    fn character_references_decode_as_a_browser_shows_them() {
        assert_eq!(
            decode_references("a &lt;b&gt; &amp;&#38;&#x26; &quot;c&quot;"),
            "a <b> &&& \"c\""
        );
        assert_eq!(decode_references("?topic=t&#38;id=1"), "?topic=t&id=1");
        // Not a reference: kept as written.
        assert_eq!(
            decode_references("a & b &nope; &#xZZ; &"),
            "a & b &nope; &#xZZ; &"
        );
    }
}

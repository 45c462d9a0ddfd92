//! What every console request passes before its page sees it, and what every answer
//! carries:
//!
//! 1. **Host allow-list.** A Host header not in [`ConsoleSettings::allowed_hosts`] is
//!    refused (400): a DNS-rebound name pointing at a console on localhost reaches nothing.
//! 2. **Session.** The session cookie names the request's [`Session`]; a GET without one
//!    begins one (the cookie is `HttpOnly; SameSite=Strict; Path=/console`, `Secure` over
//!    TLS). A state-changing request without a live session is refused (403).
//! 3. **State-changing requests** (every method but GET and HEAD): the `Origin` header must be
//!    this console's own origin (403), the body at most [`MAX_FORM_BYTES`] (413), and the
//!    form field `csrf` (or the `x-csrf-token` header) the session's token (403). With
//!    authentication off these checks are the only thing between another site's page and a
//!    console on localhost, so they apply the same.
//! 4. **Answers** carry a Content-Security-Policy that admits only the console's own
//!    stylesheet and script, forbid framing and sniffing, send the referrer only to the
//!    console itself, and are not cached.
//!
//! [`ConsoleSettings::allowed_hosts`]: crate::ConsoleSettings::allowed_hosts

use crate::session::{same_token, Session, COOKIE};
use crate::Console;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;

/// Largest body of a state-changing request (a test message's body travels in one).
pub const MAX_FORM_BYTES: usize = 1024 * 1024;

/// The form field (and header) that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
const CSRF_HEADER: &str = "x-csrf-token";

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn refuse(status: StatusCode, why: &str) -> Response {
    let mut r = (status, format!("{why}\n")).into_response();
    secure_headers(r.headers_mut());
    r
}

/// The middleware.
pub async fn guard(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let settings = console.settings();
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
    else {
        return refuse(StatusCode::BAD_REQUEST, "a Host header is required");
    };
    if !host_allowed(&host, &settings.allowed_hosts) {
        tracing::warn!(host, "console: refused a request for a host not allowed");
        return refuse(
            StatusCode::BAD_REQUEST,
            "this console does not answer for that host name (console.allowed_hosts)",
        );
    }
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    let existing = cookie(request.headers(), COOKIE).and_then(|id| console.sessions().get(&id));
    let (session, fresh) = match existing {
        Some(s) => (s, false),
        None if reading => match console.sessions().begin() {
            Ok(s) => (s, true),
            Err(_) => {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the console has as many sessions as it keeps; try again later",
                )
            }
        },
        None => {
            return refuse(
                StatusCode::FORBIDDEN,
                "no console session (expired?): reload the page and try again",
            )
        }
    };
    let mut request = request;
    if !reading {
        let scheme = if settings.https { "https" } else { "http" };
        let origin = request.headers().get(header::ORIGIN);
        if origin.and_then(|o| o.to_str().ok()) != Some(&format!("{scheme}://{host}")) {
            return refuse(
                StatusCode::FORBIDDEN,
                "refused: the request did not come from this console's own pages (Origin)",
            );
        }
        let (parts, body) = request.into_parts();
        let bytes = match http_body_util::Limited::new(body, MAX_FORM_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("a console form may carry at most {MAX_FORM_BYTES} bytes"),
                )
            }
        };
        let token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| form_field(&bytes, CSRF_FIELD));
        if !token.is_some_and(|t| same_token(&t, &session.csrf)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "refused: the form's CSRF token is missing or not this session's; reload the \
                 page and try again",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(session.clone());
    let mut response = next.run(request).await;
    if fresh {
        set_cookie(response.headers_mut(), &session, settings.https);
    }
    secure_headers(response.headers_mut());
    response
}

/// Sets the session cookie on an answer.
pub fn set_cookie(headers: &mut HeaderMap, session: &Session, https: bool) {
    let secure = if https { "; Secure" } else { "" };
    let value = format!(
        "{COOKIE}={}; Path={}; HttpOnly; SameSite=Strict{secure}",
        session.id,
        crate::BASE
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.append(header::SET_COOKIE, v);
    }
}

fn secure_headers(h: &mut HeaderMap) {
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: with it a browser sends `Origin: null` on a form post.
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Whether `host` (a Host header: `name` or `name:port`) is one of `allowed`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    let name = split_port(&host).0;
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match split_port(&a) {
            (n, None) => n == name,
            _ => a == host,
        }
    })
}

/// `name:port` into its parts (IPv6 literals in brackets).
fn split_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        return match host.find("]:") {
            Some(i) => (&host[..=i], Some(&host[i + 2..])),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    }
}

/// A cookie's value from the request's Cookie headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// A field of a form-encoded body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_by_name_and_port_or_by_name_alone() {
        let allowed = vec![
            "127.0.0.1:5556".to_string(),
            "console.example".to_string(),
            "[::1]:5556".to_string(),
        ];
        assert!(host_allowed("127.0.0.1:5556", &allowed));
        assert!(!host_allowed("127.0.0.1:5557", &allowed));
        assert!(host_allowed("Console.Example:443", &allowed));
        assert!(host_allowed("console.example", &allowed));
        assert!(host_allowed("[::1]:5556", &allowed));
        assert!(!host_allowed("[::1]:1", &allowed));
        assert!(!host_allowed("attacker.example:5556", &allowed));
        assert!(!host_allowed("console.example.attacker.example", &allowed));
    }

    #[test]
    fn cookies_and_form_fields_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x_apogee_console=1; apogee_console=abc; other=2"),
        );
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(
            form_field(b"name=T&csrf=a%2Bb&x=1", "csrf").as_deref(),
            Some("a+b")
        );
        assert_eq!(form_field(b"xcsrf=1", "csrf"), None);
    }
}

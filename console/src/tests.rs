//! The guard and the sign-in flow, over the router with no cluster behind it (a NameServer
//! address nothing listens on): what is refused before any operation, and how.

use crate::{router, Console, ConsoleSettings};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use std::time::Duration;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:5556";

fn console(authentication: bool) -> Router {
    router(
        Console::new(ConsoleSettings {
            // Port 1 on loopback: refused at once.
            nameserver: "127.0.0.1:1".into(),
            nameserver_tls: None,
            authentication,
            https: false,
            allowed_hosts: vec![HOST.into(), "localhost".into()],
            call_timeout: Duration::from_secs(2),
        })
        .unwrap(),
    )
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap()
}

/// The session cookie and CSRF token a first GET of `path` hands out.
async fn session(app: &Router, path: &str) -> (String, String) {
    let (_, headers, body) = send(app, get(path)).await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let id = cookie.split(';').next().unwrap().to_string();
    let csrf = body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a page with its CSRF token")
        .to_string();
    (id, csrf)
}

fn post(path: &str, cookie: &str, origin: Option<&str>, form: &str) -> Request<Body> {
    let mut r = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(o) = origin {
        r = r.header(header::ORIGIN, o);
    }
    r.body(Body::from(form.to_string())).unwrap()
}

#[tokio::test]
async fn a_host_not_allowed_is_refused_before_anything_else() {
    let app = console(false);
    let req = Request::get("/console/cluster")
        .header(header::HOST, "rebound.attacker.example:5556")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("allowed_hosts"), "{body}");
    assert!(headers.get(header::SET_COOKIE).is_none());
    let no_host = Request::get("/console/cluster")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, no_host).await.0, StatusCode::BAD_REQUEST);
    let by_name = Request::get("/console/static/console.css")
        .header(header::HOST, "localhost:5556")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, by_name).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_strict_and_pages_forbid_framing() {
    let app = console(true);
    let (status, headers, body) = send(&app, get("/console/login")).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("apogee_console="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(body.contains("id=\"login\""), "{body}");
    assert!(!body.contains("id=\"auth-off\""), "authentication is on");
}

#[tokio::test]
async fn with_authentication_a_page_sends_to_sign_in_and_a_post_is_refused() {
    let app = console(true);
    let (status, headers, _) = send(&app, get("/console/topics?filter=a")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        "/console/login?next=/console/topics%3Ffilter%3Da"
    );
    let (cookie, csrf) = session(&app, "/console/login").await;
    let form = format!("csrf={csrf}&name=T&queues=4&type=NORMAL");
    let req = post(
        "/console/topics",
        &cookie,
        Some("http://127.0.0.1:5556"),
        &form,
    );
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_post_needs_this_consoles_origin_and_its_sessions_csrf_token() {
    let app = console(false);
    let (cookie, csrf) = session(&app, "/console/cluster").await;
    let form = |token: &str| format!("csrf={token}&access_key=a&secret_key=b");
    // No Origin, another site's, and a look-alike.
    for origin in [
        None,
        Some("http://evil.example"),
        Some("http://127.0.0.1:5556.evil"),
    ] {
        let req = post("/console/login", &cookie, origin, &form(&csrf));
        let (status, _, body) = send(&app, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?}: {body}");
        assert!(body.contains("Origin"), "{body}");
    }
    let origin = Some("http://127.0.0.1:5556");
    for token in ["", "0000", &csrf[..csrf.len() - 1]] {
        let req = post("/console/login", &cookie, origin, &form(token));
        let (status, _, body) = send(&app, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(body.contains("CSRF"), "{body}");
    }
    let no_session = post(
        "/console/login",
        "apogee_console=forged",
        origin,
        &form(&csrf),
    );
    assert_eq!(send(&app, no_session).await.0, StatusCode::FORBIDDEN);
    let ok = post("/console/login", &cookie, origin, &form(&csrf));
    let (status, headers, _) = send(&app, ok).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "authentication off: nothing to sign in to"
    );
    assert_eq!(headers[header::LOCATION], "/console/cluster");
}

#[tokio::test]
async fn a_form_larger_than_the_limit_is_refused() {
    let app = console(false);
    let (cookie, csrf) = session(&app, "/console/cluster").await;
    let big = format!(
        "csrf={csrf}&body={}",
        "x".repeat(crate::guard::MAX_FORM_BYTES)
    );
    let req = post(
        "/console/login",
        &cookie,
        Some("http://127.0.0.1:5556"),
        &big,
    );
    assert_eq!(send(&app, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn without_authentication_every_page_says_so_and_a_cluster_out_of_reach_is_a_502() {
    let app = console(false);
    let (status, _, body) = send(&app, get("/console/cluster")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("id=\"auth-off\""), "{body}");
    assert!(body.contains("class=\"error\""), "{body}");
    let (status, headers, _) = send(&app, get("/console")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/console/cluster");
}

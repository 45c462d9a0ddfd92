//! What a console handler works with: [`Page`] (extracted from a request the guard let
//! through: the session, its user and the admin connection signed as that user), the
//! [`Chrome`] every template shows around its content, and [`Failure`], what a handler
//! answers when an operation fails: the error page with the HTTP status of the cause.

use crate::session::Session;
use crate::Console;
use apogee_admin::admin::Admin;
use apogee_admin::error::ToolError;
use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::sync::Arc;

/// The sections of the console, as the navigation lists them.
pub const SECTIONS: &[(&str, &str)] = &[
    ("cluster", "Cluster"),
    ("topics", "Topics"),
    ("groups", "Consumer groups"),
    ("messages", "Messages"),
    ("transactions", "Transactions"),
    ("scheduled", "Scheduled"),
    ("rates", "Rates"),
];

/// What every page shows around its content: the navigation, who is signed in, the CSRF
/// token its forms carry, and whether authentication is off.
#[derive(Clone, Debug)]
pub struct Chrome {
    /// The section the page belongs to (one of [`SECTIONS`], `access` or `login`).
    pub section: &'static str,
    /// The signed-in user's access key.
    pub user: Option<String>,
    /// Whether the Users and ACLs section is offered (admins, and everyone without
    /// authentication).
    pub admin: bool,
    pub auth_off: bool,
    pub csrf: String,
}

impl Chrome {
    pub fn sections(&self) -> &'static [(&'static str, &'static str)] {
        SECTIONS
    }

    /// Whether the page belongs to section `key`.
    pub fn current(&self, key: &str) -> bool {
        self.section == key
    }
}

/// A request of a signed-in user (or of anyone, when authentication is off).
pub struct Page {
    console: Arc<Console>,
    session: Session,
}

impl Page {
    /// The admin connection, signed as this page's user.
    pub fn admin(&self) -> Admin {
        let credentials = self.session.user.as_ref().map(|u| u.credentials.clone());
        self.console.admin_as(credentials)
    }

    /// A client configuration for the client library (sends, recalls), signed as this
    /// page's user, towards the console's NameServer.
    pub fn client_config(&self) -> apogee_client::ClientConfig {
        let settings = self.console.settings();
        let mut config = apogee_client::ClientConfig::new(&settings.nameserver)
            .with_request_timeout(settings.call_timeout);
        config.tls = settings.nameserver_tls.clone();
        match &self.session.user {
            Some(user) => config.with_credentials(user.credentials.clone()),
            None => config,
        }
    }

    pub fn console(&self) -> &Arc<Console> {
        &self.console
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The chrome of a page of `section`.
    pub fn chrome(&self, section: &'static str) -> Chrome {
        chrome(&self.console, &self.session, section)
    }

    /// A failure shown inside `section`'s chrome.
    pub fn fail(&self, section: &'static str, cause: impl Into<Failure>) -> Failure {
        let mut failure = cause.into();
        failure.chrome = Some(self.chrome(section));
        failure
    }
}

pub fn chrome(console: &Console, session: &Session, section: &'static str) -> Chrome {
    let auth_off = !console.settings().authentication;
    Chrome {
        section,
        user: session.user.as_ref().map(|u| u.access_key().to_string()),
        admin: auth_off || session.user.as_ref().is_some_and(|u| u.admin),
        auth_off,
        csrf: session.csrf.clone(),
    }
}

/// A request's session, signed in or not (the sign-in page's).
pub struct Visitor {
    pub console: Arc<Console>,
    pub session: Session,
}

impl FromRequestParts<Arc<Console>> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or_else(|| (StatusCode::INTERNAL_SERVER_ERROR, "no session").into_response())?;
        Ok(Visitor {
            console: console.clone(),
            session,
        })
    }
}

impl FromRequestParts<Arc<Console>> for Page {
    type Rejection = Response;

    /// Without a signed-in user (authentication on): a page read goes to the sign-in page
    /// (coming back here after it), anything else is refused with 401.
    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_request_parts(parts, console).await?;
        if console.settings().authentication && visitor.session.user.is_none() {
            if parts.method == Method::GET || parts.method == Method::HEAD {
                // Inside the console's router the path has lost its `/console` prefix.
                let next = format!(
                    "{}{}",
                    crate::BASE,
                    parts.uri.path_and_query().map_or("", |p| p.as_str())
                );
                let to = format!("{}/login?next={}", crate::BASE, encode(&next));
                return Err(Redirect::to(&to).into_response());
            }
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "sign in first (the session ended or was never signed in)",
            )
            .into_response());
        }
        Ok(Page {
            console: visitor.console,
            session: visitor.session,
        })
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Renders a template into a page answer.
pub fn render(template: &impl Template) -> Result<Html<String>, Failure> {
    template.render().map(Html).map_err(|e| {
        tracing::error!("console: a template failed to render: {e}");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page failed to render",
        )
    })
}

/// What a page answers when it cannot do what was asked: an error page with the status of
/// the cause (403 forbidden by a role or ACL, 404 not found, 400 bad input, 502 when the
/// cluster could not be reached or failed).
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
    pub chrome: Option<Chrome>,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            chrome: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }
}

/// The HTTP status that says what a gRPC code says.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl From<ToolError> for Failure {
    fn from(e: ToolError) -> Failure {
        let status = match &e {
            ToolError::Refused { code, .. } => http_status(*code),
            ToolError::Usage(_) | ToolError::Input(_) => StatusCode::BAD_REQUEST,
            ToolError::Client(c) => match c {
                apogee_client::ClientError::Server(s) => {
                    http_status(tonic::Status::from(s.clone()).code())
                }
                apogee_client::ClientError::Config(_) => StatusCode::BAD_REQUEST,
                apogee_client::ClientError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            },
            _ => StatusCode::BAD_GATEWAY,
        };
        Failure::new(status, e.to_string())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: &'a Chrome,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let chrome = self.chrome.clone().unwrap_or(Chrome {
            section: "error",
            user: None,
            admin: false,
            auth_off: false,
            csrf: String::new(),
        });
        let page = ErrorPage {
            chrome: &chrome,
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or(""),
            message: &self.message,
        };
        match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

/// What a page handler returns.
pub type PageResult = Result<Response, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_become_the_http_statuses_that_say_the_same() {
        assert_eq!(
            http_status(tonic::Code::PermissionDenied),
            StatusCode::FORBIDDEN
        );
        assert_eq!(http_status(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(tonic::Code::InvalidArgument),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(tonic::Code::Unavailable),
            StatusCode::BAD_GATEWAY
        );
        let refused = ToolError::from_status(tonic::Status::permission_denied("no"), "ns", None);
        assert_eq!(Failure::from(refused).status, StatusCode::FORBIDDEN);
        assert_eq!(
            Failure::from(ToolError::Usage("x".into())).status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("/console/topics?filter=a b&x=1"),
            "/console/topics%3Ffilter%3Da%20b%26x%3D1"
        );
    }
}

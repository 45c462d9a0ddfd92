//! The guard both servers put in front of every gRPC service when
//! `security.authentication` is on: one check for every RPC, streams included (a Telemetry
//! stream is checked when it opens).
//!
//! A call is admitted with a valid cluster proof (`x-apogee-cluster-auth`: another server of
//! the cluster; see [`apogee_proto::cluster_auth`]) or valid user credentials (the `MQv2-HMAC-SHA1`
//! authorization header over `x-mq-date-time`, see [`super::signature`]); the Admin services
//! also need the admin role, except, where the server opts in ([`AuthLayer::with_user_listings`],
//! the NameServer), the listings [`USER_LISTINGS`], which any user may call and which answer a
//! user who is not an admin only what their ACL entries grant
//! ([`apogee_proto::auth::acl::ListingScope`]). gRPC health is open (probes carry no credentials). An admitted
//! call carries its [`Identity`] and the ACL entries of the moment (`Arc<acl::AclSet>`) as
//! request extensions, for [`super::acl::authorize`].
//!
//! A refusal is logged once (client id, peer, access key, RPC; never a secret or signature)
//! and answered the way the caller reads it: a unary MessagingService call gets its response
//! with the v2 status UNAUTHORIZED (or FORBIDDEN) in the body, every other call the gRPC
//! status UNAUTHENTICATED (or PERMISSION_DENIED), both made by [`ApogeeError`]'s one mapping.

use apogee_proto::auth::signature::{self, SignatureError};
use apogee_proto::auth::{Directory, Identity};
use apogee_proto::cluster_auth::{self, ClusterSecret};
use apogee_proto::error::ApogeeError;
use apogee_proto::v2;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Request, Response};

/// The Admin methods any user may call on a server that opts in: their answers are filtered
/// to what the caller's ACL entries grant.
pub const USER_LISTINGS: &[&str] = &["ListTopics", "ListGroups", "ListAcls"];

/// What the guard checks calls against.
struct Policy {
    directory: Directory,
    cluster: Option<ClusterSecret>,
    max_skew: Duration,
    /// Whether [`USER_LISTINGS`] are open to users who are not admins.
    user_listings: bool,
}

/// The layer; [`AuthLayer::off`] admits everything untouched.
#[derive(Clone)]
pub struct AuthLayer {
    policy: Option<Arc<Policy>>,
}

impl AuthLayer {
    /// No authentication: calls pass untouched.
    pub fn off() -> AuthLayer {
        AuthLayer { policy: None }
    }

    /// Checks every call against `directory` (user credentials, signed at most `max_skew`
    /// from this server's clock) or `cluster` (a cluster proof). `directory` is shared: what
    /// keeps the server's users updates it, and calls see the change at once.
    pub fn new(
        directory: Directory,
        cluster: Option<ClusterSecret>,
        max_skew: Duration,
    ) -> AuthLayer {
        AuthLayer {
            policy: Some(Arc::new(Policy {
                directory,
                cluster,
                max_skew,
                user_listings: false,
            })),
        }
    }

    /// Opens [`USER_LISTINGS`] to every user: the server's handlers answer a user who is not
    /// an admin only what their ACL entries grant (the NameServer's do).
    pub fn with_user_listings(self) -> AuthLayer {
        AuthLayer {
            policy: self.policy.map(|p| {
                Arc::new(Policy {
                    directory: p.directory.clone(),
                    cluster: p.cluster.clone(),
                    max_skew: p.max_skew,
                    user_listings: true,
                })
            }),
        }
    }
}

impl AuthLayer {
    /// The directory calls are checked against (none when authentication is off).
    pub fn directory(&self) -> Option<Directory> {
        self.policy.as_ref().map(|p| p.directory.clone())
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: Option<Arc<Policy>>,
}

/// The RPC a path names, and how the guard treats it.
struct Rpc<'a> {
    path: &'a str,
    /// Health probes need nothing.
    open: bool,
    /// The Admin services need the admin role.
    admin: bool,
    /// One of [`USER_LISTINGS`].
    listing: bool,
    /// A unary v2 call: refused with a v2 status in its response body.
    status_in_body: bool,
}

impl<'a> Rpc<'a> {
    fn of(path: &'a str) -> Rpc<'a> {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        let messaging = service == "apache.rocketmq.v2.MessagingService";
        Rpc {
            path,
            open: service == "grpc.health.v1.Health",
            admin: service == "apogee.cluster.v1.Admin",
            listing: service == "apogee.cluster.v1.Admin" && USER_LISTINGS.contains(&method),
            status_in_body: messaging
                && !matches!(method, "Telemetry" | "ReceiveMessage" | "PullMessage"),
        }
    }
}

/// A refused call: the error answered and the access key it named, if any.
struct Refusal {
    error: ApogeeError,
    access_key: Option<String>,
}

impl From<SignatureError> for Refusal {
    fn from(e: SignatureError) -> Refusal {
        let access_key = match &e {
            SignatureError::UnknownAccessKey(k) | SignatureError::BadSignature(k) => {
                Some(k.clone())
            }
            SignatureError::Stale { access_key, .. } => Some(access_key.clone()),
            _ => None,
        };
        Refusal {
            error: ApogeeError::Unauthorized(e.to_string()),
            access_key,
        }
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Policy {
    fn admit(&self, headers: &HeaderMap, rpc: &Rpc<'_>) -> Result<Identity, Refusal> {
        if let Some(proof) = headers.get(cluster_auth::HEADER) {
            let unauthorized = |why: String| Refusal {
                error: ApogeeError::Unauthorized(why),
                access_key: None,
            };
            let secret = self.cluster.as_ref().ok_or_else(|| {
                unauthorized("a cluster proof, but this server has no cluster secret".into())
            })?;
            secret
                .verify(proof.to_str().ok(), apogee_proto::time::now_ms())
                .map_err(unauthorized)?;
            return Ok(Identity::Cluster);
        }
        let authorization = header(headers, signature::AUTHORIZATION)
            .ok_or(SignatureError::MissingAuthorization)?;
        let authorization = signature::parse_authorization(authorization)?;
        let date_time =
            header(headers, signature::DATE_TIME).ok_or(SignatureError::MissingDateTime)?;
        let (secret, role) = self
            .directory
            .lookup(&authorization.access_key)
            .ok_or_else(|| SignatureError::UnknownAccessKey(authorization.access_key.clone()))?;
        signature::verify(
            &authorization,
            &secret,
            date_time,
            apogee_proto::time::now_ms(),
            self.max_skew,
        )?;
        let identity = Identity::User {
            access_key: authorization.access_key.clone(),
            role,
        };
        let open_listing = rpc.listing && self.user_listings;
        if rpc.admin && !open_listing && !identity.is_admin() {
            return Err(Refusal {
                error: ApogeeError::Forbidden(format!(
                    "access key {} is not an admin, and the Admin service needs one",
                    authorization.access_key
                )),
                access_key: Some(authorization.access_key),
            });
        }
        Ok(identity)
    }
}

/// The body of every v2 response whose field 1 is its status (every unary one): what a
/// refused unary call is answered with.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusOnly {
    #[prost(message, optional, tag = "1")]
    status: Option<v2::Status>,
}

/// Answers a refused unary call with its status.
#[derive(Clone)]
struct Refused(v2::Status);

impl tower_service::Service<tonic::Request<()>> for Refused {
    type Response = tonic::Response<StatusOnly>;
    type Error = tonic::Status;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(StatusOnly {
            status: Some(self.0.clone()),
        })))
    }
}

/// Answers `request` with `error`: in the v2 response body (`status_in_body`, every unary
/// MessagingService call), otherwise as the gRPC status. Also the answer of other layers
/// that refuse a call before its service sees it.
pub async fn refuse(
    request: Request<Body>,
    status_in_body: bool,
    error: ApogeeError,
) -> Response<Body> {
    if !status_in_body {
        return tonic::Status::from(error).into_http();
    }
    let codec = tonic_prost::ProstCodec::<StatusOnly, ()>::default();
    tonic::server::Grpc::new(codec)
        .max_decoding_message_size(apogee_proto::limits::MAX_GRPC_MESSAGE_BYTES)
        .unary(Refused(error.to_status()), request)
        .await
}

fn log_refusal(request: &Request<Body>, path: &str, refusal: &Refusal) {
    let peer = request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let client_id = header(request.headers(), "x-mq-client-id").unwrap_or("-");
    let access_key = refusal.access_key.as_deref().unwrap_or("-");
    tracing::warn!(
        rpc = path,
        client_id,
        %peer,
        access_key,
        "refused: {}",
        refusal.error
    );
}

impl<S> tower_service::Service<Request<Body>> for AuthService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let Some(policy) = &self.policy else {
            return Box::pin(self.inner.call(request));
        };
        let path = request.uri().path().to_string();
        let rpc = Rpc::of(&path);
        if rpc.open {
            return Box::pin(self.inner.call(request));
        }
        match policy.admit(request.headers(), &rpc) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                request.extensions_mut().insert(policy.directory.acls());
                Box::pin(self.inner.call(request))
            }
            Err(refusal) => {
                log_refusal(&request, rpc.path, &refusal);
                let in_body = rpc.status_in_body;
                Box::pin(async move { Ok(refuse(request, in_body, refusal.error).await) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::auth::acl::{AccessState, SecretSeal};
    use apogee_proto::auth::{Credentials, Role};
    use apogee_proto::cluster::{AccessRole, AccessUser};

    fn policy() -> Policy {
        let admin = Credentials::new("root", "root-secret").unwrap();
        Policy {
            directory: Directory::with_admin(&admin),
            cluster: Some(ClusterSecret::new(b"0123456789abcdef-secret").unwrap()),
            max_skew: Duration::from_secs(900),
            user_listings: false,
        }
    }

    fn signed(credentials: &Credentials) -> HeaderMap {
        let mut md = tonic::metadata::MetadataMap::new();
        credentials.sign(&mut md);
        md.into_headers()
    }

    #[test]
    fn paths_are_classified_by_service_and_method() {
        let send = Rpc::of("/apache.rocketmq.v2.MessagingService/SendMessage");
        assert!(send.status_in_body && !send.admin && !send.open);
        let receive = Rpc::of("/apache.rocketmq.v2.MessagingService/ReceiveMessage");
        assert!(!receive.status_in_body);
        assert!(!Rpc::of("/apache.rocketmq.v2.MessagingService/Telemetry").status_in_body);
        assert!(Rpc::of("/apogee.cluster.v1.Admin/CreateTopic").admin);
        assert!(Rpc::of("/grpc.health.v1.Health/Check").open);
        assert!(!Rpc::of("/apogee.cluster.v1.Registry/GetRoute").open);
    }

    #[test]
    fn users_and_cluster_proofs_are_admitted_and_others_refused() {
        let p = policy();
        let send = Rpc::of("/apache.rocketmq.v2.MessagingService/SendMessage");
        let root = Credentials::new("root", "root-secret").unwrap();
        assert_eq!(
            p.admit(&signed(&root), &send).ok(),
            Some(Identity::User {
                access_key: "root".into(),
                role: Role::Admin
            })
        );
        let wrong = Credentials::new("root", "guess").unwrap();
        let refusal = p.admit(&signed(&wrong), &send).err().unwrap();
        assert_eq!(refusal.error.code(), v2::Code::Unauthorized);
        assert_eq!(refusal.access_key.as_deref(), Some("root"));
        let unknown = Credentials::new("eve", "x").unwrap();
        assert!(p.admit(&signed(&unknown), &send).is_err());
        assert!(p.admit(&HeaderMap::new(), &send).is_err());

        let mut proof = HeaderMap::new();
        let secret = ClusterSecret::new(b"0123456789abcdef-secret").unwrap();
        let value = secret.proof(apogee_proto::time::now_ms()).parse().unwrap();
        proof.insert(cluster_auth::HEADER, value);
        let admin_rpc = Rpc::of("/apogee.cluster.v1.Admin/CreateTopic");
        assert_eq!(p.admit(&proof, &admin_rpc).ok(), Some(Identity::Cluster));
        let other = ClusterSecret::new(b"another-secret-of-16").unwrap();
        let forged = other.proof(apogee_proto::time::now_ms()).parse().unwrap();
        proof.insert(cluster_auth::HEADER, forged);
        assert!(p.admit(&proof, &admin_rpc).is_err());
    }

    #[test]
    fn a_non_admin_user_is_forbidden_the_admin_service() {
        let p = policy();
        // A user as the servers keep one: its secret sealed, its role on the wire.
        let seal = SecretSeal::new(&ClusterSecret::new(b"0123456789abcdef-seal").unwrap());
        let mut state = AccessState::default();
        state.merge_user(AccessUser {
            access_key: "app".into(),
            sealed_secret: seal.seal("app", "app-secret"),
            role: AccessRole::User as i32,
            updated_ms: 1,
            deleted: false,
        });
        p.directory.replace(state.grants(&seal));
        let app = Credentials::new("app", "app-secret").unwrap();
        let send = Rpc::of("/apache.rocketmq.v2.MessagingService/SendMessage");
        assert!(p.admit(&signed(&app), &send).is_ok());
        let admin_rpc = Rpc::of("/apogee.cluster.v1.Admin/CreateTopic");
        let refusal = p.admit(&signed(&app), &admin_rpc).err().unwrap();
        assert_eq!(refusal.error.code(), v2::Code::Forbidden);

        // The listings too, unless the server opts in; then only they.
        let listing = Rpc::of("/apogee.cluster.v1.Admin/ListTopics");
        assert!(p.admit(&signed(&app), &listing).is_err());
        let open = Policy {
            user_listings: true,
            ..p
        };
        assert!(open.admit(&signed(&app), &listing).is_ok());
        assert!(open
            .admit(&signed(&app), &Rpc::of("/apogee.cluster.v1.Admin/ListAcls"))
            .is_ok());
        assert!(open.admit(&signed(&app), &admin_rpc).is_err());
    }
}

//! The internal error type shared by every Apogee process, and the one place
//! where it is mapped to the RocketMQ protocol's `Code` (for `v2` responses,
//! which carry a `Status` in the body) and to `tonic::Status` (for the
//! cluster-internal services, which use gRPC status codes).

use crate::v2::{self, Code};

/// Everything that can go wrong with a request, named for what the client did
/// or what the server could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApogeeError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("illegal topic: {0}")]
    IllegalTopic(String),
    #[error("illegal consumer group: {0}")]
    IllegalConsumerGroup(String),
    /// A lite topic name that is empty, too long or has characters outside `[a-zA-Z0-9_-]`.
    #[error("illegal lite topic: {0}")]
    IllegalLiteTopic(String),
    /// A send that would create a lite topic beyond the broker's lite-topic quota.
    #[error("lite topic quota exceeded: {0}")]
    LiteTopicQuotaExceeded(String),
    /// A subscription sync that would give a client more lite topics than its quota.
    #[error("lite subscription quota exceeded: {0}")]
    LiteSubscriptionQuotaExceeded(String),
    #[error("illegal message tag: {0}")]
    IllegalTag(String),
    #[error("illegal message key: {0}")]
    IllegalKey(String),
    #[error("illegal message group: {0}")]
    IllegalMessageGroup(String),
    #[error("illegal message property: {0}")]
    IllegalProperty(String),
    #[error("illegal message id: {0}")]
    IllegalMessageId(String),
    #[error("illegal filter expression: {0}")]
    IllegalFilterExpression(String),
    #[error("illegal invisible duration: {0}")]
    IllegalInvisibleTime(String),
    #[error("illegal long-polling time: {0}")]
    IllegalPollingTime(String),
    #[error("illegal delivery time: {0}")]
    IllegalDeliveryTime(String),
    #[error("illegal offset: {0}")]
    IllegalOffset(String),
    #[error("invalid transaction id: {0}")]
    InvalidTransactionId(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("invalid receipt handle: {0}")]
    InvalidReceiptHandle(String),
    #[error("message type not allowed: {0}")]
    MessageTypeConflict(String),
    #[error("client id is required (x-mq-client-id header)")]
    ClientIdRequired,
    #[error("topic not found: {0}")]
    TopicNotFound(String),
    #[error("consumer group not found: {0}")]
    ConsumerGroupNotFound(String),
    #[error("message not found: {0}")]
    MessageNotFound(String),
    #[error("offset not found: {0}")]
    OffsetNotFound(String),
    #[error("message body is empty")]
    MessageBodyEmpty,
    #[error("message body of {size} bytes exceeds the limit of {limit} bytes")]
    MessageBodyTooLarge { size: usize, limit: usize },
    #[error("message properties too large: {0}")]
    MessagePropertiesTooLarge(String),
    #[error("request too large: {0}")]
    PayloadTooLarge(String),
    /// Missing, malformed or wrong credentials (v2 UNAUTHORIZED, gRPC UNAUTHENTICATED).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not implemented: {0}")]
    NotImplemented(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    #[error("request timed out: {0}")]
    RequestTimeout(String),
    #[error("not persisted in time: {0}")]
    MasterPersistenceTimeout(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// SYNC_MASTER: stored on the master, but no slave was in sync to take it.
    #[error("stored on the master, not replicated: {0}")]
    NotReplicated(String),
    /// SYNC_MASTER: stored on the master; the in-sync slave did not confirm it in time.
    #[error("stored on the master, the slave did not confirm in time: {0}")]
    SlavePersistenceTimeout(String),
    /// The broker's disk is full (or above its refuse ratio): sends are refused, reads work.
    #[error("storage full: {0}")]
    StorageFull(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An internal error that keeps its cause (a store or I/O error) as its
    /// [`source`](std::error::Error::source), so a log can walk the chain and code can
    /// downcast it ([`Cause::get`]). To a client it is [`Internal`](Self::Internal) with
    /// the cause's text: the same code and message.
    #[error("internal error: {0}")]
    InternalCause(#[source] Cause),
}

/// The cause an [`ApogeeError::InternalCause`] keeps: shared, so the error stays `Clone`;
/// two are equal when their texts are.
#[derive(Debug, Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// The error itself, to downcast to its type.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Transparent: the cause's own text, and its own source next in the chain.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// What was being done when `source` failed: reads `what: source`, and keeps `source` as
/// its [`source`](std::error::Error::source) for the log's chain and for downcasts.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct Doing<E: std::error::Error + 'static> {
    what: String,
    #[source]
    source: E,
}

impl ApogeeError {
    /// An internal error that keeps `cause` ([`ApogeeError::InternalCause`]): what a client
    /// sees is `Internal(cause.to_string())`'s.
    pub fn internal<E: std::error::Error + Send + Sync + 'static>(cause: E) -> ApogeeError {
        ApogeeError::InternalCause(Cause(std::sync::Arc::new(cause)))
    }

    /// [`internal`](Self::internal), saying what was being done: a client reads
    /// `internal error: <what>: <cause>`, and the cause stays in the chain.
    pub fn internal_in<E: std::error::Error + Send + Sync + 'static>(
        what: impl Into<String>,
        cause: E,
    ) -> ApogeeError {
        Self::internal(Doing {
            what: what.into(),
            source: cause,
        })
    }

    /// Logs an internal error (a server fault, not the client's) with every cause in its
    /// chain, as it is answered; other errors are the client's to see and are not logged.
    pub fn log_if_internal(&self) {
        if !matches!(
            self,
            ApogeeError::Internal(_) | ApogeeError::InternalCause(_)
        ) {
            return;
        }
        let mut causes = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            causes.push(format!("{cause:?}"));
            next = cause.source();
        }
        tracing::error!(error = %self, causes = ?causes, "answered with an internal error");
    }

    /// The protocol code a RocketMQ 5 client sees for this error.
    pub fn code(&self) -> Code {
        use ApogeeError::*;
        match self {
            BadRequest(_) => Code::BadRequest,
            IllegalTopic(_) => Code::IllegalTopic,
            IllegalConsumerGroup(_) => Code::IllegalConsumerGroup,
            IllegalLiteTopic(_) => Code::IllegalLiteTopic,
            LiteTopicQuotaExceeded(_) => Code::LiteTopicQuotaExceeded,
            LiteSubscriptionQuotaExceeded(_) => Code::LiteSubscriptionQuotaExceeded,
            IllegalTag(_) => Code::IllegalMessageTag,
            IllegalKey(_) => Code::IllegalMessageKey,
            IllegalMessageGroup(_) => Code::IllegalMessageGroup,
            IllegalProperty(_) => Code::IllegalMessagePropertyKey,
            IllegalMessageId(_) => Code::IllegalMessageId,
            IllegalFilterExpression(_) => Code::IllegalFilterExpression,
            IllegalInvisibleTime(_) => Code::IllegalInvisibleTime,
            IllegalPollingTime(_) => Code::IllegalPollingTime,
            IllegalDeliveryTime(_) => Code::IllegalDeliveryTime,
            IllegalOffset(_) => Code::IllegalOffset,
            InvalidReceiptHandle(_) => Code::InvalidReceiptHandle,
            InvalidTransactionId(_) => Code::InvalidTransactionId,
            PreconditionFailed(_) => Code::PreconditionFailed,
            MessageTypeConflict(_) => Code::MessagePropertyConflictWithType,
            ClientIdRequired => Code::ClientIdRequired,
            TopicNotFound(_) => Code::TopicNotFound,
            ConsumerGroupNotFound(_) => Code::ConsumerGroupNotFound,
            MessageNotFound(_) => Code::MessageNotFound,
            OffsetNotFound(_) => Code::OffsetNotFound,
            MessageBodyEmpty => Code::MessageBodyEmpty,
            MessageBodyTooLarge { .. } => Code::MessageBodyTooLarge,
            MessagePropertiesTooLarge(_) => Code::MessagePropertiesTooLarge,
            PayloadTooLarge(_) => Code::PayloadTooLarge,
            Unauthorized(_) => Code::Unauthorized,
            Forbidden(_) => Code::Forbidden,
            AlreadyExists(_) => Code::BadRequest,
            NotImplemented(_) => Code::NotImplemented,
            Unsupported(_) => Code::Unsupported,
            TooManyRequests(_) => Code::TooManyRequests,
            RequestTimeout(_) => Code::RequestTimeout,
            MasterPersistenceTimeout(_) => Code::MasterPersistenceTimeout,
            Unavailable(_) | NotReplicated(_) => Code::HaNotAvailable,
            SlavePersistenceTimeout(_) => Code::SlavePersistenceTimeout,
            StorageFull(_) => Code::InternalServerError,
            Internal(_) | InternalCause(_) => Code::InternalError,
        }
    }

    /// The `Status` carried in the body of a `v2` response.
    pub fn to_status(&self) -> v2::Status {
        self.log_if_internal();
        v2::Status {
            code: self.code() as i32,
            message: self.to_string(),
        }
    }

    /// Rebuilds an error from a `v2` status received from a server; `None`
    /// when the status is OK (or the code is unknown and means success).
    pub fn from_status(status: &v2::Status) -> Option<ApogeeError> {
        use ApogeeError::*;
        let code = Code::try_from(status.code).unwrap_or(Code::InternalError);
        let m = status.message.clone();
        Some(match code {
            Code::Ok | Code::MultipleResults => return None,
            Code::IllegalTopic => IllegalTopic(m),
            Code::IllegalConsumerGroup => IllegalConsumerGroup(m),
            Code::IllegalLiteTopic => IllegalLiteTopic(m),
            Code::LiteTopicQuotaExceeded => LiteTopicQuotaExceeded(m),
            Code::LiteSubscriptionQuotaExceeded => LiteSubscriptionQuotaExceeded(m),
            Code::IllegalMessageTag => IllegalTag(m),
            Code::IllegalMessageKey => IllegalKey(m),
            Code::IllegalMessageGroup => IllegalMessageGroup(m),
            Code::IllegalMessagePropertyKey => IllegalProperty(m),
            Code::IllegalMessageId => IllegalMessageId(m),
            Code::IllegalFilterExpression => IllegalFilterExpression(m),
            Code::IllegalInvisibleTime => IllegalInvisibleTime(m),
            Code::IllegalPollingTime => IllegalPollingTime(m),
            Code::IllegalDeliveryTime => IllegalDeliveryTime(m),
            Code::IllegalOffset => IllegalOffset(m),
            Code::InvalidReceiptHandle => InvalidReceiptHandle(m),
            Code::InvalidTransactionId => InvalidTransactionId(m),
            Code::PreconditionFailed => PreconditionFailed(m),
            Code::MessagePropertyConflictWithType => MessageTypeConflict(m),
            Code::ClientIdRequired => ClientIdRequired,
            Code::TopicNotFound => TopicNotFound(m),
            Code::ConsumerGroupNotFound => ConsumerGroupNotFound(m),
            Code::MessageNotFound => MessageNotFound(m),
            Code::OffsetNotFound => OffsetNotFound(m),
            Code::MessageBodyEmpty => MessageBodyEmpty,
            Code::MessageBodyTooLarge => MessageBodyTooLarge { size: 0, limit: 0 },
            Code::MessagePropertiesTooLarge => MessagePropertiesTooLarge(m),
            Code::PayloadTooLarge => PayloadTooLarge(m),
            Code::Unauthorized => Unauthorized(m),
            Code::Forbidden => Forbidden(m),
            Code::NotImplemented => NotImplemented(m),
            Code::Unsupported | Code::VersionUnsupported => Unsupported(m),
            Code::TooManyRequests => TooManyRequests(m),
            Code::RequestTimeout | Code::ProxyTimeout => RequestTimeout(m),
            Code::MasterPersistenceTimeout => MasterPersistenceTimeout(m),
            Code::SlavePersistenceTimeout => SlavePersistenceTimeout(m),
            Code::HaNotAvailable => Unavailable(m),
            Code::InternalServerError => StorageFull(m),
            c if (40000..50000).contains(&(c as i32)) => BadRequest(m),
            _ => Internal(m),
        })
    }

    /// Whether a client may retry the same request (on another broker).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApogeeError::TooManyRequests(_)
                | ApogeeError::RequestTimeout(_)
                | ApogeeError::MasterPersistenceTimeout(_)
                | ApogeeError::Unavailable(_)
                | ApogeeError::StorageFull(_)
                | ApogeeError::Internal(_)
                | ApogeeError::InternalCause(_)
        )
    }
}

/// The OK status of a `v2` response.
pub fn ok_status() -> v2::Status {
    v2::Status {
        code: Code::Ok as i32,
        message: "OK".to_string(),
    }
}

impl From<ApogeeError> for tonic::Status {
    fn from(e: ApogeeError) -> Self {
        use ApogeeError::*;
        e.log_if_internal();
        let msg = e.to_string();
        match e {
            TopicNotFound(_)
            | ConsumerGroupNotFound(_)
            | MessageNotFound(_)
            | OffsetNotFound(_) => tonic::Status::not_found(msg),
            Unauthorized(_) => tonic::Status::unauthenticated(msg),
            Forbidden(_) => tonic::Status::permission_denied(msg),
            AlreadyExists(_) => tonic::Status::already_exists(msg),
            PreconditionFailed(_) => tonic::Status::failed_precondition(msg),
            NotImplemented(_) | Unsupported(_) => tonic::Status::unimplemented(msg),
            TooManyRequests(_)
            | StorageFull(_)
            | LiteTopicQuotaExceeded(_)
            | LiteSubscriptionQuotaExceeded(_) => tonic::Status::resource_exhausted(msg),
            RequestTimeout(_) | MasterPersistenceTimeout(_) | SlavePersistenceTimeout(_) => {
                tonic::Status::deadline_exceeded(msg)
            }
            Unavailable(_) | NotReplicated(_) => tonic::Status::unavailable(msg),
            Internal(_) | InternalCause(_) => tonic::Status::internal(msg),
            _ => tonic::Status::invalid_argument(msg),
        }
    }
}

impl From<tonic::Status> for ApogeeError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code as G;
        let m = s.message().to_string();
        match s.code() {
            G::NotFound => ApogeeError::TopicNotFound(m),
            G::AlreadyExists => ApogeeError::AlreadyExists(m),
            G::InvalidArgument | G::OutOfRange => ApogeeError::BadRequest(m),
            G::FailedPrecondition => ApogeeError::PreconditionFailed(m),
            G::Unauthenticated => ApogeeError::Unauthorized(m),
            G::PermissionDenied => ApogeeError::Forbidden(m),
            G::Unimplemented => ApogeeError::NotImplemented(m),
            G::ResourceExhausted => ApogeeError::TooManyRequests(m),
            G::DeadlineExceeded => ApogeeError::RequestTimeout(m),
            G::Unavailable => ApogeeError::Unavailable(m),
            _ => ApogeeError::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_through_its_protocol_status() {
        let cases = [
            ApogeeError::IllegalTopic("x".into()),
            ApogeeError::TopicNotFound("t".into()),
            ApogeeError::InvalidReceiptHandle("h".into()),
            ApogeeError::MessageBodyEmpty,
            ApogeeError::NotImplemented("EndTransaction".into()),
            ApogeeError::Forbidden("system topic".into()),
            ApogeeError::Unauthorized("unknown access key".into()),
            ApogeeError::InvalidTransactionId("unknown".into()),
            ApogeeError::PreconditionFailed("rolled back".into()),
            ApogeeError::NotReplicated("no slave in sync".into()),
            ApogeeError::SlavePersistenceTimeout("3 s".into()),
        ];
        for e in cases {
            let back = ApogeeError::from_status(&e.to_status()).expect("error status");
            assert_eq!(back.code(), e.code(), "{e}");
        }
        assert!(ApogeeError::from_status(&ok_status()).is_none());
    }

    #[test]
    fn credential_errors_are_unauthorized_and_permissions_forbidden() {
        let e = ApogeeError::Unauthorized("bad signature".into());
        assert_eq!(e.code() as i32, 40100);
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::Unauthenticated);
        let e = ApogeeError::Forbidden("not an admin".into());
        assert_eq!(e.code() as i32, 40300);
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::PermissionDenied);
        let back = ApogeeError::from(tonic::Status::unauthenticated("x"));
        assert_eq!(back, ApogeeError::Unauthorized("x".into()));
    }

    #[test]
    fn size_errors_use_their_specific_codes() {
        let e = ApogeeError::MessageBodyTooLarge { size: 5, limit: 4 };
        assert_eq!(e.code() as i32, 41301);
        assert_eq!(ApogeeError::MessageBodyEmpty.code() as i32, 41302);
        assert_eq!(
            ApogeeError::InvalidReceiptHandle(String::new()).code() as i32,
            40013
        );
        assert_eq!(
            ApogeeError::NotReplicated(String::new()).code() as i32,
            50002
        );
        assert_eq!(
            ApogeeError::SlavePersistenceTimeout(String::new()).code() as i32,
            50402
        );
    }

    #[test]
    fn an_internal_error_keeps_its_cause_and_answers_as_a_flattened_one() {
        #[derive(Debug, thiserror::Error)]
        #[error("index write: {0}")]
        struct IndexWrite(#[source] std::io::Error);
        let cause = || IndexWrite(std::io::Error::other("disk gone"));
        let kept = ApogeeError::internal(cause());
        let flat = ApogeeError::Internal(cause().to_string());

        // What a client sees: the same status, code and message on every protocol.
        assert_eq!(kept.to_status(), flat.to_status());
        let (g_kept, g_flat) = (
            tonic::Status::from(kept.clone()),
            tonic::Status::from(flat.clone()),
        );
        assert_eq!(
            (g_kept.code(), g_kept.message()),
            (g_flat.code(), g_flat.message())
        );
        assert_eq!(
            crate::remoting::codes::response_code_of(&kept),
            crate::remoting::codes::response_code_of(&flat)
        );
        assert_eq!(kept.is_retryable(), flat.is_retryable());

        // What the log and the code get: the chain, down to the I/O error.
        use std::error::Error;
        assert!(flat.source().is_none());
        let first = kept.source().expect("the cause");
        assert_eq!(first.to_string(), "index write: disk gone");
        let ApogeeError::InternalCause(c) = &kept else {
            panic!("{kept:?}")
        };
        assert!(c.get().downcast_ref::<IndexWrite>().is_some());
        let io = first.source().expect("the cause's cause");
        assert_eq!(
            io.downcast_ref::<std::io::Error>().map(|e| e.to_string()),
            Some("disk gone".to_string())
        );
    }

    #[test]
    fn an_internal_error_says_what_was_being_done_and_keeps_its_cause() {
        use std::error::Error;
        let io = std::io::Error::other("disk gone");
        let e = ApogeeError::internal_in("persisting topic t", io);
        assert_eq!(
            e.to_string(),
            "internal error: persisting topic t: disk gone"
        );
        assert_eq!(e.code(), Code::InternalError);
        let doing = e.source().expect("what was being done");
        let cause = doing.source().expect("the cause");
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
    }
}

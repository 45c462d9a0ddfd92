//! Request and response codes of the remoting protocol, with RocketMQ's numbers (its
//! `RequestCode` and `ResponseCode`): only those Apogee serves, sends or answers with.

/// Request codes.
pub mod request {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const UPDATE_BROKER_CONFIG: i32 = 25;
    pub const GET_BROKER_CONFIG: i32 = 26;
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub const HEART_BEAT: i32 = 34;
    pub const UNREGISTER_CLIENT: i32 = 35;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const END_TRANSACTION: i32 = 37;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// Broker to producer: ask a transaction's outcome.
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// Broker to consumer: the group's members changed, rebalance now.
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    pub const LOCK_BATCH_MQ: i32 = 41;
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    pub const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
    pub const GET_CONSUME_STATS: i32 = 208;
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const GET_TOPIC_CONFIG: i32 = 351;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    /// PULL_MESSAGE's header under another code: the Java client's DefaultLitePullConsumer
    /// (`enableStreamRequestType`) pulls with it.
    pub const LITE_PULL_MESSAGE: i32 = 361;
    pub const GET_KV_CONFIG: i32 = 101;
    pub const QUERY_ASSIGNMENT: i32 = 400;
    pub const POP_MESSAGE: i32 = 200_050;
    pub const ACK_MESSAGE: i32 = 200_051;
    pub const CHANGE_MESSAGE_INVISIBLETIME: i32 = 200_053;
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    pub const DELETE_SUBSCRIPTIONGROUP: i32 = 207;
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    /// A broker's push to a consumer: its group's offsets on a topic were moved (the body
    /// names the new ones).
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
}

/// Response codes.
pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const TRANSACTION_FAILED: i32 = 4;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const VERSION_NOT_SUPPORTED: i32 = 15;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    pub const INVALID_PARAMETER: i32 = 29;
    pub const TRANSACTION_SHOULD_COMMIT: i32 = 200;
    pub const TRANSACTION_SHOULD_ROLLBACK: i32 = 201;
    pub const TRANSACTION_STATE_UNKNOW: i32 = 202;
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    pub const NO_MESSAGE: i32 = 208;
    pub const POLLING_FULL: i32 = 209;
    pub const POLLING_TIMEOUT: i32 = 210;
    pub const FLOW_CONTROL: i32 = 215;
}

/// The sender's language as the header names it (JSON: the name; binary header: the number).
pub const LANGUAGES: &[(&str, u8)] = &[
    ("JAVA", 0),
    ("CPP", 1),
    ("DOTNET", 2),
    ("PYTHON", 3),
    ("DELPHI", 4),
    ("ERLANG", 5),
    ("RUBY", 6),
    ("OTHER", 7),
    ("HTTP", 8),
    ("GO", 9),
    ("PHP", 10),
    ("OMS", 11),
    ("RUST", 12),
    ("NODE_JS", 13),
];

/// Apogee's own version number in responses (RocketMQ's `MQVersion` of 4.9.x: the clients
/// read it only for features newer than that).
pub const SERVER_VERSION: i32 = 401;

/// The response code a remoting client reads for `error` (the request's own handler may
/// pick a more specific one: PULL_NOT_FOUND, QUERY_NOT_FOUND).
pub fn response_code_of(error: &crate::ApogeeError) -> i32 {
    use crate::ApogeeError as E;
    match error {
        E::TopicNotFound(_) => response::TOPIC_NOT_EXIST,
        E::ConsumerGroupNotFound(_) => response::SUBSCRIPTION_GROUP_NOT_EXIST,
        E::MessageNotFound(_) | E::OffsetNotFound(_) => response::QUERY_NOT_FOUND,
        E::Unauthorized(_) | E::Forbidden(_) => response::NO_PERMISSION,
        E::IllegalFilterExpression(_) => response::SUBSCRIPTION_PARSE_FAILED,
        E::IllegalTopic(_)
        | E::IllegalTag(_)
        | E::IllegalKey(_)
        | E::IllegalMessageGroup(_)
        | E::IllegalProperty(_)
        | E::IllegalMessageId(_)
        | E::IllegalLiteTopic(_)
        | E::IllegalDeliveryTime(_)
        | E::MessageTypeConflict(_)
        | E::MessagePropertiesTooLarge(_)
        | E::PayloadTooLarge(_)
        | E::MessageBodyEmpty
        | E::MessageBodyTooLarge { .. } => response::MESSAGE_ILLEGAL,
        E::BadRequest(_)
        | E::ClientIdRequired
        | E::IllegalConsumerGroup(_)
        | E::IllegalInvisibleTime(_)
        | E::IllegalPollingTime(_)
        | E::IllegalOffset(_)
        | E::InvalidTransactionId(_)
        | E::InvalidReceiptHandle(_)
        | E::PreconditionFailed(_) => response::INVALID_PARAMETER,
        E::TooManyRequests(_)
        | E::LiteTopicQuotaExceeded(_)
        | E::LiteSubscriptionQuotaExceeded(_) => response::SYSTEM_BUSY,
        E::NotImplemented(_) | E::Unsupported(_) => response::REQUEST_CODE_NOT_SUPPORTED,
        E::MasterPersistenceTimeout(_) => response::FLUSH_DISK_TIMEOUT,
        E::SlavePersistenceTimeout(_) | E::NotReplicated(_) => response::FLUSH_SLAVE_TIMEOUT,
        E::Unavailable(_) => response::SERVICE_NOT_AVAILABLE,
        E::AlreadyExists(_)
        | E::RequestTimeout(_)
        | E::StorageFull(_)
        | E::Internal(_)
        | E::InternalCause(_) => response::SYSTEM_ERROR,
    }
}

/// The error a remoting client reads from a response's `code` and `remark` (`None` for
/// SUCCESS): the inverse of [`response_code_of`] for the codes a send, a route lookup or an
/// admin request answers with. FLUSH_SLAVE_TIMEOUT is "stored on the master, not
/// replicated" ([`crate::ApogeeError::NotReplicated`]), never a reason to resend.
pub fn error_of(code: i32, remark: &str) -> Option<crate::ApogeeError> {
    use crate::ApogeeError as E;
    let text = remark.to_string();
    Some(match code {
        response::SUCCESS => return None,
        response::TOPIC_NOT_EXIST => E::TopicNotFound(text),
        response::SUBSCRIPTION_GROUP_NOT_EXIST => E::ConsumerGroupNotFound(text),
        response::QUERY_NOT_FOUND => E::MessageNotFound(text),
        response::NO_PERMISSION => E::Forbidden(text),
        response::SUBSCRIPTION_PARSE_FAILED => E::IllegalFilterExpression(text),
        response::MESSAGE_ILLEGAL | response::INVALID_PARAMETER => E::BadRequest(text),
        response::SYSTEM_BUSY | response::FLOW_CONTROL => E::TooManyRequests(text),
        response::REQUEST_CODE_NOT_SUPPORTED | response::VERSION_NOT_SUPPORTED => {
            E::Unsupported(text)
        }
        response::FLUSH_DISK_TIMEOUT => E::MasterPersistenceTimeout(text),
        response::FLUSH_SLAVE_TIMEOUT => E::NotReplicated(text),
        response::SERVICE_NOT_AVAILABLE | response::SLAVE_NOT_AVAILABLE => E::Unavailable(text),
        other => E::Internal(format!("remoting response code {other}: {remark}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApogeeError as E;

    #[test]
    fn a_response_code_reads_back_as_the_error_that_answers_with_it() {
        let errors = [
            E::TopicNotFound("t".into()),
            E::ConsumerGroupNotFound("g".into()),
            E::Forbidden("f".into()),
            E::BadRequest("b".into()),
            E::TooManyRequests("busy".into()),
            E::Unsupported("u".into()),
            E::MasterPersistenceTimeout("m".into()),
            E::NotReplicated("n".into()),
            E::Unavailable("a".into()),
            E::IllegalFilterExpression("x".into()),
            E::MessageNotFound("q".into()),
        ];
        for error in errors {
            let code = response_code_of(&error);
            let read = error_of(code, "why").expect("an error code");
            assert_eq!(response_code_of(&read), code, "{error:?} read as {read:?}");
        }
        assert!(error_of(response::SUCCESS, "").is_none());
        let unknown = error_of(9_999, "what").unwrap();
        assert!(unknown.to_string().contains("9999"), "{unknown}");
    }
}

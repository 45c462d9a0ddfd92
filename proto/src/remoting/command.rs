//! One remoting frame, decoded: [`RemotingCommand`].

use super::codes;
use super::ExtFields;
use bytes::Bytes;
use std::borrow::Cow;

/// How a frame's header is encoded (the top byte of the frame's second int32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Serialization {
    /// 0: a JSON object (`code`, `language`, `version`, `opaque`, `flag`, `remark`,
    /// `extFields`).
    #[default]
    Json,
    /// 1: RocketMQ's own binary header.
    Binary,
}

/// Flag bit of a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit of a oneway request (no response is sent).
pub const FLAG_ONEWAY: i32 = 2;

/// A request or a response, as one frame carries it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemotingCommand {
    /// The request code ([`codes::request`]) or the response code ([`codes::response`]).
    pub code: i32,
    /// The sender's language by name (`JAVA`, `RUST`, `GO`, ...; [`codes::LANGUAGES`]):
    /// one of those names, not a copy, for a binary header and for Apogee's own frames.
    pub language: Cow<'static, str>,
    /// The sender's version number (RocketMQ's `MQVersion` ordinal).
    pub version: i32,
    /// Pairs a response with its request: a response carries its request's.
    pub opaque: i32,
    /// [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// A response's message (an error's reason).
    pub remark: Option<String>,
    /// The request's (or response's) named arguments, sorted by name.
    pub ext_fields: ExtFields,
    /// The serialization the header was read in (a response is written in its request's).
    pub serialization: Serialization,
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request with `code`, Apogee's language and version.
    pub fn request(code: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: Cow::Borrowed("RUST"),
            version: codes::SERVER_VERSION,
            ..RemotingCommand::default()
        }
    }

    /// The response to `request` with `code` and `remark`: its opaque and serialization.
    pub fn response_to(
        request: &RemotingCommand,
        code: i32,
        remark: Option<String>,
    ) -> RemotingCommand {
        RemotingCommand {
            code,
            language: Cow::Borrowed("RUST"),
            version: codes::SERVER_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            serialization: request.serialization,
            body: Bytes::new(),
        }
    }

    /// A SUCCESS response to `request`.
    pub fn success(request: &RemotingCommand) -> RemotingCommand {
        Self::response_to(request, codes::response::SUCCESS, None)
    }

    /// The response refusing `request` for `error`: its remoting code
    /// ([`codes::response_code_of`]) with its text as the reason. An internal error is logged
    /// with its causes ([`ApogeeError::log_if_internal`]).
    pub fn refusal(request: &RemotingCommand, error: &crate::ApogeeError) -> Self {
        error.log_if_internal();
        Self::error(request, codes::response_code_of(error), error.to_string())
    }

    /// An error response to `request`: `code` with `remark` as its reason.
    pub fn error(request: &RemotingCommand, code: i32, remark: impl Into<String>) -> Self {
        Self::response_to(request, code, Some(remark.into()))
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// An extension field by name.
    pub fn ext(&self, name: &str) -> Option<&str> {
        self.ext_fields.get(name)
    }

    /// Sets an extension field (builder style).
    pub fn with_ext(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.ext_fields.insert_display(name, value);
        self
    }

    /// Sets an extension field to a string (builder style), copied as it is.
    pub fn with_ext_str(mut self, name: &str, value: &str) -> Self {
        self.ext_fields.insert(name, value);
        self
    }

    /// Sets an extension field to a number (builder style), written without formatting.
    pub fn with_ext_int(mut self, name: &str, value: impl itoa::Integer) -> Self {
        self.ext_fields.insert_int(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

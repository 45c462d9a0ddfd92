//! Reading a request's extension fields (its arguments) into typed values, with the error a
//! client reads when one is missing or malformed (INVALID_PARAMETER, naming the field).

use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;

/// A request's argument that is missing or not of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadArgument(pub String);

impl BadArgument {
    /// The answer to `request` that names the argument.
    pub fn answer(&self, request: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::error(request, response::INVALID_PARAMETER, self.0.clone())
    }
}

/// A required string argument.
pub fn string<'a>(request: &'a RemotingCommand, name: &str) -> Result<&'a str, BadArgument> {
    request
        .ext(name)
        .ok_or_else(|| BadArgument(format!("the request lacks the field {name}")))
}

/// An optional argument parsed as `T` (absent or "null": `None`).
pub fn optional<T: std::str::FromStr>(
    request: &RemotingCommand,
    name: &str,
) -> Result<Option<T>, BadArgument> {
    match request.ext(name) {
        None | Some("null") => Ok(None),
        // ASCII whitespace only: numbers and flags, not text (and far cheaper than Unicode's).
        Some(v) => v
            .trim_ascii()
            .parse()
            .map(Some)
            .map_err(|_| BadArgument(format!("the field {name} = {v:?} is not valid"))),
    }
}

/// A required argument parsed as `T`.
pub fn required<T: std::str::FromStr>(
    request: &RemotingCommand,
    name: &str,
) -> Result<T, BadArgument> {
    optional(request, name)?
        .ok_or_else(|| BadArgument(format!("the request lacks the field {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_typed_and_errors_name_the_field() {
        let r = RemotingCommand::request(10)
            .with_ext("queueId", "3")
            .with_ext("flag", "x")
            .with_ext("sysFlag", "null");
        assert_eq!(required::<i32>(&r, "queueId"), Ok(3));
        assert_eq!(optional::<i32>(&r, "sysFlag"), Ok(None));
        assert!(required::<i32>(&r, "flag").unwrap_err().0.contains("flag"));
        assert!(required::<i32>(&r, "topic")
            .unwrap_err()
            .0
            .contains("topic"));
        let answer = BadArgument("x".into()).answer(&r);
        assert_eq!(answer.code, response::INVALID_PARAMETER);
        assert!(answer.is_response());
    }
}

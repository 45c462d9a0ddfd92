//! CHECK_CLIENT_CONFIG: what RocketMQ's Java push consumer asks before it starts with a
//! subscription that is not by tag (`checkClientInBroker`; a refusal stops its start): is the
//! expression one this broker can filter by? Answered SUCCESS, or SUBSCRIPTION_PARSE_FAILED
//! with the parser's reason, by the same parser a pull uses.

use super::pull::filter_of;
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use serde::Deserialize;

/// The request's JSON body (RocketMQ's `CheckClientRequestBody`); only what is checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckClient {
    #[serde(default)]
    subscription_data: Option<Subscription>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    #[serde(default)]
    expression_type: String,
    #[serde(default)]
    sub_string: String,
}

/// Answers CHECK_CLIENT_CONFIG.
pub fn check_client_config(request: &RemotingCommand) -> RemotingCommand {
    let body: CheckClient = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => {
            return RemotingCommand::error(
                request,
                response::INVALID_PARAMETER,
                format!("the body is not a client check: {e}"),
            )
        }
    };
    let Some(subscription) = body.subscription_data else {
        return RemotingCommand::success(request);
    };
    match filter_of(&subscription.expression_type, &subscription.sub_string) {
        Ok(_) => RemotingCommand::success(request),
        Err(e) => {
            RemotingCommand::error(request, response::SUBSCRIPTION_PARSE_FAILED, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::remoting::codes::request::CHECK_CLIENT_CONFIG;

    fn check(body: &str) -> RemotingCommand {
        check_client_config(
            &RemotingCommand::request(CHECK_CLIENT_CONFIG).with_body(body.to_string()),
        )
    }

    #[test]
    fn expressions_are_checked_by_the_pull_parser() {
        let sql = r#"{"clientId":"c","group":"g","subscriptionData":
            {"topic":"t","subString":"a > 1 AND b = 'x'","expressionType":"SQL92"}}"#;
        assert_eq!(check(sql).code, response::SUCCESS);
        let tags =
            r#"{"group":"g","subscriptionData":{"subString":"a || b","expressionType":"TAG"}}"#;
        assert_eq!(check(tags).code, response::SUCCESS);
        let bad = r#"{"subscriptionData":{"subString":"a >","expressionType":"SQL92"}}"#;
        let answer = check(bad);
        assert_eq!(answer.code, response::SUBSCRIPTION_PARSE_FAILED);
        assert!(answer.remark.is_some());
        let unknown = r#"{"subscriptionData":{"subString":"x","expressionType":"CLASS"}}"#;
        assert_eq!(check(unknown).code, response::SUBSCRIPTION_PARSE_FAILED);
        assert_eq!(check("not json").code, response::INVALID_PARAMETER);
    }
}

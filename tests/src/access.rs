//! Calls made as a user other than the harness's admin: raw messaging requests signed with a
//! user's credentials, and the CLI run with them (for the authorization tests).

use crate::cli::{self, CliOutput};
use crate::rpc;
use apogee_proto::auth::Credentials;
use apogee_proto::time;
use apogee_proto::v2;
use std::time::Duration;

/// `message` as a request signed with `user`'s credentials.
pub fn signed_as<T>(user: &Credentials, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    user.sign(request.metadata_mut());
    request
}

/// One message sent to `topic` on the broker at `addr` as `user`; the answer's status code.
pub async fn send_as(addr: &str, user: &Credentials, topic: &str, body: &str) -> i32 {
    let request = v2::SendMessageRequest {
        messages: vec![rpc::message(topic, 0, body.as_bytes().to_vec())],
    };
    let answer = rpc::messaging(addr)
        .send_message(signed_as(user, request))
        .await
        .expect("SendMessage transport error")
        .into_inner();
    rpc::code(answer.status.as_ref())
}

/// One ReceiveMessage (waiting at most `wait`) from `topic` for `group` on the broker at
/// `addr` as `user`: the messages and the status code.
pub async fn receive_as(
    addr: &str,
    user: &Credentials,
    group: &str,
    topic: &str,
    wait: Duration,
) -> (Vec<v2::Message>, i32) {
    let invisible = Some(time::duration(Duration::from_secs(30)));
    let request = rpc::receive_request(group, topic, 32, invisible, wait);
    let answer = rpc::messaging(addr)
        .receive_message(signed_as(user, request))
        .await;
    let (messages, status) = rpc::receive_contents(answer).await;
    (messages, status.map_or(-1, |s| s.code))
}

/// PullMessage of queue 0 of `topic` from offset 0 for `group` on the broker at `addr` as
/// `user`: the messages and the status code.
pub async fn pull_as(
    addr: &str,
    user: &Credentials,
    group: &str,
    topic: &str,
) -> (Vec<v2::Message>, i32) {
    let request = v2::PullMessageRequest {
        group: rpc::resource(group),
        message_queue: Some(v2::MessageQueue {
            topic: rpc::resource(topic),
            id: 0,
            permission: v2::Permission::ReadWrite as i32,
            broker: None,
            accept_message_types: vec![],
        }),
        offset: 0,
        batch_size: 64,
        filter_expression: Some(v2::FilterExpression {
            r#type: v2::FilterType::Tag as i32,
            expression: "*".into(),
        }),
        long_polling_timeout: Some(time::duration(Duration::ZERO)),
    };
    let mut stream = rpc::messaging(addr)
        .pull_message(signed_as(user, request))
        .await
        .expect("PullMessage transport error")
        .into_inner();
    let (mut messages, mut code) = (Vec::new(), -1);
    while let Some(item) = stream.message().await.expect("PullMessage stream error") {
        match item.content {
            Some(v2::pull_message_response::Content::Message(m)) => messages.push(m),
            Some(v2::pull_message_response::Content::Status(s)) => code = s.code,
            _ => {}
        }
    }
    (messages, code)
}

/// The CLI against the NameServer at `nameserver`, signing with `user`'s credentials.
pub fn cli_as(nameserver: &str, user: &Credentials, args: &[&str]) -> CliOutput {
    let mut full = vec![
        "--nameserver",
        nameserver,
        "--access-key",
        user.access_key(),
        "--secret-key",
        user.secret_key(),
    ];
    full.extend_from_slice(args);
    cli::run(&full)
}

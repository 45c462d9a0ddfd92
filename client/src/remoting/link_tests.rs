//! The connection against a scripted server on a real socket.

use super::*;
use apogee_proto::remoting::codes::request as code;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(5);

/// A server that answers each request with `reply(request)` (None: no answer), until
/// `close_after` requests were read (then it closes the connection).
async fn server(
    reply: impl Fn(&RemotingCommand) -> Option<RemotingCommand> + Send + 'static,
    close_after: usize,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut io, _)) = listener.accept().await else {
                return;
            };
            let mut buf = BytesMut::new();
            let mut seen = 0;
            'conn: loop {
                while let Some(request) = frame::decode(&mut buf, &FrameLimits::default()).unwrap()
                {
                    seen += 1;
                    if let Some(answer) = reply(&request) {
                        let mut out = BytesMut::new();
                        frame::encode(&answer, &mut out).unwrap();
                        io.write_all(&out).await.unwrap();
                    }
                    if seen == close_after {
                        break 'conn;
                    }
                }
                if io.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    break;
                }
            }
        }
    });
    addr
}

fn echo_code(request: &RemotingCommand) -> Option<RemotingCommand> {
    let mut answer = RemotingCommand::success(request);
    answer.ext_fields = request.ext_fields.clone();
    Some(answer)
}

fn request(n: usize) -> RemotingCommand {
    RemotingCommand::request(code::SEND_MESSAGE_V2).with_ext("n", n)
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let addr = server(echo_code, usize::MAX).await;
    let link = Link::connect(&addr, WAIT, FrameLimits::default())
        .await
        .unwrap();
    let answers = futures::future::join_all((0..200).map(|n| {
        let link = &link;
        async move { (n, link.request(request(n), WAIT).await.unwrap()) }
    }))
    .await;
    for (n, answer) in answers {
        assert_eq!(answer.ext("n"), Some(n.to_string().as_str()));
    }
    assert!(link.shared.pending.lock().is_empty());
}

#[tokio::test]
async fn an_unanswered_request_times_out_and_the_link_stays_usable() {
    let addr = server(
        |r: &RemotingCommand| (r.ext("n") != Some("0")).then(|| echo_code(r)).flatten(),
        usize::MAX,
    )
    .await;
    let link = Link::connect(&addr, WAIT, FrameLimits::default())
        .await
        .unwrap();
    let e = link
        .request(request(0), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout), "{e}");
    assert!(
        link.shared.pending.lock().is_empty(),
        "a timed-out request is forgotten"
    );
    let answer = link.request(request(1), WAIT).await.unwrap();
    assert_eq!(answer.ext("n"), Some("1"));
}

#[tokio::test]
async fn a_closed_connection_fails_its_requests_and_is_dialled_again() {
    // The server reads two requests, answers the first only, and closes.
    let addr = server(
        |r: &RemotingCommand| (r.ext("n") == Some("0")).then(|| echo_code(r)).flatten(),
        2,
    )
    .await;
    let links = Links::new(WAIT, FrameLimits::default());
    let link = links.get(&addr).await.unwrap();
    link.request(request(0), WAIT).await.unwrap();
    let e = link.request(request(1), WAIT).await.unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e}");
    assert!(link.is_closed());
    let again = links.get(&addr).await.unwrap();
    assert!(!Arc::ptr_eq(&link, &again), "a new connection");
    again.request(request(0), WAIT).await.unwrap();
}

#[tokio::test]
async fn a_request_from_the_server_is_answered_not_supported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let link = Link::connect(&addr, WAIT, FrameLimits::default())
        .await
        .unwrap();
    let (mut io, _) = listener.accept().await.unwrap();
    let mut out = BytesMut::new();
    let check = RemotingCommand::request(code::CHECK_TRANSACTION_STATE);
    frame::encode(
        &RemotingCommand {
            opaque: 77,
            ..check
        },
        &mut out,
    )
    .unwrap();
    io.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let answer = loop {
        if let Some(c) = frame::decode(&mut buf, &FrameLimits::default()).unwrap() {
            break c;
        }
        assert!(io.read_buf(&mut buf).await.unwrap() > 0);
    };
    assert!(answer.is_response());
    assert_eq!(answer.opaque, 77);
    assert_eq!(answer.code, response::REQUEST_CODE_NOT_SUPPORTED);
    drop(link);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let e = Links::new(WAIT, FrameLimits::default())
        .get(&addr)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ClientError::Transport(_)), "{e}");
}

//! Tests of the remoting transport through the real serve path: a loopback listener served
//! by [`crate::bootstrap::Bootstrap::serve`] with gRPC health and an echo
//! [`RemotingService`], and raw clients writing frames.

use super::*;
use crate::auth::guard::AuthLayer;
use crate::bootstrap::{layer_stack, Bootstrap};
use crate::net::Listener;
use crate::remoting::{Caller, RemotingFuture, RemotingSection};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::command::FLAG_RESPONSE;
use apogee_proto::remoting::Serialization;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const ECHO: i32 = 1;
/// Waits for a permit of the service's gate before answering.
const GATED: i32 = 2;
/// Asks the client (code 99) and answers with the client's remark.
const ASK_CLIENT: i32 = 3;
const MAX_FRAME: usize = 4096;

struct Echo {
    gate: Arc<Semaphore>,
    /// Codes of the calls started, in order (and "release" marks from the test).
    log: Arc<parking_lot::Mutex<Vec<String>>>,
    started: watch::Sender<usize>,
}

impl Echo {
    fn new() -> Arc<Echo> {
        Arc::new(Echo {
            gate: Arc::new(Semaphore::new(0)),
            log: Arc::default(),
            started: watch::channel(0).0,
        })
    }
}

impl RemotingService for Echo {
    fn call(
        &self,
        conn: &Arc<RemotingConnection>,
        _caller: Caller,
        request: RemotingCommand,
    ) -> RemotingFuture {
        self.log.lock().push(request.code.to_string());
        self.started.send_modify(|n| *n += 1);
        let gate = self.gate.clone();
        let conn = conn.clone();
        Box::pin(async move {
            match request.code {
                ECHO => Some(RemotingCommand::success(&request).with_body(request.body.clone())),
                GATED => {
                    gate.acquire().await.unwrap().forget();
                    Some(RemotingCommand::success(&request))
                }
                ASK_CLIENT => {
                    let asked = conn
                        .request(RemotingCommand::request(99), Duration::from_secs(30))
                        .await;
                    let remark = asked.map(|a| a.remark.unwrap_or_default());
                    Some(RemotingCommand::error(
                        &request,
                        response::SUCCESS,
                        remark.unwrap_or_else(|e| e.to_string()),
                    ))
                }
                code => Some(RemotingCommand::error(
                    &request,
                    response::REQUEST_CODE_NOT_SUPPORTED,
                    format!("request code {code} is not supported"),
                )),
            }
        })
    }
}

/// A server with gRPC health and `service` on one loopback port; stops when dropped.
async fn start(service: Arc<Echo>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    start_with_tls(service, None).await
}

async fn start_with_tls(
    service: Arc<Echo>,
    tls: Option<Arc<crate::tls::ServerTls>>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut bootstrap = Bootstrap::start(None, None, Duration::from_secs(30));
    let section = RemotingSection {
        enabled: true,
        listen: String::new(),
        vip_channel: false,
        max_frame_bytes: MAX_FRAME,
    };
    bootstrap.set_remoting(service, section, &AuthLayer::off());
    let registry = prometheus::Registry::new();
    let grpc = layer_stack(
        crate::ops::rpc_latency(&registry).unwrap(),
        false,
        &AuthLayer::off(),
        bootstrap.routes(),
    );
    let listener = Listener::bind("127.0.0.1:0").await.unwrap().with_tls(tls);
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bootstrap.serve(
        grpc,
        listener,
        async move {
            let _ = stopped.await;
        },
        || {},
        async {},
    ));
    (addr, stop)
}

struct Client {
    tcp: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            tcp: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, command: &RemotingCommand) {
        let mut out = BytesMut::new();
        frame::encode(command, &mut out).unwrap();
        self.tcp.write_all(&out).await.unwrap();
    }

    /// The next frame from the server (`None`: it closed the connection).
    async fn recv(&mut self) -> Option<RemotingCommand> {
        let limits = FrameLimits::with_max_frame(1 << 20);
        loop {
            if let Some(command) = frame::decode(&mut self.buf, &limits).unwrap() {
                return Some(command);
            }
            match tokio::time::timeout(Duration::from_secs(30), self.tcp.read_buf(&mut self.buf))
                .await
                .expect("the server answers or closes")
            {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn echo(&mut self, opaque: i32, body: &'static [u8]) {
        let mut request = RemotingCommand::request(ECHO).with_body(body);
        request.opaque = opaque;
        self.send(&request).await;
        let answer = self.recv().await.expect("an answer");
        assert_eq!((answer.opaque, answer.code), (opaque, response::SUCCESS));
        assert_eq!(&answer.body[..], body);
    }
}

fn request(code: i32, opaque: i32) -> RemotingCommand {
    let mut r = RemotingCommand::request(code);
    r.opaque = opaque;
    r
}

#[tokio::test]
async fn grpc_and_remoting_are_served_on_one_port() {
    let (addr, _stop) = start(Echo::new()).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");
    let mut client = Client::connect(addr).await;
    client.echo(7, b"json").await;
    // The binary header too, answered in it.
    let mut binary = request(ECHO, 8).with_body(&b"bin"[..]);
    binary.serialization = Serialization::Binary;
    client.send(&binary).await;
    let answer = client.recv().await.unwrap();
    assert_eq!(answer.serialization, Serialization::Binary);
    assert_eq!((answer.opaque, &answer.body[..]), (8, &b"bin"[..]));
}

#[tokio::test]
async fn a_waiting_call_does_not_hold_up_the_next_one_on_its_connection() {
    let echo = Echo::new();
    let (addr, _stop) = start(echo.clone()).await;
    let mut client = Client::connect(addr).await;
    client.send(&request(GATED, 1)).await;
    client.echo(2, b"past the waiting call").await;
    echo.gate.add_permits(1);
    let answer = client.recv().await.unwrap();
    assert_eq!((answer.opaque, answer.code), (1, response::SUCCESS));
}

#[tokio::test]
async fn a_pushed_request_is_answered_by_the_client() {
    let (addr, _stop) = start(Echo::new()).await;
    let mut client = Client::connect(addr).await;
    client.send(&request(ASK_CLIENT, 5)).await;
    let asked = client.recv().await.unwrap();
    assert_eq!(asked.code, 99);
    assert!(!asked.is_response());
    let mut reply = RemotingCommand::error(&asked, response::SUCCESS, "pong");
    reply.flag = FLAG_RESPONSE;
    client.send(&reply).await;
    let answer = client.recv().await.unwrap();
    assert_eq!(answer.opaque, 5);
    assert_eq!(answer.remark.as_deref(), Some("pong"));
}

#[tokio::test]
async fn a_oneway_request_gets_no_answer() {
    let echo = Echo::new();
    let (addr, _stop) = start(echo.clone()).await;
    let mut client = Client::connect(addr).await;
    let mut oneway = request(ECHO, 1);
    oneway.flag = apogee_proto::remoting::command::FLAG_ONEWAY;
    client.send(&oneway).await;
    // The next answer on the connection is the next request's.
    client.echo(2, b"after").await;
    assert_eq!(*echo.log.lock(), vec!["1", "1"], "both were served");
}

/// Raw bytes for each bad frame, and whether the server closes (else it answers `code`).
fn bad_frames() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut header_too_long = Vec::new();
    header_too_long.extend_from_slice(&10i32.to_be_bytes());
    header_too_long.extend_from_slice(&7u32.to_be_bytes());
    header_too_long.extend_from_slice(&[b'{'; 6]);
    let mut unknown_type = Vec::new();
    unknown_type.extend_from_slice(&6i32.to_be_bytes());
    unknown_type.extend_from_slice(&[9, 0, 0, 2, b'{', b'}']);
    // Only the length of a frame over the cap: the server refuses it from these 4 bytes.
    let oversize = ((MAX_FRAME + 1) as i32).to_be_bytes().to_vec();
    vec![
        ("truncated length", vec![0, 0], true),
        ("header longer than the frame", header_too_long, true),
        ("unknown serialization type", unknown_type, true),
        ("oversize frame", oversize, true),
    ]
}

#[tokio::test]
async fn bad_frames_close_their_connection_only() {
    let (addr, _stop) = start(Echo::new()).await;
    let mut bystander = Client::connect(addr).await;
    bystander.echo(1, b"before").await;
    for (n, (what, bytes, _)) in bad_frames().into_iter().enumerate() {
        let mut bad = Client::connect(addr).await;
        bad.tcp.write_all(&bytes).await.unwrap();
        if what == "truncated length" {
            bad.tcp.shutdown().await.unwrap();
        }
        assert!(bad.recv().await.is_none(), "{what}: the server closes");
        bystander.echo(n as i32 + 2, b"still served").await;
    }
    // An unknown code is the service's to answer; the connection stays.
    let mut client = Client::connect(addr).await;
    client.send(&request(12345, 40)).await;
    let answer = client.recv().await.unwrap();
    assert_eq!(
        (answer.opaque, answer.code),
        (40, response::REQUEST_CODE_NOT_SUPPORTED)
    );
    client.echo(41, b"same connection").await;
}

#[tokio::test]
async fn calls_in_flight_per_connection_are_capped() {
    let echo = Echo::new();
    let server = Arc::new(
        RemotingServer::new(
            echo.clone(),
            RemotingAuth::default(),
            FrameLimits::default(),
        )
        .with_max_in_flight(2),
    );
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let (_stop_tx, stop) = watch::channel(());
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    tokio::spawn(server.serve(server_io, &[], addr, addr, stop));
    let (mut reader, mut writer) = tokio::io::split(client_io);
    let mut out = BytesMut::new();
    for opaque in 1..=3 {
        frame::encode(&request(GATED, opaque), &mut out).unwrap();
    }
    frame::encode(&request(ECHO, 4), &mut out).unwrap();
    writer.write_all(&out).await.unwrap();
    let mut started = echo.started.subscribe();
    started.wait_for(|n| *n == 2).await.unwrap();
    echo.log.lock().push("release".into());
    echo.gate.add_permits(2);
    let mut buf = BytesMut::new();
    let mut answered = Vec::new();
    while !answered.contains(&4) {
        reader.read_buf(&mut buf).await.unwrap();
        while let Some(answer) = frame::decode(&mut buf, &FrameLimits::default()).unwrap() {
            answered.push(answer.opaque);
        }
    }
    // The third waiting call and the echo started only once places were free.
    assert_eq!(*echo.log.lock(), vec!["2", "2", "release", "2", "1"]);
    assert!(!answered.contains(&3), "{answered:?}");
}

#[tokio::test]
async fn under_tls_alpn_h2_is_grpc_and_a_client_without_alpn_is_remoting() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let files = crate::tls::ServerTlsFiles {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        client_ca_file: None,
    };
    std::fs::write(&files.cert_file, made.cert.pem()).unwrap();
    std::fs::write(&files.key_file, made.key_pair.serialize_pem()).unwrap();
    let tls = crate::tls::ServerTls::load(files).unwrap();
    let (addr, _stop) = start_with_tls(Echo::new(), Some(tls)).await;

    // gRPC: tonic offers ALPN h2.
    let client_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(made.cert.pem()))
        .domain_name("127.0.0.1");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(client_tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "SERVING");

    // Remoting: a TLS client that offers no ALPN at all.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(apogee_proto::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    assert!(config.alpn_protocols.is_empty());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let mut out = BytesMut::new();
    frame::encode(&request(ECHO, 3).with_body(&b"sealed"[..]), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let answer = loop {
        if let Some(answer) = frame::decode(&mut buf, &FrameLimits::default()).unwrap() {
            break answer;
        }
        assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
    };
    assert_eq!((answer.opaque, &answer.body[..]), (3, &b"sealed"[..]));
}

#[tokio::test]
async fn with_a_listener_of_its_own_remoting_is_served_there_only() {
    let mut bootstrap = Bootstrap::start(None, None, Duration::from_secs(30));
    let section = RemotingSection {
        enabled: true,
        listen: "127.0.0.1:0".into(),
        vip_channel: false,
        max_frame_bytes: MAX_FRAME,
    };
    bootstrap.set_remoting(Echo::new(), section, &AuthLayer::off());
    let own = bootstrap.bind_remoting().await.unwrap().expect("bound");
    let registry = prometheus::Registry::new();
    let grpc = layer_stack(
        crate::ops::rpc_latency(&registry).unwrap(),
        false,
        &AuthLayer::off(),
        bootstrap.routes(),
    );
    let listener = Listener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bootstrap.serve(
        grpc,
        listener,
        async move {
            let _ = stopped.await;
        },
        || {},
        async {},
    ));
    Client::connect(own).await.echo(1, b"own port").await;
    // The gRPC port is gRPC's only: a remoting frame there is no HTTP/2 and is closed.
    let mut on_grpc = Client::connect(grpc_addr).await;
    on_grpc.send(&request(ECHO, 2)).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), on_grpc.tcp.read_to_end(&mut rest))
        .await
        .expect("the gRPC server closes the connection");
    let mut buf = BytesMut::from(&rest[..]);
    assert!(
        !matches!(
            frame::decode(&mut buf, &FrameLimits::default()),
            Ok(Some(_))
        ),
        "no remoting answer on the gRPC port"
    );
}

//! End-to-end tests of `apogee_nameserver::serve` in-process: brokers
//! register over gRPC, clients query routes and exchange Telemetry settings,
//! topic administration fans out to a fake broker's Admin service, and the
//! server shuts down even with a Telemetry stream open.

use apogee_nameserver::{serve, NameServerConfig};
use apogee_proto::cluster::admin_client::AdminClient;
use apogee_proto::cluster::admin_server::{Admin, AdminServer};
use apogee_proto::cluster::registry_client::RegistryClient;
use apogee_proto::cluster::*;
use apogee_proto::v2::messaging_service_client::MessagingServiceClient;
use apogee_proto::v2::telemetry_command::Command;
use apogee_proto::v2::{self, Code, Permission};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

struct Running {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), apogee_nameserver::NameServerError>>,
}

impl Running {
    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            NameServerConfig::default(),
            listener.into(),
            None,
            None,
            async {
                let _ = rx.await;
            },
        ));
        Running {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn channel(&self) -> Channel {
        let uri = format!("http://{}", self.addr);
        for _ in 0..50 {
            if let Ok(c) = Channel::from_shared(uri.clone()).unwrap().connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nameserver did not come up on {}", self.addr);
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("nameserver shut down in time")
            .unwrap()
            .unwrap();
    }
}

fn register(
    broker: &str,
    id: i64,
    endpoint: &str,
    topics: Vec<TopicConfig>,
) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster_name: "DefaultCluster".into(),
        broker_name: broker.into(),
        broker_id: id,
        endpoint: endpoint.into(),
        role: if id == 0 {
            BrokerRole::AsyncMaster
        } else {
            BrokerRole::Slave
        } as i32,
        topics,
        data_version: 1,
        groups: vec![],
        ..Default::default()
    }
}

fn topic(name: &str, queues: i32) -> TopicConfig {
    TopicConfig {
        name: name.into(),
        queue_count: queues,
        permission: Permission::ReadWrite as i32,
        message_types: vec![v2::MessageType::Normal as i32],
        lite_expire_after_secs: 0,
    }
}

fn resource(name: &str) -> Option<v2::Resource> {
    Some(v2::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

#[tokio::test]
async fn accepted_connections_have_nodelay_and_keepalive() {
    let listener = apogee_server::net::Listener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (hook, seen_rx) = apogee_server::net::reporting_hook();
    let listener = listener.with_accept_hook(hook);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        NameServerConfig::default(),
        listener,
        None,
        None,
        async {
            let _ = rx.await;
        },
    ));
    let mut client = MessagingServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client
        .heartbeat(v2::HeartbeatRequest::default())
        .await
        .unwrap();
    let (nodelay, keepalive) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        nodelay,
        "the NameServer accepted a connection without TCP_NODELAY"
    );
    assert!(
        keepalive,
        "the NameServer accepted a connection without keepalive"
    );
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn registered_broker_shows_up_in_query_route() {
    let ns = Running::start().await;
    let ch = ns.channel().await;
    let mut registry = RegistryClient::new(ch.clone());
    let mut client = MessagingServiceClient::new(ch);

    let route = client
        .query_route(v2::QueryRouteRequest {
            topic: resource("orders"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.status.unwrap().code, Code::TopicNotFound as i32);

    registry
        .register_broker(register(
            "b1",
            0,
            "127.0.0.1:10911",
            vec![topic("orders", 2)],
        ))
        .await
        .unwrap();
    registry
        .register_broker(register(
            "b2",
            0,
            "localhost:10921",
            vec![topic("orders", 1)],
        ))
        .await
        .unwrap();

    let route = client
        .query_route(v2::QueryRouteRequest {
            topic: resource("orders"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.status.unwrap().code, Code::Ok as i32);
    assert_eq!(route.message_queues.len(), 3);
    assert!(route.message_queues.iter().any(|q| q.id == 0));

    let assignment = client
        .query_assignment(v2::QueryAssignmentRequest {
            topic: resource("orders"),
            group: resource("g"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(assignment.status.unwrap().code, Code::Ok as i32);
    assert_eq!(assignment.assignments.len(), 2);

    let hb = registry
        .broker_heartbeat(BrokerHeartbeatRequest {
            cluster_name: "DefaultCluster".into(),
            broker_name: "b1".into(),
            broker_id: 0,
            data_version: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.register_required);

    let err = registry
        .register_broker(register("b3", 0, "no-port", vec![]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let info = registry
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.groups.len(), 2);

    let send = client
        .send_message(v2::SendMessageRequest { messages: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(send.status.unwrap().code, Code::NotImplemented as i32);

    let mut receive = client
        .receive_message(v2::ReceiveMessageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = receive.next().await.unwrap().unwrap();
    assert!(matches!(
        first.content,
        Some(v2::receive_message_response::Content::Status(ref s)) if s.code == Code::NotImplemented as i32
    ));
    assert!(receive.next().await.is_none());

    ns.stop().await;
}

#[tokio::test]
async fn telemetry_answers_settings_and_shutdown_ends_the_stream() {
    let ns = Running::start().await;
    let mut client = MessagingServiceClient::new(ns.channel().await);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let settings = v2::Settings {
        client_type: Some(v2::ClientType::Producer as i32),
        pub_sub: Some(v2::settings::PubSub::Publishing(v2::Publishing::default())),
        ..Default::default()
    };
    tx.send(v2::TelemetryCommand {
        status: None,
        command: Some(Command::Settings(settings.clone())),
    })
    .await
    .unwrap();
    let mut replies = client
        .telemetry(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.next().await.unwrap().unwrap();
    assert_eq!(reply.status.unwrap().code, Code::Ok as i32);
    let Some(Command::Settings(s)) = reply.command else {
        panic!("settings expected")
    };
    let Some(v2::settings::PubSub::Publishing(p)) = s.pub_sub else {
        panic!("publishing expected")
    };
    assert_eq!(p.max_body_size, 4 * 1024 * 1024);
    assert!(s.backoff_policy.is_some());

    // A second settings update is answered on the same stream.
    tx.send(v2::TelemetryCommand {
        status: None,
        command: Some(Command::Settings(settings)),
    })
    .await
    .unwrap();
    assert!(replies.next().await.unwrap().is_ok());

    // Shutdown completes although the client keeps its side open.
    ns.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .expect("stream ended");
    assert!(end.is_none() || end.unwrap().is_err());
    drop(tx);
}

/// A broker's Admin service that records what it was asked.
#[derive(Default, Clone)]
struct FakeBroker {
    created: Arc<Mutex<Vec<TopicConfig>>>,
    deleted: Arc<Mutex<Vec<String>>>,
    resolved: Arc<Mutex<Vec<(String, bool)>>>,
    groups: Arc<Mutex<Vec<apogee_proto::cluster::GroupConfig>>>,
}

#[tonic::async_trait]
impl Admin for FakeBroker {
    async fn get_broker_status(
        &self,
        _r: Request<GetBrokerStatusRequest>,
    ) -> Result<Response<GetBrokerStatusResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn create_topic(
        &self,
        r: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let r = r.into_inner();
        assert!(r.broker_names.is_empty());
        self.created.lock().unwrap().push(r.topic.unwrap());
        Ok(Response::new(CreateTopicResponse {
            broker_names: vec![],
        }))
    }
    async fn update_topic(
        &self,
        _r: Request<UpdateTopicRequest>,
    ) -> Result<Response<UpdateTopicResponse>, Status> {
        Ok(Response::new(UpdateTopicResponse {
            broker_names: vec![],
        }))
    }
    async fn delete_topic(
        &self,
        r: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        self.deleted.lock().unwrap().push(r.into_inner().topic);
        Ok(Response::new(DeleteTopicResponse {
            broker_names: vec![],
        }))
    }
    async fn list_topics(
        &self,
        _r: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        Ok(Response::new(ListTopicsResponse { topics: vec![] }))
    }
    async fn topic_status(
        &self,
        _r: Request<apogee_proto::cluster::TopicStatusRequest>,
    ) -> Result<Response<apogee_proto::cluster::TopicStatusResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn list_transactions(
        &self,
        _r: Request<ListTransactionsRequest>,
    ) -> Result<Response<ListTransactionsResponse>, Status> {
        Ok(Response::new(ListTransactionsResponse {
            transactions: vec![TransactionInfo {
                transaction_id: "T1-from-the-fake".into(),
                broker_name: "b1".into(),
                ..Default::default()
            }],
        }))
    }
    async fn resolve_transaction(
        &self,
        r: Request<ResolveTransactionRequest>,
    ) -> Result<Response<ResolveTransactionResponse>, Status> {
        let r = r.into_inner();
        self.resolved
            .lock()
            .unwrap()
            .push((r.transaction_id.clone(), r.commit));
        Ok(Response::new(ResolveTransactionResponse {
            transaction: Some(TransactionInfo {
                transaction_id: r.transaction_id,
                ..Default::default()
            }),
        }))
    }
    async fn list_scheduled(
        &self,
        _r: Request<apogee_proto::cluster::ListScheduledRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListScheduledResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
    async fn list_lite_topics(
        &self,
        _r: Request<apogee_proto::cluster::ListLiteTopicsRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListLiteTopicsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
    async fn describe_lite_topic(
        &self,
        _r: Request<apogee_proto::cluster::DescribeLiteTopicRequest>,
    ) -> Result<Response<apogee_proto::cluster::DescribeLiteTopicResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
    // Message query and dead letters are covered by the integration tests with real brokers.
    async fn get_message(
        &self,
        _r: Request<apogee_proto::cluster::GetMessageRequest>,
    ) -> Result<Response<apogee_proto::cluster::GetMessageResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn find_messages(
        &self,
        _r: Request<apogee_proto::cluster::FindMessagesRequest>,
    ) -> Result<Response<apogee_proto::cluster::FindMessagesResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn read_queue(
        &self,
        _r: Request<apogee_proto::cluster::ReadQueueRequest>,
    ) -> Result<Response<apogee_proto::cluster::ReadQueueResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn list_dead_letters(
        &self,
        _r: Request<apogee_proto::cluster::ListDeadLettersRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListDeadLettersResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn resend_dead_letters(
        &self,
        _r: Request<apogee_proto::cluster::ResendDeadLettersRequest>,
    ) -> Result<Response<apogee_proto::cluster::ResendDeadLettersResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn create_group(
        &self,
        r: Request<apogee_proto::cluster::CreateGroupRequest>,
    ) -> Result<Response<apogee_proto::cluster::CreateGroupResponse>, Status> {
        let group = r.into_inner().group;
        self.groups.lock().unwrap().extend(group.clone());
        Ok(Response::new(apogee_proto::cluster::CreateGroupResponse {
            group,
            broker_names: vec![],
        }))
    }
    // The other group operations are covered by the integration tests with real brokers.
    async fn update_group(
        &self,
        _r: Request<apogee_proto::cluster::UpdateGroupRequest>,
    ) -> Result<Response<apogee_proto::cluster::UpdateGroupResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn delete_group(
        &self,
        _r: Request<apogee_proto::cluster::DeleteGroupRequest>,
    ) -> Result<Response<apogee_proto::cluster::DeleteGroupResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn list_groups(
        &self,
        _r: Request<apogee_proto::cluster::ListGroupsRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListGroupsResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn describe_group(
        &self,
        _r: Request<apogee_proto::cluster::DescribeGroupRequest>,
    ) -> Result<Response<apogee_proto::cluster::DescribeGroupResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn reset_group_offset(
        &self,
        _r: Request<apogee_proto::cluster::ResetGroupOffsetRequest>,
    ) -> Result<Response<apogee_proto::cluster::ResetGroupOffsetResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn list_clients(
        &self,
        _r: Request<apogee_proto::cluster::ListClientsRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListClientsResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn get_broker_config(
        &self,
        _r: Request<apogee_proto::cluster::GetBrokerConfigRequest>,
    ) -> Result<Response<apogee_proto::cluster::GetBrokerConfigResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn update_broker_config(
        &self,
        _r: Request<apogee_proto::cluster::UpdateBrokerConfigRequest>,
    ) -> Result<Response<apogee_proto::cluster::UpdateBrokerConfigResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn create_user(
        &self,
        _r: Request<apogee_proto::cluster::CreateUserRequest>,
    ) -> Result<Response<apogee_proto::cluster::AccessChangeResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn update_user(
        &self,
        _r: Request<apogee_proto::cluster::UpdateUserRequest>,
    ) -> Result<Response<apogee_proto::cluster::AccessChangeResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn delete_user(
        &self,
        _r: Request<apogee_proto::cluster::DeleteUserRequest>,
    ) -> Result<Response<apogee_proto::cluster::AccessChangeResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn list_users(
        &self,
        _r: Request<apogee_proto::cluster::ListUsersRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListUsersResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn grant(
        &self,
        _r: Request<apogee_proto::cluster::GrantRequest>,
    ) -> Result<Response<apogee_proto::cluster::AccessChangeResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn revoke(
        &self,
        _r: Request<apogee_proto::cluster::RevokeRequest>,
    ) -> Result<Response<apogee_proto::cluster::AccessChangeResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn list_acls(
        &self,
        _r: Request<apogee_proto::cluster::ListAclsRequest>,
    ) -> Result<Response<apogee_proto::cluster::ListAclsResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }

    async fn apply_access(
        &self,
        _r: Request<apogee_proto::cluster::ApplyAccessRequest>,
    ) -> Result<Response<apogee_proto::cluster::ApplyAccessResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn controller_status(
        &self,
        _r: Request<apogee_proto::cluster::ControllerStatusRequest>,
    ) -> Result<Response<apogee_proto::cluster::ControllerStatusResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn elect_master(
        &self,
        _r: Request<apogee_proto::cluster::ElectMasterRequest>,
    ) -> Result<Response<apogee_proto::cluster::ElectMasterResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
    async fn traffic_history(
        &self,
        _r: Request<apogee_proto::cluster::TrafficHistoryRequest>,
    ) -> Result<Response<apogee_proto::cluster::TrafficHistoryResponse>, Status> {
        Err(Status::unimplemented("fake broker"))
    }
}

#[tokio::test]
async fn create_topic_fans_out_to_the_master_and_updates_routes() {
    let broker = FakeBroker::default();
    let broker_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker_listener.local_addr().unwrap().to_string();
    let (broker_stop, broker_stopped) = oneshot::channel::<()>();
    let broker_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AdminServer::new(broker.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(broker_listener),
                async {
                    let _ = broker_stopped.await;
                },
            ),
    );

    let ns = Running::start().await;
    let ch = ns.channel().await;
    let mut registry = RegistryClient::new(ch.clone());
    let mut admin = AdminClient::new(ch.clone());
    let mut client = MessagingServiceClient::new(ch);

    let err = admin
        .create_topic(CreateTopicRequest {
            topic: Some(topic("orders", 0)),
            broker_names: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);

    registry
        .register_broker(register("b1", 0, &broker_addr, vec![]))
        .await
        .unwrap();
    let created = admin
        .create_topic(CreateTopicRequest {
            topic: Some(TopicConfig {
                name: "orders".into(),
                ..Default::default()
            }),
            broker_names: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.broker_names, vec!["b1".to_string()]);
    let sent = broker.created.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].queue_count, 8);

    let route = client
        .query_route(v2::QueryRouteRequest {
            topic: resource("orders"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(route.message_queues.len(), 8);

    let again = admin
        .create_topic(CreateTopicRequest {
            topic: Some(topic("orders", 4)),
            broker_names: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);

    let system = admin
        .create_topic(CreateTopicRequest {
            topic: Some(topic("%DLQ%g", 1)),
            broker_names: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(system.code(), tonic::Code::PermissionDenied);

    let listed = admin
        .list_topics(ListTopicsRequest {
            include_system: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.topics.len(), 1);

    admin
        .delete_topic(DeleteTopicRequest {
            topic: "orders".into(),
            broker_names: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        broker.deleted.lock().unwrap().as_slice(),
        ["orders".to_string()]
    );
    let missing = admin
        .delete_topic(DeleteTopicRequest {
            topic: "orders".into(),
            broker_names: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Transactions: listing asks every master; a resolve goes to the group its id names.
    let listed = admin
        .list_transactions(ListTransactionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.transactions.len(), 1);
    let id = apogee_proto::txn_id::new_transaction_id("b1");
    admin
        .resolve_transaction(ResolveTransactionRequest {
            transaction_id: id.clone(),
            commit: true,
        })
        .await
        .unwrap();
    assert_eq!(broker.resolved.lock().unwrap().as_slice(), [(id, true)]);
    let elsewhere = admin
        .resolve_transaction(ResolveTransactionRequest {
            transaction_id: apogee_proto::txn_id::new_transaction_id("gone"),
            commit: true,
        })
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), tonic::Code::Unavailable);
    let bad = admin
        .resolve_transaction(ResolveTransactionRequest {
            transaction_id: "not-an-id".into(),
            commit: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let forwarded = client
        .end_transaction(v2::EndTransactionRequest {
            transaction_id: "not-an-id".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        forwarded.status.unwrap().code,
        Code::InvalidTransactionId as i32
    );

    // Groups: a create reaches the master with the defaults filled in and is listed at once.
    let created = admin
        .create_group(apogee_proto::cluster::CreateGroupRequest {
            group: Some(apogee_proto::cluster::GroupConfig {
                name: "g1".into(),
                fifo: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.broker_names, vec!["b1".to_string()]);
    let sent = broker.groups.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].max_delivery_attempts, sent[0].fifo), (16, true));
    let listed = admin
        .list_groups(apogee_proto::cluster::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].broker_names, vec!["b1".to_string()]);
    let again = admin
        .create_group(apogee_proto::cluster::CreateGroupRequest {
            group: sent.first().cloned(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);

    ns.stop().await;
    let _ = broker_stop.send(());
    broker_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let ns = Running::start().await;
    let mut health = HealthClient::new(ns.channel().await);
    for service in [
        "",
        "apache.rocketmq.v2.MessagingService",
        "apogee.cluster.v1.Registry",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service}");
    }
    ns.stop().await;
}

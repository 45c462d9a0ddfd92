//! The NameServer's remoting answers, through [`RemotingService::call`] as the transport
//! calls it.

use super::*;
use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest, TopicConfig};
use apogee_proto::remoting::Serialization;
use std::time::Duration;
use tokio::sync::mpsc;

fn registry() -> Arc<Registry> {
    let reg = Registry::new(Duration::from_secs(120));
    let register = |cluster: &str, broker: &str, id: i64, topics: &[&str]| {
        reg.register(&RegisterBrokerRequest {
            cluster_name: cluster.into(),
            broker_name: broker.into(),
            broker_id: id,
            endpoint: format!("127.0.0.1:{}", 10911 + id),
            serves_remoting: true,
            role: if id == 0 {
                BrokerRole::AsyncMaster
            } else {
                BrokerRole::Slave
            } as i32,
            topics: topics
                .iter()
                .map(|t| TopicConfig {
                    name: t.to_string(),
                    queue_count: 2,
                    ..Default::default()
                })
                .collect(),
            data_version: 1,
            auto_create_queue_count: if broker == "broker-a" { 4 } else { 0 },
            ..Default::default()
        })
        .unwrap();
    };
    register("DefaultCluster", "broker-a", 0, &["orders", "%RETRY%g"]);
    register("DefaultCluster", "broker-a", 1, &["orders", "%RETRY%g"]);
    register("Other", "broker-z", 0, &["audit"]);
    Arc::new(reg)
}

async fn call(service: &NameServerRemoting, request: RemotingCommand) -> RemotingCommand {
    let (tx, _rx) = mpsc::channel(1);
    let addr = "127.0.0.1:1".parse().unwrap();
    let conn = Arc::new(RemotingConnection::new(1, addr, addr, tx));
    let answer = service
        .call(&conn, Caller::default(), request.clone())
        .await
        .expect("an answer");
    assert!(answer.is_response());
    assert_eq!(answer.opaque, request.opaque);
    assert_eq!(answer.serialization, request.serialization);
    answer
}

fn request(code: i32) -> RemotingCommand {
    RemotingCommand {
        opaque: 77,
        ..RemotingCommand::request(code)
    }
}

fn body(answer: &RemotingCommand) -> &str {
    std::str::from_utf8(&answer.body).unwrap()
}

#[tokio::test]
async fn a_topic_route_is_answered_in_rocketmq_json() {
    let service = NameServerRemoting::new(registry());
    let answer = call(
        &service,
        RemotingCommand {
            serialization: Serialization::Binary,
            ..request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "orders")
        },
    )
    .await;
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    assert_eq!(
        body(&answer),
        "{\"brokerDatas\":[{\"brokerAddrs\":{0:\"127.0.0.1:10911\",1:\"127.0.0.1:10912\"},\
         \"brokerName\":\"broker-a\",\"cluster\":\"DefaultCluster\",\
         \"enableActingMaster\":false}],\"filterServerTable\":{},\
         \"queueDatas\":[{\"brokerName\":\"broker-a\",\"perm\":6,\"readQueueNums\":2,\
         \"topicSysFlag\":0,\"writeQueueNums\":2}]}"
    );
    // A push consumer's retry topic has a route too.
    let retry = call(
        &service,
        request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "%RETRY%g"),
    )
    .await;
    assert_eq!(retry.code, response::SUCCESS);
}

#[tokio::test]
async fn an_unknown_topic_is_topic_not_exist_and_a_missing_topic_field_is_invalid() {
    let service = NameServerRemoting::new(registry());
    let answer = call(
        &service,
        request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "nope"),
    )
    .await;
    assert_eq!(answer.code, response::TOPIC_NOT_EXIST);
    assert!(answer.remark.unwrap().contains("nope"));
    assert!(answer.body.is_empty());
    let answer = call(&service, request(code::GET_ROUTEINFO_BY_TOPIC)).await;
    assert_eq!(answer.code, response::INVALID_PARAMETER);
    assert!(answer.remark.unwrap().contains("topic"));
}

#[tokio::test]
async fn the_default_topic_routes_to_the_groups_that_create_topics_on_send() {
    let service = NameServerRemoting::new(registry());
    let answer = call(
        &service,
        request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "TBW102"),
    )
    .await;
    assert_eq!(answer.code, response::SUCCESS);
    let text = body(&answer);
    assert!(
        text.contains(
            "\"queueDatas\":[{\"brokerName\":\"broker-a\",\"perm\":7,\"readQueueNums\":4,\
             \"topicSysFlag\":0,\"writeQueueNums\":4}]"
        ),
        "{text}"
    );
    assert!(!text.contains("broker-z"), "{text}");
}

#[tokio::test]
async fn cluster_info_names_every_group_and_cluster() {
    let service = NameServerRemoting::new(registry());
    let answer = call(&service, request(code::GET_BROKER_CLUSTER_INFO)).await;
    assert_eq!(answer.code, response::SUCCESS);
    assert_eq!(
        body(&answer),
        "{\"brokerAddrTable\":{\
         \"broker-a\":{\"brokerAddrs\":{0:\"127.0.0.1:10911\",1:\"127.0.0.1:10912\"},\
         \"brokerName\":\"broker-a\",\"cluster\":\"DefaultCluster\",\"enableActingMaster\":false},\
         \"broker-z\":{\"brokerAddrs\":{0:\"127.0.0.1:10911\"},\"brokerName\":\"broker-z\",\
         \"cluster\":\"Other\",\"enableActingMaster\":false}},\
         \"clusterAddrTable\":{\"DefaultCluster\":[\"broker-a\"],\"Other\":[\"broker-z\"]}}"
    );
}

#[tokio::test]
async fn topic_lists_show_user_topics_of_all_or_of_one_cluster() {
    let service = NameServerRemoting::new(registry());
    let all = call(&service, request(code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).await;
    assert_eq!(all.code, response::SUCCESS);
    assert_eq!(body(&all), r#"{"topicList":["audit","orders"]}"#);
    let one = call(
        &service,
        request(code::GET_TOPICS_BY_CLUSTER).with_ext("cluster", "Other"),
    )
    .await;
    assert_eq!(body(&one), r#"{"topicList":["audit"]}"#);
    let none = call(
        &service,
        request(code::GET_TOPICS_BY_CLUSTER).with_ext("cluster", "Unknown"),
    )
    .await;
    assert_eq!(body(&none), r#"{"topicList":[]}"#);
    let missing = call(&service, request(code::GET_TOPICS_BY_CLUSTER)).await;
    assert_eq!(missing.code, response::INVALID_PARAMETER);
}

#[tokio::test]
async fn kv_config_is_not_found_and_other_codes_are_not_supported() {
    let service = NameServerRemoting::new(registry());
    let kv = call(
        &service,
        request(code::GET_KV_CONFIG)
            .with_ext("namespace", "ORDER_TOPIC_CONFIG")
            .with_ext("key", "orders"),
    )
    .await;
    assert_eq!(kv.code, response::QUERY_NOT_FOUND);
    assert!(kv.remark.unwrap().contains("ORDER_TOPIC_CONFIG/orders"));
    // REGISTER_BROKER (103): RocketMQ brokers do not register here.
    let other = call(&service, request(103)).await;
    assert_eq!(other.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert!(other.remark.unwrap().contains("103"));
}

#[tokio::test]
async fn a_groups_retry_topic_is_listed_and_routed_to_the_brokers_holding_the_group() {
    let reg = Registry::new(Duration::from_secs(120));
    let register = |cluster: &str, broker: &str, groups: &[&str]| {
        reg.register(&RegisterBrokerRequest {
            cluster_name: cluster.into(),
            broker_name: broker.into(),
            broker_id: 0,
            endpoint: format!("{broker}:10911"),
            serves_remoting: true,
            role: BrokerRole::AsyncMaster as i32,
            topics: vec![TopicConfig {
                name: "orders".into(),
                queue_count: 4,
                ..Default::default()
            }],
            groups: groups
                .iter()
                .map(|g| apogee_proto::cluster::GroupConfig {
                    name: g.to_string(),
                    ..Default::default()
                })
                .collect(),
            data_version: 1,
            ..Default::default()
        })
        .unwrap();
    };
    // A group of gRPC consumers: no broker hosts its retry topic.
    register("DefaultCluster", "broker-a", &["grpc-readers"]);
    register("Other", "broker-z", &["audit-readers"]);
    let service = NameServerRemoting::new(Arc::new(reg));
    let route = call(
        &service,
        request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "%RETRY%grpc-readers"),
    )
    .await;
    assert_eq!(route.code, response::SUCCESS, "{:?}", route.remark);
    assert_eq!(
        body(&route),
        "{\"brokerDatas\":[{\"brokerAddrs\":{0:\"broker-a:10911\"},\
         \"brokerName\":\"broker-a\",\"cluster\":\"DefaultCluster\",\
         \"enableActingMaster\":false}],\"filterServerTable\":{},\
         \"queueDatas\":[{\"brokerName\":\"broker-a\",\"perm\":6,\"readQueueNums\":1,\
         \"topicSysFlag\":0,\"writeQueueNums\":1}]}"
    );
    let unknown = call(
        &service,
        request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "%RETRY%nobody"),
    )
    .await;
    assert_eq!(unknown.code, response::TOPIC_NOT_EXIST);

    let all = call(&service, request(code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).await;
    assert_eq!(
        body(&all),
        r#"{"topicList":["%RETRY%audit-readers","%RETRY%grpc-readers","orders"]}"#
    );
    let one = call(
        &service,
        request(code::GET_TOPICS_BY_CLUSTER).with_ext("cluster", "Other"),
    )
    .await;
    assert_eq!(
        body(&one),
        r#"{"topicList":["%RETRY%audit-readers","orders"]}"#
    );
}

#[tokio::test]
async fn a_deleted_topic_leaves_the_lists_for_an_admin_only() {
    use apogee_proto::auth::{Identity, Role};
    let service = NameServerRemoting::new(registry());
    let delete = |topic: &str| request(code::DELETE_TOPIC_IN_NAMESRV).with_ext("topic", topic);
    let user = Caller {
        identity: Some(Identity::User {
            access_key: "app".into(),
            role: Role::User,
        }),
        acls: None,
    };
    let (tx, _rx) = mpsc::channel(1);
    let addr = "127.0.0.1:1".parse().unwrap();
    let conn = Arc::new(RemotingConnection::new(1, addr, addr, tx));
    let refused = service.call(&conn, user, delete("orders")).await.unwrap();
    assert_eq!(refused.code, response::NO_PERMISSION);
    assert!(refused.remark.unwrap().contains("admin"));

    // Of another cluster: nothing forgotten.
    let elsewhere = call(&service, delete("orders").with_ext("clusterName", "Other")).await;
    assert_eq!(elsewhere.code, response::SUCCESS);
    let all = call(&service, request(code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).await;
    assert_eq!(body(&all), r#"{"topicList":["audit","orders"]}"#);

    let deleted = call(
        &service,
        delete("orders").with_ext("clusterName", "DefaultCluster"),
    )
    .await;
    assert_eq!(deleted.code, response::SUCCESS);
    let all = call(&service, request(code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER)).await;
    assert_eq!(body(&all), r#"{"topicList":["audit"]}"#);
    let route = call(
        &service,
        request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", "orders"),
    )
    .await;
    assert_eq!(route.code, response::TOPIC_NOT_EXIST);
    let missing = call(&service, request(code::DELETE_TOPIC_IN_NAMESRV)).await;
    assert_eq!(missing.code, response::INVALID_PARAMETER);
}

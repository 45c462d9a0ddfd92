//! Unit tests of the remoting clients' table and its requests over a broker built on the
//! in-memory index; [`Remote`] (a broker with one topic and a fake client connection whose
//! pushed frames the test reads) is shared with the pull and offset handlers' tests.

use super::*;
use crate::config::BrokerConfig;
use crate::services::Foundation;
use crate::topics::TopicConfig;
use apogee_proto::remoting::codes::request as code;
use tokio::sync::mpsc;

pub(crate) const TOPIC: &str = "orders";
pub(crate) const GROUP: &str = "readers";

/// A broker holding [`TOPIC`] (`queues` queues) and a way to open client connections.
pub(crate) struct Remote {
    _dir: tempfile::TempDir,
    pub broker: Arc<Broker>,
    next_conn: std::sync::atomic::AtomicU64,
}

/// A fake client connection and the frames the broker pushes to it.
pub(crate) struct Client {
    pub conn: Arc<RemotingConnection>,
    pub pushed: mpsc::Receiver<RemotingCommand>,
}

impl Client {
    /// The NOTIFY_CONSUMER_IDS_CHANGED groups pushed so far.
    pub fn notices(&mut self) -> Vec<String> {
        let mut groups = Vec::new();
        while let Ok(cmd) = self.pushed.try_recv() {
            assert_eq!(cmd.code, code::NOTIFY_CONSUMER_IDS_CHANGED);
            assert!(cmd.is_oneway());
            groups.push(cmd.ext("consumerGroup").unwrap().to_string());
        }
        groups
    }
}

pub(crate) fn remote(queues: u32) -> Remote {
    remote_with(queues, |_| {})
}

pub(crate) fn remote_with(queues: u32, adjust: impl FnOnce(&mut BrokerConfig)) -> Remote {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig {
        broker_name: "broker-a".into(),
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    config.store.segment_bytes = 1 << 20;
    config.store.preallocate_bytes = 0;
    adjust(&mut config);
    let base = Foundation::in_memory(&config).expect("store");
    let broker = Broker::build(config, base).expect("services");
    broker
        .topics()
        .create(TopicConfig::new(TOPIC, queues))
        .expect("topic created");
    Remote {
        _dir: dir,
        broker,
        next_conn: 1.into(),
    }
}

impl Remote {
    pub fn connect(&self) -> Client {
        let id = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        let peer = format!("127.0.0.1:{}", 40_000 + id).parse().unwrap();
        let local = "127.0.0.1:10911".parse().unwrap();
        Client {
            conn: Arc::new(RemotingConnection::new(id, peer, local, tx)),
            pushed: rx,
        }
    }

    /// A full heartbeat of `client_id` as a consumer of `groups` (each subscribing
    /// [`TOPIC`] with `expression`) and producer of "senders".
    pub fn beat(&self, c: &Client, client_id: &str, groups: &[&str], expression: &str) -> i32 {
        let consumers: Vec<_> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "groupName": g,
                    "consumeType": "CONSUME_PASSIVELY",
                    "messageModel": "CLUSTERING",
                    "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET",
                    "subscriptionDataSet": [{
                        "classFilterMode": false, "topic": TOPIC, "subString": expression,
                        "tagsSet": [], "codeSet": [], "subVersion": 7, "expressionType": "TAG"
                    }],
                    "unitMode": false
                })
            })
            .collect();
        let body = serde_json::json!({
            "clientID": client_id,
            "producerDataSet": [{"groupName": "senders"}],
            "consumerDataSet": consumers,
        });
        let mut request = RemotingCommand::request(code::HEART_BEAT).with_body(body.to_string());
        request.language = "JAVA".into();
        request.version = 399;
        heartbeat(&self.broker, &c.conn, &Caller::default(), &request).code
    }

    /// Stores `n` messages tagged `tag` in `queue` of [`TOPIC`] (ids `<tag>-<i>`).
    pub async fn store(&self, queue: u32, tag: &str, n: usize) {
        let msgs = (0..n)
            .map(|i| crate::store::NewMessage {
                topic: TOPIC.into(),
                queue_id: queue,
                message_id: format!("{tag}-{i}"),
                tag: Some(tag.into()),
                message_type: apogee_proto::v2::MessageType::Normal as u8,
                body: format!("body {i}").into(),
                ..crate::store::NewMessage::op_record(TOPIC, Vec::new())
            })
            .collect();
        self.broker.store().append(msgs).await.expect("stored");
    }

    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        let request = RemotingCommand::request(code::GET_CONSUMER_LIST_BY_GROUP)
            .with_ext("consumerGroup", group);
        let answer = consumer_list_by_group(&self.broker, &Caller::default(), &request);
        if answer.code != response::SUCCESS {
            return Vec::new();
        }
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        body["consumerIdList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

#[tokio::test]
async fn a_heartbeat_registers_the_client_with_its_groups_and_subscriptions() {
    let r = remote(2);
    let mut c = r.connect();
    assert_eq!(
        r.beat(&c, "c1@host", &[GROUP], "TagA || TagB"),
        response::SUCCESS
    );
    let listed = r.broker.remoting_clients().list();
    assert_eq!(listed.len(), 1);
    let client = &listed[0];
    assert_eq!(client.client_id, "c1@host");
    assert_eq!((client.language.as_str(), client.version), ("JAVA", 399));
    assert_eq!(client.peer, c.conn.peer());
    assert!(client.producer_groups.contains("senders"));
    let membership = &client.consumer_groups[GROUP];
    assert_eq!(membership.message_model, MessageModel::Clustering);
    assert_eq!(membership.consume_type, "CONSUME_PASSIVELY");
    assert_eq!(membership.consume_from_where, "CONSUME_FROM_FIRST_OFFSET");
    assert_eq!(membership.subscriptions[0].expression, "TagA || TagB");
    assert_eq!(membership.subscriptions[0].expression_type, "TAG");
    let sub = r
        .broker
        .remoting_clients()
        .subscription(GROUP, TOPIC)
        .unwrap();
    assert_eq!(sub.version, 7);
    // The unknown group was created on first use, with its retry topic.
    assert!(r.broker.groups().get(GROUP).is_some());
    assert_eq!(
        r.broker.topics().get("%RETRY%readers").map(|t| t.queues),
        Some(1)
    );
    assert_eq!(r.consumer_ids(GROUP), vec!["c1@host"]);
    let producers = r.broker.remoting_clients().producers_of("senders");
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].id(), c.conn.id());
    // Joining notified the group's members (itself).
    assert_eq!(c.notices(), vec![GROUP]);
    // The same heartbeat again changes nothing and notifies nobody.
    r.beat(&c, "c1@host", &[GROUP], "TagA || TagB");
    assert!(c.notices().is_empty());
}

#[tokio::test]
async fn members_joining_changing_leaving_and_closing_notify_the_group() {
    let r = remote(2);
    let mut a = r.connect();
    let mut b = r.connect();
    r.beat(&a, "a", &[GROUP], "*");
    assert_eq!(a.notices(), vec![GROUP]);
    r.beat(&b, "b", &[GROUP], "*");
    assert_eq!(a.notices(), vec![GROUP], "a member joined");
    assert_eq!(b.notices(), vec![GROUP]);
    assert_eq!(r.consumer_ids(GROUP), vec!["a", "b"]);

    r.beat(&b, "b", &[GROUP], "TagX");
    assert_eq!(a.notices(), vec![GROUP], "b changed its subscription");
    b.notices();

    let unregister = RemotingCommand::request(code::UNREGISTER_CLIENT)
        .with_ext("clientID", "b")
        .with_ext("producerGroup", "senders")
        .with_ext("consumerGroup", GROUP);
    assert_eq!(
        unregister_client(&r.broker, &b.conn, &unregister).code,
        response::SUCCESS
    );
    assert_eq!(a.notices(), vec![GROUP], "b left");
    assert_eq!(r.consumer_ids(GROUP), vec!["a"]);
    assert!(r
        .broker
        .remoting_clients()
        .list()
        .iter()
        .all(|c| c.client_id == "a"));

    r.beat(&b, "b", &[GROUP], "*");
    a.notices();
    connection_closed(&r.broker, &b.conn);
    assert_eq!(a.notices(), vec![GROUP], "b's connection closed");
    assert_eq!(r.consumer_ids(GROUP), vec!["a"]);

    connection_closed(&r.broker, &a.conn);
    let empty =
        RemotingCommand::request(code::GET_CONSUMER_LIST_BY_GROUP).with_ext("consumerGroup", GROUP);
    let answer = consumer_list_by_group(&r.broker, &Caller::default(), &empty);
    assert_eq!(answer.code, response::SYSTEM_ERROR, "no member left");
}

#[tokio::test]
async fn silent_clients_expire_and_their_groups_are_notified() {
    let r = remote(1);
    let mut a = r.connect();
    let b = r.connect();
    r.beat(&a, "a", &[GROUP], "*");
    r.beat(&b, "b", &[GROUP], "*");
    a.notices();
    let clients = r.broker.remoting_clients();
    let now = now_ms();
    let (gone, groups) = clients.expire(now + CLIENT_EXPIRY_MS / 2);
    assert!(gone.is_empty() && groups.is_empty(), "nobody is silent yet");
    let (gone, groups) = clients.expire(now + CLIENT_EXPIRY_MS + 1_000);
    assert_eq!(gone.len(), 2);
    assert_eq!(groups, vec![GROUP]);
    assert!(clients.list().is_empty());
    assert!(clients.consumers_of(GROUP).is_empty());
}

#[tokio::test]
async fn a_closed_connection_no_longer_counts_and_a_reconnect_replaces_it() {
    let r = remote(1);
    let old = r.connect();
    r.beat(&old, "a", &[GROUP], "*");
    old.conn.close();
    assert!(r.broker.remoting_clients().consumers_of(GROUP).is_empty());
    let fresh = r.connect();
    r.beat(&fresh, "a", &[GROUP], "*");
    let members = r.broker.remoting_clients().consumers_of(GROUP);
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].1.id(), fresh.conn.id());
    assert_eq!(
        r.broker.remoting_clients().list().len(),
        1,
        "the old entry went"
    );
}

#[tokio::test]
async fn a_heartbeat_without_subscriptions_keeps_the_last_ones() {
    let r = remote(1);
    let c = r.connect();
    r.beat(&c, "a", &[GROUP], "TagA");
    let body = serde_json::json!({
        "clientID": "a", "withoutSub": true,
        "consumerDataSet": [{"groupName": GROUP, "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": []}]
    });
    let request = RemotingCommand::request(code::HEART_BEAT).with_body(body.to_string());
    heartbeat(&r.broker, &c.conn, &Caller::default(), &request);
    let sub = r
        .broker
        .remoting_clients()
        .subscription(GROUP, TOPIC)
        .unwrap();
    assert_eq!(sub.expression, "TagA");
}

#[tokio::test]
async fn bad_heartbeats_are_refused_with_the_reason() {
    let r = remote(1);
    let c = r.connect();
    let answer = |body: String| {
        let request = RemotingCommand::request(code::HEART_BEAT).with_body(body);
        heartbeat(&r.broker, &c.conn, &Caller::default(), &request)
    };
    let not_json = answer("{not json".into());
    assert_eq!(not_json.code, response::INVALID_PARAMETER);
    let no_id = answer(r#"{"producerDataSet":[]}"#.into());
    assert_eq!(no_id.code, response::INVALID_PARAMETER);
    assert!(no_id.remark.unwrap().contains("clientID"));
    let groups: Vec<_> = (0..=MAX_GROUPS_PER_CLIENT)
        .map(|i| serde_json::json!({"groupName": format!("g{i}")}))
        .collect();
    let too_many =
        answer(serde_json::json!({"clientID": "x", "producerDataSet": groups}).to_string());
    assert_eq!(too_many.code, response::INVALID_PARAMETER);
    assert!(too_many.remark.unwrap().contains("at most"));
    let bad_group = answer(
        serde_json::json!({"clientID": "x", "consumerDataSet": [{"groupName": "a b"}]}).to_string(),
    );
    assert_eq!(bad_group.code, response::INVALID_PARAMETER);
    assert!(r.broker.remoting_clients().list().is_empty());
}

#[tokio::test]
async fn an_unknown_group_is_not_created_when_auto_creation_is_off() {
    let r = remote_with(1, |c| c.consume.auto_create_groups = false);
    let c = r.connect();
    assert_eq!(r.beat(&c, "a", &["strangers"], "*"), response::SUCCESS);
    assert!(r.broker.groups().get("strangers").is_none());
    assert!(r.broker.topics().get("%RETRY%strangers").is_none());
}

#[tokio::test]
async fn remoting_clients_are_listed_beside_grpc_ones_and_in_their_groups() {
    let r = remote(1);
    let consumer = r.connect();
    r.beat(&consumer, "c1", &[GROUP], "*");
    let producer = r.connect();
    let body = serde_json::json!({"clientID": "p1", "producerDataSet": [{"groupName": "senders"}]});
    let mut request = RemotingCommand::request(code::HEART_BEAT).with_body(body.to_string());
    request.language = "GO".into();
    request.version = 317;
    heartbeat(&r.broker, &producer.conn, &Caller::default(), &request);

    let listed = crate::grpc::admin_ops::list_clients(&r.broker).clients;
    let row = |id: &str| listed.iter().find(|c| c.client_id == id).unwrap().clone();
    let c1 = row("c1");
    assert_eq!(c1.kind, "push_consumer");
    assert_eq!(
        (c1.language.as_str(), c1.version.as_str()),
        ("JAVA", "remoting/399")
    );
    assert_eq!(c1.group, GROUP);
    assert_eq!(c1.topics, vec![TOPIC.to_string()]);
    assert_eq!(c1.address, consumer.conn.peer().to_string());
    assert_eq!(c1.connected_to, vec!["broker-a".to_string()]);
    let p1 = row("p1");
    assert_eq!((p1.kind.as_str(), p1.language.as_str()), ("producer", "GO"));
    assert_eq!(listed.len(), 2);

    let members = r.broker.remoting_clients().group_clients(GROUP, "broker-a");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client_id, "c1");
    assert_eq!(members[0].topics, vec![TOPIC.to_string()]);
}

#[tokio::test]
async fn live_members_subscriptions_are_listed_by_group_without_retry_topics() {
    let r = remote(2);
    let a = r.connect();
    let body = serde_json::json!({
        "clientID": "a",
        "consumerDataSet": [{"groupName": GROUP, "consumeType": "CONSUME_PASSIVELY",
            "messageModel": "CLUSTERING", "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
            "subscriptionDataSet": [
                {"topic": TOPIC, "subString": "*"},
                {"topic": format!("%RETRY%{GROUP}"), "subString": "*"}
            ]}]
    });
    let request = RemotingCommand::request(code::HEART_BEAT).with_body(body.to_string());
    heartbeat(&r.broker, &a.conn, &Caller::default(), &request);
    let b = r.connect();
    r.beat(&b, "b", &[GROUP, "others"], "*");
    let clients = r.broker.remoting_clients();
    let topics = std::collections::BTreeSet::from([TOPIC.to_string()]);
    assert_eq!(
        clients.subscribed_topics(),
        std::collections::BTreeMap::from([
            (GROUP.to_string(), topics.clone()),
            ("others".to_string(), topics),
        ])
    );
    b.conn.close();
    let groups: Vec<String> = clients.subscribed_topics().into_keys().collect();
    assert_eq!(
        groups,
        vec![GROUP],
        "a closed connection's groups no longer count"
    );
}

#[tokio::test]
async fn a_remoting_consumers_commits_and_subscriptions_are_its_lag() {
    let r = remote(2);
    let c = r.connect();
    r.beat(&c, "c1", &[GROUP], "*");
    r.store(0, "a", 5).await;
    r.store(1, "b", 3).await;
    let lag_of = |group: &str| {
        r.broker
            .lag_sources()
            .group_lag(group, &[])
            .unwrap()
            .into_iter()
            .map(|q| (q.lag(), q))
            .map(|(lag, q)| (q.topic, q.queue_id, q.consumer_offset, lag))
            .collect::<Vec<_>>()
    };
    let orders = |queue: u32, at: u64, lag: u64| (TOPIC.to_string(), queue, at, lag);
    // Subscribed, nothing committed: from the first message (not its retry topic).
    assert_eq!(lag_of(GROUP), vec![orders(0, 0, 5), orders(1, 0, 3)]);
    crate::consume::offsets::commit_offset(r.broker.store(), GROUP, TOPIC, 0, 2).unwrap();
    assert_eq!(lag_of(GROUP), vec![orders(0, 2, 3), orders(1, 0, 3)]);

    // A pull consumer that commits without heartbeats counts as well, in the metrics too.
    crate::consume::offsets::commit_offset(r.broker.store(), "pullers", TOPIC, 1, 3).unwrap();
    assert_eq!(lag_of("pullers"), vec![orders(0, 0, 5), orders(1, 3, 0)]);
    let groups: Vec<String> = r
        .broker
        .lag_sources()
        .all_lags()
        .unwrap()
        .into_iter()
        .map(|(group, _)| group)
        .collect();
    assert_eq!(groups, vec!["pullers".to_string(), GROUP.to_string()]);
}

//! The JSON bodies of the NameServer's remoting answers (a topic's route, the cluster, topic
//! lists), written as RocketMQ's NameServer writes them (fastjson): fields in name order,
//! `null` fields left out, and the keys of a map with integer keys written unquoted
//! (`"brokerAddrs":{0:"host:port"}`), the form every RocketMQ client parses (the Java
//! clients through fastjson, the Rust port's client by quoting such keys before it decodes).
//! Written by hand for that last reason: no JSON library writes an unquoted key.
//!
//! A route is also read back ([`TopicRouteData::from_json`], apogee-client's remoting
//! producer): the unquoted keys are quoted ([`quote_integer_keys`], also what `apogee config
//! import-state` reads RocketMQ's own files with), then serde_json decodes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// RocketMQ's permission bits (`PermName`).
pub mod perm {
    pub const INHERIT: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const READ: i32 = 4;
}

/// One broker group's queues of a topic (RocketMQ's `QueueData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    /// [`perm`] bits.
    pub perm: i32,
    pub topic_sys_flag: i32,
}

/// One broker group and its members' addresses by broker id, the master 0 (RocketMQ's
/// `BrokerData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    pub addrs: BTreeMap<i64, String>,
}

/// Where a topic's queues are (RocketMQ's `TopicRouteData`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicRouteData {
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    /// `brokerName:queues;...` of a topic whose order producers keep (absent otherwise).
    pub order_topic_conf: Option<String>,
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn queue_data(out: &mut String, q: &QueueData) {
    out.push_str("{\"brokerName\":");
    string(out, &q.broker_name);
    let _ = write!(
        out,
        ",\"perm\":{},\"readQueueNums\":{},\"topicSysFlag\":{},\"writeQueueNums\":{}}}",
        q.perm, q.read_queue_nums, q.topic_sys_flag, q.write_queue_nums
    );
}

fn broker_data(out: &mut String, b: &BrokerData) {
    out.push_str("{\"brokerAddrs\":{");
    for (i, (id, addr)) in b.addrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{id}:");
        string(out, addr);
    }
    out.push_str("},\"brokerName\":");
    string(out, &b.broker_name);
    out.push_str(",\"cluster\":");
    string(out, &b.cluster);
    // RocketMQ 5's field: clients of 5.x (and the Rust port's) require it.
    out.push_str(",\"enableActingMaster\":false}");
}

fn array<T>(out: &mut String, items: &[T], item: impl Fn(&mut String, &T)) {
    out.push('[');
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        item(out, it);
    }
    out.push(']');
}

impl TopicRouteData {
    /// The body of a GET_ROUTEINFO_BY_TOPIC answer.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"brokerDatas\":");
        array(&mut out, &self.broker_datas, broker_data);
        out.push_str(",\"filterServerTable\":{}");
        if let Some(conf) = &self.order_topic_conf {
            out.push_str(",\"orderTopicConf\":");
            string(&mut out, conf);
        }
        out.push_str(",\"queueDatas\":");
        array(&mut out, &self.queue_datas, queue_data);
        out.push('}');
        out
    }
}

/// Why a route's JSON was not read.
#[derive(Debug, thiserror::Error)]
#[error("a route that is not RocketMQ's TopicRouteData: {0}")]
pub struct RouteJsonError(String);

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueDataJson {
    broker_name: String,
    #[serde(default)]
    read_queue_nums: i32,
    #[serde(default)]
    write_queue_nums: i32,
    #[serde(default)]
    perm: i32,
    #[serde(default)]
    topic_sys_flag: i32,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BrokerDataJson {
    #[serde(default)]
    cluster: String,
    broker_name: String,
    #[serde(default)]
    broker_addrs: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopicRouteJson {
    #[serde(default)]
    queue_datas: Vec<QueueDataJson>,
    #[serde(default)]
    broker_datas: Vec<BrokerDataJson>,
    #[serde(default)]
    order_topic_conf: Option<String>,
}

/// `text` with every unquoted integer object key quoted (outside strings): fastjson writes
/// integer map keys bare (`{0:12}`), which no JSON parser reads.
pub fn quote_integer_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.char_indices().peekable();
    let (mut in_string, mut escaped) = (false, false);
    // Whether the last character outside a string opened an object or ended a member.
    let mut key_may_start = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if key_may_start && (c.is_ascii_digit() || c == '-') {
            let rest = &text[i..];
            let len = rest
                .find(|ch: char| !(ch.is_ascii_digit() || ch == '-'))
                .unwrap_or(rest.len());
            if rest[len..].trim_start().starts_with(':') {
                out.push('"');
                out.push_str(&rest[..len]);
                out.push('"');
                for _ in 1..len {
                    chars.next();
                }
                key_may_start = false;
                continue;
            }
        }
        match c {
            '"' => in_string = true,
            '{' | ',' => key_may_start = true,
            c if c.is_whitespace() => {}
            _ => key_may_start = false,
        }
        if c == '"' {
            key_may_start = false;
        }
        out.push(c);
    }
    out
}

impl TopicRouteData {
    /// Reads a GET_ROUTEINFO_BY_TOPIC answer's body (unquoted broker ids accepted).
    pub fn from_json(body: &[u8]) -> Result<TopicRouteData, RouteJsonError> {
        let text = std::str::from_utf8(body).map_err(|e| RouteJsonError(e.to_string()))?;
        let json: TopicRouteJson = serde_json::from_str(&quote_integer_keys(text))
            .map_err(|e| RouteJsonError(e.to_string()))?;
        let broker_datas = json
            .broker_datas
            .into_iter()
            .map(|b| {
                let addrs = b
                    .broker_addrs
                    .into_iter()
                    .map(|(id, addr)| {
                        id.parse::<i64>()
                            .map(|id| (id, addr))
                            .map_err(|_| RouteJsonError(format!("broker id {id:?}")))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(BrokerData {
                    cluster: b.cluster,
                    broker_name: b.broker_name,
                    addrs,
                })
            })
            .collect::<Result<_, RouteJsonError>>()?;
        Ok(TopicRouteData {
            queue_datas: json
                .queue_datas
                .into_iter()
                .map(|q| QueueData {
                    broker_name: q.broker_name,
                    read_queue_nums: q.read_queue_nums,
                    write_queue_nums: q.write_queue_nums,
                    perm: q.perm,
                    topic_sys_flag: q.topic_sys_flag,
                })
                .collect(),
            broker_datas,
            order_topic_conf: json.order_topic_conf,
        })
    }
}

/// The body of a GET_BROKER_CLUSTER_INFO answer (RocketMQ's `ClusterInfo`): every broker
/// group by name, and each cluster's broker names.
pub fn cluster_info(groups: &[BrokerData]) -> String {
    let mut by_name: BTreeMap<&str, &BrokerData> = BTreeMap::new();
    let mut clusters: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in groups {
        by_name.insert(&g.broker_name, g);
        let names = clusters.entry(&g.cluster).or_default();
        if !names.contains(&g.broker_name.as_str()) {
            names.push(&g.broker_name);
        }
    }
    let mut out = String::from("{\"brokerAddrTable\":{");
    for (i, (name, data)) in by_name.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, name);
        out.push(':');
        broker_data(&mut out, data);
    }
    out.push_str("},\"clusterAddrTable\":{");
    for (i, (cluster, names)) in clusters.iter_mut().enumerate() {
        if i > 0 {
            out.push(',');
        }
        names.sort_unstable();
        string(&mut out, cluster);
        out.push(':');
        array(&mut out, names, |out, n| string(out, n));
    }
    out.push_str("}}");
    out
}

/// The body of a topic-list answer (RocketMQ's `TopicList`).
pub fn topic_list(topics: &[String]) -> String {
    let mut out = String::from("{\"topicList\":");
    array(&mut out, topics, |out, t| string(out, t));
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(name: &str, addrs: &[(i64, &str)]) -> BrokerData {
        BrokerData {
            cluster: "DefaultCluster".into(),
            broker_name: name.into(),
            addrs: addrs.iter().map(|(i, a)| (*i, a.to_string())).collect(),
        }
    }

    #[test]
    fn a_route_is_written_as_fastjson_writes_it_with_unquoted_broker_ids() {
        let route = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: perm::READ | perm::WRITE,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![broker(
                "broker-a",
                &[(0, "10.0.0.1:10911"), (1, "10.0.0.2:10911")],
            )],
            order_topic_conf: None,
        };
        assert_eq!(
            route.to_json(),
            "{\"brokerDatas\":[{\"brokerAddrs\":{0:\"10.0.0.1:10911\",1:\"10.0.0.2:10911\"},\
             \"brokerName\":\"broker-a\",\"cluster\":\"DefaultCluster\",\
             \"enableActingMaster\":false}],\"filterServerTable\":{},\
             \"queueDatas\":[{\"brokerName\":\"broker-a\",\"perm\":6,\"readQueueNums\":4,\
             \"topicSysFlag\":0,\"writeQueueNums\":4}]}"
        );
        let ordered = TopicRouteData {
            order_topic_conf: Some("broker-a:4".into()),
            ..route
        };
        assert!(ordered.to_json().contains(
            ",\"filterServerTable\":{},\"orderTopicConf\":\"broker-a:4\",\"queueDatas\""
        ));
    }

    #[test]
    fn a_route_reads_back_as_written() {
        let route = TopicRouteData {
            queue_datas: vec![QueueData {
                broker_name: "broker-{a},1:\\\"x\"".into(),
                read_queue_nums: 8,
                write_queue_nums: 4,
                perm: perm::WRITE,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![
                broker(
                    "broker-{a},1:\\\"x\"",
                    &[(0, "10.0.0.1:10911"), (12, "[::1]:10911")],
                ),
                broker("broker-b", &[]),
            ],
            order_topic_conf: Some("broker-b:2".into()),
        };
        assert_eq!(
            TopicRouteData::from_json(route.to_json().as_bytes()).unwrap(),
            route
        );
        // With whitespace, quoted keys and negative ids, as other writers may send it.
        let spaced = "{ \"brokerDatas\" : [ { \"brokerAddrs\" : { 0 : \"a:1\", \"-1\": \"b:2\" },\
                      \"brokerName\": \"g\" } ], \"queueDatas\": [] }";
        let read = TopicRouteData::from_json(spaced.as_bytes()).unwrap();
        assert_eq!(
            read.broker_datas[0].addrs.get(&0).map(String::as_str),
            Some("a:1")
        );
        assert_eq!(
            read.broker_datas[0].addrs.get(&-1).map(String::as_str),
            Some("b:2")
        );
    }

    #[test]
    fn integer_keys_are_quoted_outside_strings_only() {
        assert_eq!(
            quote_integer_keys(r#"{0:1, "a{1:2}":{ 12 :"x,3:"}, -1:4}"#),
            r#"{"0":1, "a{1:2}":{ "12" :"x,3:"}, "-1":4}"#
        );
        // Values and already quoted keys are left alone.
        assert_eq!(
            quote_integer_keys(r#"{"0":[1,2],"b":3}"#),
            r#"{"0":[1,2],"b":3}"#
        );
    }

    #[test]
    fn a_body_that_is_not_a_route_is_an_error() {
        for bad in [
            "",
            "\"a string\"",
            "{\"queueDatas\":3}",
            "{\"brokerDatas\":[{\"brokerAddrs\":{x:\"a\"}}]}",
            "\u{0}",
        ] {
            assert!(
                TopicRouteData::from_json(bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        assert!(TopicRouteData::from_json(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            topic_list(&["a\"b".into(), "c\\d".into()]),
            r#"{"topicList":["a\"b","c\\d"]}"#
        );
        assert_eq!(topic_list(&[]), r#"{"topicList":[]}"#);
        assert_eq!(
            topic_list(&["a\nb\u{1}".into()]),
            r#"{"topicList":["a\nb\u0001"]}"#
        );
    }

    #[test]
    fn cluster_info_lists_groups_by_name_and_clusters_with_their_broker_names() {
        let mut other = broker("broker-c", &[(0, "h3:1")]);
        other.cluster = "Second".into();
        let body = cluster_info(&[
            broker("broker-b", &[(0, "h2:1")]),
            broker("broker-a", &[(0, "h1:1"), (2, "h1:2")]),
            other,
        ]);
        assert_eq!(
            body,
            "{\"brokerAddrTable\":{\
             \"broker-a\":{\"brokerAddrs\":{0:\"h1:1\",2:\"h1:2\"},\"brokerName\":\"broker-a\",\
             \"cluster\":\"DefaultCluster\",\"enableActingMaster\":false},\
             \"broker-b\":{\"brokerAddrs\":{0:\"h2:1\"},\"brokerName\":\"broker-b\",\
             \"cluster\":\"DefaultCluster\",\"enableActingMaster\":false},\
             \"broker-c\":{\"brokerAddrs\":{0:\"h3:1\"},\"brokerName\":\"broker-c\",\
             \"cluster\":\"Second\",\"enableActingMaster\":false}},\
             \"clusterAddrTable\":{\"DefaultCluster\":[\"broker-a\",\"broker-b\"],\
             \"Second\":[\"broker-c\"]}}"
        );
    }
}

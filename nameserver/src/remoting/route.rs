//! Routes as remoting clients read them ([`TopicRouteData`]), built from the broker table.
//!
//! Each broker group is one `QueueData` (the topic's queues on it, read = write, with
//! RocketMQ's permission bits) and one `BrokerData` listing its live members by broker id
//! (the master 0, slaves their ids) at their remoting addresses: the member's own remoting
//! listener when it registered one, else its gRPC endpoint (remoting shares that listener).
//! A client sends to the master only and pulls from the master, or from a slave while the
//! group has no master. Members that serve no remoting (`[remoting] enabled = false`) are left
//! out, and a group none of whose live members serves it has no queues in the route.
//!
//! Which topics have a route: the topics brokers host and the groups' retry and dead-letter
//! topics (a push consumer subscribes to its group's `%RETRY%` topic), never a lite topic's
//! queue or another internal topic. [`AUTO_CREATE_TOPIC`] (`TBW102`) is RocketMQ's route of
//! topics not created yet: every group whose master creates topics on send, with the queue
//! count it creates them with; a producer of a new topic sends there and the broker creates
//! the topic on that first send.

use super::json::{perm, BrokerData, QueueData, TopicRouteData};
use crate::registry::{Placement, Registry};
use apogee_proto::cluster::{BrokerGroup, BrokerMember, TopicConfig};
use apogee_proto::names;
use apogee_proto::v2::{MessageType, Permission};
use std::collections::BTreeMap;

/// RocketMQ's default topic: the route a producer sends a topic not created yet along.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// The route of `topic`, `None` when no live broker group hosts it (or it is a topic
/// remoting clients have no route to).
pub fn topic_route(registry: &Registry, topic: &str) -> Option<TopicRouteData> {
    if topic == AUTO_CREATE_TOPIC {
        return auto_create_route(&registry.cluster_info());
    }
    if !routable(topic) {
        return None;
    }
    route_of(&registry.route(topic)).or_else(|| {
        let group = topic.strip_prefix(names::RETRY_PREFIX)?;
        group_retry_route(registry, group)
    })
}

/// The route of consumer group `group`'s retry topic where no broker hosts it yet (a group
/// of gRPC consumers, or one created by an operator, has none until a message is retried):
/// the broker groups holding the group's config, one queue each, as RocketMQ's brokers make
/// it. RocketMQ's tools find a group's brokers along this route (`mqadmin consumerProgress`,
/// `consumerConnection`); `None` for a group no live broker holds.
fn group_retry_route(registry: &Registry, group: &str) -> Option<TopicRouteData> {
    let holders = registry.groups().remove(group)?.broker_names;
    let mut route = TopicRouteData::default();
    for broker_group in registry.cluster_info() {
        if !holders.contains(&broker_group.broker_name) {
            continue;
        }
        let Some(brokers) = broker_data(&broker_group) else {
            continue;
        };
        route.queue_datas.push(QueueData {
            broker_name: broker_group.broker_name.clone(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: perm::READ | perm::WRITE,
            topic_sys_flag: 0,
        });
        route.broker_datas.push(brokers);
    }
    (!route.queue_datas.is_empty()).then_some(route)
}

/// The retry topics of the consumer groups live brokers hold (of those on `brokers` when
/// given): RocketMQ's NameServer lists them with the topics, and its tools find the groups
/// by them (`mqadmin consumerProgress` without a group).
pub fn group_retry_topics(
    registry: &Registry,
    brokers: Option<&std::collections::BTreeSet<String>>,
) -> Vec<String> {
    registry
        .groups()
        .into_iter()
        .filter(|(_, listing)| {
            brokers.is_none_or(|brokers| listing.broker_names.iter().any(|b| brokers.contains(b)))
        })
        .map(|(name, _)| names::retry_topic(&name))
        .collect()
}

/// Whether remoting clients may have a route to `topic`: any but the internal ones, among
/// which clients read only retry and dead-letter topics, and write and read only the trace
/// topic (a broker hosts it only with message trace on).
fn routable(topic: &str) -> bool {
    !names::is_system_topic(topic)
        || topic.starts_with(names::RETRY_PREFIX)
        || topic.starts_with(names::DLQ_PREFIX)
        || topic == names::TRACE_TOPIC
}

/// Whether a topic is listed to remoting clients (topic lists show user topics only).
pub fn listed(topic: &str) -> bool {
    !names::is_system_topic(topic)
}

/// The address remoting clients dial for `member`.
fn remoting_address(member: &BrokerMember) -> String {
    if member.remoting_endpoint.is_empty() {
        member.endpoint.clone()
    } else {
        member.remoting_endpoint.clone()
    }
}

/// A broker group's members that serve remoting, by broker id at their remoting addresses;
/// `None` when none does.
pub fn broker_data(group: &BrokerGroup) -> Option<BrokerData> {
    let addrs: BTreeMap<i64, String> = group
        .members
        .iter()
        .filter(|m| m.serves_remoting)
        .map(|m| (m.broker_id, remoting_address(m)))
        .collect();
    (!addrs.is_empty()).then(|| BrokerData {
        cluster: group.cluster_name.clone(),
        broker_name: group.broker_name.clone(),
        addrs,
    })
}

/// RocketMQ's permission bits of a topic (unspecified: read and write).
fn perm_of(config: &TopicConfig) -> i32 {
    match Permission::try_from(config.permission) {
        Ok(Permission::None) => 0,
        Ok(Permission::Read) => perm::READ,
        Ok(Permission::Write) => perm::WRITE,
        Ok(Permission::ReadWrite | Permission::Unspecified) | Err(_) => perm::READ | perm::WRITE,
    }
}

fn is_fifo(config: &TopicConfig) -> bool {
    config.message_types.contains(&(MessageType::Fifo as i32))
}

/// The route of a topic hosted by `placements`.
fn route_of(placements: &[Placement]) -> Option<TopicRouteData> {
    let mut route = TopicRouteData::default();
    for p in placements {
        let Some(brokers) = p.to_proto().group.as_ref().and_then(broker_data) else {
            continue;
        };
        let queues = p.config.queue_count.max(0);
        route.queue_datas.push(QueueData {
            broker_name: p.group.broker_name.clone(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: perm_of(&p.config),
            topic_sys_flag: 0,
        });
        route.broker_datas.push(brokers);
    }
    if route.queue_datas.is_empty() {
        return None;
    }
    // An ordered (FIFO) topic: producers keep to these queues.
    if placements.iter().any(|p| is_fifo(&p.config)) {
        let conf: Vec<String> = route
            .queue_datas
            .iter()
            .map(|q| format!("{}:{}", q.broker_name, q.write_queue_nums))
            .collect();
        route.order_topic_conf = Some(conf.join(";"));
    }
    Some(route)
}

/// The `TBW102` route: every group whose live master creates topics on send.
fn auto_create_route(groups: &[BrokerGroup]) -> Option<TopicRouteData> {
    let mut route = TopicRouteData::default();
    for group in groups {
        let Some(master) = group.members.iter().find(|m| m.broker_id == 0) else {
            continue;
        };
        if master.auto_create_queue_count <= 0 || !master.serves_remoting {
            continue;
        }
        let Some(brokers) = broker_data(group) else {
            continue;
        };
        route.queue_datas.push(QueueData {
            broker_name: group.broker_name.clone(),
            read_queue_nums: master.auto_create_queue_count,
            write_queue_nums: master.auto_create_queue_count,
            // As RocketMQ's own TBW102: read, write and inherited by the topics made from it.
            perm: perm::READ | perm::WRITE | perm::INHERIT,
            topic_sys_flag: 0,
        });
        route.broker_datas.push(brokers);
    }
    (!route.queue_datas.is_empty()).then_some(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::cluster::{BrokerRole, RegisterBrokerRequest};
    use std::collections::BTreeMap;
    use std::time::Duration;

    struct Member<'a> {
        broker: &'a str,
        id: i64,
        remoting: &'a str,
        auto_create: i32,
        serves: bool,
        topics: Vec<TopicConfig>,
    }

    fn register(reg: &Registry, m: Member<'_>) {
        reg.register(&RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: m.broker.into(),
            broker_id: m.id,
            endpoint: format!("{}-{}:10911", m.broker, m.id),
            remoting_endpoint: m.remoting.into(),
            auto_create_queue_count: m.auto_create,
            serves_remoting: m.serves,
            role: if m.id == 0 {
                BrokerRole::AsyncMaster
            } else {
                BrokerRole::Slave
            } as i32,
            topics: m.topics,
            data_version: 1,
            ..Default::default()
        })
        .unwrap();
    }

    fn topic(name: &str, queues: i32) -> TopicConfig {
        TopicConfig {
            name: name.into(),
            queue_count: queues,
            ..Default::default()
        }
    }

    fn addrs(pairs: &[(i64, &str)]) -> BTreeMap<i64, String> {
        pairs.iter().map(|(i, a)| (*i, a.to_string())).collect()
    }

    fn registry() -> Registry {
        Registry::new(Duration::from_secs(120))
    }

    #[test]
    fn a_route_lists_each_group_with_its_members_by_id_at_their_remoting_addresses() {
        let reg = registry();
        let t = || vec![topic("orders", 4)];
        register(
            &reg,
            Member {
                broker: "a",
                id: 0,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics: t(),
            },
        );
        register(
            &reg,
            Member {
                broker: "a",
                id: 1,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics: t(),
            },
        );
        register(
            &reg,
            Member {
                broker: "b",
                id: 0,
                remoting: "b-0:10921",
                auto_create: 0,
                serves: true,
                topics: vec![TopicConfig {
                    permission: Permission::Read as i32,
                    ..topic("orders", 2)
                }],
            },
        );
        let route = topic_route(&reg, "orders").expect("a route");
        assert_eq!(
            route.queue_datas,
            [
                QueueData {
                    broker_name: "a".into(),
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    perm: 6,
                    topic_sys_flag: 0
                },
                QueueData {
                    broker_name: "b".into(),
                    read_queue_nums: 2,
                    write_queue_nums: 2,
                    perm: 4,
                    topic_sys_flag: 0
                },
            ]
        );
        assert_eq!(
            route.broker_datas[0].addrs,
            addrs(&[(0, "a-0:10911"), (1, "a-1:10911")])
        );
        // b's own remoting listener, not its gRPC endpoint.
        assert_eq!(route.broker_datas[1].addrs, addrs(&[(0, "b-0:10921")]));
        assert_eq!(route.broker_datas[1].cluster, "c");
        assert_eq!(route.order_topic_conf, None);
        assert!(topic_route(&reg, "missing").is_none());
    }

    #[test]
    fn a_group_without_a_master_lists_its_slaves() {
        let reg = registry();
        register(
            &reg,
            Member {
                broker: "a",
                id: 2,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics: vec![topic("t", 1)],
            },
        );
        let route = topic_route(&reg, "t").unwrap();
        assert_eq!(route.broker_datas[0].addrs, addrs(&[(2, "a-2:10911")]));
    }

    #[test]
    fn a_fifo_topic_carries_its_order_conf() {
        let reg = registry();
        let fifo = TopicConfig {
            message_types: vec![MessageType::Fifo as i32],
            ..topic("seq", 3)
        };
        register(
            &reg,
            Member {
                broker: "a",
                id: 0,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics: vec![fifo.clone()],
            },
        );
        register(
            &reg,
            Member {
                broker: "b",
                id: 0,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics: vec![fifo],
            },
        );
        let route = topic_route(&reg, "seq").unwrap();
        assert_eq!(route.order_topic_conf.as_deref(), Some("a:3;b:3"));
    }

    #[test]
    fn retry_dead_letter_and_trace_topics_are_routed_other_internal_topics_never() {
        let reg = registry();
        let lite = names::lite_queue_topic("parent", "x");
        let topics = vec![
            topic("%RETRY%g", 1),
            topic("%DLQ%g", 1),
            topic(&lite, 1),
            topic(names::HALF_TOPIC, 1),
            topic(names::SCHEDULE_TOPIC, 18),
            topic(names::TRACE_TOPIC, 1),
        ];
        register(
            &reg,
            Member {
                broker: "a",
                id: 0,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics,
            },
        );
        assert!(topic_route(&reg, "%RETRY%g").is_some());
        assert!(topic_route(&reg, "%DLQ%g").is_some());
        assert!(topic_route(&reg, &lite).is_none());
        assert!(topic_route(&reg, names::HALF_TOPIC).is_none());
        assert!(topic_route(&reg, names::SCHEDULE_TOPIC).is_none());
        assert!(topic_route(&reg, names::TRACE_TOPIC).is_some());
        assert!(!listed("%RETRY%g") && !listed(&lite) && listed("orders"));
        assert!(!listed(names::TRACE_TOPIC));
    }

    #[test]
    fn the_auto_create_route_lists_the_groups_whose_master_creates_topics_on_send() {
        let reg = registry();
        assert!(topic_route(&reg, AUTO_CREATE_TOPIC).is_none());
        register(
            &reg,
            Member {
                broker: "a",
                id: 0,
                remoting: "",
                auto_create: 8,
                serves: true,
                topics: vec![],
            },
        );
        register(
            &reg,
            Member {
                broker: "a",
                id: 1,
                remoting: "",
                auto_create: 8,
                serves: true,
                topics: vec![],
            },
        );
        register(
            &reg,
            Member {
                broker: "b",
                id: 0,
                remoting: "",
                auto_create: 0,
                serves: true,
                topics: vec![],
            },
        );
        // A slave that would create topics does not count: sends go to masters.
        register(
            &reg,
            Member {
                broker: "c",
                id: 1,
                remoting: "",
                auto_create: 4,
                serves: true,
                topics: vec![],
            },
        );
        let route = topic_route(&reg, AUTO_CREATE_TOPIC).expect("a's master creates topics");
        assert_eq!(
            route.queue_datas,
            [QueueData {
                broker_name: "a".into(),
                read_queue_nums: 8,
                write_queue_nums: 8,
                perm: 7,
                topic_sys_flag: 0
            }]
        );
        assert_eq!(
            route.broker_datas[0].addrs,
            addrs(&[(0, "a-0:10911"), (1, "a-1:10911")])
        );
    }

    #[test]
    fn members_that_serve_no_remoting_are_left_out_of_remoting_routes() {
        let reg = registry();
        let member = |broker, id, serves| Member {
            broker,
            id,
            remoting: "",
            auto_create: 8,
            serves,
            topics: vec![topic("orders", 4)],
        };
        // Group a: the master serves remoting, its slave does not. Group b serves none.
        register(&reg, member("a", 0, true));
        register(&reg, member("a", 1, false));
        register(&reg, member("b", 0, false));
        let route = topic_route(&reg, "orders").expect("a route through a");
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.queue_datas[0].broker_name, "a");
        assert_eq!(route.broker_datas.len(), 1);
        assert_eq!(route.broker_datas[0].addrs, addrs(&[(0, "a-0:10911")]));
        let auto = topic_route(&reg, AUTO_CREATE_TOPIC).expect("a creates topics");
        assert_eq!(auto.broker_datas.len(), 1);
        assert_eq!(auto.broker_datas[0].broker_name, "a");

        // A topic only b hosts has no remoting route at all.
        reg.register(&RegisterBrokerRequest {
            cluster_name: "c".into(),
            broker_name: "b".into(),
            endpoint: "b-0:10911".into(),
            role: BrokerRole::AsyncMaster as i32,
            topics: vec![topic("only-b", 2)],
            data_version: 2,
            ..Default::default()
        })
        .unwrap();
        assert!(topic_route(&reg, "only-b").is_none());
    }
}

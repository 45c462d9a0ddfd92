//! Builds the RocketMQ protocol's view of a route from the broker table's
//! placements: the message queues QueryRoute returns and the assignments
//! QueryAssignment returns. Pure functions, no I/O.
//!
//! Each group is presented as one broker with id 0, whatever the role of the member that
//! serves it: the official clients use only queues of broker id 0 (the Python client's
//! `is_master_broker()`, the Java and Go publishing balancers), as RocketMQ's proxy presents
//! itself. Its `Endpoints` list the serving member's address first, then, for the clients
//! [`MemberAddresses::All`] is given to, every other live member's (see
//! [`endpoint::to_endpoints_list`] for which fit): a client whose first address stops
//! answering reaches the group through another member, and a slave passes what it cannot
//! serve to its master (docs/REPLICATION.md, "Reads from slaves and the master's return").

use crate::config::RouteAddresses;
use crate::registry::Placement;
use apogee_proto::cluster::{BrokerMember, TopicConfig};
use apogee_proto::v2::{Assignment, Broker, MessageQueue, MessageType, Permission, Resource};
use apogee_server::endpoint;

/// The broker id every group is presented with (the protocol's master id).
const PRESENTED_BROKER_ID: i32 = 0;

/// Which members' addresses a group's `Endpoints` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberAddresses {
    /// The serving member's alone.
    Serving,
    /// The serving member's first, then every other live member's.
    All,
}

/// The addresses to give a client of `language` (its `x-mq-language` header) under the
/// NameServer's `policy`. `auto` lists every member only for Rust clients: the official Rust
/// crate 5.0.0 fetches a route once and never again, so only a list reaches a slave after
/// its master died. The other official clients fetch routes every 30 s and follow the
/// change; a list would cost them (Go shuffles the addresses and Python sorts them, sending
/// part of their calls through a slave, one more hop) or break them (Node 1.0.8 dials the
/// list as one host name and fails).
pub fn member_addresses(policy: RouteAddresses, language: Option<&str>) -> MemberAddresses {
    match policy {
        RouteAddresses::All => MemberAddresses::All,
        RouteAddresses::Serving => MemberAddresses::Serving,
        RouteAddresses::Auto if language.is_some_and(|l| l.eq_ignore_ascii_case("RUST")) => {
            MemberAddresses::All
        }
        RouteAddresses::Auto => MemberAddresses::Serving,
    }
}

/// The permission a topic config grants (unspecified means READ_WRITE).
fn permission(config: &TopicConfig) -> Permission {
    match Permission::try_from(config.permission) {
        Ok(Permission::Unspecified) | Err(_) => Permission::ReadWrite,
        Ok(p) => p,
    }
}

fn readable(p: Permission) -> bool {
    matches!(p, Permission::Read | Permission::ReadWrite)
}

/// Message types a topic accepts (empty means NORMAL only).
fn message_types(config: &TopicConfig) -> Vec<i32> {
    if config.message_types.is_empty() {
        vec![MessageType::Normal as i32]
    } else {
        config.message_types.clone()
    }
}

/// The member clients should use for a group and the permission they get
/// there: the master with the topic's permission, or, when the master is
/// gone, the first live slave, read-only (if the topic is readable at all).
fn serving(p: &Placement) -> Option<(&BrokerMember, Permission)> {
    let perm = permission(&p.config);
    if let Some(master) = p.master() {
        return Some((master, perm));
    }
    let slave = p.first_slave()?;
    readable(perm).then_some((slave, Permission::Read))
}

/// The broker clients see for a group served by `serving`: the group's name, id 0, the
/// serving member's address first and then, with [`MemberAddresses::All`], the other live
/// members' (lowest id first).
fn broker(p: &Placement, serving: &BrokerMember, addresses: MemberAddresses) -> Option<Broker> {
    let others = p
        .members
        .iter()
        .filter(|m| addresses == MemberAddresses::All && m.broker_id != serving.broker_id)
        .map(|m| m.endpoint.as_str());
    Some(Broker {
        name: p.group.broker_name.clone(),
        id: PRESENTED_BROKER_ID,
        endpoints: Some(endpoint::to_endpoints_list(&serving.endpoint, others)?),
    })
}

/// Every queue of the topic: ids `0..queue_count` on each broker group.
pub fn message_queues(
    placements: &[Placement],
    topic: &Resource,
    addresses: MemberAddresses,
) -> Vec<MessageQueue> {
    let mut out = Vec::new();
    for p in placements {
        let Some((member, perm)) = serving(p) else {
            continue;
        };
        let Some(broker) = broker(p, member, addresses) else {
            continue;
        };
        let types = message_types(&p.config);
        for id in 0..p.config.queue_count.max(0) {
            out.push(MessageQueue {
                topic: Some(topic.clone()),
                id,
                permission: perm as i32,
                broker: Some(broker.clone()),
                accept_message_types: types.clone(),
            });
        }
    }
    out
}

/// One assignment per broker group with a readable member; queue id -1
/// means "any queue of that broker".
pub fn assignments(
    placements: &[Placement],
    topic: &Resource,
    addresses: MemberAddresses,
) -> Vec<Assignment> {
    placements
        .iter()
        .filter_map(|p| {
            let (member, perm) = serving(p)?;
            if !readable(perm) {
                return None;
            }
            Some(Assignment {
                message_queue: Some(MessageQueue {
                    topic: Some(topic.clone()),
                    id: -1,
                    permission: perm as i32,
                    broker: Some(broker(p, member, addresses)?),
                    accept_message_types: message_types(&p.config),
                }),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::GroupKey;
    use apogee_proto::cluster::BrokerRole;
    use apogee_proto::v2::AddressScheme;

    fn member(id: i64, endpoint: &str) -> BrokerMember {
        BrokerMember {
            broker_id: id,
            endpoint: endpoint.into(),
            role: if id == 0 {
                BrokerRole::AsyncMaster
            } else {
                BrokerRole::Slave
            } as i32,
            ..Default::default()
        }
    }

    fn placement(
        name: &str,
        queues: i32,
        perm: Permission,
        members: Vec<BrokerMember>,
    ) -> Placement {
        Placement {
            group: GroupKey::new("c", name),
            config: TopicConfig {
                name: "t".into(),
                queue_count: queues,
                permission: perm as i32,
                message_types: vec![],
                lite_expire_after_secs: 0,
            },
            members,
        }
    }

    fn topic() -> Resource {
        Resource {
            resource_namespace: "ns".into(),
            name: "t".into(),
        }
    }

    #[test]
    fn queues_cover_every_group_with_ids_from_zero() {
        let ps = vec![
            placement(
                "b1",
                2,
                Permission::ReadWrite,
                vec![member(0, "10.0.0.1:10911")],
            ),
            placement(
                "b2",
                3,
                Permission::Unspecified,
                vec![member(0, "broker-2:10911")],
            ),
        ];
        let qs = message_queues(&ps, &topic(), MemberAddresses::All);
        assert_eq!(qs.len(), 5);
        let ids: Vec<(String, i32)> = qs
            .iter()
            .map(|q| (q.broker.as_ref().unwrap().name.clone(), q.id))
            .collect();
        assert_eq!(
            ids,
            [
                ("b1".into(), 0),
                ("b1".into(), 1),
                ("b2".into(), 0),
                ("b2".into(), 1),
                ("b2".into(), 2)
            ]
        );
        let q = &qs[0];
        assert_eq!(q.topic.as_ref().unwrap().resource_namespace, "ns");
        assert_eq!(q.permission, Permission::ReadWrite as i32);
        assert_eq!(q.accept_message_types, vec![MessageType::Normal as i32]);
        let b = q.broker.as_ref().unwrap();
        assert_eq!(b.id, 0);
        let e = b.endpoints.as_ref().unwrap();
        assert_eq!(e.scheme, AddressScheme::IPv4 as i32);
        assert_eq!(
            (e.addresses[0].host.as_str(), e.addresses[0].port),
            ("10.0.0.1", 10911)
        );
        let e2 = qs[2].broker.as_ref().unwrap().endpoints.as_ref().unwrap();
        assert_eq!(e2.scheme, AddressScheme::DomainName as i32);
        assert_eq!(qs[2].permission, Permission::ReadWrite as i32);
    }

    #[test]
    fn group_without_master_is_served_read_only_by_a_slave() {
        let ps = vec![placement(
            "b1",
            2,
            Permission::ReadWrite,
            vec![member(1, "[::1]:10912")],
        )];
        let qs = message_queues(&ps, &topic(), MemberAddresses::All);
        assert_eq!(qs.len(), 2);
        assert!(qs.iter().all(|q| q.permission == Permission::Read as i32));
        let b = qs[0].broker.as_ref().unwrap();
        assert_eq!(b.id, 0, "the serving slave is presented as broker id 0");
        assert_eq!(
            b.endpoints.as_ref().unwrap().scheme,
            AddressScheme::IPv6 as i32
        );

        let write_only = vec![placement(
            "b1",
            2,
            Permission::Write,
            vec![member(1, "h:1")],
        )];
        assert!(message_queues(&write_only, &topic(), MemberAddresses::All).is_empty());
    }

    #[test]
    fn assignments_are_one_per_readable_group_with_queue_minus_one() {
        let ps = vec![
            placement(
                "b1",
                4,
                Permission::ReadWrite,
                vec![member(0, "h1:1"), member(1, "h1s:1")],
            ),
            placement("b2", 4, Permission::Write, vec![member(0, "h2:1")]),
            placement("b3", 4, Permission::ReadWrite, vec![member(2, "h3s:1")]),
        ];
        let a = assignments(&ps, &topic(), MemberAddresses::All);
        assert_eq!(a.len(), 2);
        let q0 = a[0].message_queue.as_ref().unwrap();
        assert_eq!(q0.id, -1);
        assert_eq!(q0.broker.as_ref().unwrap().name, "b1");
        assert_eq!(q0.broker.as_ref().unwrap().id, 0);
        let q1 = a[1].message_queue.as_ref().unwrap();
        assert_eq!(q1.broker.as_ref().unwrap().name, "b3");
        assert_eq!(q1.broker.as_ref().unwrap().id, 0);
        assert_eq!(q1.permission, Permission::Read as i32);
    }

    fn addresses(q: &MessageQueue) -> Vec<String> {
        let b = q.broker.as_ref().unwrap();
        b.endpoints
            .as_ref()
            .unwrap()
            .addresses
            .iter()
            .map(|a| format!("{}:{}", a.host, a.port))
            .collect()
    }

    #[test]
    fn a_group_lists_the_serving_member_first_then_every_other_live_one() {
        let ps = vec![placement(
            "b1",
            1,
            Permission::ReadWrite,
            vec![
                member(0, "10.0.0.1:10911"),
                member(1, "10.0.0.2:10911"),
                member(2, "10.0.0.3:10911"),
            ],
        )];
        let qs = message_queues(&ps, &topic(), MemberAddresses::All);
        assert_eq!(qs[0].broker.as_ref().unwrap().id, 0);
        assert_eq!(qs[0].permission, Permission::ReadWrite as i32);
        assert_eq!(
            addresses(&qs[0]),
            ["10.0.0.1:10911", "10.0.0.2:10911", "10.0.0.3:10911"]
        );
        let a = assignments(&ps, &topic(), MemberAddresses::All);
        assert_eq!(
            addresses(a[0].message_queue.as_ref().unwrap()),
            addresses(&qs[0])
        );

        // Master gone: the first slave serves, read-only, and comes first.
        let ps = vec![placement(
            "b1",
            1,
            Permission::ReadWrite,
            vec![member(1, "10.0.0.2:10911"), member(2, "10.0.0.3:10911")],
        )];
        let qs = message_queues(&ps, &topic(), MemberAddresses::All);
        assert_eq!(qs[0].broker.as_ref().unwrap().id, 0);
        assert_eq!(qs[0].permission, Permission::Read as i32);
        assert_eq!(addresses(&qs[0]), ["10.0.0.2:10911", "10.0.0.3:10911"]);
    }

    #[test]
    fn members_of_another_address_scheme_are_left_out() {
        let ps = vec![placement(
            "b1",
            1,
            Permission::ReadWrite,
            vec![
                member(0, "10.0.0.1:10911"),
                member(1, "[::1]:10911"),
                member(2, "slave-2.svc:10911"),
                member(3, "10.0.0.4:10911"),
            ],
        )];
        let qs = message_queues(&ps, &topic(), MemberAddresses::All);
        assert_eq!(addresses(&qs[0]), ["10.0.0.1:10911", "10.0.0.4:10911"]);

        // A domain name carries one address: only the serving member's.
        let ps = vec![placement(
            "b1",
            1,
            Permission::ReadWrite,
            vec![member(0, "master.svc:10911"), member(1, "slave.svc:10911")],
        )];
        let qs = message_queues(&ps, &topic(), MemberAddresses::All);
        assert_eq!(addresses(&qs[0]), ["master.svc:10911"]);
    }

    #[test]
    fn the_serving_member_alone_when_asked_and_every_member_only_for_rust_clients_by_default() {
        let ps = vec![placement(
            "b1",
            1,
            Permission::ReadWrite,
            vec![member(0, "10.0.0.1:10911"), member(1, "10.0.0.2:10911")],
        )];
        let qs = message_queues(&ps, &topic(), MemberAddresses::Serving);
        assert_eq!(addresses(&qs[0]), ["10.0.0.1:10911"]);
        let a = assignments(&ps, &topic(), MemberAddresses::Serving);
        assert_eq!(
            addresses(a[0].message_queue.as_ref().unwrap()),
            ["10.0.0.1:10911"]
        );

        use RouteAddresses::{All, Auto, Serving};
        for (policy, language, expected) in [
            (Auto, Some("RUST"), MemberAddresses::All),
            (Auto, Some("rust"), MemberAddresses::All),
            (Auto, Some("JAVA"), MemberAddresses::Serving),
            (Auto, Some("NODE_JS"), MemberAddresses::Serving),
            (Auto, None, MemberAddresses::Serving),
            (All, Some("NODE_JS"), MemberAddresses::All),
            (Serving, Some("RUST"), MemberAddresses::Serving),
        ] {
            assert_eq!(
                member_addresses(policy, language),
                expected,
                "{policy:?} for {language:?}"
            );
        }
    }
}

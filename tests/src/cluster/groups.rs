//! Consumer groups seen the way an operator and an application see them: a group's lag as
//! `apogee group describe` reports it, messages received and acknowledged over gRPC, and a
//! message dead-lettered by a group that gives up on it.

use super::Cluster;
use crate::{rpc, wait_until};
use apogee_proto::{time, v2};
use serde_json::Value;
use std::time::Duration;

/// How long a message may take to be dead-lettered: its invisibility (1 s) expiring, then the
/// broker's redelivery scan.
const DEAD_LETTER_WAIT: Duration = Duration::from_secs(30);

impl Cluster {
    /// `apogee -o json <args>` against this cluster, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        self.cli(&[&["-o", "json"], args].concat()).success().json()
    }

    /// The group's total lag as `apogee group describe` reports it.
    pub fn group_lag(&self, group: &str) -> u64 {
        let d = self.cli_json(&["group", "describe", group]);
        d["lag"]
            .as_u64()
            .unwrap_or_else(|| panic!("no lag in {d:#}"))
    }

    /// Waits (at most 15 s) until `group` has acknowledged everything: no lag, nothing in
    /// flight, as `apogee group describe` reports it.
    pub async fn wait_group_drained(&self, group: &str) {
        wait_until(Duration::from_secs(15), "the group's acks", || async {
            let out = self.cli(&["-o", "json", "group", "describe", group]);
            let d = out.json();
            if out.code == 0 && d["lag"] == 0 && d["inflight"] == 0 {
                Ok(())
            } else {
                Err(out.to_string())
            }
        })
        .await
    }

    /// Receives exactly `count` messages of `topic` for `group` from broker `broker` and
    /// acknowledges them; panics when the broker refuses the acknowledgement.
    pub async fn consume_and_ack(&self, broker: &str, group: &str, topic: &str, count: usize) {
        rpc::consume_and_ack(self.broker_addr(broker), group, topic, count).await;
    }

    /// Creates `group` giving up after one delivery, sends one message to `topic` on broker
    /// `broker` and receives it without acknowledging it until the broker has moved it to the
    /// group's dead-letter topic: `apogee dlq list` lists it and `apogee topic list --system`
    /// lists `%DLQ%<group>`. Its message id.
    pub async fn dead_letter_one(&self, broker: &str, group: &str, topic: &str) -> String {
        self.cli(&["group", "create", group, "--max-attempts", "1"])
            .success();
        let addr = self.broker_addr(broker);
        let message = rpc::message(topic, 0, "never acknowledged");
        let id = rpc::id_of(&message);
        let sent = rpc::send(&mut rpc::messaging(addr), vec![message]).await;
        assert_eq!(
            rpc::code(sent.status.as_ref()),
            v2::Code::Ok as i32,
            "{sent:?}"
        );
        let dlq = apogee_proto::names::dlq_topic(group);
        wait_until(DEAD_LETTER_WAIT, "the message dead-lettered", || async {
            receive_briefly(addr, group, topic).await;
            let letters = self.cli_json(&["dlq", "list", "--group", group]);
            let topics = self.cli_json(&["topic", "list", "--system"]);
            let listed = |list: &Value, field: &str, value: &str| {
                list.as_array()
                    .is_some_and(|rows| rows.iter().any(|r| r[field] == value))
            };
            if !listed(&letters, "message_id", &id) {
                Err(format!("{id} not in dlq list yet: {letters}"))
            } else if !listed(&topics, "topic", &dlq) {
                Err(format!("{dlq} not in topic list --system yet"))
            } else {
                Ok(())
            }
        })
        .await;
        id
    }

    /// Waits until `group` receives message `id` of `topic` from broker `broker` again (each
    /// receive leaves what it got invisible for 1 s, unacknowledged).
    pub async fn wait_received(&self, broker: &str, group: &str, topic: &str, id: &str) {
        let addr = self.broker_addr(broker);
        wait_until(DEAD_LETTER_WAIT, "the message received", || async {
            let got = receive_briefly(addr, group, topic).await;
            if got.iter().any(|m| rpc::id_of(m) == id) {
                Ok(())
            } else {
                Err(format!("{} others", got.len()))
            }
        })
        .await;
    }
}

/// Up to 4 messages of `topic` for `group`, each invisible for 1 s, waiting at most 1 s.
async fn receive_briefly(addr: &str, group: &str, topic: &str) -> Vec<v2::Message> {
    let (got, _) = rpc::receive(
        &mut rpc::messaging(addr),
        group,
        topic,
        4,
        Some(time::duration(Duration::from_secs(1))),
        Duration::from_secs(1),
    )
    .await;
    got
}

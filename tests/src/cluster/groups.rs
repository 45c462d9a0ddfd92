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

    /// Receives exactly `count` messages of `topic` for `group` from broker `broker` and
    /// acknowledges them; panics when the broker refuses the acknowledgement.
    pub async fn consume_and_ack(&self, broker: &str, group: &str, topic: &str, count: usize) {
        rpc::consume_and_ack(self.broker_addr(broker), group, topic, count).await;
    }

    /// Creates `group` giving up after one delivery, sends one message to `topic` on broker
    /// `broker` and receives it without acknowledging it until the broker moves it to the
    /// group's dead-letter topic (listed by `apogee topic list --system`); its message id.
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
            rpc::receive(
                &mut rpc::messaging(addr),
                group,
                topic,
                1,
                Some(time::duration(Duration::from_secs(1))),
                Duration::from_secs(1),
            )
            .await;
            let listed = self.cli_json(&["topic", "list", "--system"]);
            let topics = listed.as_array().cloned().unwrap_or_default();
            if topics.iter().any(|t| t["topic"] == dlq.as_str()) {
                Ok(())
            } else {
                Err(format!("{dlq} not listed yet"))
            }
        })
        .await;
        id
    }
}

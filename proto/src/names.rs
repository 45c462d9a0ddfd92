//! Well-known names: default ports, internal (system) topics and the topics
//! derived from a consumer group. Clients may never write a system topic.

/// Default NameServer gRPC port (RocketMQ's).
pub const DEFAULT_NAMESERVER_PORT: u16 = 9876;
/// Default broker gRPC port (RocketMQ's).
pub const DEFAULT_BROKER_PORT: u16 = 10911;
/// Default port of the NameServer's HTTP operations endpoint (metrics, health).
pub const DEFAULT_NAMESERVER_HTTP_PORT: u16 = 5556;
/// Default port of the broker's HTTP operations endpoint (RocketMQ's Prometheus exporter port).
pub const DEFAULT_BROKER_HTTP_PORT: u16 = 5557;

/// Where transactional half messages wait for their outcome.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where outcomes of half messages are recorded.
pub const HALF_OUTCOME_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where delayed messages wait for their delivery time.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Prefix of a consumer group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// Prefixes that mark a topic as internal.
const SYSTEM_PREFIXES: [&str; 5] = [
    "RMQ_SYS_",
    "rmq_sys_",
    RETRY_PREFIX,
    DLQ_PREFIX,
    "SCHEDULE_TOPIC_",
];

/// Whether a topic is internal: created and written by the broker only.
pub fn is_system_topic(topic: &str) -> bool {
    SYSTEM_PREFIXES.iter().any(|p| topic.starts_with(p)) || topic == "TBW102"
}

/// The retry topic of a consumer group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_topics_are_recognised() {
        assert!(is_system_topic(HALF_TOPIC));
        assert!(is_system_topic(SCHEDULE_TOPIC));
        assert!(is_system_topic(&retry_topic("g")));
        assert!(is_system_topic(&dlq_topic("g")));
        assert!(!is_system_topic("orders"));
        assert!(!is_system_topic("RMQ_orders"));
    }
}

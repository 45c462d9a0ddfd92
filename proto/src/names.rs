//! Well-known names: default ports, how a list of NameServer addresses is
//! written ([`parse_address_list`]), internal (system) topics and the topics
//! derived from a consumer group. Clients may never write a system topic.

/// Default NameServer gRPC port (RocketMQ's).
pub const DEFAULT_NAMESERVER_PORT: u16 = 9876;
/// Default broker gRPC port (RocketMQ's).
pub const DEFAULT_BROKER_PORT: u16 = 10911;
/// Default port of the NameServer's HTTP operations endpoint (metrics, health).
pub const DEFAULT_NAMESERVER_HTTP_PORT: u16 = 5556;
/// Default port of the broker's HTTP operations endpoint (RocketMQ's Prometheus exporter port).
pub const DEFAULT_BROKER_HTTP_PORT: u16 = 5557;

/// Splits a list of addresses written with `;` (RocketMQ's `namesrvAddr`) or `,` between
/// them, in any mix: each entry trimmed, empty ones dropped. The entries are not checked
/// (see [`parse_host_port`] and [`parse_address_list`]).
pub fn split_address_list(list: &str) -> Vec<String> {
    list.split([';', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks one `host:port` address (an IPv6 host in brackets, `[::1]:9876`) and returns
/// its host (without brackets) and port. The port must be within 1..=65535; the error
/// says what is wrong, not which setting it came from.
pub fn parse_host_port(addr: &str) -> Result<(String, u16), String> {
    let addr = addr.trim();
    if addr.contains("://") {
        return Err(format!("{addr:?} is not host:port (leave out the scheme)"));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port (no port)"));
    };
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| format!("{addr:?} is not host:port (unclosed '[')"))?,
        None if host.contains(':') => {
            return Err(format!(
                "{addr:?} is not host:port (write an IPv6 host in brackets: [::1]:9876)"
            ))
        }
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(format!("{addr:?} is not host:port (bad host {host:?})"));
    }
    match port.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok((host.to_string(), p as u16)),
        Ok(p) => Err(format!("{addr:?}: port {p} is not within 1..=65535")),
        Err(_) => Err(format!(
            "{addr:?} is not host:port (port {port:?} is not a number)"
        )),
    }
}

/// A list of `host:port` addresses separated by `;` or `,` ([`split_address_list`]), each
/// checked ([`parse_host_port`]); the error names the first bad entry. An empty list is an
/// error too.
pub fn parse_address_list(list: &str) -> Result<Vec<String>, String> {
    let addrs = split_address_list(list);
    if addrs.is_empty() {
        return Err(format!(
            "{list:?} holds no address (expected host:port, several separated by ';' or ',')"
        ));
    }
    for a in &addrs {
        parse_host_port(a)?;
    }
    Ok(addrs)
}

/// Where transactional half messages wait for their outcome.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where outcomes of half messages are recorded.
pub const HALF_OUTCOME_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where delayed messages wait for their delivery time.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Where RocketMQ clients with message trace on write their trace records, unless they name
/// a topic of their own: a system topic clients may write only where the broker has message
/// trace on (its `trace.enabled`).
pub const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";
/// Prefix of a consumer group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";

/// Prefix of a lite topic's queue: `%LITE%<parent>%<lite topic>` (see [`lite_queue_topic`]).
pub const LITE_PREFIX: &str = "%LITE%";

/// Prefixes that mark a topic as internal.
const SYSTEM_PREFIXES: [&str; 6] = [
    LITE_PREFIX,
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

/// The name under which the broker stores and indexes the messages of lite topic `lite` of
/// the LITE parent topic `parent`: one queue (id 0) of its own, never in a route, a
/// registration or a topic list. Lite names have no `%` (`crate::limits::validate_lite_topic`),
/// so the last `%` splits the name again ([`split_lite_queue_topic`]).
pub fn lite_queue_topic(parent: &str, lite: &str) -> String {
    format!("{LITE_PREFIX}{parent}%{lite}")
}

/// The (parent topic, lite topic) a lite queue's name stands for; `None` for any other topic.
pub fn split_lite_queue_topic(topic: &str) -> Option<(&str, &str)> {
    topic.strip_prefix(LITE_PREFIX)?.rsplit_once('%')
}

/// The prefix every lite queue of `parent` starts with (to list them).
pub fn lite_queue_prefix(parent: &str) -> String {
    format!("{LITE_PREFIX}{parent}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lite_queue_names_split_back() {
        let q = lite_queue_topic("agents", "session-1");
        assert_eq!(q, "%LITE%agents%session-1");
        assert_eq!(split_lite_queue_topic(&q), Some(("agents", "session-1")));
        assert!(q.starts_with(&lite_queue_prefix("agents")));
        assert!(is_system_topic(&q));
        // A parent may hold '%' (the topic rule allows it); the lite name may not.
        let q = lite_queue_topic("a%b", "c");
        assert_eq!(split_lite_queue_topic(&q), Some(("a%b", "c")));
        assert_eq!(split_lite_queue_topic("orders"), None);
    }

    #[test]
    fn system_topics_are_recognised() {
        assert!(is_system_topic(HALF_TOPIC));
        assert!(is_system_topic(SCHEDULE_TOPIC));
        assert!(is_system_topic(&retry_topic("g")));
        assert!(is_system_topic(&dlq_topic("g")));
        assert!(!is_system_topic("orders"));
        assert!(!is_system_topic("RMQ_orders"));
    }

    #[test]
    fn address_lists_take_semicolons_commas_and_blanks() {
        let want = vec!["a:1".to_string(), "b:2".into(), "c:3".into()];
        for list in [
            "a:1;b:2;c:3",
            "a:1,b:2,c:3",
            " a:1 ; b:2, c:3 ;",
            ";;a:1,,b:2;,c:3",
        ] {
            assert_eq!(split_address_list(list), want, "{list:?}");
            assert_eq!(parse_address_list(list).unwrap(), want, "{list:?}");
        }
        assert!(split_address_list(" ; , ").is_empty());
        assert!(parse_address_list(" ; ")
            .unwrap_err()
            .contains("holds no address"));
    }

    #[test]
    fn host_port_checks_name_the_bad_entry() {
        assert_eq!(parse_host_port("ns1:9876"), Ok(("ns1".into(), 9876)));
        assert_eq!(parse_host_port(" 10.0.0.1:1 "), Ok(("10.0.0.1".into(), 1)));
        assert_eq!(parse_host_port("[::1]:65535"), Ok(("::1".into(), 65535)));
        for (bad, says) in [
            ("ns1", "no port"),
            ("ns1:", "is not a number"),
            ("ns1:port", "is not a number"),
            ("ns1:0", "port 0 is not within 1..=65535"),
            ("ns1:65536", "port 65536 is not within 1..=65535"),
            ("ns1:-1", "is not a number"),
            (":9876", "bad host"),
            ("::1:9876", "IPv6 host in brackets"),
            ("[::1:9876", "unclosed"),
            ("ns 1:9876", "bad host"),
            ("http://ns1:9876", "leave out the scheme"),
        ] {
            let e = parse_host_port(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains(says),
                "{bad}: {e}"
            );
        }
        let e = parse_address_list("a:1;b:99999;c").unwrap_err();
        assert!(e.contains("\"b:99999\"") && e.contains("65535"), "{e}");
    }
}

//! The admin library behind `apogee group create|update|delete|list|describe`:
//! consumer groups as configured objects (max delivery attempts, retry
//! backoff, FIFO), managed through a NameServer, which applies them on every
//! broker group's master. `describe` shows per queue the broker offset, the
//! group's committed offset, the lag (messages not yet acknowledged), what is
//! in flight and when the group last consumed, and the group's live clients. `list --lag`
//! adds every group's total lag and in-flight count ([`Admin::group_lags`]), largest lag
//! first.

use crate::admin::Admin;
use crate::duration::parse_duration;
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use crate::spelling::Spelled;
use apogee_proto::cluster;
use apogee_proto::group::{GroupConfig, LiteBinding, RetryPolicy, MAX_DELIVERY_ATTEMPTS};
use apogee_proto::group_convert::retry_to_proto;
use apogee_proto::limits;

/// A consumer group's settings as an operator gives them: `None` leaves a setting at its
/// default (create) or as it is (update).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSettings {
    /// Deliveries before a message goes to the group's dead-letter topic %DLQ%<group>.
    pub max_attempts: Option<u32>,
    /// Exponential backoff between deliveries (one of the two retry policies).
    pub retry_exponential: Option<RetryPolicy>,
    /// Backoff before each redelivery, one step per attempt, the last repeating.
    pub retry_custom: Option<RetryPolicy>,
    /// Hand out the messages of one message group one at a time, in order.
    pub fifo: Option<bool>,
    /// Make it a lite consumer group bound to this LITE parent topic (its clients subscribe
    /// lite topics under it).
    pub lite_bind: Option<String>,
    /// How a lite group's clients share a lite topic: shared (default) or exclusive (a new
    /// subscriber evicts the old one).
    pub lite_mode: Option<LiteModeArg>,
    /// Most lite topics one client of a lite group may subscribe (0: the broker's default).
    pub lite_quota: Option<u32>,
    /// Ignore message priority on PRIORITY topics: queues in plain rotation.
    pub priority_off: Option<bool>,
}

/// A lite group's mode, as the CLI spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiteModeArg {
    Shared,
    Exclusive,
}

impl Spelled for LiteModeArg {
    const SPELLINGS: &'static [(LiteModeArg, &'static str, &'static str)] = &[
        (LiteModeArg::Shared, "shared", ""),
        (LiteModeArg::Exclusive, "exclusive", ""),
    ];
}

impl GroupSettings {
    /// Whether no setting is given.
    pub fn is_empty(&self) -> bool {
        self.max_attempts.is_none()
            && self.retry_exponential.is_none()
            && self.retry_custom.is_none()
            && self.fifo.is_none()
            && self.lite_bind.is_none()
            && self.lite_mode.is_none()
            && self.lite_quota.is_none()
            && self.priority_off.is_none()
    }

    /// `lite` with the lite flags given applied (a lite mode or quota needs a binding, given
    /// now or already there).
    fn lite_binding(&self, lite: Option<LiteBinding>) -> ToolResult<Option<LiteBinding>> {
        let mut lite = match (&self.lite_bind, lite) {
            (Some(topic), Some(l)) => Some(LiteBinding {
                bind_topic: topic.clone(),
                ..l
            }),
            (Some(topic), None) => Some(LiteBinding {
                bind_topic: topic.clone(),
                exclusive: false,
                subscription_quota: 0,
            }),
            (None, l) => l,
        };
        match lite.as_mut() {
            Some(l) => {
                if let Some(mode) = self.lite_mode {
                    l.exclusive = mode == LiteModeArg::Exclusive;
                }
                if let Some(q) = self.lite_quota {
                    l.subscription_quota = q;
                }
            }
            None if self.lite_mode.is_some() || self.lite_quota.is_some() => {
                return Err(ToolError::Usage(
                    "--lite-mode and --lite-quota apply to a lite group: give --lite-bind TOPIC"
                        .into(),
                ))
            }
            None => {}
        }
        Ok(lite)
    }

    fn retry(&self) -> Option<&RetryPolicy> {
        self.retry_exponential
            .as_ref()
            .or(self.retry_custom.as_ref())
    }
}

/// A group's maximum delivery attempts, `1..=MAX_DELIVERY_ATTEMPTS`.
pub fn max_attempts(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(1..=MAX_DELIVERY_ATTEMPTS).contains(&n) {
        return Err(format!("must be between 1 and {MAX_DELIVERY_ATTEMPTS}"));
    }
    Ok(n)
}

fn ms_of(s: &str) -> Result<u64, String> {
    Ok(parse_duration(s.trim())?.as_millis() as u64)
}

/// `INITIAL,MAX[,MULTIPLIER]`.
pub fn parse_exponential(s: &str) -> Result<RetryPolicy, String> {
    let parts: Vec<&str> = s.split(',').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!(
            "{s:?}: expected INITIAL,MAX[,MULTIPLIER], e.g. 1s,5m,2"
        ));
    }
    let multiplier = match parts.get(2) {
        Some(m) => m
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("multiplier {m:?} is not a number"))?,
        None => 2.0,
    };
    let policy = RetryPolicy::Exponential {
        initial_ms: ms_of(parts[0])?,
        max_ms: ms_of(parts[1])?,
        multiplier,
    };
    policy.validate().map_err(|e| e.to_string())?;
    Ok(policy)
}

/// A comma-separated list of durations.
pub fn parse_custom(s: &str) -> Result<RetryPolicy, String> {
    let steps = s.split(',').map(ms_of).collect::<Result<Vec<_>, _>>()?;
    let policy = RetryPolicy::Custom(steps);
    policy.validate().map_err(|e| e.to_string())?;
    Ok(policy)
}

/// "500ms", "1s", "1m30s", "2h": a duration as compactly as it is exact.
pub fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let (h, m, s) = (ms / 3_600_000, (ms / 60_000) % 60, (ms / 1000) % 60);
    let mut out = String::new();
    for (v, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out
}

pub use crate::group_views::*;

fn check_name(name: &str) -> ToolResult<()> {
    limits::validate_group(name).map_err(|e| ToolError::Usage(e.to_string()))
}

/// The wire config for `create`: the flags given, the defaults for the rest.
fn new_config(name: &str, s: &GroupSettings) -> ToolResult<cluster::GroupConfig> {
    let config = GroupConfig {
        name: name.to_string(),
        max_delivery_attempts: s
            .max_attempts
            .unwrap_or(apogee_proto::group::DEFAULT_MAX_DELIVERY_ATTEMPTS),
        retry: s.retry().cloned().unwrap_or_default(),
        fifo: s.fifo.unwrap_or(false),
        lite: s.lite_binding(None)?,
        priority_off: s.priority_off.unwrap_or(false),
    };
    config
        .validate()
        .map_err(|e| ToolError::Usage(e.to_string()))?;
    Ok((&config).into())
}

/// `current` with the flags given applied.
fn changed_config(
    current: &cluster::GroupConfig,
    s: &GroupSettings,
) -> ToolResult<cluster::GroupConfig> {
    let mut wire = current.clone();
    if let Some(n) = s.max_attempts {
        wire.max_delivery_attempts = n;
    }
    if let Some(r) = s.retry() {
        wire.retry = Some(retry_to_proto(r));
    }
    if let Some(fifo) = s.fifo {
        wire.fifo = fifo;
    }
    let mut config = GroupConfig::try_from(&wire).map_err(|e| ToolError::Usage(e.to_string()))?;
    config.lite = s.lite_binding(config.lite.take())?;
    if let Some(off) = s.priority_off {
        config.priority_off = off;
    }
    config
        .validate()
        .map_err(|e| ToolError::Usage(e.to_string()))?;
    Ok((&config).into())
}

/// A group as `group list --lag` shows it: its config and how far behind it is.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct GroupLagRow {
    #[serde(flatten)]
    pub group: GroupRow,
    /// Messages stored and not acknowledged, over every queue it consumes.
    pub lag: u64,
    /// Deliveries handed out and not acknowledged.
    pub inflight: u64,
}

impl TableRow for GroupLagRow {
    fn headers() -> Vec<&'static str> {
        let mut h = GroupRow::headers();
        h.insert(1, "LAG");
        h.insert(2, "IN FLIGHT");
        h
    }
    fn cells(&self) -> Vec<String> {
        let mut c = self.group.cells();
        c.insert(1, self.lag.to_string());
        c.insert(2, self.inflight.to_string());
        c
    }
}

impl Admin {
    async fn group_listings(&self, with_lag: bool) -> ToolResult<Vec<cluster::GroupSummary>> {
        let resp = self
            .admin
            .clone()
            .list_groups(self.req(cluster::ListGroupsRequest { with_lag }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(resp.groups)
    }

    /// Every group with its lag and in-flight count summed over every broker group (each
    /// broker group's master computes all its groups' in one pass), largest lag first, then
    /// by name.
    pub async fn group_lags(&self) -> ToolResult<Vec<GroupLagRow>> {
        let mut rows: Vec<GroupLagRow> = self
            .group_listings(true)
            .await?
            .into_iter()
            .map(|g| GroupLagRow {
                group: group_row(&g.config.unwrap_or_default(), g.broker_names),
                lag: g.lag,
                inflight: g.inflight,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.lag
                .cmp(&a.lag)
                .then_with(|| a.group.group.cmp(&b.group.group))
        });
        Ok(rows)
    }

    /// A group's settings, its progress per queue (with the total lag and in-flight count)
    /// and its live clients, as `group describe` shows them.
    pub async fn describe_group(&self, name: &str) -> ToolResult<GroupDescription> {
        check_name(name)?;
        let resp = self
            .admin
            .clone()
            .describe_group(self.req(cluster::DescribeGroupRequest {
                group: name.to_string(),
                ..Default::default()
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(description(resp))
    }
}

impl Admin {
    /// Creates a consumer group on every broker group: the settings given, the defaults for
    /// the rest. When it exists already (a consumer's first receive creates it), changes the
    /// settings given instead if `update_if_exists`, else fails saying how to change it.
    pub async fn create_group(
        &self,
        name: &str,
        settings: &GroupSettings,
        update_if_exists: bool,
    ) -> ToolResult<GroupRow> {
        check_name(name)?;
        let group = new_config(name, settings)?;
        let created = self
            .admin
            .clone()
            .create_group(self.req(cluster::CreateGroupRequest { group: Some(group) }))
            .await;
        let resp = match created {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                if !update_if_exists {
                    return Err(ToolError::Server(format!(
                        "consumer group {name} already exists (a consumer's first receive \
                         creates it); change it with `apogee group update {name}`, or add \
                         --update-if-exists"
                    )));
                }
                return self.apply_group_settings(name, settings).await;
            }
            Err(s) => return Err(self.err(None)(s)),
        };
        Ok(group_row(
            &resp.group.unwrap_or_default(),
            resp.broker_names,
        ))
    }

    /// Changes the settings given of an existing group, keeping the others.
    pub async fn update_group(&self, name: &str, settings: &GroupSettings) -> ToolResult<GroupRow> {
        check_name(name)?;
        if settings.is_empty() {
            return Err(ToolError::Usage(
                "nothing to change: give --max-attempts, --retry-exponential, --retry-custom or --fifo".into(),
            ));
        }
        self.apply_group_settings(name, settings).await
    }

    /// Applies the settings given to an existing group on every broker group.
    async fn apply_group_settings(
        &self,
        name: &str,
        settings: &GroupSettings,
    ) -> ToolResult<GroupRow> {
        let current = self
            .group_listings(false)
            .await?
            .into_iter()
            .find_map(|g| g.config.filter(|c| c.name == name))
            .ok_or_else(|| ToolError::Server(format!("consumer group not found: {name}")))?;
        let group = changed_config(&current, settings)?;
        let resp = self
            .admin
            .clone()
            .update_group(self.req(cluster::UpdateGroupRequest { group: Some(group) }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(group_row(
            &resp.group.unwrap_or_default(),
            resp.broker_names,
        ))
    }

    /// Deletes a group: its config, offsets and in-flight deliveries, on every broker group.
    pub async fn delete_group(&self, name: &str) -> ToolResult<GroupDeleted> {
        check_name(name)?;
        let resp = self
            .admin
            .clone()
            .delete_group(self.req(cluster::DeleteGroupRequest {
                group: name.to_string(),
            }))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(GroupDeleted {
            group: name.to_string(),
            brokers: resp.broker_names,
        })
    }

    /// Every consumer group, by name.
    pub async fn list_groups(&self) -> ToolResult<Vec<GroupRow>> {
        let mut rows: Vec<GroupRow> = self
            .group_listings(false)
            .await?
            .into_iter()
            .map(|g| group_row(&g.config.unwrap_or_default(), g.broker_names))
            .collect();
        rows.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};
    #[test]
    fn a_created_group_is_told_with_where_it_starts() {
        let created = |broker: &str, start: &str| apogee_client::GroupCreated {
            broker_name: broker.into(),
            start: start.into(),
        };
        assert_eq!(created_note("billing", &[]), None);
        assert_eq!(
            created_note("billling", &[created("broker-a", "earliest")]).unwrap(),
            "group billling did not exist: created on broker-a, starting at the earliest offset"
        );
        assert_eq!(
            created_note(
                "g",
                &[created("broker-a", "latest"), created("broker-b", "latest")]
            )
            .unwrap(),
            "group g did not exist: created on broker-a, broker-b, starting at the latest offset"
        );
    }

    #[test]
    fn retry_flags_parse_durations() {
        assert_eq!(
            parse_exponential("500ms,1m").unwrap(),
            RetryPolicy::Exponential {
                initial_ms: 500,
                max_ms: 60_000,
                multiplier: 2.0
            }
        );
        assert_eq!(
            parse_exponential("1s, 30s, 1.5").unwrap(),
            RetryPolicy::Exponential {
                initial_ms: 1_000,
                max_ms: 30_000,
                multiplier: 1.5
            }
        );
        assert!(parse_exponential("1s").is_err());
        assert!(parse_exponential("10s,1s").is_err(), "initial above max");
        assert!(parse_exponential("1s,5s,x").is_err());
        assert_eq!(
            parse_custom("1s,5s,2m").unwrap(),
            RetryPolicy::Custom(vec![1_000, 5_000, 120_000])
        );
        assert!(parse_custom("1s,,2s").is_err());
        assert_eq!(
            parse_custom("5").unwrap(),
            RetryPolicy::Custom(vec![5_000]),
            "a bare number is seconds"
        );
        assert!(max_attempts("0").is_err());
        assert_eq!(max_attempts("16"), Ok(16));
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(format_ms(500), "500ms");
        assert_eq!(format_ms(1_000), "1s");
        assert_eq!(format_ms(90_000), "1m30s");
        assert_eq!(format_ms(7_200_000), "2h");
    }

    #[test]
    fn updates_keep_what_is_not_given() {
        let current = new_config(
            "g",
            &GroupSettings {
                fifo: Some(true),
                retry_custom: Some(RetryPolicy::Custom(vec![1_000])),
                ..Default::default()
            },
        )
        .unwrap();
        let changed = changed_config(
            &current,
            &GroupSettings {
                max_attempts: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(changed.max_delivery_attempts, 3);
        assert!(changed.fifo);
        assert_eq!(changed.retry, current.retry);
    }

    #[test]
    fn lite_and_priority_flags_set_and_keep_the_binding() {
        let lite = new_config(
            "g",
            &GroupSettings {
                lite_bind: Some("chat".into()),
                lite_mode: Some(LiteModeArg::Exclusive),
                lite_quota: Some(100),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(lite.lite_bind_topic, "chat");
        assert_eq!(lite.lite_mode, cluster::LiteMode::Exclusive as i32);
        assert_eq!(lite.lite_subscription_quota, 100);
        assert!(!lite.priority_off);
        let row = group_row(&lite, vec![]);
        assert_eq!(
            row.lite.as_ref().map(LiteView::cell).as_deref(),
            Some("chat exclusive quota 100")
        );
        // An update of the mode alone keeps the topic and the quota.
        let shared = changed_config(
            &lite,
            &GroupSettings {
                lite_mode: Some(LiteModeArg::Shared),
                priority_off: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (
                shared.lite_bind_topic.as_str(),
                shared.lite_mode,
                shared.lite_subscription_quota
            ),
            ("chat", cluster::LiteMode::Shared as i32, 100)
        );
        assert!(shared.priority_off);
        // A mode without a binding is a usage error.
        let plain = new_config("p", &GroupSettings::default()).unwrap();
        let err = changed_config(
            &plain,
            &GroupSettings {
                lite_quota: Some(5),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--lite-bind"), "{err}");
        assert!(new_config(
            "q",
            &GroupSettings {
                lite_bind: Some("bad topic".into()),
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn rows_render_as_table_and_json() {
        let row = group_row(
            &cluster::GroupConfig {
                name: "g".into(),
                ..Default::default()
            },
            vec!["b1".into()],
        );
        assert_eq!(
            render_list(std::slice::from_ref(&row), Format::Table),
            "GROUP  MAX ATTEMPTS  RETRY                                   FIFO   LITE  PRIORITY OFF  BROKERS\n\
             g      16            custom 1s,5s,10s,30s,...,2h (18 steps)  false  -     false         b1\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&crate::output::render_one(&row, Format::Json)).unwrap();
        assert_eq!(v["retry"]["type"], "custom");
        assert_eq!(v["retry"]["steps_ms"].as_array().unwrap().len(), 18);
        assert_eq!(v["max_delivery_attempts"], 16);

        let d = description(cluster::DescribeGroupResponse {
            config: Some(cluster::GroupConfig {
                name: "g".into(),
                ..Default::default()
            }),
            queues: vec![cluster::GroupQueueProgress {
                topic: "t".into(),
                broker_name: "b1".into(),
                broker_offset: 50,
                consumer_offset: 20,
                pop_offset: 25,
                lag: 30,
                inflight: 5,
                ..Default::default()
            }],
            clients: vec![],
            broker_names: vec!["b1".into()],
        });
        let v: serde_json::Value =
            serde_json::from_str(&render_description(&d, Format::Json)).unwrap();
        assert_eq!(
            (v["lag"].as_u64(), v["inflight"].as_u64()),
            (Some(30), Some(5))
        );
        assert_eq!(v["group"], "g");
        assert_eq!(v["queues"][0]["last_consume_ms"], serde_json::Value::Null);
        let line = render_description(&d, Format::Jsonl);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap(), v);
        let text = render_description(&d, Format::Table);
        assert!(text.contains("TOTAL"), "{text}");
        assert!(text.contains("no connected clients"), "{text}");
    }
}

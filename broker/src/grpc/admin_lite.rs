//! ListLiteTopics and DescribeLiteTopic on a broker: the lite topics of a LITE parent this
//! broker hosts, with a group's backlog, position, deliveries in flight and subscribers. The
//! broker's admin actions read them (`crate::actions::admin`); these functions put them into
//! the wire's messages.

use crate::actions::admin::LiteTopicState;
use crate::services::Broker;
use apogee_proto::cluster::{
    DescribeLiteTopicRequest, DescribeLiteTopicResponse, ListLiteTopicsRequest,
    ListLiteTopicsResponse, LiteTopicGroup, LiteTopicSummary,
};
use apogee_proto::ApogeeError;

fn summary(broker_name: &str, state: LiteTopicState) -> LiteTopicSummary {
    LiteTopicSummary {
        lite_topic: state.lite_topic,
        broker_name: broker_name.to_string(),
        min_offset: state.min_offset,
        next_offset: state.next_offset,
        last_store_ms: state.last_store_ms,
        backlog: state.backlog,
        subscribers: state.subscribers,
    }
}

/// One page of a parent's lite topics.
pub fn list(
    broker: &Broker,
    req: &ListLiteTopicsRequest,
) -> Result<ListLiteTopicsResponse, ApogeeError> {
    let page = broker.lite_topics(&req.parent, &req.group, &req.after, req.limit)?;
    let name = &broker.config().broker_name;
    Ok(ListLiteTopicsResponse {
        lite_topics: page
            .lite_topics
            .into_iter()
            .map(|state| summary(name, state))
            .collect(),
        next_after: page.next_after,
    })
}

/// One lite topic: its bounds and, per group, position, lag, in flight and subscribers.
pub fn describe(
    broker: &Broker,
    req: &DescribeLiteTopicRequest,
) -> Result<DescribeLiteTopicResponse, ApogeeError> {
    let (state, groups) = broker.describe_lite_topic(&req.parent, &req.lite_topic, &req.group)?;
    Ok(DescribeLiteTopicResponse {
        lite_topic: Some(summary(&broker.config().broker_name, state)),
        groups: groups
            .into_iter()
            .map(|g| LiteTopicGroup {
                group: g.group,
                committed_offset: g.committed_offset,
                lag: g.lag,
                inflight: g.inflight,
                subscribers: g.subscribers,
            })
            .collect(),
    })
}

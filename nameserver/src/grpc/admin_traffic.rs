//! The traffic history seen from a NameServer: `TrafficHistory` asked of every live broker,
//! masters and slaves alike (slaves serve reads: their deliveries count), and the answers
//! added up per (direction, topic, group). Brokers' buckets are aligned on the wall clock, so
//! two brokers' buckets with the same end time are the same 10 seconds; a broker whose newest
//! bucket ends earlier (it answered just before a bucket's end) has its buckets shifted by
//! that many.

use super::brokers::BrokerChannels;
use super::fan_out::{fan_out, Target};
use crate::registry::{GroupKey, Registry};
use apogee_proto::cluster::{TrafficHistoryRequest, TrafficHistoryResponse, TrafficSeries};
use apogee_proto::limits;
use std::collections::BTreeMap;
use tonic::Status;

/// Every live member of every broker group.
fn every_member(registry: &Registry) -> Vec<Target> {
    registry
        .cluster_info()
        .into_iter()
        .flat_map(|g| {
            let key = GroupKey::new(g.cluster_name, g.broker_name);
            g.members
                .into_iter()
                .map(move |m| Target::new(key.clone(), m.endpoint))
        })
        .collect()
}

pub async fn history(
    registry: &Registry,
    channels: &BrokerChannels,
    req: TrafficHistoryRequest,
) -> Result<TrafficHistoryResponse, Status> {
    if !req.topic.is_empty() {
        limits::validate_topic(&req.topic)?;
    }
    if !req.group.is_empty() {
        limits::validate_group(&req.group)?;
    }
    let targets = every_member(registry);
    if targets.is_empty() {
        return Err(Status::unavailable("no live broker"));
    }
    let answers = fan_out(channels, targets, "TrafficHistory", |mut c| {
        let r = req.clone();
        async move { c.traffic_history(r).await }
    })
    .await
    .answers()?;
    Ok(merge(answers.into_iter().map(|(_, a)| a).collect()))
}

/// The brokers' histories as one: the series of the same (direction, topic, group) summed
/// bucket by bucket, aligned on their end times, the newest end the latest of them.
pub fn merge(answers: Vec<TrafficHistoryResponse>) -> TrafficHistoryResponse {
    let Some(first) = answers.first() else {
        return TrafficHistoryResponse::default();
    };
    let (bucket_secs, bucket_count) = (first.bucket_secs, first.bucket_count as usize);
    let bucket_ms = i64::from(bucket_secs.max(1)) * 1000;
    let newest_end_ms = answers.iter().map(|a| a.newest_end_ms).max().unwrap_or(0);
    let mut merged = TrafficHistoryResponse {
        bucket_secs,
        bucket_count: bucket_count as u32,
        newest_end_ms,
        ..Default::default()
    };
    // Per series its sums, newest bucket first.
    let mut sums: BTreeMap<(i32, String, String), Vec<u64>> = BTreeMap::new();
    for a in answers {
        if a.bucket_secs != bucket_secs {
            tracing::warn!(
                "TrafficHistory: a broker answered {} s buckets, others {bucket_secs} s: left out",
                a.bucket_secs
            );
            continue;
        }
        merged.sampled_at_ms = merged.sampled_at_ms.max(a.sampled_at_ms);
        merged.untracked_samples += a.untracked_samples;
        let shift = ((newest_end_ms - a.newest_end_ms) / bucket_ms).max(0) as usize;
        for s in a.series {
            let sum = sums.entry((s.direction, s.topic, s.group)).or_default();
            for (i, count) in s.counts.iter().rev().enumerate() {
                let at = i + shift;
                if at >= bucket_count {
                    break;
                }
                if sum.len() <= at {
                    sum.resize(at + 1, 0);
                }
                sum[at] += count;
            }
        }
    }
    merged.series = sums
        .into_iter()
        .filter_map(|((direction, topic, group), mut newest_first)| {
            while newest_first.last() == Some(&0) {
                newest_first.pop();
            }
            if newest_first.is_empty() {
                return None;
            }
            newest_first.reverse();
            Some(TrafficSeries {
                direction,
                topic,
                group,
                counts: newest_first,
            })
        })
        .collect();
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::cluster::TrafficDirection::{TrafficIn, TrafficOut};

    fn series(direction: i32, topic: &str, group: &str, counts: &[u64]) -> TrafficSeries {
        TrafficSeries {
            direction,
            topic: topic.into(),
            group: group.into(),
            counts: counts.to_vec(),
        }
    }

    fn answer(newest_end_ms: i64, series: Vec<TrafficSeries>) -> TrafficHistoryResponse {
        TrafficHistoryResponse {
            bucket_secs: 10,
            bucket_count: 4,
            newest_end_ms,
            sampled_at_ms: newest_end_ms - 5_000,
            series,
            untracked_samples: 1,
        }
    }

    #[test]
    fn the_same_series_of_several_brokers_add_up_aligned_on_bucket_ends() {
        let (i, o) = (TrafficIn as i32, TrafficOut as i32);
        let master = answer(
            100_000,
            vec![series(i, "t", "", &[1, 2, 3]), series(o, "t", "g", &[4])],
        );
        // A slave that answered just before the master's newest bucket began.
        let slave = answer(
            90_000,
            vec![series(o, "t", "g", &[7, 0, 5]), series(o, "t", "h", &[9])],
        );
        let other_group = answer(100_000, vec![series(i, "t", "", &[10])]);
        let m = merge(vec![master, slave, other_group]);
        assert_eq!(m.newest_end_ms, 100_000);
        assert_eq!(m.sampled_at_ms, 95_000);
        assert_eq!(m.untracked_samples, 3);
        assert_eq!(
            m.series,
            [
                series(i, "t", "", &[1, 2, 13]),
                series(o, "t", "g", &[7, 0, 5, 4]),
                series(o, "t", "h", &[9, 0]),
            ]
        );
    }

    #[test]
    fn buckets_shifted_past_the_hour_are_left_out() {
        let o = TrafficOut as i32;
        let late = answer(100_000, vec![series(o, "t", "g", &[1])]);
        // Its newest bucket ended 4 buckets before: it is out of the 4 kept.
        let early = answer(60_000, vec![series(o, "t", "h", &[3])]);
        let m = merge(vec![late, early]);
        assert_eq!(m.series, [series(o, "t", "g", &[1])]);
        assert_eq!(merge(Vec::new()), TrafficHistoryResponse::default());
    }
}

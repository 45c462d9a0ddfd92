//! The rates page: messages in per topic and out per topic and consumer group over the last
//! hour, drawn from the brokers' own counters (`apogee stats traffic`: the NameServer sums
//! every live broker's 10-second buckets). A table of every series (the CLI's rows) and a
//! chart of the busiest [`MAX_CHARTS`] series, inline SVG drawn here with a rate axis (0 to the
//! peak, messages per second) and a time axis (when buckets ended, UTC); the page's script
//! refreshes the part below the filter every [`REFRESH_SECS`] from `?fragment=1`.

use crate::page::{encode, render, Chrome, Page, PageResult};
use crate::pages::Table;
use crate::Console;
use apogee_admin::traffic::{Direction, TrafficHistory, TrafficSeries};
use askama::Template;
use axum::extract::Query;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// Most series drawn as charts (the busiest in the hour); the table lists every one.
pub const MAX_CHARTS: usize = 12;
/// How often the page's script reloads the charts.
pub const REFRESH_SECS: u32 = 10;
/// The plot's size (the series' coordinates), inside the axes' margins.
const CHART_WIDTH: f64 = 720.0;
const CHART_HEIGHT: f64 = 120.0;
/// Labels along the time axis (the oldest bucket, the newest and evenly between).
const TIME_TICKS: usize = 7;
/// Labels along the rate axis (0, half the peak, the peak).
const RATE_TICKS: usize = 3;

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route("/rates", get(show))
}

#[derive(Deserialize, Default)]
struct Filter {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    fragment: Option<String>,
}

/// One series drawn.
pub struct Chart {
    pub title: String,
    /// The polyline's points, `x,y` pairs.
    pub points: String,
    /// Highest rate drawn (the top of the chart), messages per second.
    pub max_rate: String,
    pub last_minute: String,
    /// The rate axis: 0 at the bottom up to the peak (y positions).
    pub rate_ticks: Vec<Tick>,
    /// The time axis: when buckets ended, UTC `HH:MM` (x positions).
    pub time_ticks: Vec<Tick>,
}

/// A labelled mark on an axis, at `at` in the plot's coordinates.
pub struct Tick {
    pub at: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "rates_body.html")]
struct RatesBody {
    table: Table,
    charts: Vec<Chart>,
    bucket_secs: u32,
    untracked: u64,
}

#[derive(Template)]
#[template(path = "rates.html")]
struct RatesPage<'a> {
    chrome: &'a Chrome,
    topic: &'a str,
    group: &'a str,
    src: String,
    refresh: u32,
    body: RatesBody,
}

async fn show(page: Page, Query(f): Query<Filter>) -> PageResult {
    let topic = f.topic.trim();
    let group = f.group.trim();
    let history = page
        .admin()
        .traffic_history(
            (!topic.is_empty()).then_some(topic),
            (!group.is_empty()).then_some(group),
        )
        .await
        .map_err(|e| page.fail("rates", e))?;
    let body = body(&history);
    if f.fragment.is_some() {
        return Ok(render(&body)?.into_response());
    }
    let src = format!(
        "/console/rates?topic={}&group={}&fragment=1",
        encode(topic),
        encode(group)
    );
    let chrome = page.chrome("rates");
    Ok(render(&RatesPage {
        chrome: &chrome,
        topic,
        group,
        src,
        refresh: REFRESH_SECS,
        body,
    })?
    .into_response())
}

fn body(history: &TrafficHistory) -> RatesBody {
    let rates = history.rates();
    let table = Table::of(
        "rates",
        &rates,
        "No messages in or out in the last hour.",
        |r| {
            let key = match &r.group {
                Some(g) => format!("out/{}/{g}", r.topic),
                None => format!("in/{}", r.topic),
            };
            Some(("series", key))
        },
    );
    let mut busiest: Vec<&TrafficSeries> = history.series.iter().collect();
    busiest.sort_by_key(|s| std::cmp::Reverse(s.counts.iter().sum::<u64>()));
    let charts = busiest
        .into_iter()
        .take(MAX_CHARTS)
        .map(|s| chart(history, s))
        .collect();
    RatesBody {
        table,
        charts,
        bucket_secs: history.bucket_secs,
        untracked: history.untracked_samples,
    }
}

/// A series as a polyline: one point per bucket, its messages per second.
pub fn chart(history: &TrafficHistory, s: &TrafficSeries) -> Chart {
    let width = f64::from(history.bucket_secs.max(1));
    let rates: Vec<f64> = s.counts.iter().map(|&c| c as f64 / width).collect();
    let max = rates.iter().copied().fold(0.0, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let step = CHART_WIDTH / (rates.len().max(2) - 1) as f64;
    let y_of = |rate: f64| CHART_HEIGHT - rate / top * (CHART_HEIGHT - 10.0);
    let points = rates
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{:.1},{:.1}", i as f64 * step, y_of(*r)))
        .collect::<Vec<_>>()
        .join(" ");
    let rate_ticks = (0..RATE_TICKS)
        .map(|k| {
            let rate = top * k as f64 / (RATE_TICKS - 1) as f64;
            Tick {
                at: format!("{:.1}", y_of(rate)),
                label: format!("{}/s", short_rate(rate)),
            }
        })
        .collect();
    let last = rates.len().saturating_sub(1);
    let bucket_ms = i64::from(history.bucket_secs.max(1)) * 1000;
    let mut time_ticks: Vec<Tick> = (0..TIME_TICKS)
        .map(|k| k * last / (TIME_TICKS - 1))
        .map(|i| Tick {
            at: format!("{:.1}", i as f64 * step),
            label: utc_clock(history.newest_end_ms - (last - i) as i64 * bucket_ms),
        })
        .collect();
    time_ticks.dedup_by(|a, b| a.at == b.at);
    let title = match (&s.direction, &s.group) {
        (Direction::Out, Some(g)) => format!("{} → {g} (out)", s.topic),
        _ => format!("{} (in)", s.topic),
    };
    Chart {
        title,
        points,
        max_rate: format!("{max:.1}/s"),
        last_minute: format!("{:.2}/s", history.rate(s, 60)),
        rate_ticks,
        time_ticks,
    }
}

/// A rate for an axis label: whole numbers bare, else one decimal.
fn short_rate(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

/// `HH:MM` in UTC of Unix ms `ms`.
fn utc_clock(ms: i64) -> String {
    let minute_of_day = ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(counts: Vec<u64>) -> TrafficHistory {
        TrafficHistory {
            bucket_secs: 10,
            newest_end_ms: 1_000_000,
            sampled_at_ms: 1_000_000,
            series: vec![TrafficSeries {
                direction: Direction::Out,
                topic: "T".into(),
                group: Some("G".into()),
                counts,
            }],
            untracked_samples: 0,
        }
    }

    #[test]
    fn a_chart_puts_the_busiest_bucket_at_the_top_and_an_idle_one_at_the_bottom() {
        let h = history(vec![0, 50, 100]);
        let c = chart(&h, &h.series[0]);
        assert_eq!(c.points, "0.0,120.0 360.0,65.0 720.0,10.0");
        assert_eq!(c.max_rate, "10.0/s");
        assert_eq!(c.title, "T → G (out)");
        let idle = history(vec![0, 0]);
        let c = chart(&idle, &idle.series[0]);
        assert_eq!(c.points, "0.0,120.0 720.0,120.0");
    }

    #[test]
    fn a_chart_labels_its_rate_axis_from_zero_to_the_peak_and_its_time_axis_in_utc() {
        // 361 buckets of 10 s, the newest ending at 12:00:00 UTC: an hour from 11:00.
        let mut h = history(vec![0; 361]);
        h.newest_end_ms = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000 + 12 * 3_600_000;
        h.series[0].counts[100] = 40;
        let c = chart(&h, &h.series[0]);
        let rates: Vec<(&str, &str)> = c
            .rate_ticks
            .iter()
            .map(|t| (t.at.as_str(), t.label.as_str()))
            .collect();
        assert_eq!(rates, [("120.0", "0/s"), ("65.0", "2/s"), ("10.0", "4/s")]);
        let times: Vec<(&str, &str)> = c
            .time_ticks
            .iter()
            .map(|t| (t.at.as_str(), t.label.as_str()))
            .collect();
        assert_eq!(
            times,
            [
                ("0.0", "11:00"),
                ("120.0", "11:10"),
                ("240.0", "11:20"),
                ("360.0", "11:30"),
                ("480.0", "11:40"),
                ("600.0", "11:50"),
                ("720.0", "12:00"),
            ]
        );
    }

    #[test]
    fn the_body_lists_every_series_and_charts_the_busiest() {
        let mut h = history(vec![1]);
        for i in 0..(MAX_CHARTS + 3) {
            h.series.push(TrafficSeries {
                direction: Direction::In,
                topic: format!("t{i}"),
                group: None,
                counts: vec![i as u64],
            });
        }
        let b = body(&h);
        assert_eq!(b.table.rows.len(), MAX_CHARTS + 4);
        assert_eq!(b.charts.len(), MAX_CHARTS);
        assert_eq!(b.charts[0].title, format!("t{} (in)", MAX_CHARTS + 2));
    }
}

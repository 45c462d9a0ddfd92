//! The broker's traffic history: messages in per topic and out per topic and consumer group,
//! per [`BUCKET_SECS`] over the last hour ([`BUCKET_COUNT`] buckets), for the Admin RPC
//! `TrafficHistory` (the console's rates page, `apogee stats traffic`), without Prometheus.
//!
//! Nothing is added to the send and receive paths: a [`TrafficSampler`] reads the counters
//! they already bump (`rocketmq_messages_in_total`, `rocketmq_messages_out_total`) and keeps,
//! per series, the delta since its previous read in a ring of buckets ([`History`]). It
//! reads them just before the end of every bucket (a background task started with the
//! broker) and when a `TrafficHistory` call arrives, so the newest bucket is the current,
//! partial one, counted up to that call. Buckets are aligned on the wall clock (each ends at
//! a multiple of the bucket width), so the NameServer can add up the brokers' histories.
//!
//! Only series with traffic within the hour are kept (one all zero for an hour is dropped),
//! at most [`MAX_SERIES`] of them: past the cap a new series is not tracked, and
//! `apogee_traffic_untracked_samples_total` counts the samples so lost. A counter that goes
//! down (a reset) counts from zero again.

use apogee_proto::cluster::{
    TrafficDirection, TrafficHistoryRequest, TrafficHistoryResponse, TrafficSeries,
};
use apogee_proto::time::now_ms;
use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The width of one bucket.
pub const BUCKET_SECS: u32 = 10;
/// Buckets kept per series: one hour.
pub const BUCKET_COUNT: usize = 360;
/// Series kept at most; past it a new series is not tracked.
pub const MAX_SERIES: usize = 20_000;
/// How long before a bucket's end the background task reads the counters, so what came in
/// the bucket lands in it.
const SAMPLE_LEAD_MS: i64 = 20;

const BUCKET_MS: i64 = BUCKET_SECS as i64 * 1000;

/// Which counter a series is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Messages stored (`rocketmq_messages_in_total`, summed over message types).
    In,
    /// Messages delivered to a group (`rocketmq_messages_out_total`).
    Out,
}

/// One series: a topic's messages in, or a topic's messages out to a group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub direction: Direction,
    pub topic: String,
    /// Empty for [`Direction::In`].
    pub group: String,
}

/// Counter totals by series, as read at one sample.
pub type Totals = HashMap<SeriesKey, u64>;

/// The rings of every tracked series (the sampler's state, apart from reading counters).
pub struct History {
    max_series: usize,
    /// The index (Unix ms / bucket width) of the newest bucket; None before the first sample.
    newest_bucket: Option<i64>,
    sampled_at_ms: i64,
    /// What each counter series read at the previous sample.
    last_totals: Totals,
    /// Per series its buckets from the oldest with traffic to the newest (its back); a
    /// series without traffic in any kept bucket has no ring.
    rings: HashMap<SeriesKey, VecDeque<u64>>,
    untracked: u64,
}

/// A history as it is answered: every kept series' buckets, oldest first, the last one
/// ending at `newest_end_ms`.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub newest_end_ms: i64,
    pub sampled_at_ms: i64,
    pub series: Vec<(SeriesKey, Vec<u64>)>,
    pub untracked: u64,
}

impl History {
    pub fn new(max_series: usize) -> History {
        History {
            max_series,
            newest_bucket: None,
            sampled_at_ms: 0,
            last_totals: Totals::new(),
            rings: HashMap::new(),
            untracked: 0,
        }
    }

    /// Series tracked now.
    pub fn series_count(&self) -> usize {
        self.rings.len()
    }

    /// Records the counter totals read at `at_ms`: each series' growth since the previous
    /// sample goes to the bucket holding `at_ms`. Returns the samples with traffic not kept
    /// because of the cap.
    pub fn sample(&mut self, totals: Totals, at_ms: i64) -> u64 {
        let bucket = at_ms.div_euclid(BUCKET_MS);
        // In the same bucket (or with the clock stepped back) it keeps counting there.
        if let Some(newest) = self.newest_bucket.filter(|&n| bucket > n) {
            self.advance(bucket - newest);
        }
        self.newest_bucket = self.newest_bucket.max(Some(bucket));
        let mut untracked = 0;
        for (key, &total) in &totals {
            let before = self.last_totals.get(key).copied().unwrap_or(0);
            // A counter below its previous value was reset: it counts from zero.
            let delta = total.checked_sub(before).unwrap_or(total);
            if delta == 0 {
                continue;
            }
            if let Some(ring) = self.rings.get_mut(key) {
                let newest = ring.back_mut().expect("a kept ring is never empty");
                *newest = newest.saturating_add(delta);
            } else if self.rings.len() < self.max_series {
                self.rings.insert(key.clone(), VecDeque::from([delta]));
            } else {
                untracked += 1;
            }
        }
        self.last_totals = totals;
        self.sampled_at_ms = self.sampled_at_ms.max(at_ms);
        self.untracked += untracked;
        untracked
    }

    /// Moves every ring `by` buckets on: empty new buckets, the ones older than the hour
    /// gone, and a ring left without traffic dropped.
    fn advance(&mut self, by: i64) {
        let fresh = by.min(BUCKET_COUNT as i64) as usize;
        self.rings.retain(|_, ring| {
            ring.extend(std::iter::repeat_n(0, fresh));
            let excess = ring.len().saturating_sub(BUCKET_COUNT);
            ring.drain(..excess);
            while ring.front() == Some(&0) {
                ring.pop_front();
            }
            !ring.is_empty()
        });
    }

    /// Messages per second of `direction` over each window of `windows_secs` (multiples of
    /// [`BUCKET_SECS`], at most an hour): the complete buckets before the newest one (which
    /// is partial), every series of that direction summed. A window longer than the broker
    /// has run counts the time before its start as empty.
    pub fn rates(&self, direction: Direction, windows_secs: &[u32]) -> Vec<f64> {
        windows_secs
            .iter()
            .map(|&secs| {
                let buckets = (secs / BUCKET_SECS).clamp(1, BUCKET_COUNT as u32 - 1) as usize;
                let count: u64 = self
                    .rings
                    .iter()
                    .filter(|(key, _)| key.direction == direction)
                    .map(|(_, ring)| {
                        let complete = ring.len() - 1;
                        ring.range(complete.saturating_sub(buckets)..complete)
                            .sum::<u64>()
                    })
                    .sum();
                count as f64 / (buckets as f64 * f64::from(BUCKET_SECS))
            })
            .collect()
    }

    /// The series `wanted` keeps, sorted by key.
    pub fn snapshot(&self, wanted: impl Fn(&SeriesKey) -> bool) -> Snapshot {
        let mut series: Vec<(SeriesKey, Vec<u64>)> = self
            .rings
            .iter()
            .filter(|(key, _)| wanted(key))
            .map(|(key, ring)| (key.clone(), ring.iter().copied().collect()))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            newest_end_ms: self.newest_bucket.map_or(0, |b| (b + 1) * BUCKET_MS),
            sampled_at_ms: self.sampled_at_ms,
            series,
            untracked: self.untracked,
        }
    }
}

/// Reads the message counters into a [`History`]: every bucket from a background task,
/// and on demand when the history is asked for.
pub struct TrafficSampler {
    messages_in: IntCounterVec,
    messages_out: IntCounterVec,
    /// `apogee_traffic_untracked_samples_total`.
    untracked: IntCounter,
    history: parking_lot::Mutex<History>,
    /// The totals at the start of today and of yesterday (UTC); under `history`'s lock.
    days: parking_lot::Mutex<DayMarks>,
}

/// Messages in and out, the per-second rates of the last minutes and the totals behind the
/// daily figures (RocketMQ's `putTps`, `getTransferredTps`, `msgPutTotalTodayMorning` ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrafficSummary {
    /// Messages stored per second over each of [`RATE_WINDOWS_SECS`] (every topic).
    pub in_per_sec: Vec<f64>,
    /// Messages delivered per second over each of [`RATE_WINDOWS_SECS`] (every topic).
    pub out_per_sec: Vec<f64>,
    /// Messages of clients' topics (system topics left out) stored and delivered: since
    /// the broker started, and at the start of today and of yesterday.
    pub in_totals: DayTotals,
    pub out_totals: DayTotals,
}

/// The windows of [`TrafficSummary`]'s rates: 10 s, a minute, ten minutes.
pub const RATE_WINDOWS_SECS: [u32; 3] = [10, 60, 600];

/// A counter's total now and at the start of the last two days (UTC), as this process
/// counted it: a day that began before the process started has 0 (counters start at 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayTotals {
    pub now: u64,
    pub today_start: u64,
    pub yesterday_start: u64,
}

/// The totals of clients' topics at the last sample and at the last two day starts.
#[derive(Debug, Default)]
struct DayMarks {
    /// The UTC day (days since the epoch) of the last sample; None before the first.
    day: Option<i64>,
    /// (in, out) at the last sample.
    last: (u64, u64),
    today_start: (u64, u64),
    yesterday_start: (u64, u64),
}

impl DayMarks {
    /// Takes the totals read at `at_ms`: a sample on a later day than the last one makes the
    /// last sample's totals (the last read before the day began) the start of the new day.
    fn observe(&mut self, totals: (u64, u64), at_ms: i64) {
        let day = at_ms.div_euclid(86_400_000);
        if let Some(last_day) = self.day.filter(|&d| day > d) {
            self.yesterday_start = if day == last_day + 1 {
                self.today_start
            } else {
                self.last
            };
            self.today_start = self.last;
        }
        self.day = self.day.max(Some(day));
        self.last = totals;
    }

    fn totals(&self) -> (DayTotals, DayTotals) {
        let of = |pick: fn((u64, u64)) -> u64| DayTotals {
            now: pick(self.last),
            today_start: pick(self.today_start),
            yesterday_start: pick(self.yesterday_start),
        };
        (of(|t| t.0), of(|t| t.1))
    }
}

/// The totals of clients' topics (not system topics) in `totals`: (in, out).
fn client_totals(totals: &Totals) -> (u64, u64) {
    let mut sums = (0u64, 0u64);
    for (key, &n) in totals {
        if apogee_proto::names::is_system_topic(&key.topic) {
            continue;
        }
        match key.direction {
            Direction::In => sums.0 = sums.0.saturating_add(n),
            Direction::Out => sums.1 = sums.1.saturating_add(n),
        }
    }
    sums
}

impl TrafficSampler {
    /// A sampler of `messages_in` (labels topic, message_type) and `messages_out` (labels
    /// topic, consumer_group), counting what the cap leaves out in `untracked`.
    pub fn new(
        messages_in: IntCounterVec,
        messages_out: IntCounterVec,
        untracked: IntCounter,
    ) -> TrafficSampler {
        TrafficSampler {
            messages_in,
            messages_out,
            untracked,
            history: parking_lot::Mutex::new(History::new(MAX_SERIES)),
            days: parking_lot::Mutex::new(DayMarks::default()),
        }
    }

    /// Reads the counters now into the history.
    pub fn sample_now(&self) {
        // Read under the lock: two samples applied out of order would look like a reset.
        let mut history = self.history.lock();
        let mut totals = Totals::new();
        add_totals(&mut totals, &self.messages_in, Direction::In);
        add_totals(&mut totals, &self.messages_out, Direction::Out);
        let now = now_ms();
        self.days.lock().observe(client_totals(&totals), now);
        let lost = history.sample(totals, now);
        self.untracked.inc_by(lost);
    }

    /// The rates and totals now (sampled first).
    pub fn summary(&self) -> TrafficSummary {
        self.sample_now();
        let history = self.history.lock();
        let (in_totals, out_totals) = self.days.lock().totals();
        TrafficSummary {
            in_per_sec: history.rates(Direction::In, &RATE_WINDOWS_SECS),
            out_per_sec: history.rates(Direction::Out, &RATE_WINDOWS_SECS),
            in_totals,
            out_totals,
        }
    }

    /// The history up to now of the series `req` asks for.
    pub fn history(&self, req: &TrafficHistoryRequest) -> TrafficHistoryResponse {
        self.sample_now();
        let snapshot = self.history.lock().snapshot(|key| {
            (req.topic.is_empty() || key.topic == req.topic)
                && (req.group.is_empty() || key.group == req.group)
        });
        to_response(snapshot)
    }

    /// Samples just before the end of every bucket until the broker starts shutting down.
    pub fn spawn(self: Arc<Self>, mut closing: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let now = now_ms();
                let wait = ms_to_next_sample(now);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => self.sample_now(),
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
        })
    }
}

/// How long from `now` until the next sample: [`SAMPLE_LEAD_MS`] before a bucket's end.
fn ms_to_next_sample(now: i64) -> u64 {
    let mut due = (now.div_euclid(BUCKET_MS) + 1) * BUCKET_MS - SAMPLE_LEAD_MS;
    if due <= now {
        due += BUCKET_MS;
    }
    (due - now) as u64
}

/// Adds each series of `counters` to `totals` (a topic's message types summed).
fn add_totals(totals: &mut Totals, counters: &IntCounterVec, direction: Direction) {
    for family in counters.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map_or("", |l| l.value())
            };
            let key = SeriesKey {
                direction,
                topic: label("topic").to_string(),
                group: match direction {
                    Direction::In => String::new(),
                    Direction::Out => label("consumer_group").to_string(),
                },
            };
            // The placeholder of a family with no series yet (`zero_until_first`): no topic.
            if key.topic.is_empty() {
                continue;
            }
            let value = metric.get_counter().get_value() as u64;
            *totals.entry(key).or_default() += value;
        }
    }
}

fn to_response(s: Snapshot) -> TrafficHistoryResponse {
    TrafficHistoryResponse {
        bucket_secs: BUCKET_SECS,
        bucket_count: BUCKET_COUNT as u32,
        newest_end_ms: s.newest_end_ms,
        sampled_at_ms: s.sampled_at_ms,
        series: s
            .series
            .into_iter()
            .map(|(key, counts)| TrafficSeries {
                direction: match key.direction {
                    Direction::In => TrafficDirection::TrafficIn,
                    Direction::Out => TrafficDirection::TrafficOut,
                } as i32,
                topic: key.topic,
                group: key.group,
                counts,
            })
            .collect(),
        untracked_samples: s.untracked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time in bucket `b`, `ms` into it.
    fn at(b: i64, ms: i64) -> i64 {
        1_700_000_000_000 / BUCKET_MS * BUCKET_MS + b * BUCKET_MS + ms
    }

    fn key(direction: Direction, topic: &str, group: &str) -> SeriesKey {
        SeriesKey {
            direction,
            topic: topic.into(),
            group: group.into(),
        }
    }

    fn totals(of: &[(&SeriesKey, u64)]) -> Totals {
        of.iter().map(|(k, v)| ((*k).clone(), *v)).collect()
    }

    fn counts(h: &History, k: &SeriesKey) -> Option<Vec<u64>> {
        h.snapshot(|s| s == k).series.pop().map(|(_, c)| c)
    }

    #[test]
    fn each_bucket_holds_the_growth_since_the_previous_sample() {
        let t_in = key(Direction::In, "t", "");
        let t_out = key(Direction::Out, "t", "g");
        let mut h = History::new(MAX_SERIES);
        h.sample(totals(&[(&t_in, 5), (&t_out, 0)]), at(0, 100));
        h.sample(totals(&[(&t_in, 8), (&t_out, 2)]), at(0, 9_000));
        h.sample(totals(&[(&t_in, 8), (&t_out, 6)]), at(2, 500));
        assert_eq!(counts(&h, &t_in).unwrap(), [8, 0, 0]);
        assert_eq!(
            counts(&h, &t_out).unwrap(),
            [2, 0, 4],
            "no bucket before its first traffic"
        );
        let s = h.snapshot(|_| true);
        assert_eq!(
            s.newest_end_ms,
            at(3, 0),
            "the newest bucket is the current one"
        );
        assert_eq!(s.sampled_at_ms, at(2, 500));
        assert_eq!(
            s.series.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            [t_in, t_out]
        );
    }

    #[test]
    fn a_series_without_traffic_for_an_hour_is_dropped() {
        let k = key(Direction::In, "t", "");
        let mut h = History::new(MAX_SERIES);
        h.sample(totals(&[(&k, 3)]), at(0, 0));
        let last = BUCKET_COUNT as i64 - 1;
        h.sample(totals(&[(&k, 3)]), at(last, 0));
        let kept = counts(&h, &k).expect("still within the hour");
        assert_eq!(kept.len(), BUCKET_COUNT);
        assert_eq!(kept[0], 3);
        h.sample(totals(&[(&k, 3)]), at(last + 1, 0));
        assert_eq!(counts(&h, &k), None);
        assert_eq!(h.series_count(), 0);
        // Traffic again: tracked again, from the counter's previous value.
        h.sample(totals(&[(&k, 10)]), at(last + 400, 0));
        assert_eq!(counts(&h, &k).unwrap(), [7]);
    }

    #[test]
    fn the_oldest_buckets_leave_the_ring_after_an_hour() {
        let k = key(Direction::Out, "t", "g");
        let mut h = History::new(MAX_SERIES);
        for b in 0..=BUCKET_COUNT as i64 + 5 {
            h.sample(totals(&[(&k, b as u64 + 1)]), at(b, 0));
        }
        let kept = counts(&h, &k).unwrap();
        assert_eq!(kept.len(), BUCKET_COUNT);
        assert!(kept.iter().all(|&c| c == 1), "{kept:?}");
    }

    #[test]
    fn past_the_cap_new_series_are_counted_as_untracked() {
        let a = key(Direction::In, "a", "");
        let b = key(Direction::In, "b", "");
        let c = key(Direction::In, "c", "");
        let mut h = History::new(2);
        assert_eq!(h.sample(totals(&[(&a, 1), (&b, 1), (&c, 0)]), at(0, 0)), 0);
        assert_eq!(h.sample(totals(&[(&a, 2), (&b, 1), (&c, 4)]), at(0, 1)), 1);
        assert_eq!(h.series_count(), 2);
        assert_eq!(counts(&h, &c), None);
        assert_eq!(counts(&h, &a).unwrap(), [2]);
        assert_eq!(h.snapshot(|_| true).untracked, 1);
        // Once a series is dropped, a new one takes its place.
        h.sample(
            totals(&[(&a, 2), (&b, 1), (&c, 4)]),
            at(BUCKET_COUNT as i64, 0),
        );
        assert_eq!(h.series_count(), 0);
        h.sample(
            totals(&[(&a, 2), (&b, 1), (&c, 9)]),
            at(BUCKET_COUNT as i64, 1),
        );
        assert_eq!(counts(&h, &c).unwrap(), [5]);
    }

    #[test]
    fn a_counter_that_goes_down_counts_from_zero() {
        let k = key(Direction::In, "t", "");
        let mut h = History::new(MAX_SERIES);
        h.sample(totals(&[(&k, 50)]), at(0, 0));
        h.sample(totals(&[(&k, 4)]), at(1, 0));
        assert_eq!(counts(&h, &k).unwrap(), [50, 4]);
    }

    #[test]
    fn the_sampler_reads_the_counters_by_topic_and_group() {
        let opts = |n: &str| prometheus::Opts::new(n, "h");
        let messages_in = IntCounterVec::new(opts("in"), &["topic", "message_type"]).unwrap();
        let messages_out = IntCounterVec::new(opts("out"), &["topic", "consumer_group"]).unwrap();
        let untracked = IntCounter::new("untracked", "h").unwrap();
        let sampler = TrafficSampler::new(messages_in.clone(), messages_out.clone(), untracked);
        messages_in.with_label_values(&["t", "normal"]).inc_by(3);
        messages_in.with_label_values(&["t", "fifo"]).inc_by(2);
        messages_in.with_label_values(&["u", "normal"]).inc_by(1);
        messages_out.with_label_values(&["t", "g"]).inc_by(4);
        let all = sampler.history(&TrafficHistoryRequest::default());
        let rows: Vec<(i32, &str, &str, u64)> = all
            .series
            .iter()
            .map(|s| (s.direction, &*s.topic, &*s.group, s.counts.iter().sum()))
            .collect();
        let (i, o) = (
            TrafficDirection::TrafficIn as i32,
            TrafficDirection::TrafficOut as i32,
        );
        assert_eq!(rows, [(i, "t", "", 5), (i, "u", "", 1), (o, "t", "g", 4)]);
        assert_eq!(all.bucket_secs, BUCKET_SECS);
        assert!(all.newest_end_ms > all.sampled_at_ms);
        let by_group = sampler.history(&TrafficHistoryRequest {
            topic: String::new(),
            group: "g".into(),
        });
        assert_eq!(by_group.series.len(), 1);
        assert_eq!(by_group.series[0].counts.iter().sum::<u64>(), 4);
        let by_topic = sampler.history(&TrafficHistoryRequest {
            topic: "u".into(),
            group: String::new(),
        });
        assert_eq!(by_topic.series.len(), 1);
    }

    #[test]
    fn rates_count_the_complete_buckets_of_each_window() {
        let k = key(Direction::In, "t", "");
        let o = key(Direction::Out, "t", "g");
        let mut h = History::new(MAX_SERIES);
        // 100 in the bucket 6 before the newest, 20 in the one before the newest, 7 in
        // the newest (partial, never counted).
        h.sample(totals(&[(&k, 100), (&o, 5)]), at(0, 0));
        h.sample(totals(&[(&k, 120), (&o, 5)]), at(5, 0));
        h.sample(totals(&[(&k, 127), (&o, 5)]), at(6, 0));
        let per = |secs: u32| f64::from(secs);
        assert_eq!(
            h.rates(Direction::In, &[10, 60, 600]),
            [20.0 / per(10), 120.0 / per(60), 120.0 / per(600)]
        );
        assert_eq!(h.rates(Direction::Out, &[10, 60]), [0.0, 5.0 / per(60)]);
        assert_eq!(History::new(1).rates(Direction::In, &[10]), [0.0]);
    }

    #[test]
    fn day_starts_take_the_totals_of_the_last_sample_before_them() {
        const DAY: i64 = 86_400_000;
        let mut d = DayMarks::default();
        d.observe((5, 1), 10 * DAY + 1000);
        // Within the first day: nothing marked (the day began before these counters).
        assert_eq!(
            d.totals().0,
            DayTotals {
                now: 5,
                today_start: 0,
                yesterday_start: 0
            }
        );
        d.observe((9, 2), 11 * DAY - 10);
        d.observe((12, 3), 11 * DAY + 10);
        assert_eq!(
            d.totals().0,
            DayTotals {
                now: 12,
                today_start: 9,
                yesterday_start: 0
            }
        );
        assert_eq!(
            d.totals().1,
            DayTotals {
                now: 3,
                today_start: 2,
                yesterday_start: 0
            }
        );
        d.observe((20, 4), 12 * DAY + 10);
        assert_eq!(
            d.totals().0,
            DayTotals {
                now: 20,
                today_start: 12,
                yesterday_start: 9
            }
        );
        let mut system = Totals::new();
        system.insert(key(Direction::In, "%RETRY%g", ""), 4);
        system.insert(key(Direction::In, "t", ""), 3);
        system.insert(key(Direction::Out, "t", "g"), 2);
        assert_eq!(client_totals(&system), (3, 2));
    }

    #[test]
    fn samples_are_due_just_before_each_bucket_ends() {
        assert_eq!(
            ms_to_next_sample(at(0, 0)) as i64,
            BUCKET_MS - SAMPLE_LEAD_MS
        );
        assert_eq!(
            ms_to_next_sample(at(0, BUCKET_MS - 5)) as i64,
            BUCKET_MS - 15
        );
    }
}

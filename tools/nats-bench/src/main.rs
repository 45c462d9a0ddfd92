//! `nats-bench`: acknowledged publishes to a NATS JetStream stream, the NATS side of
//! `tools/nats-compare.sh` (the Apogee side is `apogee bench produce`).
//!
//! It opens `--connections` connections with `--inflight` publishes in flight on each, every
//! publish awaited until JetStream acknowledges it (the PubAck), first for `--warmup` seconds
//! and then for the measured `--duration` seconds. It creates the stream (file storage, one
//! replica) when it does not exist. At the end it prints one JSON line:
//!
//! ```text
//! {"msgs_per_sec":..,"sent":..,"p50_us":..,"p99_us":..,"server_cpu_us_per_msg":..,"errors":..,..}
//! ```
//!
//! `sent` counts the publishes acknowledged inside the measured window; the latency is from a
//! publish's start to its acknowledgement. `server_cpu_us_per_msg` is the CPU (user + system,
//! from `/proc/<--server-pid>/stat`) the server spent in the window per acknowledged publish,
//! null without `--server-pid`. A failed publish or acknowledgement is counted in `errors`
//! (the first one in `first_error`) and the run goes on; it exits with 1 when nothing was
//! acknowledged in the window.

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

const USAGE: &str = "usage: nats-bench [--server URL] [--stream NAME] [--subject SUBJECT] \
[--connections C] [--inflight I] [--size BYTES] [--duration SECS] [--warmup SECS] [--server-pid PID]";

/// What to run, from the command line.
#[derive(Debug)]
struct Options {
    server: String,
    stream: String,
    subject: String,
    connections: usize,
    inflight: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut o = Options {
            server: "nats://127.0.0.1:4222".into(),
            stream: "bench".into(),
            subject: "bench.msgs".into(),
            connections: 4,
            inflight: 16,
            size: 1024,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            server_pid: None,
        };
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                return Err(USAGE.into());
            }
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = |v: &str| -> Result<u64, String> {
                v.parse()
                    .map_err(|_| format!("{flag}: not a whole number: {v}"))
            };
            match flag.as_str() {
                "--server" => o.server = value,
                "--stream" => o.stream = value,
                "--subject" => o.subject = value,
                "--connections" => o.connections = number(&value)? as usize,
                "--inflight" => o.inflight = number(&value)? as usize,
                "--size" => o.size = number(&value)? as usize,
                "--duration" => o.duration = Duration::from_secs(number(&value)?),
                "--warmup" => o.warmup = Duration::from_secs(number(&value)?),
                "--server-pid" => o.server_pid = Some(number(&value)? as u32),
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        if o.connections == 0 || o.inflight == 0 || o.duration.is_zero() {
            return Err("--connections, --inflight and --duration must be above 0".into());
        }
        Ok(o)
    }
}

/// The measured window: publishes acknowledged between `start` and `end` are counted.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What one publisher (one of the in-flight slots of a connection) saw.
#[derive(Default)]
struct PublisherStats {
    /// Latencies (µs) of the publishes acknowledged inside the window.
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl PublisherStats {
    fn record_error(&mut self, error: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}

/// One in-flight slot: publishes one message at a time, each awaited until acknowledged,
/// until the window ends.
async fn publish_until_end(
    context: jetstream::Context,
    subject: String,
    payload: Bytes,
    window: Window,
) -> PublisherStats {
    let mut stats = PublisherStats::default();
    loop {
        let sent_at = Instant::now();
        if sent_at >= window.end {
            return stats;
        }
        let acked = match context.publish(subject.clone(), payload.clone()).await {
            Ok(ack_future) => ack_future.await,
            Err(e) => Err(e),
        };
        let done_at = Instant::now();
        match acked {
            Ok(_) if done_at >= window.start && done_at <= window.end => {
                let micros = done_at.duration_since(sent_at).as_micros();
                stats.latencies_us.push(micros.min(u32::MAX as u128) as u32);
            }
            Ok(_) => {}
            Err(e) => stats.record_error(e),
        }
    }
}

/// User plus system CPU time `pid` has spent, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_ticks(&stat).ok_or_else(|| format!("{path}: unexpected format"))
}

/// utime + stime of a `/proc/PID/stat` line: fields 14 and 15, counted after the `)` that
/// closes the command name (which may itself hold spaces and parentheses).
fn parse_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (the state), so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The `q`th percentile (nearest rank) of sorted values; 0 when there are none.
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(o: Options) -> Result<bool, String> {
    let mut contexts = Vec::with_capacity(o.connections);
    for _ in 0..o.connections {
        let client = async_nats::connect(o.server.as_str())
            .await
            .map_err(|e| format!("connect {}: {e}", o.server))?;
        contexts.push(jetstream::new(client));
    }
    contexts[0]
        .get_or_create_stream(stream::Config {
            name: o.stream.clone(),
            subjects: vec![o.subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {}: {e}", o.stream))?;

    let payload = Bytes::from(vec![b'x'; o.size]);
    let start = Instant::now() + o.warmup;
    let window = Window {
        start,
        end: start + o.duration,
    };
    let mut publishers = Vec::with_capacity(o.connections * o.inflight);
    for context in &contexts {
        for _ in 0..o.inflight {
            publishers.push(tokio::spawn(publish_until_end(
                context.clone(),
                o.subject.clone(),
                payload.clone(),
                window,
            )));
        }
    }

    tokio::time::sleep_until(window.start).await;
    let ticks_before = o.server_pid.map(cpu_ticks).transpose()?;
    tokio::time::sleep_until(window.end).await;
    let ticks_after = o.server_pid.map(cpu_ticks).transpose()?;

    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for publisher in publishers {
        let stats = publisher.await.map_err(|e| format!("publisher: {e}"))?;
        latencies_us.extend(stats.latencies_us);
        errors += stats.errors;
        first_error = first_error.or(stats.first_error);
    }
    latencies_us.sort_unstable();
    let sent = latencies_us.len() as u64;
    let server_cpu_us_per_msg = match (ticks_before, ticks_after) {
        (Some(before), Some(after)) if sent > 0 => {
            Some((after - before) as f64 / clock_ticks_per_sec() * 1e6 / sent as f64)
        }
        _ => None,
    };
    let report = serde_json::json!({
        "msgs_per_sec": sent as f64 / o.duration.as_secs_f64(),
        "sent": sent,
        "p50_us": percentile(&latencies_us, 50.0),
        "p99_us": percentile(&latencies_us, 99.0),
        "server_cpu_us_per_msg": server_cpu_us_per_msg,
        "errors": errors,
        "first_error": first_error,
        "connections": o.connections,
        "inflight": o.inflight,
        "size": o.size,
        "duration_secs": o.duration.as_secs_f64(),
    });
    println!("{report}");
    Ok(sent > 0)
}

#[tokio::main]
async fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(options).await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("nats-bench: no publish was acknowledged in the measured window");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("nats-bench: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn parse_ticks_adds_utime_and_stime_after_the_command_name() {
        let stat = "12 (a (b) c) S 1 12 12 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_ticks(stat), Some(287));
        assert_eq!(parse_ticks("12 (short) S 1"), None);
        assert!(cpu_ticks(std::process::id()).is_ok());
    }

    #[test]
    fn options_parse_flags_and_reject_unknown_ones() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Options::parse(args("--connections 1 --inflight 1 --server-pid 42").into_iter())
            .unwrap();
        assert_eq!((o.connections, o.inflight, o.server_pid), (1, 1, Some(42)));
        assert_eq!(o.size, 1024);
        assert!(Options::parse(args("--bogus 1").into_iter()).is_err());
        assert!(Options::parse(args("--inflight 0").into_iter()).is_err());
        assert!(Options::parse(args("--size").into_iter()).is_err());
    }
}

//! `apogee bench`: every workload runs for a moment against a real broker and prints a
//! well-formed table and JSON report (no speed thresholds: figures are for docs/PERFORMANCE.md).

use apogee_tests::{BrokerSpec, CliOutput, Cluster};
use serde_json::Value;

fn header(out: &CliOutput) -> String {
    out.stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no table printed:\n{out}"))
        .to_string()
}

fn number(v: &Value, key: &str, out: &CliOutput) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bench_workload_prints_a_table_and_json() {
    let cluster = Cluster::builder()
        .broker(BrokerSpec::new("broker-a"))
        .start()
        .await;
    let cli = |args: &[&str]| cluster.cli(args).success();
    cli(&["topic", "create", "bench", "--queues", "4"]);
    cli(&["topic", "create", "bench-txn", "--type", "transaction"]);
    let pid = cluster.broker("broker-a").pid().to_string();

    // produce: JSON with the documented fields, then the table.
    let out = cli(&[
        "-o",
        "json",
        "bench",
        "produce",
        "--topic",
        "bench",
        "--connections",
        "2",
        "--inflight",
        "4",
        "--duration",
        "2s",
        "--broker-pid",
        &pid,
    ]);
    let r = out.json();
    assert!(number(&r, "messages", &out) > 0.0, "{out}");
    assert_eq!(r["errors"], 0, "{out}");
    for key in [
        "msgs_per_sec",
        "mb_per_sec",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
    ] {
        assert!(number(&r, key, &out) >= 0.0, "{out}");
    }
    assert!(number(&r["broker"], "cpu_secs", &out) > 0.0, "{out}");
    assert!(number(&r["broker"], "rss_mib", &out) > 1.0, "{out}");
    let out = cli(&["bench", "produce", "--topic", "bench", "--duration", "1s"]);
    let h = header(&out);
    for col in ["MSG/S", "MB/S", "P50 MS", "P90 MS", "P99.9 MS", "ERRORS"] {
        assert!(h.contains(col), "{col} missing:\n{out}");
    }

    // produce --transaction: half + commit per message.
    let out = cli(&[
        "-o",
        "json",
        "bench",
        "produce",
        "--topic",
        "bench-txn",
        "--transaction",
        "--duration",
        "2s",
    ]);
    let r = out.json();
    assert!(number(&r, "messages", &out) > 0.0, "{out}");
    assert_eq!(
        (r["errors"].as_u64(), r["transaction"].as_bool()),
        (Some(0), Some(true)),
        "{out}"
    );

    // consume: drains what the produce runs stored.
    let out = cli(&[
        "-o",
        "json",
        "bench",
        "consume",
        "--topic",
        "bench",
        "--group",
        "bench-drain",
        "--duration",
        "2s",
        "--broker-pid",
        &pid,
    ]);
    let r = out.json();
    assert!(number(&r, "acked", &out) > 0.0, "{out}");
    assert_eq!(
        (r["receive_errors"].as_u64(), r["ack_errors"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(r["broker"]["cpu_secs"].is_number(), "{out}");
    let out = cli(&[
        "bench",
        "consume",
        "--topic",
        "bench",
        "--group",
        "bench-drain",
        "--duration",
        "1s",
    ]);
    assert!(header(&out).contains("ACKED"), "{out}");

    // e2e: everything sent at the rate is received, with send-to-receive latencies; the
    // backlog of the runs above is acknowledged but not counted.
    let out = cli(&[
        "-o",
        "json",
        "bench",
        "e2e",
        "--topic",
        "bench",
        "--group",
        "bench-e2e",
        "--rate",
        "500",
        "--duration",
        "2s",
    ]);
    let r = out.json();
    let (sent, received) = (number(&r, "sent", &out), number(&r, "received", &out));
    assert!(sent > 0.0, "{out}");
    assert_eq!(sent, received, "every message of the run received:\n{out}");
    assert_eq!(r["missing"], 0, "{out}");
    assert_eq!(r["errors"], 0, "{out}");
    let p50 = number(&r, "e2e_p50_ms", &out);
    assert!(p50 > 0.0 && p50 <= number(&r, "e2e_p99_ms", &out), "{out}");
    let out = cli(&[
        "bench",
        "e2e",
        "--topic",
        "bench",
        "--group",
        "bench-e2e",
        "--rate",
        "200",
        "--duration",
        "1s",
    ]);
    let h = header(&out);
    for col in ["SENT/S", "RECV/S", "E2E P50 MS", "E2E P99.9 MS", "MISSING"] {
        assert!(h.contains(col), "{col} missing:\n{out}");
    }
    let bad = cluster.cli(&["bench", "e2e", "--topic", "bench", "--size", "8"]);
    assert_eq!(bad.code, 2, "{bad}");
}

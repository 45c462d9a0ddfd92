#!/usr/bin/env bash
# Same-run comparison of Apogee with NATS JetStream (1 KiB acknowledged publishes), back to back
# on this machine: the null tonic server of grpc-ceiling (the gRPC transport's ceiling), a
# standalone Apogee broker (`apogee bench produce`, over gRPC and over remoting frames with
# `--transport remoting`) and nats-server with JetStream (file
# storage, one replica, tools/nats-bench), each at 4 connections x 16 in flight and at 1 x 1,
# first with each server's default (periodic) flush, then with an fsync per message where the
# server has the setting. Server CPU per message is utime + stime of the server process from
# /proc over the measured window. Prints one table.
#
# usage: tools/nats-compare.sh
#   APOGEE_BIN_DIR  apogee and apogee-broker (default target/release, built with
#                   `cargo build --release --bins` when absent there)
#   GRPC_CEILING    the ceiling script (default ../shared/tools/grpc-ceiling/run.sh); its
#                   server and client are built and run from beside it
#   SECS            seconds per measured run (default 10)
# nats-server comes from Debian's package (installed when absent; needs root). The benchmark
# client is built into target/nats-bench. The broker uses the standalone ports (9876, 10911,
# 5557): nothing else may hold them; nats-server listens on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APOGEE_BIN_DIR:-target/release}
secs=${SECS:-10}
work=$(mktemp -d)
rows="$work/rows.tsv"
broker_log="$work/broker.log"
nats_pid=""
# shellcheck source=tools/standalone.sh
. tools/standalone.sh

stop_nats() {
  if [ -n "$nats_pid" ]; then
    kill "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
    nats_pid=""
  fi
}

cleanup() {
  local rc=$?
  stop_broker
  stop_nats
  if [ "$rc" = 0 ]; then
    rm -rf "$work"
  else
    echo "failed; logs and reports kept in $work" >&2
  fi
}
trap cleanup EXIT

# --- what the run needs -------------------------------------------------------------------
if [ ! -x "$bin/apogee" ] || [ ! -x "$bin/apogee-broker" ]; then
  if [ -n "${APOGEE_BIN_DIR:-}" ]; then
    echo "no apogee and apogee-broker in $bin" >&2
    exit 1
  fi
  cargo build --release --bins
fi
if ! command -v nats-server >/dev/null; then
  apt-get install -y nats-server >/dev/null || { apt-get update >/dev/null && apt-get install -y nats-server >/dev/null; }
fi
cargo build --quiet --release --locked --manifest-path tools/nats-bench/Cargo.toml \
  --target-dir target/nats-bench
nats_bench=target/nats-bench/release/nats-bench

# One table row a line, tab-separated: transport, flush, shape, msgs/s, server CPU µs/msg,
# p50 µs, p99 µs, failed sends, the first failure (as JSON).
# row TRANSPORT FLUSH SHAPE MSGS_PER_SEC CPU_US_PER_MSG P50_US P99_US
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t0\t""\n' "$@" >>"$rows"; }

# report_row TRANSPORT FLUSH SHAPE apogee|nats REPORT: a row from a JSON report.
report_row() {
  python3 - "$@" >>"$rows" <<'PY'
import json, sys
transport, flush, shape, kind, path = sys.argv[1:]
r = json.load(open(path))
if kind == "apogee":
    # `apogee bench produce --broker-pid`: the broker's CPU seconds over the run.
    figures = [r["msgs_per_sec"], r["broker"]["cpu_secs"] * 1e6 / r["messages"],
               r["p50_ms"] * 1000, r["p99_ms"] * 1000]
else:
    figures = [r["msgs_per_sec"], r["server_cpu_us_per_msg"], r["p50_us"], r["p99_us"]]
fields = [transport, flush, shape] + [str(f) for f in figures]
print("\t".join(fields + [str(r["errors"]), json.dumps(r["first_error"] or "")]))
PY
}

# --- the null tonic server ----------------------------------------------------------------
# Started here (not by the ceiling script) so that its CPU can be read: utime + stime from
# /proc/PID/stat after the client's 2 s warm-up and at its end, over the calls it counted.
ticks_per_sec=$(getconf CLK_TCK)
for shape in "4 16" "1 1"; do
  read -r conns inflight <<<"$shape"
  start_null_server
  "$ceiling_bin/client" "http://127.0.0.1:$null_port" "$conns" "$inflight" "$secs" 1024 \
    >"$work/null-${conns}x$inflight.txt" &
  client_pid=$!
  sleep 2
  t0=$(cpu_ticks "$null_pid")
  wait "$client_pid"
  t1=$(cpu_ticks "$null_pid")
  kill "$null_pid"
  wait "$null_pid" 2>/dev/null || true
  line=$(cat "$work/null-${conns}x$inflight.txt")
  read -r rps p50 p99 < <(sed -n 's/.*rps=\([0-9]*\) p50=\([0-9]*\)us p99=\([0-9]*\)us.*/\1 \2 \3/p' <<<"$line")
  cpu_us=$(python3 -c "print(($t1 - $t0) / $ticks_per_sec * 1e6 / ($rps * $secs))")
  row "null tonic server" - "${conns}x$inflight" "$rps" "$cpu_us" "$p50" "$p99"
done

# --- Apogee -------------------------------------------------------------------------------
# apogee_runs FLUSH [VAR=VALUE ...]: both shapes on one new standalone broker.
apogee_runs() {
  local flush=$1 shape conns inflight report
  shift
  rm -rf "$work/apogee-data"
  start_broker "$work/apogee-data" "$@"
  "$bin/apogee" topic create bench --queues 8 >/dev/null
  for transport in grpc remoting; do
    for shape in "4 16" "1 1"; do
      read -r conns inflight <<<"$shape"
      report="$work/apogee-$transport-$flush-${conns}x$inflight.json"
      "$bin/apogee" -o json bench produce --broker-pid "$broker_pid" --topic bench \
        --transport "$transport" --connections "$conns" --inflight "$inflight" --size 1024 \
        --duration "$secs" >"$report"
      report_row "Apogee ($transport)" "$flush" "${conns}x$inflight" apogee "$report"
    done
  done
  stop_broker
  rm -rf "$work/apogee-data"
}

# --- NATS JetStream -----------------------------------------------------------------------
# nats_runs FLUSH [CONFIG_FILE]: both shapes on one new nats-server with JetStream.
nats_runs() {
  local flush=$1 config=${2:-} port shape conns inflight report
  port=$(free_port)
  rm -rf "$work/nats-data"
  nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/nats-data" ${config:+-c "$config"} \
    >"$work/nats-$flush.log" 2>&1 &
  nats_pid=$!
  for _ in $(seq 200); do
    grep -q 'Server is ready' "$work/nats-$flush.log" && break
    sleep 0.05
  done
  grep -q 'Server is ready' "$work/nats-$flush.log" || {
    echo "nats-server did not become ready; see $work/nats-$flush.log" >&2
    exit 1
  }
  for shape in "4 16" "1 1"; do
    read -r conns inflight <<<"$shape"
    report="$work/nats-$flush-${conns}x$inflight.json"
    "$nats_bench" --server "nats://127.0.0.1:$port" --server-pid "$nats_pid" \
      --connections "$conns" --inflight "$inflight" --size 1024 --duration "$secs" >"$report"
    report_row "NATS JetStream" "$flush" "${conns}x$inflight" nats "$report"
  done
  stop_nats
  rm -rf "$work/nats-data"
}

apogee_runs async
nats_runs async
apogee_runs sync APOGEE_BROKER_STORE__FLUSH=sync
# An fsync per message: `sync_interval: always` in the jetstream block (newer than 2.9.10).
printf 'jetstream {\n  sync_interval: always\n}\n' >"$work/nats-sync.conf"
if nats_check=$(nats-server -t -c "$work/nats-sync.conf" 2>&1); then
  nats_runs sync "$work/nats-sync.conf"
else
  nats_skip="NATS JetStream with an fsync per message skipped: nats-server $(nats-server --version |
    sed 's/.* v//') has no sync_interval ($(tail -1 <<<"$nats_check" | sed 's/.*: //'))"
fi

# --- the table ----------------------------------------------------------------------------
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD), $secs s per run, 1 KiB, \
Apogee binaries in $bin, nats-server $(nats-server --version | sed 's/.* v//')"
python3 - "$rows" <<'EOF'
import json, sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
nats = {(r[1], r[2]): r for r in rows if r[0] == "NATS JetStream"}

def num(v, digits=0):
    return "-" if v in ("-", "None", "") else f"{float(v):,.{digits}f}"

def ratio(r, col, digits=2):
    n = nats.get((r[1], r[2]))
    if r[0] == "NATS JetStream" or n is None or "-" in (r[col], n[col]) or "None" in (r[col], n[col]):
        return "-"
    return f"{float(r[col]) / float(n[col]):.{digits}f}"

head = ["transport", "flush", "shape", "msgs/s", "server CPU us/msg", "p50 us", "p99 us",
        "msgs/s / NATS", "CPU / NATS"]
table = [head] + [[r[0], r[1], r[2], num(r[3]), num(r[4], 1), num(r[5]), num(r[6]),
                   ratio(r, 3), ratio(r, 4)] for r in rows]
widths = [max(len(t[i]) for t in table) for i in range(len(head))]
for t in table:
    print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(t, widths))))
for r in rows:
    if r[7] not in ("0", "-"):
        print(f"warning: {r[0]} {r[1]} {r[2]}: {r[7]} failed sends, first: {json.loads(r[8])}")
EOF
echo "flush: async = each server's default (Apogee: fdatasync every 500 ms; NATS: its periodic sync),"
echo "       sync = acknowledged after an fsync covers the message (Apogee: store.flush = sync)."
echo "null tonic server: grpc-ceiling's client and a server that does nothing (its CPU per call"
echo "       from /proc after the client's 2 s warm-up; issue 39's target for Apogee over gRPC at"
echo "       4x16 is at most 0.7 of it)."
if [ -n "${nats_skip:-}" ]; then echo "$nats_skip"; fi

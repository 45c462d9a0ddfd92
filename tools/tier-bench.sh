#!/usr/bin/env bash
# The object-store tier's offload beside T1, in one run on this machine: a standalone broker
# sending 1 KiB messages at 4 connections x 16 in flight without a tier (its ingest into the
# log in MB/s); the same broker started again with the tier on moto's S3 server (loopback),
# uploading that log's sealed segments as a backlog (the upload rate: bytes uploaded and
# verified, apogee_tier_uploaded_bytes_total, over the time until none waits); and T1 on a
# fresh broker with the tier on, uploading as it goes, with the CPU per message the broker
# spent in both T1 runs and the CPU moto took during the second. Issue 58's targets: uploads
# at least 2x the ingest rate in MB/s, and sends with the tier on within 5 % of T1 without it.
#
# usage: tools/tier-bench.sh
#   APOGEE_BIN_DIR   apogee and apogee-broker (default target/release)
#   SECS             seconds of sends per run (default 20)
#   SEGMENT_BYTES    the commit log's segment size (default 64 MiB, so a run seals several)
#   MOTO_SERVER      moto's server (default the one deploy/dev-setup.sh installs)
# moto is a Python server: its own speed bounds the upload rate this measures on loopback.
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APOGEE_BIN_DIR:-target/release}
secs=${SECS:-20}
segment=${SEGMENT_BYTES:-67108864}
work=$(mktemp -d)
broker_log="$work/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
# shellcheck source=tools/moto.sh
. tools/moto.sh

cleanup() {
  stop_broker
  stop_moto
  rm -rf "$work"
}
trap cleanup EXIT

start_moto

run() { # LABEL [VAR=VALUE ...]: T1 on a fresh broker with those settings (left running)
  local label=$1
  shift
  start_broker "$work/$label/broker" APOGEE_BROKER_STORE__SEGMENT_BYTES="$segment" "$@"
  "$bin/apogee" topic create bench --queues 8 >/dev/null
  "$bin/apogee" -o json bench produce --topic bench --connections 4 --inflight 16 --size 1024 \
    --duration "$secs" >"$work/$label.json"
}

rate() { # LABEL: the run's msg/s
  python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["msgs_per_sec"]))' \
    "$work/$1.json"
}

run plain
plain_cpu=$(cpu_ticks "$broker_pid")
stop_broker
plain=$(rate plain)

# The upload rate, on a backlog: the plain run's broker started again with the tier on, its
# sealed segments all waiting; bytes uploaded and verified over the time until none waits.
# shellcheck disable=SC2046 # tier_env's settings, one word each
start_broker "$work/plain/broker" APOGEE_BROKER_STORE__SEGMENT_BYTES="$segment" $(tier_env)
log_end=$("$bin/apogee" -o json broker status 127.0.0.1:10911 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["log_end_offset"])')
t0=$(date +%s.%N)
for _ in $(seq 3000); do
  [ "$(metric apogee_tier_uploaded_segments_total)" != 0 ] &&
    [ "$(metric apogee_tier_offload_lag_bytes)" = 0 ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
backlog=$(metric apogee_tier_uploaded_bytes_total)
stop_broker

# T1 with the tier on, uploading as it goes; the CPU the broker and moto spent meanwhile.
moto_before=$(cpu_ticks "$moto_pid")
# shellcheck disable=SC2046
run tiered $(tier_env)
tiered_cpu=$(cpu_ticks "$broker_pid")
moto_after=$(cpu_ticks "$moto_pid")
tiered=$(rate tiered)
stop_broker
python3 - "$plain" "$tiered" "$backlog" "$t0" "$t1" "$log_end" "$secs" "$plain_cpu" \
  "$tiered_cpu" "$moto_before" "$moto_after" "$(getconf CLK_TCK)" <<'PY'
import sys
(plain, tiered, backlog, t0, t1, log_end, secs, plain_cpu, tiered_cpu, moto0, moto1,
 hz) = map(float, sys.argv[1:])
ingest = log_end / secs / 1e6
upload = backlog / 1e6 / (t1 - t0)
print(f"T1 without a tier: {plain:,.0f} msg/s, {ingest:.1f} MB/s into the log")
print(f"upload of that log's sealed segments afterwards: {backlog / 1e6:,.1f} MB in "
      f"{t1 - t0:.1f} s = {upload:.1f} MB/s, {upload / ingest:.2f}x the ingest")
print(f"T1 with the tier on: {tiered:,.0f} msg/s ({tiered / plain:.2f} of it)")
n_plain, n_tiered = plain * secs, tiered * secs
print(f"broker CPU per message: {plain_cpu / hz / n_plain * 1e6:.1f} us without the tier, "
      f"{tiered_cpu / hz / n_tiered * 1e6:.1f} us with it; moto's CPU during the tiered "
      f"run: {(moto1 - moto0) / hz:.1f} s of {secs:.0f} s on this machine's cores")
PY

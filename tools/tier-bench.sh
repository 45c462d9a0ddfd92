#!/usr/bin/env bash
# The object-store tier's offload beside T1, in one run on this machine: a standalone broker
# sending 1 KiB messages at 4 connections x 16 in flight, first without a tier and then with
# one on moto's S3 server (loopback), and, with the tier on, the upload rate: the bytes the
# tier uploaded and verified (apogee_tier_uploaded_bytes_total) over the time from the first
# sealed segment to the last one recorded. Issue 58's targets: uploads at least 2x the
# ingest rate in MB/s, and sends with the tier on within 5 % of T1 without it.
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
stop_broker
plain=$(rate plain)
# shellcheck disable=SC2046 # tier_env's settings, one word each
run tiered $(tier_env)
tiered=$(rate tiered)
# The ingest in bytes of the log (records, not only bodies), over the sends' seconds: the log
# end of a broker that started empty.
log_end=$("$bin/apogee" -o json broker status 127.0.0.1:10911 |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["log_end_offset"])')
ingest=$(python3 -c "print(f'{$log_end / $secs / 1e6:.1f}')")
# The upload rate: from the end of the sends until the tier holds every sealed segment.
t0=$(date +%s.%N)
b0=$(metric apogee_tier_uploaded_bytes_total)
for _ in $(seq 1200); do
  [ "$(metric apogee_tier_offload_lag_bytes)" = 0 ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
b1=$(metric apogee_tier_uploaded_bytes_total)
uploaded=$(metric apogee_tier_uploaded_bytes_total)
stop_broker
python3 - "$plain" "$tiered" "$b0" "$b1" "$t0" "$t1" "$uploaded" "$ingest" <<'PY'
import sys
plain, tiered, b0, b1, t0, t1, uploaded, ingest = map(float, sys.argv[1:])
print(f"T1 without a tier: {plain:,.0f} msg/s; with the tier on: {tiered:,.0f} msg/s "
      f"({tiered / plain:.2f} of it)")
print(f"uploaded and verified during the sends and after: {uploaded / 1e6:,.1f} MB")
if b1 > b0 and t1 > t0:
    print(f"catching up after the sends: {(b1 - b0) / 1e6:,.1f} MB in {t1 - t0:.1f} s = "
          f"{(b1 - b0) / 1e6 / (t1 - t0):,.1f} MB/s, {(b1 - b0) / 1e6 / (t1 - t0) / ingest:.2f}x "
          f"the ingest of about {ingest} MB/s")
else:
    print(f"the tier kept up during the sends (nothing left to upload after them); "
          f"ingest about {ingest} MB/s")
PY

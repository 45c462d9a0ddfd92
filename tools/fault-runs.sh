#!/usr/bin/env bash
# Runs fault scenarios under load, ROUNDS rounds of each on a fresh cluster in Linux network
# namespaces (the ignored test faults::fault_rounds), and prints per scenario: acknowledged,
# lost and duplicated messages, and the time from the fault to the first read and the first
# write of the affected broker group (median and worst; "never": not within the run).
#
# usage: tools/fault-runs.sh [ROUNDS=20]
#   FAULT_SCENARIOS   comma-separated, default all: kill, pause, links-down,
#                     cut-from-nameserver, nameservers-restart, disk-full
#   FAULT_HOLD_SECS   how long each fault lasts before it is healed (default 5)
#   FAULT_AFTER_SECS  load after healing, before the consumers drain (default 5)
# Needs root, iproute2 and nftables (deploy/dev-setup.sh). Each round takes 20-40 s (up to
# about 2 min when acknowledged messages stay unreadable: the drain waits 90 s).
# The whole output (every round's report, the servers' logs of failed rounds) goes to a log
# file named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
out=$(mktemp -d)
cargo build --bins
echo "fault-runs: $rounds rounds of ${FAULT_SCENARIOS:-every scenario}; log in $out/rounds.log" >&2
status=0
FAULT_ROUNDS=$rounds FAULT_SUMMARY_FILE="$out/summary.txt" \
  cargo test -p apogee-tests --test integration faults::fault_rounds -- --ignored --nocapture \
  >"$out/rounds.log" 2>&1 || status=$?
grep -E '^(== |sends:|receipts:|lost:|fault )' "$out/rounds.log" || true
echo
if [ -f "$out/summary.txt" ]; then
  cat "$out/summary.txt"
else
  echo "fault-runs: the rounds failed (exit $status); see $out/rounds.log" >&2
  tail -40 "$out/rounds.log" >&2
fi
echo "fault-runs: log in $out/rounds.log" >&2
exit "$status"

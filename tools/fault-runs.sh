#!/usr/bin/env bash
# Runs fault scenarios under load, ROUNDS rounds of each on a fresh cluster in Linux network
# namespaces (the ignored test faults::fault_rounds), and prints per scenario: acknowledged,
# lost and duplicated messages, the sends and receive calls that failed within the fault's
# window (to the end of the load), FIFO order and lease violations, and the time from the
# fault to the first read and the first write of the affected broker group and the longest
# pause one producer saw in its acknowledged writes and one consumer in its messages within
# the window (median, p99 and worst; "never": not within the run).
#
# usage: tools/fault-runs.sh [ROUNDS]   (default FAULT_ROUNDS, else 20)
#   FAULT_SCENARIOS   comma-separated, default all.
#                     Static roles (a SYNC_MASTER with a slave, a second group): kill, pause,
#                     links-down, cut-from-nameserver, nameservers-restart, disk-full.
#                     Automatic failover (three NameServers running the controller, a group
#                     of controlled members): master-kill, master-pause, master-isolated,
#                     master-cut-from-controller, controller-leader-kill,
#                     controller-leader-pause, controller-leader-isolated,
#                     controller-follower-isolated, master-sigterm, planned-elect,
#                     rolling-restart,
#                     slave-kill-during-failover (a group of three),
#                     nameservers-restart-controller; the negative controls, which lose
#                     acknowledged messages on purpose (the checker must report it):
#                     unclean-lagging (controller.unclean_election = true, a lagging slave
#                     elected), async (an ASYNC_MASTER whose cut-off slave is promoted)
#   FAULT_HOLD_SECS   how long each fault lasts before it is healed (default 5)
#   FAULT_AFTER_SECS  load after healing, before the consumers drain (default 5)
#   FAULT_PARALLEL    scenarios run at once, each in its own test process and network
#                     (default 1; the times measured are failure detection and client
#                     retries, seconds, so 2-3 at once on 2 cores changes them little)
# Needs root, iproute2 and nftables (deploy/dev-setup.sh). Each round takes 20-40 s (up to
# about a minute more when acknowledged messages stay unreadable: the drain gives up after
# 30 s without progress).
# The whole output (every round's report, the servers' logs of failed rounds) goes to a log
# file named at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-${FAULT_ROUNDS:-20}}
parallel=${FAULT_PARALLEL:-1}
static_scenarios=kill,pause,links-down,cut-from-nameserver,nameservers-restart,disk-full
failover_scenarios=master-kill,master-pause,master-isolated,master-cut-from-controller,controller-leader-kill,controller-leader-pause,controller-leader-isolated,controller-follower-isolated,master-sigterm,planned-elect,rolling-restart,slave-kill-during-failover,nameservers-restart-controller,unclean-lagging,async
scenarios=${FAULT_SCENARIOS:-$static_scenarios,$failover_scenarios}
for s in ${scenarios//,/ }; do
  case ",$static_scenarios,$failover_scenarios," in
  *",$s,"*) ;;
  *)
    echo "fault-runs: unknown scenario $s; known: $static_scenarios,$failover_scenarios" >&2
    exit 2
    ;;
  esac
done
out=$(mktemp -d)
cargo build --bins
cargo test -p apogee-tests --test integration --no-run
echo "fault-runs: $rounds rounds of $scenarios, $parallel at once; logs in $out" >&2
pids=()
for s in ${scenarios//,/ }; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do sleep 1; done
  FAULT_SCENARIOS=$s FAULT_ROUNDS=$rounds FAULT_SUMMARY_FILE="$out/$s.summary" \
    cargo test -p apogee-tests --test integration faults::fault_rounds -- --ignored --nocapture \
    >"$out/$s.log" 2>&1 &
  pids+=("$!")
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
for s in ${scenarios//,/ }; do
  grep -E '^(== |sends:|receipts:|lost:|order violations:|lease violations:|fault )' "$out/$s.log" || true
done
echo
first=1
for s in ${scenarios//,/ }; do
  if [ ! -f "$out/$s.summary" ]; then
    echo "fault-runs: the $s rounds failed; see $out/$s.log" >&2
    tail -40 "$out/$s.log" >&2
    continue
  fi
  if [ "$first" = 1 ]; then cat "$out/$s.summary"; first=0; else tail -n 1 "$out/$s.summary"; fi
done
echo "fault-runs: logs in $out" >&2
exit "$status"

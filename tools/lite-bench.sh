#!/usr/bin/env bash
# Measures issue 36's lite-topic targets on release binaries and a standalone broker on this
# machine, each figure next to what it is measured against:
#   - N lite topics of M messages (default 1,000,000 x 2) created by sends at >= 0.5 of T1's
#     rate (T1: `bench produce` 4x16 1 KiB to a plain topic of 8 queues, as
#     tools/perf-targets.sh runs it, on the same broker right before);
#   - the broker's RSS (VmRSS, and its peak VmHWM) after them at <= 1 GiB;
#   - a restart serves again (a send succeeds) within 10 s;
#   - one lite consumer subscribed to K (default 10,000) of them receives at >= 0.5 of a
#     plain drain of as many messages.
#
# usage: tools/lite-bench.sh
#   APOGEE_BIN_DIR  binaries to run (default target/release; `cargo build --release --bins`)
#   LITE_TOPICS     N (default 1000000)       MESSAGES  M (default 2)
#   SUBSCRIBE       K (default 10000)         SECS      seconds of the T1 run (default 10)
#   OUT             where the reports go (default a new temporary directory)
# The broker uses the standalone ports (9876, 10911, 5557): nothing else may hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${APOGEE_BIN_DIR:-target/release}
lite_topics=${LITE_TOPICS:-1000000}
messages=${MESSAGES:-2}
subscribe=${SUBSCRIBE:-10000}
secs=${SECS:-10}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
apogee() { "$bin/apogee" "$@"; }
broker_log="$out/broker.log"
# shellcheck source=tools/standalone.sh
. tools/standalone.sh
trap stop_broker EXIT

field() {
  python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(f"{v:.0f}" if isinstance(v, float) and v >= 100 else f"{v:.2f}" if isinstance(v, float) else v)' "$1" "$2"
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
mem_mib() { awk -v k="$1:" '$1==k{printf "%.0f", $2/1024}' "/proc/$broker_pid/status"; }

# The broker keeps every lite topic the bench makes, and one consumer subscribes to K.
# Retention must not take part: on a disk already above store.disk_clean_ratio (0.75) the
# broker deletes the oldest sealed 1 GiB segment, which at a million lite topics holds the
# first message of most of them, and the drain then finds one message per lite topic instead
# of M. So the bench cleans only at 99 % and checks the room it needs (~1.5 KiB a message
# with the index) beforehand.
need_kib=$(((secs * 12000 + (lite_topics + subscribe) * messages) * 3 / 2))
free_kib=$(df -Pk "$(dirname "$out")" | awk 'NR==2 {print $4}')
if ((free_kib < need_kib)); then
  echo "about $((need_kib / 1024)) MiB free needed under $out, $((free_kib / 1024)) MiB free" >&2
  exit 1
fi
limits=(APOGEE_BROKER_LITE__MAX_LITE_TOPICS=$((lite_topics + 1000))
  APOGEE_BROKER_STORE__DISK_CLEAN_RATIO=0.99 APOGEE_BROKER_STORE__DISK_REFUSE_RATIO=0.995)
start_broker "$out/data" "${limits[@]}"
apogee topic create bench --queues 8 >/dev/null
apogee -o json bench produce --topic bench --connections 4 --inflight 16 --size 1024 \
  --duration "$secs" --broker-pid "$broker_pid" >"$out/t1.json"
apogee topic create lite-parent --queues 1 --type lite >/dev/null
apogee group create lite-bench --lite-bind lite-parent --lite-quota "$subscribe" >/dev/null
apogee topic create plain --queues 8 >/dev/null
apogee -o json bench lite --topic lite-parent --group lite-bench --lite-topics "$lite_topics" \
  --messages "$messages" --subscribe "$subscribe" --plain-topic plain \
  --broker-pid "$broker_pid" >"$out/lite.json"
rss=$(mem_mib VmRSS)
peak=$(mem_mib VmHWM)

# Restart: from the stop to the first send that succeeds (the store reopened, the broker
# registered with its own NameServer, the lite parent routed).
stop_broker
t0=$(date +%s%N)
env "${limits[@]}" "$bin/apogee-broker" --standalone --data-dir "$out/data" >>"$broker_log" 2>&1 &
broker_pid=$!
until apogee send --topic lite-parent --lite-topic after-restart --body x >/dev/null 2>&1; do
  if ! kill -0 "$broker_pid" 2>/dev/null; then
    echo "the broker exited after the restart; see $broker_log" >&2
    exit 1
  fi
  if (($(date +%s%N) - t0 > 120000000000)); then
    echo "no send succeeded within 120 s of the restart; see $broker_log" >&2
    exit 1
  fi
  sleep 0.05
done
restart_secs=$(python3 -c "print(f'{($(date +%s%N) - $t0) / 1e9:.2f}')")
restart_rss=$(mem_mib VmRSS)

t1=$(field "$out/t1.json" msgs_per_sec)
send=$(field "$out/lite.json" send_msgs_per_sec)
lite_drain=$(field "$out/lite.json" lite_drain_msgs_per_sec)
plain_drain=$(field "$out/lite.json" plain_drain_msgs_per_sec)
{
  echo "lite bench ($(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)): $lite_topics lite topics x $messages messages, 1 KiB"
  echo "create: $send msg/s, $(field "$out/lite.json" lite_topics_per_sec) lite topics/s, $(field "$out/lite.json" send_errors) errors; T1 $t1 msg/s: $(ratio "$send" "$t1") (target >= 0.5)"
  echo "broker memory after: RSS $rss MiB, peak $peak MiB (target <= 1024)"
  echo "restart: a send succeeds after $restart_secs s (target <= 10); RSS then $restart_rss MiB"
  echo "drain by one consumer of $subscribe lite topics: subscribe $(field "$out/lite.json" subscribe_secs) s, $lite_drain msg/s ($(field "$out/lite.json" lite_drained) drained); plain drain $plain_drain msg/s: $(ratio "$lite_drain" "$plain_drain") (target >= 0.5)"
} | tee "$out/summary.txt"
echo "reports in $out"

#!/usr/bin/env bash
# The broker's instructions per message of a send workload, counted by valgrind's callgrind:
# a figure the machine's load does not move, for before-and-after comparisons of the send path
# on shared machines whose CPU time per message swings by a fifth from one minute to the next
# (docs/PERFORMANCE.md, "Instructions per send").
#
# A standalone broker runs under callgrind. After a warm-up of 1,000 messages the counters are
# zeroed, COUNT messages are sent with `apogee bench produce`, and the counters are dumped: the
# figure is every instruction the broker's threads ran in that window (transport, broker,
# store, RocksDB, allocator; not the kernel's) divided by COUNT. Callgrind runs one thread at a
# time, so the broker's groups of concurrent sends are not those of a native run; compare
# builds with the same shape, not shapes with each other.
#
# With TRANSPORT=null-tonic the server under callgrind is instead grpc-ceiling's null tonic
# server, driven by its own client at CONNS x INFLIGHT for SECS seconds, and the figure is its
# instructions per call (the calls counted by callgrind): what tonic, hyper and h2 cost alone,
# for the gRPC target of docs/PERFORMANCE.md. Its client sends fewer HTTP/2 headers than a
# RocketMQ client does.
#
# usage: tools/send-instructions.sh BIN_DIR [OUT_DIR]
#   BIN_DIR       apogee and apogee-broker (a release or profiling build; the profiling build's
#                 symbols make OUT_DIR/callgrind.out.* readable with callgrind_annotate)
#   TRANSPORT     remoting (default), grpc or null-tonic
#   GRPC_CEILING  the ceiling script, for null-tonic (default ../shared/tools/grpc-ceiling/run.sh)
#   SECS          seconds the null tonic server is measured (default 10)
#   CONNS, INFLIGHT, BATCH   the bench's shape (default 4, 16, 1)
#   COUNT         messages measured (default 20000)
# Needs valgrind (Debian's package). The broker uses the standalone ports (9876, 10911, 5557).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1
out=${2:-$(mktemp -d)}
transport=${TRANSPORT:-remoting}
conns=${CONNS:-4}
inflight=${INFLIGHT:-16}
batch=${BATCH:-1}
count=${COUNT:-20000}
command -v valgrind >/dev/null || { echo "valgrind is not installed (Debian: valgrind)" >&2; exit 1; }
mkdir -p "$out"
rm -rf "$out/data" "$out"/callgrind.out.*
# The server under callgrind, how to tell it is ready, the warm-up and the measured workload;
# the count of what was measured (empty: the null server's handler calls, which callgrind
# counts).
if [ "$transport" = null-tonic ]; then
  ceiling=${GRPC_CEILING:-../shared/tools/grpc-ceiling/run.sh}
  ceiling_target=${GRPC_CEILING_TARGET:-${TMPDIR:-/tmp}/grpc-ceiling-target}
  CARGO_TARGET_DIR=$ceiling_target cargo build --quiet --release \
    --manifest-path "$(dirname "$ceiling")/Cargo.toml"
  port=$((20000 + RANDOM % 20000))
  server=("$ceiling_target/release/server" "127.0.0.1:$port")
  ready() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
  client() { "$ceiling_target/release/client" "http://127.0.0.1:$port" "$conns" "$inflight" "$1" 1024; }
  warm_up() { client 3 >/dev/null; }
  measured() { client "${SECS:-10}" >"$out/run.txt"; }
  measured_count=""
else
  server=("$bin/apogee-broker" --standalone --data-dir "$out/data")
  ready() { curl -fs -o /dev/null http://127.0.0.1:5557/readyz; }
  bench() {
    "$bin/apogee" -o json bench produce --topic bench --transport "$transport" \
      --connections "$conns" --inflight "$inflight" --batch "$batch" --size 1024 --count "$1"
  }
  warm_up() {
    "$bin/apogee" topic create bench --queues 8 >/dev/null
    bench 1000 >/dev/null
  }
  measured() { bench "$count" >"$out/run.json"; }
  measured_count=$count
fi
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" --dump-instr=no \
  "${server[@]}" >"$out/server.log" 2>&1 &
vg_pid=$!
trap 'kill $vg_pid 2>/dev/null || true' EXIT
for _ in $(seq 1200); do
  ready && break
  sleep 0.1
done
warm_up
callgrind_control --zero "$vg_pid" >/dev/null
measured
callgrind_control --dump "$vg_pid" >/dev/null
kill "$vg_pid"
wait "$vg_pid" 2>/dev/null || true
trap - EXIT
# The measured window is the first dump (part 1); the file without a part number holds what
# ran after it, until the server exited.
python3 - "$out" "$measured_count" <<'PY'
import glob, re, sys
out, count = sys.argv[1], sys.argv[2]
parts = glob.glob(out + "/callgrind.out.*.1")
if len(parts) != 1:
    sys.exit("expected one dump of the measured window in " + out)
lines = open(parts[0], errors="replace").read().splitlines()
total = next(int(l.split()[1]) for l in lines if l.startswith("summary:"))
if count:
    count, what = int(count), "broker instructions per message"
else:
    # The calls of the null server's handler: callgrind names a function once, with its id,
    # then by the id alone; the line after each call to it says how many.
    handler = re.compile(r"^c?fn=\((\d+)\) <[\w:]+ as [\w:]*Echo>::send::\{\{closure\}\}$")
    ids = {m.group(1) for m in map(handler.match, lines) if m}
    count = sum(int(lines[i + 1].split()[0].split("=")[1]) for i, l in enumerate(lines)
                if l.startswith("cfn=(") and l[5:].split(")")[0] in ids)
    what = "null tonic server instructions per call"
    if count == 0:
        sys.exit("no calls of the null server's handler in " + parts[0])
print(f"{total / count:,.0f} {what} ({total:,} over {count:,}; {parts[0]})")
PY

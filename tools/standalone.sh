# Sourced by the benchmark scripts in tools/: start and stop one standalone broker (NameServer
# and broker in one process, on the standalone ports 9876, 10911 and 5557), and read what CPU
# processes spent.
#
# Set before calling: bin (the directory of the binaries), broker_log (where its output goes).
# start_broker sets broker_pid and ready_secs (seconds from start to /readyz answering 200).
broker_pid=""

stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
  fi
}

# start_broker DATA_DIR [VAR=VALUE ...]: a standalone broker, ready when /readyz answers 200.
start_broker() {
  local dir=$1
  shift
  local t0
  t0=$(date +%s%N)
  env "$@" "$bin/apogee-broker" --standalone --data-dir "$dir" >>"$broker_log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 600); do
    if curl -fs -o /dev/null http://127.0.0.1:5557/readyz; then
      ready_secs=$(python3 -c "print(f'{($(date +%s%N) - $t0) / 1e9:.2f}')")
      return
    fi
    sleep 0.05
  done
  echo "the broker did not become ready; see $broker_log" >&2
  exit 1
}

# cpu_ticks PID...: user + system clock ticks the processes spent so far.
cpu_ticks() {
  local total=0 p
  for p in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}

# free_port: a free loopback TCP port.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_null_server: the null tonic server of grpc-ceiling (GRPC_CEILING: its run.sh, default
# ../shared/tools/grpc-ceiling/run.sh), built into GRPC_CEILING_TARGET, on a free loopback
# port, its output in broker_log. Sets ceiling_bin (where its server and client are),
# null_port and null_pid.
start_null_server() {
  ceiling_bin=${GRPC_CEILING_TARGET:-${TMPDIR:-/tmp}/grpc-ceiling-target}/release
  CARGO_TARGET_DIR=$(dirname "$ceiling_bin") cargo build --quiet --release \
    --manifest-path "$(dirname "${GRPC_CEILING:-../shared/tools/grpc-ceiling/run.sh}")/Cargo.toml"
  null_port=$(free_port)
  "$ceiling_bin/server" "127.0.0.1:$null_port" >>"$broker_log" 2>&1 &
  null_pid=$!
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$null_port") 2>/dev/null && return
    sleep 0.1
  done
  echo "the null tonic server did not listen; see $broker_log" >&2
  exit 1
}

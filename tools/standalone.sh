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

# Sourced by the tier's benchmarks (tools/tier-bench.sh, tools/tier-read-bench.sh), after
# tools/standalone.sh and with $work set: moto's S3 server on a free loopback port with the
# bucket `bench`, the credentials file the broker reads, the broker's settings for it, and
# the broker's metrics.

moto=${MOTO_SERVER:-${XDG_CACHE_HOME:-$HOME/.cache}/apogee-s3/venv/bin/moto_server}
moto_pid=""

# start_moto: starts the server, makes the bucket and writes $work/credentials; sets
# $moto_port and $moto_pid (stop_moto kills it).
start_moto() {
  [ -x "$moto" ] || { echo "$moto not found: run deploy/dev-setup.sh (or set MOTO_SERVER)" >&2; exit 1; }
  moto_port=$(free_port)
  "$moto" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  # MOTO_NICE: moto's niceness (default 0). In production the object store runs on other
  # machines; a niced moto takes only the CPU the broker and the clients leave on this one.
  renice -n "${MOTO_NICE:-0}" -p "$moto_pid" >/dev/null
  for _ in $(seq 100); do
    curl -fs -o /dev/null -X PUT "http://127.0.0.1:$moto_port/bench" && break
    sleep 0.2
  done
  printf '[default]\naws_access_key_id = bench\naws_secret_access_key = bench-secret\n' \
    >"$work/credentials"
}

stop_moto() {
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
}

# tier_env: the broker's environment for a tier on the server started above (prefix `run`).
tier_env() {
  echo APOGEE_BROKER_TIER__ENDPOINT="http://127.0.0.1:$moto_port" \
    APOGEE_BROKER_TIER__BUCKET=bench APOGEE_BROKER_TIER__PREFIX=run \
    APOGEE_BROKER_TIER__CREDENTIALS_FILE="$work/credentials" \
    APOGEE_BROKER_TIER__SCAN_INTERVAL_MS=100
}

# metric NAME: its value on the broker's /metrics (0 when absent; the series carry labels).
metric() {
  curl -fs http://127.0.0.1:5557/metrics |
    awk -v n="$1" 'index($1, n "{") == 1 || $1 == n { v = $2 } END { printf "%.0f\n", v + 0 }'
}

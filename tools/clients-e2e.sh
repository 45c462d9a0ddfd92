#!/usr/bin/env bash
# Apache RocketMQ's end-to-end test suite of the 5.x Go client (apache/rocketmq-e2e, its
# golang/ module: normal, async, delay, FIFO and transaction messages through a Producer and a
# SimpleConsumer over gRPC) run unchanged against Apogee and against Apache RocketMQ 5.5
# (tools/rocketmq-beside.sh), issue 54 item 4; prints one Markdown table: test | Apogee |
# RocketMQ 5.5, each PASS or FAIL with the test's first failure line.
#
# usage: tools/clients-e2e.sh E2E_DIR [apogee|rocketmq|both]      (default both)
#   E2E_DIR  a checkout of https://github.com/apache/rocketmq-e2e (not fetched here); its
#            golang/ module is copied into this run's directory and tested there with
#            `go test ./mqgotest/...`, its Go modules from Go's module proxy
#
# The suite makes each test's topic by running `sh ROOT/rocketmq-admintools/bin/mqadmin
# updateTopic -t TOPIC -n NAMESERVER -c CLUSTER [-a +message.type=TYPE]` (ROOT: the checkout);
# in the copy that file hands the command to the system under test: Apogee's `apogee` CLI, which
# takes mqadmin's command names, or rocketmq-beside.sh's mqadmin. It reads the addresses from
# NAMESERVER, GRPC_ENDPOINT and CLUSTER_NAME. Its consumer groups it does not make (RocketMQ's
# broker here creates groups on first use; Apogee's too).
# Apogee: a NameServer and broker with TLS on (tools/apogee-pair.sh), since the 5.x Go client
# dials TLS only; binaries from APOGEE_BIN_DIR (default target/debug). Apache RocketMQ: its
# proxy's gRPC port, a store of its own under this run's directory, stopped at the end.
# environment: APOGEE_BIN_DIR; CLIENTS_E2E_DIR (this run's directory; default a new temporary
# one, kept, with each side's full `go test -v` output).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ $# -lt 1 ] || [ ! -d "$1/golang/mqgotest" ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
e2e=$(realpath "$1")
which=${2:-both}
bin=$(cd "$repo" && realpath "${APOGEE_BIN_DIR:-target/debug}")
run_dir=${CLIENTS_E2E_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/clients-e2e.XXXXXX")}
mkdir -p "$run_dir"
echo "run directory: $run_dir" >&2

# shellcheck source=tools/apogee-pair.sh
. "$here/apogee-pair.sh"

# run_suite LABEL MQADMIN NAMESERVER GRPC CLUSTER: the suite in a fresh copy whose mqadmin runs
# MQADMIN (a command line); its output in $run_dir/LABEL.out.
run_suite() {
  local label=$1 mqadmin=$2 namesrv=$3 grpc=$4 cluster=$5 copy=$run_dir/$1-suite
  rm -rf "$copy"
  mkdir -p "$copy/rocketmq-admintools/bin"
  cp -r "$e2e/golang" "$copy/"
  printf '#!/bin/sh\nexec %s "$@"\n' "$mqadmin" >"$copy/rocketmq-admintools/bin/mqadmin"
  echo "$label: go test ./mqgotest/..." >&2
  (cd "$copy/golang" && NAMESERVER=$namesrv GRPC_ENDPOINT=$grpc CLUSTER_NAME=$cluster \
    go test -count=1 -timeout 5m -v ./mqgotest/... >"$run_dir/$label.out" 2>&1) || true
}

run_apogee() {
  start_apogee e2e tls
  run_suite apogee "$bin/apogee --tls-ca-file $run_dir/apogee-e2e/certs/ca.pem" \
    "$ns_addr" "$ns_addr" DefaultCluster
  stop_apogee
}

rocketmq() { RMQ_HOME=$run_dir/rocketmq "$here/rocketmq-beside.sh" "$@"; }

run_rocketmq() {
  rocketmq start >&2
  trap 'rocketmq stop >&2' EXIT
  local env
  env=$(rocketmq env)
  run_suite rocketmq "env RMQ_HOME=$run_dir/rocketmq $here/rocketmq-beside.sh mqadmin" \
    "$(sed -n 's/^NAMESRV=//p' <<<"$env")" "$(sed -n 's/^GRPC=//p' <<<"$env")" \
    "$(sed -n 's/^CLUSTER=//p' <<<"$env")"
  rocketmq stop >&2
  trap - EXIT
}

# cell LABEL TEST: PASS, or FAIL with the test's first failed assertion (testify's Error,
# expected and actual lines, which the parallel tests' output names by its Test line).
cell() {
  local out=$run_dir/$1.out
  [ -f "$out" ] || { echo "not run"; return; }
  if grep -q -- "--- PASS: $2 " "$out"; then
    echo PASS
    return
  fi
  local why
  why=$(awk -v t="$2" '
    /Error Trace:/ {block = ""; on = 1; next}
    on && /(Error|expected|actual) *:/ {line = $0; sub(/^[ \t]+/, "", line); gsub(/[ \t]+/, " ", line); block = block " " line}
    on && /Test: / {on = 0; if ($2 == t) {print block; exit}}' "$out")
  echo "FAIL:${why:- no result (the test binary ended; see $out)}" | cut -c1-160 | sed 's/|/\\|/g'
}

trap stop_apogee EXIT
[ "$which" = rocketmq ] || run_apogee
trap - EXIT
[ "$which" = apogee ] || run_rocketmq
mapfile -t tests < <(grep -ho '^func Test[A-Za-z0-9_]*' "$e2e"/golang/mqgotest/*/*_test.go | cut -d' ' -f2)
{
  echo "| test | Apogee | RocketMQ 5.5 |"
  echo "|---|---|---|"
  for t in "${tests[@]}"; do
    echo "| $t | $(cell apogee "$t") | $(cell rocketmq "$t") |"
  done
} | tee "$run_dir/table.md"

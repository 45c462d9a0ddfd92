#!/usr/bin/env bash
# The official clients' scenarios against Apogee and Apache RocketMQ side by side (issue 54,
# item 2): every scenario of the Java program (tests/java: the 5.x gRPC client and the 4.x
# remoting client) and of the Go program (tests/go: rocketmq-client-go/v2 over remoting, the 5.x
# Go client over gRPC), run once against Apogee and once against Apache RocketMQ 5.5 started by
# tools/rocketmq-beside.sh, with the same topics and groups made on each first. Prints one
# Markdown table: scenario | Apogee | RocketMQ 5.5, each cell PASS or FAIL with the first line
# of the program's reason.
#
# usage: tools/clients-beside.sh [apogee|rocketmq|both]      (default both)
#
# Apogee: NameServer and broker processes of APOGEE_BIN_DIR (default target/debug; build them
# first) started by tools/apogee-pair.sh on free loopback ports, with quick transaction
# check-backs as the CI tests' brokers have. The 5.x Go client always dials TLS, so its
# scenarios run against a second pair with TLS on, as in the CI test official_go; everything
# else runs against the plain-text pair, whose NameServer port serves both the 5.x clients'
# gRPC and the 4.x clients' remoting.
# Apache RocketMQ: tools/rocketmq-beside.sh (topics and groups made by its `apply`) with a store
# of its own under this run's directory (empty each run) and broker.conf additions: check-backs
# after 1 s and every second (transactionTimeOut, transactionCheckInterval), with the ends of
# transactions written every 100 ms (transactionOpBatchInterval: its default 3 s, longer than
# that 1 s, would have ended transactions checked back; under the default 6 s timeout it is
# not); RMQ_SYS_TRACE_TOPIC made at start (traceTopicEnable), as message trace needs; recall
# on (recallMessageEnable, off by default; Apogee has it on). The Java 5.x client talks to its
# proxy's gRPC port, the 4.x clients to its NameServer; it is stopped at the end (its JVMs hold
# about 1.5 GB).
#
# grpc-auth and remoting-auth (the 5.x client, and the 4.x client's AclClientRPCHook, signing
# their calls) run against a third Apogee NameServer and broker with authentication on, as the
# administrator (credentials made up for the run); not against Apache RocketMQ, which would need
# its ACL set up in broker and proxy (rows "not run").
#
# environment: APOGEE_BIN_DIR; CLIENTS_BESIDE_DIR (this run's directory: logs, stores, each
# program's full output; default a new temporary directory, kept); JAVA_PARALLEL (scenarios at
# once in the JVM, default 4).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
which=${1:-both}
case $which in apogee | rocketmq | both) ;; *)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
bin=$(cd "$repo" && realpath "${APOGEE_BIN_DIR:-target/debug}")
run_dir=${CLIENTS_BESIDE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/clients-beside.XXXXXX")}
mkdir -p "$run_dir"
parallel=${JAVA_PARALLEL:-4}
echo "run directory: $run_dir" >&2

# --- the scenario programs ----------------------------------------------------------------------

# The Java scenarios and what each needs (tests/tests/integration/official_java.rs makes the
# same on Apogee): NAME TOPIC-TYPE QUEUES [GROUP-KIND...] for topic j-NAME and group j-NAME-g;
# kinds: fifo (orderly group), retry-1s (the retry one second later), lite (bound to the LITE
# parent j-NAME), g2 (a second plain group j-NAME-g2).
java_scenarios() {
  cat <<'EOF'
grpc-normal normal 4
grpc-fifo fifo 4 fifo
grpc-delay delay 4
grpc-transaction transaction 4
grpc-push normal 4 retry-1s
grpc-recall delay 4
grpc-priority priority 10
grpc-lite lite 1 lite
remoting-send normal 4
remoting-orderly normal 4
remoting-clustering normal 4
remoting-broadcast normal 4
remoting-lite-pull normal 4
remoting-transaction transaction 4
remoting-delay delay 4
remoting-retry-dlq normal 4 g2
remoting-trace normal 4 g2
EOF
}

build_programs() {
  echo "building the Java scenarios (Maven, offline first) and the Go scenarios" >&2
  if ! mvn -q -B -o -f "$repo/tests/java/pom.xml" package >"$run_dir/mvn.log" 2>&1; then
    mvn -q -B -f "$repo/tests/java/pom.xml" package >"$run_dir/mvn.log" 2>&1 ||
      { cat "$run_dir/mvn.log" >&2; exit 1; }
  fi
  jar=$repo/tests/java/target/apogee-java-scenarios.jar
  (cd "$repo/tests/go" && go build -mod=readonly -buildvcs=false -o "$run_dir/go-clients" .)
  go_program=$run_dir/go-clients
  mapfile -t go_names < <("$go_program" -h 2>&1 | sed -n 's/^scenarios: //p' | tr ' ' '\n' | sed '/^$/d')
  mapfile -t java_names < <(java_scenarios | cut -d' ' -f1)
}

# resources TOPIC-FN GROUP-FN: calls TOPIC-FN NAME QUEUES TYPE[,TYPE] and
# GROUP-FN NAME [fifo|retry-1s|lite=PARENT] for every topic and group the scenarios need.
resources() {
  local topic_fn=$1 group_fn=$2 name type queues kinds kind
  while read -r name type queues kinds; do
    "$topic_fn" "j-$name" "$queues" "$type"
    local main=()
    for kind in $kinds; do
      case $kind in
        fifo | retry-1s) main+=("$kind") ;;
        lite) main+=("lite=j-$name") ;;
        g2) "$group_fn" "j-$name-g2" ;;
      esac
    done
    "$group_fn" "j-$name-g" "${main[@]}"
  done < <(java_scenarios)
  local what rest
  while read -r what name rest; do
    case $what in
      topic) read -r queues type <<<"$rest"; "$topic_fn" "$name" "$queues" "$type" ;;
      group) "$group_fn" "$name" ;;
      fifo-group) "$group_fn" "$name" fifo ;;
    esac
  done < <("$go_program" resources)
}

# run_programs LABEL GRPC NAMESRV GO_GRPC: both programs against one system; their outputs in
# $run_dir/LABEL-java.out and LABEL-go.out.
run_programs() {
  local label=$1 grpc=$2 namesrv=$3 go_grpc=$4
  echo "$label: the Java scenarios" >&2
  mkdir -p "$run_dir/$label-java-home"
  # Both programs end every scenario within their own limits; a FAIL is data here.
  timeout 300 java "-Duser.home=$run_dir/$label-java-home" -jar "$jar" \
    --grpc-endpoint "$grpc" --namesrv "$namesrv" --parallel "$parallel" --timeout-secs 150 \
    "${java_names[@]}" >"$run_dir/$label-java.out" 2>"$run_dir/$label-java.err" || true
  echo "$label: the Go scenarios" >&2
  timeout 200 env "rocketmq.client.logRoot=$run_dir/$label-go-logs" "$go_program" \
    -namesrv "$namesrv" -endpoint "$go_grpc" "${go_names[@]}" \
    >"$run_dir/$label-go.out" 2>"$run_dir/$label-go.err" || true
}

# --- Apogee -------------------------------------------------------------------------------------
# shellcheck source=tools/apogee-pair.sh
. "$here/apogee-pair.sh"

apogee_topic() { # NAME QUEUES TYPE[,TYPE]
  local types=() t
  for t in ${3//,/ }; do types+=(--type "$t"); done
  "$bin/apogee" "${cli[@]}" topic create "$1" --queues "$2" "${types[@]}" >/dev/null
}

apogee_group() { # NAME [fifo|retry-1s|lite=PARENT]...
  local name=$1 opts=() kind
  shift
  for kind in "$@"; do
    case $kind in
      fifo) opts+=(--fifo) ;;
      retry-1s) opts+=(--retry-custom 1s) ;;
      lite=*) opts+=(--lite-bind "${kind#lite=}") ;;
    esac
  done
  "$bin/apogee" "${cli[@]}" group create "$name" "${opts[@]}" >/dev/null
}

run_apogee() {
  echo "Apogee: starting a plain-text and a TLS NameServer+broker from $bin" >&2
  start_apogee plain
  local plain=$ns_addr plain_cli=("${cli[@]}")
  resources apogee_topic apogee_group
  start_apogee tls tls
  local tls_addr=$ns_addr
  resources apogee_topic apogee_group
  cli=("${plain_cli[@]}")
  run_programs apogee "$plain" "$plain" "$tls_addr"
  stop_apogee
  echo "Apogee: grpc-auth and remoting-auth against a NameServer+broker with authentication on" >&2
  start_apogee auth auth
  local signed
  for signed in grpc-auth remoting-auth; do
    apogee_topic "j-$signed" 4 normal
    apogee_group "j-$signed-g"
  done
  timeout 200 java "-Duser.home=$run_dir/apogee-java-home" -jar "$jar" --endpoint "$ns_addr" \
    --access-key "$admin_key" --secret-key "$admin_secret" --timeout-secs 120 grpc-auth remoting-auth \
    >"$run_dir/apogee-java-auth.out" 2>"$run_dir/apogee-java-auth.err" || true
  stop_apogee
}

# --- Apache RocketMQ ----------------------------------------------------------------------------
rocketmq() { RMQ_HOME=$run_dir/rocketmq "$here/rocketmq-beside.sh" "$@"; }

# The resources as tools/rocketmq-beside.sh apply reads them, one a line on standard output.
rocketmq_topic() { # NAME QUEUES TYPE[,TYPE]: several types leave it unspecified (no MIXED)
  local type=$3
  [[ $type == *,* ]] && type=
  echo "topic $1 $2 $type"
}

rocketmq_group() { # NAME [fifo|retry-1s|lite=PARENT]...
  local line="group $1" kind
  shift
  for kind in "$@"; do
    case $kind in
      retry-1s) line+=" retry=1000" ;;
      *) line+=" $kind" ;;
    esac
  done
  echo "$line"
}

run_rocketmq() {
  echo "Apache RocketMQ: starting it (tools/rocketmq-beside.sh, store in $run_dir/rocketmq)" >&2
  RMQ_BROKER_CONF=$(printf '%s\n' transactionTimeOut=1000 transactionCheckInterval=1000 \
    transactionOpBatchInterval=100 traceTopicEnable=true recallMessageEnable=true) \
    rocketmq start >&2
  trap 'rocketmq stop >&2' EXIT
  echo "Apache RocketMQ: making the topics and groups" >&2
  resources rocketmq_topic rocketmq_group | rocketmq apply >"$run_dir/rocketmq-apply.out"
  local grpc namesrv
  grpc=$(rocketmq env | sed -n 's/^GRPC=//p')
  namesrv=$(rocketmq env | sed -n 's/^NAMESRV=//p')
  run_programs rocketmq "$grpc" "$namesrv" "$grpc"
  rocketmq stop >&2
  trap - EXIT
}

# --- the table ----------------------------------------------------------------------------------

# cell LABEL PROGRAM NAME: PASS, or FAIL with the reason's first 150 characters ("|" escaped),
# from $run_dir/LABEL-PROGRAM.out.
cell() {
  local out=$run_dir/$1-$2.out line
  [ -f "$out" ] || { echo "not run"; return; }
  line=$(grep -E "^(PASS|FAIL) $3( |:|$)" "$out" | head -1 || true)
  case $line in
    PASS*) echo PASS ;;
    FAIL*)
      # The 5.x client's request ids say nothing across runs.
      # shellcheck disable=SC2001
      line=$(sed 's/request-id=[^,]*, //' <<<"${line#FAIL "$3": }")
      echo "FAIL: ${line:0:150}" | sed 's/|/\\|/g'
      ;;
    *) echo "no result (see $out)" ;;
  esac
}

table() {
  echo "| scenario | Apogee | RocketMQ 5.5 |"
  echo "|---|---|---|"
  local n
  for n in "${java_names[@]}"; do
    echo "| java $n | $(cell apogee java "$n") | $(cell rocketmq java "$n") |"
  done
  for n in grpc-auth remoting-auth; do
    echo "| java $n | $(cell apogee java-auth "$n") | not run (needs ACL configuration) |"
  done
  for n in "${go_names[@]}"; do
    echo "| go $n | $(cell apogee go "$n") | $(cell rocketmq go "$n") |"
  done
}

started=$SECONDS
build_programs
trap stop_apogee EXIT
[ "$which" = rocketmq ] || run_apogee
trap - EXIT
[ "$which" = apogee ] || run_rocketmq
table | tee "$run_dir/table.md"
echo "done in $((SECONDS - started)) s; each program's full output in $run_dir" >&2

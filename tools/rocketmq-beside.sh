#!/usr/bin/env bash
# Apache RocketMQ beside Apogee (issue 54, item 1): runs Apache RocketMQ's NameServer and a broker
# with its proxy in local mode (broker and proxy in one JVM, as `mqbroker --enable-proxy` does:
# org.apache.rocketmq.proxy.ProxyStartup -pm local -bc BROKER_CONF -pc PROXY_CONF) on this machine,
# with ports and data of its own, so any scenario can run against both in one go. The jars come
# from Maven Central through Maven (a generated throw-away pom, `mvn dependency:copy-dependencies`)
# into the cache directory, once; later runs reuse them. Nothing of RocketMQ is committed.
#
# usage: tools/rocketmq-beside.sh start|stop|status|env|mqadmin ARGS...
#        tools/rocketmq-beside.sh topic NAME [QUEUES [TYPE]] | group NAME [fifo] | master-pid
#        tools/rocketmq-beside.sh apply < RESOURCES
#   start     NameServer, then broker+proxy; waits until the gRPC port answers and the broker is
#             registered, and prints seconds from start to ready and each JVM's resident memory
#   stop      stops both (SIGTERM, then SIGKILL after 30 s)
#   status    whether each runs, its pid and resident memory (VmRSS from /proc)
#   env       the addresses, one VAR=value a line, for other scripts (eval "$(... env)"):
#             NAMESRV (remoting, the 4.x clients' address), GRPC (the proxy, the 5.x clients'),
#             PROXY_REMOTING, BROKER, CLUSTER, RMQ_VERSION
#   topic     creates (or updates) topic NAME with QUEUES read/write queues (default 8) on the
#             broker, through mqadmin updateTopic; TYPE (NORMAL, FIFO, DELAY,
#             TRANSACTION; this broker refuses MIXED) sets the attribute message.type that the
#             proxy checks gRPC sends against; without it the topic's type is unspecified
#   group     creates (or updates) consumer group NAME (updateSubGroup); `fifo` makes it
#             consume orderly, as a 5.x FIFO consumer needs. The proxy refuses a gRPC
#             consumer's Settings for a group that does not exist ("group not found", and every
#             receive then fails with "settings" is null): create each 5.x consumer's group
#             first. Remoting consumers' groups are created on their first heartbeat.
#   apply     creates or updates many topics and groups in one JVM (mqadmin costs one JVM
#             start each), one a line from standard input: `topic NAME QUEUES [TYPE]` or
#             `group NAME [fifo] [retry=MS[,MS...]] [lite=PARENT]` (tools/rocketmq-beside-admin.java
#             says more)
#   mqadmin   runs the tools' MQAdminStartup against this NameServer, e.g.
#             tools/rocketmq-beside.sh mqadmin clusterList
# environment:
#   RMQ_HOME        where data, configuration and logs go (default
#                   ${XDG_CACHE_HOME:-$HOME/.cache}/apogee-tools/rocketmq-beside/run); logs are
#                   under RMQ_HOME/*/logs/rocketmqlogs (each JVM's user.home is its own directory)
#                   and RMQ_HOME/*.out; `rm -rf` it for an empty store
#   RMQ_PORT_BASE   ports (default 18000): NameServer BASE+1876, broker BASE+2911 (its fast port
#                   BASE+2909, HA BASE+2912), proxy gRPC BASE+81 and remoting BASE+80; Apogee's
#                   standalone ports (9876, 10911, 5557) and 8081 are not used
#   AUTO_CREATE_TOPIC  the broker's autoCreateTopicEnable (default false, as in production: create
#                   topics with `topic`)
#   RMQ_CONTROLLER  1: controller mode (automatic failover) instead: the NameServer runs the
#                   controller (enableControllerInNamesrv, one DLedger peer on port BASE+1878),
#                   and two brokers of group rmq-beside-a (BrokerStartup, no proxy; the second
#                   on BASE+2921, HA BASE+2922) in enableControllerMode with
#                   allAckInSyncStateSet, both started as brokerId -1 for the controller to
#                   elect one; `master-pid` prints the elected master's pid
#   RMQ_BROKER_CONF more broker.conf lines (KEY=VALUE, one a line), appended to the generated
#                   ones at start, e.g. quick transaction check-backs for the client scenarios
#                   (tools/clients-beside.sh): transactionTimeOut=1000 and
#                   transactionCheckInterval=1000
#   NAMESRV_HEAP, BROKER_HEAP  JVM heaps (default 512m and 1g, -Xms = -Xmx; sized for a 2-core,
#                   24 GiB machine; the broker's direct memory is capped at 1g too)
# RocketMQ's version: 5.5.1, except for the modules Maven Central does not have at 5.5.1 (as
# reached from this machine: namesrv, proxy, tools, client, srvutil, filter, auth), which are
# 5.5.0; RMQ_VERSION / RMQ_FALLBACK_VERSION change them (a new pair resolves into a new lib dir).
set -euo pipefail
cache=${XDG_CACHE_HOME:-$HOME/.cache}/apogee-tools/rocketmq-beside
version=${RMQ_VERSION:-5.5.1}
fallback=${RMQ_FALLBACK_VERSION:-5.5.0}
home=${RMQ_HOME:-$cache/run}
base=${RMQ_PORT_BASE:-18000}
namesrv_port=$((base + 1876))
broker_port=$((base + 2911))
ha_port=$((base + 2912))
grpc_port=$((base + 81))
proxy_remoting_port=$((base + 80))
controller_port=$((base + 1878))
controller_mode=${RMQ_CONTROLLER:-}
auto_create=${AUTO_CREATE_TOPIC:-false}
namesrv_heap=${NAMESRV_HEAP:-512m}
broker_heap=${BROKER_HEAP:-1g}
cluster=RocketMQBeside
broker_name=rmq-beside-a
lib=$cache/lib-$version-$fallback

# --- the jars -------------------------------------------------------------------------------
# Modules at $version and those at $fallback: every org.apache.rocketmq module that the four
# artifacts pull in is pinned here, so Maven resolves no third version.
at_version="broker common remoting store tiered-store controller"
at_fallback="namesrv proxy tools client srvutil filter auth"

resolve() {
  [ -f "$lib/.done" ] && return
  command -v mvn >/dev/null || { echo "needs Maven (mvn) and Java 17" >&2; exit 1; }
  local pom=$cache/pom-$version-$fallback
  mkdir -p "$pom"
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo '<groupId>apogee.tools</groupId><artifactId>rocketmq-beside</artifactId><version>1</version>'
    echo '<packaging>pom</packaging><dependencyManagement><dependencies>'
    local m
    for m in $at_version; do
      echo "<dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-$m</artifactId><version>$version</version></dependency>"
    done
    for m in $at_fallback; do
      echo "<dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-$m</artifactId><version>$fallback</version></dependency>"
    done
    echo '</dependencies></dependencyManagement><dependencies>'
    for m in namesrv broker proxy tools; do
      echo "<dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-$m</artifactId></dependency>"
    done
    echo '</dependencies></project>'
  } >"$pom/pom.xml"
  echo "resolving RocketMQ $version ($fallback for $at_fallback) from Maven Central into $lib" >&2
  rm -rf "$lib"
  mvn -B -q -f "$pom/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$lib" >&2
  touch "$lib/.done"
}

# --- processes --------------------------------------------------------------------------------
pid_of() { # NAME: the pid of a running JVM of ours, or nothing
  local f=$home/$1.pid p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null && grep -q "rocketmq-beside-$1" "/proc/$p/cmdline" 2>/dev/null; then
    echo "$p"
  fi
}

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

# java_bg NAME HEAP MAIN ARGS...: one JVM in the background, its user.home (so its logs) under
# $home/NAME, its output in $home/NAME.out; a marker property names it for pid_of.
java_bg() {
  local name=$1 heap=$2 main=$3
  shift 3
  mkdir -p "$home/$name"
  setsid java -server "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:MaxDirectMemorySize=1g \
    "-Drocketmq-beside-$name=1" "-Duser.home=$home/$name" "-Drocketmq.home.dir=$home/$name" \
    -Drocketmq.client.logUseSlf4j=true -cp "$lib/*" "$main" "$@" \
    </dev/null >>"$home/$name.out" 2>&1 &
  echo $! >"$home/$name.pid"
}

wait_for() { # WHAT SECONDS COMMAND...: until COMMAND succeeds
  local what=$1 secs=$2
  shift 2
  local i
  for ((i = 0; i < secs * 10; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  echo "$what not ready after ${secs}s; see $home/*.out and $home/*/logs/rocketmqlogs" >&2
  return 1
}

admin() {
  mkdir -p "$home/tools"
  java -Xms128m -Xmx256m "-Duser.home=$home/tools" "-Drocketmq.namesrv.addr=127.0.0.1:$namesrv_port" \
    -cp "$lib/*" org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

broker_registered() { admin clusterList 2>/dev/null | grep -q "$broker_name"; }

# broker_conf NAME PORT: a broker's config file at $home/NAME.conf, listening on PORT (HA PORT+1).
broker_conf() {
  local name=$1 port=$2
  {
    cat <<EOF
brokerClusterName=$cluster
brokerName=$broker_name
namesrvAddr=127.0.0.1:$namesrv_port
brokerIP1=127.0.0.1
listenPort=$port
haListenPort=$((port + 1))
flushDiskType=ASYNC_FLUSH
storePathRootDir=$home/$name/store
storePathCommitLog=$home/$name/store/commitlog
autoCreateTopicEnable=$auto_create
autoCreateSubscriptionGroup=true
${RMQ_BROKER_CONF:-}
EOF
    if [ -n "$controller_mode" ]; then
      cat <<EOF
brokerId=-1
brokerRole=SLAVE
enableControllerMode=true
controllerAddr=127.0.0.1:$controller_port
allAckInSyncStateSet=true
EOF
    else
      printf 'brokerId=0\nbrokerRole=ASYNC_MASTER\n'
    fi
  } >"$home/$name.conf"
}

start() {
  resolve
  mkdir -p "$home"
  if [ -n "$(pid_of namesrv)$(pid_of broker)$(pid_of broker2)" ]; then
    echo "already running (tools/rocketmq-beside.sh status)" >&2
    exit 1
  fi
  local p ports=("$namesrv_port" "$broker_port" $((broker_port - 2)) "$ha_port")
  if [ -n "$controller_mode" ]; then
    ports+=("$controller_port" $((broker_port + 10)) $((broker_port + 8)) $((ha_port + 10)))
  else
    ports+=("$grpc_port" "$proxy_remoting_port")
  fi
  for p in "${ports[@]}"; do
    if port_open "$p"; then echo "port $p is taken" >&2; exit 1; fi
  done
  echo "listenPort=$namesrv_port" >"$home/namesrv.properties"
  if [ -n "$controller_mode" ]; then
    cat >>"$home/namesrv.properties" <<EOF
enableControllerInNamesrv=true
controllerDLegerGroup=rmq-beside
controllerDLegerPeers=n0-127.0.0.1:$controller_port
controllerDLegerSelfId=n0
controllerStorePath=$home/namesrv/controller
EOF
  fi
  broker_conf broker "$broker_port"
  cat >"$home/proxy.json" <<EOF
{
  "rocketMQClusterName": "$cluster",
  "namesrvAddr": "127.0.0.1:$namesrv_port",
  "proxyMode": "local",
  "grpcServerPort": $grpc_port,
  "remotingListenPort": $proxy_remoting_port
}
EOF
  local t0 t1 ns_secs grpc_secs all_secs
  t0=$(now)
  java_bg namesrv "$namesrv_heap" org.apache.rocketmq.namesrv.NamesrvStartup -c "$home/namesrv.properties"
  wait_for NameServer 60 port_open "$namesrv_port"
  ns_secs=$(since "$t0")
  t1=$(now)
  if [ -n "$controller_mode" ]; then
    broker_conf broker2 $((broker_port + 10))
    java_bg broker "$broker_heap" org.apache.rocketmq.broker.BrokerStartup -c "$home/broker.conf"
    java_bg broker2 "$broker_heap" org.apache.rocketmq.broker.BrokerStartup -c "$home/broker2.conf"
    wait_for "broker" 120 port_open "$broker_port"
    wait_for "broker2" 120 port_open $((broker_port + 10))
    wait_for "an elected master" 120 master_registered
    echo "NameServer and controller ready in ${ns_secs}s (port open); a master in clusterList" \
      "$(since "$t1")s after the brokers' start"
    echo "resident: namesrv $(rss_mib "$(pid_of namesrv)") MiB, brokers" \
      "$(rss_mib "$(pid_of broker)") and $(rss_mib "$(pid_of broker2)") MiB"
    print_env
    return
  fi
  java_bg broker "$broker_heap" org.apache.rocketmq.proxy.ProxyStartup -pm local \
    -bc "$home/broker.conf" -pc "$home/proxy.json"
  wait_for "broker+proxy (gRPC port)" 120 port_open "$grpc_port"
  grpc_secs=$(since "$t1")
  wait_for "broker registration" 60 broker_registered
  all_secs=$(since "$t1")
  # clusterList is a JVM of its own (a few seconds each try): the second figure is coarse.
  echo "NameServer ready in ${ns_secs}s (port open); broker+proxy: gRPC port open in ${grpc_secs}s," \
    "broker in clusterList in ${all_secs}s"
  echo "resident: namesrv $(rss_mib "$(pid_of namesrv)") MiB, broker+proxy $(rss_mib "$(pid_of broker)") MiB"
  print_env
}

# master_addr: the address of the group's master (BID 0) in clusterList, or nothing.
master_addr() {
  admin clusterList 2>/dev/null | awk -v b="$broker_name" '$2 == b && $3 == 0 {print $4}'
}
master_registered() { [ -n "$(master_addr)" ]; }

# master_pid: the pid of the broker JVM that is the group's master now.
master_pid() {
  case $(master_addr) in
    *:"$broker_port") pid_of broker ;;
    *:$((broker_port + 10))) pid_of broker2 ;;
    *) echo "no master in clusterList" >&2; return 1 ;;
  esac
}

stop() {
  local name p i
  for name in broker2 broker namesrv; do
    p=$(pid_of $name)
    [ -n "$p" ] || continue
    kill "$p"
    for ((i = 0; i < 300; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
    rm -f "$home/$name.pid"
    echo "stopped $name ($p)"
  done
}

status() {
  local name p rc=0
  for name in namesrv broker broker2; do
    p=$(pid_of $name)
    [ "$name" = broker2 ] && [ -z "$p" ] && continue
    if [ -n "$p" ]; then
      echo "$name: running, pid $p, resident $(rss_mib "$p") MiB"
    else
      echo "$name: not running"
      rc=3
    fi
  done
  return $rc
}

print_env() {
  cat <<EOF
NAMESRV=127.0.0.1:$namesrv_port
GRPC=127.0.0.1:$grpc_port
PROXY_REMOTING=127.0.0.1:$proxy_remoting_port
BROKER=127.0.0.1:$broker_port
CLUSTER=$cluster
RMQ_VERSION=$version
NAMESRV_PID=$(pid_of namesrv)
BROKER_PID=$(pid_of broker)
EOF
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env ;;
  topic)
    [ $# -ge 1 ] || { echo "usage: $0 topic NAME [QUEUES]" >&2; exit 2; }
    resolve
    type=()
    [ -n "${3:-}" ] && type=(-a "+message.type=${3^^}")
    admin updateTopic -c "$cluster" -t "$1" -r "${2:-8}" -w "${2:-8}" "${type[@]}"
    ;;
  group)
    [ $# -ge 1 ] || { echo "usage: $0 group NAME [fifo]" >&2; exit 2; }
    resolve
    orderly=false
    [ "${2:-}" = fifo ] && orderly=true
    admin updateSubGroup -c "$cluster" -g "$1" -o "$orderly"
    ;;
  mqadmin) resolve; admin "$@" ;;
  master-pid) resolve; master_pid ;;
  apply)
    resolve
    mkdir -p "$home/tools"
    java -Xms128m -Xmx256m "-Duser.home=$home/tools" -cp "$lib/*" \
      "$(dirname "$0")/rocketmq-beside-admin.java" "127.0.0.1:$namesrv_port" "127.0.0.1:$broker_port"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

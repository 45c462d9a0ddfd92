# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # sets ns_addr and cli for, and reads bin and run_dir of, its callers
# Sourced by tools/clients-beside.sh and tools/clients-e2e.sh: an Apogee NameServer and one
# broker as separate processes on free loopback ports (not the standalone ports, so a
# standalone broker or a benchmark may run meanwhile), plain text, with TLS (a throw-away CA and
# certificate for 127.0.0.1 made with openssl) or with authentication (an administrator with
# made-up credentials, $admin_key and $admin_secret). Every broker has quick transaction
# check-backs (the first after 1 s, then every second), as the CI tests' brokers have.
#
# Set before calling: bin (the directory of the binaries), run_dir (each pair's data and logs go
# to run_dir/apogee-NAME). start_apogee sets ns_addr and cli (the `apogee` CLI's flags for the
# pair); stop_apogee stops every pair started.

# shellcheck source=tools/standalone.sh
. "$(dirname "${BASH_SOURCE[0]}")/standalone.sh" # free_port
apogee_pids=()

make_certs() { # DIR: ca.pem, server.pem and server.key (for 127.0.0.1) in DIR
  local d=$1
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=apogee-pair-ca -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE \
    keyUsage=digitalSignature extendedKeyUsage=serverAuth,clientAuth >"$d/ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/ext" -out "$d/server.pem" 2>/dev/null
}

# The administrator's credentials of an Apogee with authentication on (made up each run).
admin_key=apogee-pair-admin
admin_secret=apogee-pair-$RANDOM$RANDOM

# start_apogee NAME [tls|auth]: a NameServer and a broker, with TLS or authentication on;
# sets ns_addr and cli (the CLI's flags).
start_apogee() {
  local name=$1 mode=${2:-} dir=$run_dir/apogee-$1
  mkdir -p "$dir"
  local ns_port broker_port broker_http server_env=()
  ns_port=$(free_port)
  broker_port=$(free_port)
  broker_http=$(free_port)
  cli=(--nameserver "127.0.0.1:$ns_port")
  if [ "$mode" = auth ]; then
    printf '%s' "$admin_secret" >"$dir/admin.secret"
    printf '%s' "cluster-$admin_secret" >"$dir/cluster.secret"
    local server
    for server in NAMESERVER BROKER; do
      server_env+=("APOGEE_${server}_SECURITY__AUTHENTICATION=true"
        "APOGEE_${server}_SECURITY__ADMIN_ACCESS_KEY=$admin_key"
        "APOGEE_${server}_SECURITY__ADMIN_SECRET_FILE=$dir/admin.secret"
        "APOGEE_${server}_SECURITY__CLUSTER_SECRET_FILE=$dir/cluster.secret")
    done
    cli+=(--access-key "$admin_key" --secret-key "$admin_secret")
  elif [ "$mode" = tls ]; then
    make_certs "$dir/certs"
    local server
    for server in NAMESERVER BROKER; do
      server_env+=("APOGEE_${server}_TLS__CERT_FILE=$dir/certs/server.pem"
        "APOGEE_${server}_TLS__KEY_FILE=$dir/certs/server.key"
        "APOGEE_${server}_TLS__CA_FILE=$dir/certs/ca.pem")
    done
    cli+=(--tls-ca-file "$dir/certs/ca.pem")
  fi
  env "${server_env[@]}" "APOGEE_NAMESERVER_HTTP_LISTEN=127.0.0.1:$(free_port)" \
    "$bin/apogee-nameserver" --listen "127.0.0.1:$ns_port" >"$dir/nameserver.log" 2>&1 &
  apogee_pids+=($!)
  env "${server_env[@]}" "APOGEE_BROKER_HTTP_LISTEN=127.0.0.1:$broker_http" \
    APOGEE_BROKER_TRANSACTION__CHECK_DELAY_MS=1000 APOGEE_BROKER_TRANSACTION__CHECK_INTERVAL_MS=1000 \
    APOGEE_BROKER_TRANSACTION__SCAN_INTERVAL_MS=100 \
    "$bin/apogee-broker" --listen "127.0.0.1:$broker_port" --nameserver "127.0.0.1:$ns_port" \
    --data-dir "$dir/data" --broker-name "beside-$name" >"$dir/broker.log" 2>&1 &
  apogee_pids+=($!)
  local i ns_pid=${apogee_pids[-2]}
  for ((i = 0; i < 600; i++)); do
    # A NameServer that could not bind its port has ended: the port's listener is another's.
    kill -0 "$ns_pid" 2>/dev/null || break
    if "$bin/apogee" "${cli[@]}" cluster list 2>/dev/null | grep -q "beside-$name"; then
      ns_addr=127.0.0.1:$ns_port
      return
    fi
    sleep 0.1
  done
  echo "Apogee ($name) did not come up; see $dir/*.log" >&2
  exit 1
}

stop_apogee() {
  local p
  for p in "${apogee_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${apogee_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  apogee_pids=()
}


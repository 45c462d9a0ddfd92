#!/usr/bin/env bash
# Installs the system packages Apogee's build needs on Debian/Ubuntu, when
# they are missing: a C++ compiler and clang/libclang (RocksDB is built from
# source by the rocksdb crate), curl for the README's tour, what some integration
# tests drive (nftables, iproute2, docker-compose, chromium), and the mold linker where
# Debian has it. protoc is not needed: the build brings its own.
set -euo pipefail

missing=()
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v clang >/dev/null 2>&1 || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/*/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
# curl: the README's tour (and its test, readme_tour) reads /metrics and /readyz with it.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# nft: the fault tests (tests/src/netns) cut a member off from some peers with nftables
# rules in its network namespace (under CI they fail rather than skip without it).
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
# ip: the same tests make their namespaces, veths and bridge with it.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
# docker-compose: the deploy kit's test checks the compose layout with `docker-compose config`
# (no daemon needed).
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
# chromium and chromedriver: the web console's browser tests (tests/src/browser.rs) drive a
# headless Chromium through WebDriver (under CI they fail rather than skip without them).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# java and mvn: the official Java clients' tests (official_java) build tests/java and
# tests/java-spring with Maven (under CI they fail rather than skip without them).
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# python3 with venv: moto's S3 server for the object-store tier's tests, installed below.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# mold: a faster linker for the many test binaries; `.ci/run` uses it when it is there (a
# developer can too: RUSTFLAGS="-C link-arg=-fuse-ld=mold"), nothing requires it. Skipped
# where the distribution has no package of it.
optional=()
command -v mold >/dev/null 2>&1 || optional+=(mold)

if [ ${#missing[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dev-setup: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ${#optional[@]} -gt 0 ]; then
    echo "dev-setup: installing ${optional[*]} (optional)" >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${optional[@]}" >/dev/null ||
      echo "dev-setup: ${optional[*]} not installed; the build works without" >&2
  fi
fi

# Go: the official Go clients' test (official_go) builds tests/go from Go's module cache, so
# its modules are fetched here and compiled once into Go's build cache (a minute the first
# time on 2 cores, a second or two when done). Go itself comes with the machine; without it
# that test fails under CI and skips elsewhere.
if command -v go >/dev/null 2>&1; then
  (cd "$(dirname "$0")/../tests/go" && go mod download &&
    go build -mod=readonly -buildvcs=false -o /dev/null .)
else
  echo "dev-setup: go not found; the official Go clients' test (official_go) needs it" >&2
fi

# moto's S3 server: the object-store tier's tests (tests/src/s3_server.rs) run it as a real
# S3-compatible server process (under CI they fail rather than skip without it). From PyPI
# into a virtual environment under the user's cache, once per pinned version.
moto_version=5.2.5
s3_venv="${XDG_CACHE_HOME:-$HOME/.cache}/apogee-s3/venv"
if [ ! -e "$s3_venv/.moto-$moto_version" ]; then
  echo "dev-setup: installing moto[server]==$moto_version (the tier tests' S3 server)" >&2
  rm -rf "$s3_venv"
  python3 -m venv "$s3_venv"
  "$s3_venv/bin/pip" install -q "moto[server]==$moto_version"
  touch "$s3_venv/.moto-$moto_version"
fi

# The Java clients' tests build tests/java and tests/java-spring (the Spring Boot starter's
# application), and the mqadmin tests tests/mqadmin (RocketMQ's tools), offline: each one's
# dependencies and Maven's plugins are resolved into Maven's own repository (~/.m2) once per
# version of its pom.xml.
for java_project in java java-spring mqadmin; do
  java_pom="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/$java_project/pom.xml"
  java_stamp="$HOME/.m2/repository/.apogee-$java_project-scenarios-$(sha256sum "$java_pom" | cut -c1-16)"
  if [ ! -e "$java_stamp" ]; then
    echo "dev-setup: resolving the Java scenarios' dependencies (tests/$java_project)" >&2
    if ! maven_out=$(mvn -q -B -f "$java_pom" package 2>&1); then
      echo "$maven_out" >&2
      exit 1
    fi
    touch "$java_stamp"
  fi
done

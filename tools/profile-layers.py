#!/usr/bin/env python3
"""Sums a perf profile's own time (self samples) by layer of a gRPC server.

usage: perf report --no-children --sort dso,sym --stdio -g none > self.txt
       tools/profile-layers.py self.txt [US_PER_MESSAGE]

Each sample line (`12.34%  apogee-broker  [.] h2::proto::...`) is put in the first layer whose
rule matches its symbol (generic wrappers such as `<A as B>::f` and `drop_in_place<A>` count
as A's). With US_PER_MESSAGE (the CPU per message from `perf stat`) each layer's share is
also given in microseconds per message. Used by tools/transport-profile.sh.
"""

import re
import sys

# (layer, pattern on the symbol, pattern on the dso); first match wins.
RULES = [
    ("kernel: socket reads and writes (TCP over loopback)",
     r"^_*(tcp|ip|ipv4|skb|sock|sk|inet|net|netif|napi|nf|dst|loopback|release_sock|"
     r"lock_sock|copy_user|copy_to_iter|copy_from_iter|do_softirq|softirq|dev_queue|"
     r"dev_hard|validate_xmit|process_backlog|sch_direct|raw_v4|csum|security_sock|"
     r"apparmor_socket|sys_sendto|sys_recvfrom|x64_sys_sendto|x64_sys_recvfrom)",
     r"kernel"),
    ("kernel: wake-ups, scheduling, futex, epoll",
     r"schedule|switch|futex|try_to_wake_up|wake_up|wake_q|enqueue|dequeue|select_task|"
     r"ttwu|update_curr|update_load|^ep_|epoll|pick_next|hrtimer|load_balance|idle|psi_|"
     r"set_next_entity|put_prev|check_preempt|resched|update_rq|cpuacct|reweight",
     r"kernel"),
    ("kernel: file writes (the commit log's page cache, fdatasync)",
     r"folio|filemap|ext4|xfs|generic_perform_write|iomap|jbd2|^blk_|^bio_|vfs_write|"
     r"ksys_pwrite|x64_sys_pwrite|page_cache|balance_dirty|fdatasync|file_write|"
     r"generic_write|mark_buffer|__mark_inode", r"kernel"),
    ("kernel: syscall entry and exit, other", r".", r"kernel"),
    ("allocation (malloc, free)", r"^(_?mi_|mi_|malloc|free|realloc|calloc|cfree|_int_malloc|_int_free|"
     r"_int_realloc|malloc_consolidate|__libc_malloc|__libc_free|__libc_calloc|"
     r"__libc_realloc|tcache|unlink_chunk|__rust_alloc|__rust_dealloc|__rust_realloc|"
     r"__rustc::__rust|mimalloc|"
     r"alloc::alloc::|__rdl_|__rg_)", r"."),
    ("memory copies (memcpy, memmove, memset)", r"^(__memcpy|__memmove|__memset|memcpy|"
     r"memmove|memset|__memcmp|memcmp|__nss|__strlen)", r"."),
    ("h2 (HTTP/2 frames, streams, flow control, HPACK)", r"^h2::", r"."),
    ("hyper (HTTP/2 server glue)", r"^hyper(_util)?::", r"."),
    ("tonic (gRPC codec, routing, generated service dispatch)",
     r"^tonic::|^apogee_proto::generated::\S*_service_server::|^axum::|^matchit::", r"."),
    ("tower (service layers)", r"^tower(_http|_layer|_service)?::", r"."),
    ("prost (protobuf encode/decode)", r"^prost::|::encode_raw|::merge_field|::encoded_len|"
     r"^apogee_proto::generated::", r"."),
    ("http, bytes (headers, buffers)", r"^(http|bytes|http_body|http_body_util)::", r"."),
    ("tokio and futures (runtime, I/O driver, timers, wake-ups, channels)",
     r"^tokio::|^tokio_util::|^mio::|^futures_util::|^futures_core::|^futures::|^slab::|"
     r"^parking_lot|^indexmap::|^event_listener|^crossbeam", r"."),
    ("Apogee's server layer (accept loop, auth, metrics, spans)", r"^apogee_server::", r"."),
    ("Apogee's broker (validation, store, index, replies)", r"^apogee_broker::|^apogee_proto::",
     r"."),
    ("RocksDB", r"rocksdb::|^librocksdb|^rocksdb_", r"."),
    ("RocksDB", r".", r"librocksdb|rocksdb"),
    ("tracing, metrics, clock reads", r"^(tracing|tracing_core|tracing_subscriber|prometheus|"
     r"metrics)::|clock_gettime", r"."),
    ("hashing, crypto, checksums", r"^(crc32fast|crc|sha|hmac|ring|aws_lc|ahash|hashbrown|"
     r"std::collections::hash|core::hash|siphasher)", r"."),
    ("Rust std (generic: core, alloc, std)", r"^(core|alloc|std)::", r"."),
    ("libc (other)", r".", r"libc|ld-linux|libpthread|libm"),
    ("other", r".", r"."),
]
RULES = [(name, re.compile(sym), re.compile(dso)) for name, sym, dso in RULES]

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$")


def owner(symbol: str) -> str:
    """The path a symbol's cost belongs to: A for `<A as B>::f` and `drop_in_place<A>`."""
    s = symbol.strip()
    for _ in range(4):
        m = re.match(r"^core::ptr::drop_in_place<(.*)>$", s)
        if m:
            s = m.group(1)
            continue
        if s.startswith("<"):
            s = s[1:]
            if s.startswith("&") or s.startswith("*"):
                s = s.lstrip("&*").removeprefix("mut ").removeprefix("const ")
            continue
        break
    return s


def layer_of(dso: str, kind: str, symbol: str) -> str:
    if kind == "k":
        dso = "kernel"
    sym = owner(symbol)
    for name, sym_re, dso_re in RULES:
        if dso == "kernel" and dso_re.pattern != "kernel":
            continue
        if dso != "kernel" and dso_re.pattern == "kernel":
            continue
        if dso_re.search(dso) and sym_re.search(sym):
            return name
    return "other"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    us_per_msg = float(sys.argv[2]) if len(sys.argv) > 2 else None
    totals = {}
    top = {}
    for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        pct, dso, kind, symbol = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        name = layer_of(dso, kind, symbol)
        totals[name] = totals.get(name, 0.0) + pct
        top.setdefault(name, []).append((pct, symbol.strip()[:90]))
    whole = sum(totals.values())
    print(f"{'share':>7} {'us/msg':>7}  layer (its three largest symbols)")
    for name, pct in sorted(totals.items(), key=lambda kv: -kv[1]):
        us = f"{us_per_msg * pct / 100:7.2f}" if us_per_msg else f"{'-':>7}"
        print(f"{pct:6.1f}% {us}  {name}")
        for p, sym in sorted(top[name], reverse=True)[:3]:
            print(f"{'':16}{p:5.1f}%  {sym}")
    print(f"{whole:6.1f}% of the samples classified")


if __name__ == "__main__":
    main()

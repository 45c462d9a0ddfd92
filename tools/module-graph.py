#!/usr/bin/env python3
"""Prints the import graph between a crate's top-level modules and any circle in it.

usage: tools/module-graph.py [SRC_DIR=broker/src] [--dot]

Each file under SRC_DIR belongs to the top-level module it sits in (`grpc/send.rs` to
`grpc`, `server.rs` to `server`); a `crate::name` path anywhere in a file (a `use` or a
qualified path; test modules and `#[cfg(test)]` files named `tests*.rs` left out) is an edge
from its module to `name`. Circles are the strongly connected components of more than one
module. Exits 1 when there is a circle, so it can gate a change.
"""
import os
import re
import sys


def module_of(src, path):
    rel = os.path.relpath(path, src)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_tests(text):
    # Cut `#[cfg(test)] mod ... { ... }` blocks and `#[cfg(test)] mod x;` declarations.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def graph(src):
    modules, edges = set(), {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs") or f.startswith("tests") or f.endswith("_tests.rs"):
                continue
            path = os.path.join(root, f)
            m = module_of(src, path)
            if m in ("lib", "main"):
                continue
            modules.add(m)
            text = strip_tests(open(path, encoding="utf-8").read())
            text = re.sub(r"//[^\n]*", "", text)
            for t in re.findall(r"\bcrate::(\w+)", text):
                if t != m:
                    edges.setdefault(m, set()).add(t)
            # `use crate::{a, b::c}`
            for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
                for t in re.findall(r"(?:^|,)\s*(\w+)", group):
                    if t != m:
                        edges.setdefault(m, set()).add(t)
    for m in list(edges):
        edges[m] &= modules
    return sorted(modules), edges


def circles(modules, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else "broker/src"
    modules, edges = graph(src)
    if "--dot" in sys.argv:
        print("digraph modules {")
        for m in modules:
            for t in sorted(edges.get(m, ())):
                print(f'  "{m}" -> "{t}";')
        print("}")
    else:
        for m in modules:
            print(f"{m} -> {', '.join(sorted(edges.get(m, ()))) or '(nothing)'}")
    found = circles(modules, edges)
    for c in found:
        print("circle: " + " <-> ".join(c))
    if not found:
        print("no circle")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()

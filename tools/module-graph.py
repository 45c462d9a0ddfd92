#!/usr/bin/env python3
"""Prints the import graph between the modules of a folder and any circle in it.

usage: tools/module-graph.py [DIR...] [--deep] [--dot]

Without a DIR it checks the broker's crate and the two folder modules whose files must not
import each other in a circle either: `broker/src`, `broker/src/store` (the storage engine)
and `broker/src/consume` (the consume engine); CI runs it so. A DIR is a crate's `src`
folder (its modules are the crate's top-level modules) or a folder module inside one
(`broker/src/store`: its modules are the files and folders in it). Each file under DIR
belongs to the module of DIR it sits in (`grpc/send.rs` to `grpc`, `server.rs` to `server`;
in `broker/src/store`, `writer.rs` to `writer`; a file a `#[path]` attribute declares, to
the module declaring it); the folder's root file (`lib.rs`, `main.rs`, `mod.rs` or the
`DIR.rs` beside it) is no module of the graph.

A path in a file that names another module of DIR is an edge from the file's module to it:
a `use` (groups expanded) or a qualified path starting at `crate::`, at `super::` or
`self::` (resolved from where it sits, inline `mod x { ... }` blocks counted), or (in a
folder's root file) at a child module's name. A path to an item the root file re-exports
(`pub use writer::Writer;`, then `super::Writer`) is an edge to the module it comes from;
one to an item the root file defines is none. Test code is left out: `#[cfg(test)]` inline
modules and the files named `tests*.rs` or `*_tests.rs`; so are the separate crates under
`src/bin/`. Method calls on a type another file's `impl` block extends are no edge.

Circles are the strongly connected components of more than one module. `--deep` also checks
every folder module under each DIR, each as its own graph. Exits 1 when any graph has a
circle, so it can gate a change.
"""
import os
import re
import sys

DEFAULT_DIRS = ["broker/src", "broker/src/store", "broker/src/consume"]


def is_test_file(name):
    return name.startswith("tests") or name.endswith("_tests.rs")


def strip_tests(text):
    """Cuts `#[cfg(test)] mod ... { ... }` blocks, and comments."""
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
    return re.sub(r"//[^\n]*", "", "".join(out))


def crate_root(folder):
    """The crate's `src` folder holding `folder` (the nearest with a lib.rs or main.rs)."""
    d = os.path.abspath(folder)
    while True:
        if any(os.path.isfile(os.path.join(d, f)) for f in ("lib.rs", "main.rs")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            sys.exit(f"{folder}: not inside a crate's src folder (no lib.rs or main.rs above)")
        d = parent


def root_file(folder, is_crate_root):
    """The file declaring `folder`'s modules."""
    names = ("lib.rs", "main.rs") if is_crate_root else ("mod.rs",)
    for n in names:
        if os.path.isfile(os.path.join(folder, n)):
            return os.path.join(folder, n)
    beside = folder.rstrip(os.sep) + ".rs"
    return beside if os.path.isfile(beside) else None


def module_path(src, path):
    """A file's module path from the crate root: `store/writer.rs` is [store, writer]."""
    parts = os.path.relpath(path, src).split(os.sep)
    last = parts.pop()
    if last not in ("mod.rs", "lib.rs", "main.rs"):
        parts.append(last[:-3])
    return parts


def use_paths(tree):
    """Expands a `use` tree (`a::{b, c::{d as e}}`) into its paths, each a list of names."""
    tokens = re.findall(r"::|[{},*]|\w+", tree)
    pos = 0

    def parse(prefix):
        nonlocal pos
        paths, path = [], list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            pos += 1
            if t == "{":
                while pos < len(tokens) and tokens[pos] != "}":
                    paths += parse(path)
                    if pos < len(tokens) and tokens[pos] == ",":
                        pos += 1
                pos += 1
                return paths
            if t in (",", "}"):
                pos -= 1
                break
            if t == "as":
                pos += 1
                continue
            if t not in ("::", "*"):
                path.append(t)
        return paths + [path]

    return parse([])


def inline_modules(text):
    """The inline `mod name { ... }` blocks of a file: (start, end, name)."""
    out = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        out.append((m.start(), j, m.group(1)))
    return out


def paths_in(text):
    """Every module path the text names, with the inline modules it sits in: `use` trees
    and qualified paths in the code."""
    blocks = inline_modules(text)

    def inside(pos):
        return [name for start, end, name in blocks if start < pos < end]

    found = []
    for m in re.finditer(r"\buse\s+([^;]*);", text):
        found += [(inside(m.start()), p) for p in use_paths(m.group(1))]
    code = re.sub(r"\buse\s+[^;]*;", lambda m: " " * len(m.group(0)), text)
    for m in re.finditer(r"\b\w+(?:::\w+)+", code):
        found.append((inside(m.start()), m.group(0).split("::")))
    return found


def resolve(path, here, in_mod_rs, children_of):
    """The absolute module path `path` names from the module `here`, or None (an external
    crate, a local name). `children_of(p)` lists the child modules of the module p."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    if head == "crate":
        return rest
    if head in ("self", "super"):
        base = list(here)
        # `super` in a file module is its parent; in a `mod.rs` the same (here is the folder).
        while path and path[0] in ("self", "super"):
            if path[0] == "super":
                if not base:
                    return None
                base.pop()
            path = path[1:]
        return base + path
    if head in children_of(here) and in_mod_rs:
        return list(here) + path
    return None


class Crate:
    """The files of one crate's `src` folder and their module paths."""

    def __init__(self, src):
        self.src = src
        self.files = []  # (module path, text, is a folder's root file, file)
        for root, dirs, files in os.walk(src):
            if root == src and "bin" in dirs:
                dirs.remove("bin")
            for f in files:
                if not f.endswith(".rs") or is_test_file(f):
                    continue
                path = os.path.join(root, f)
                text = strip_tests(open(path, encoding="utf-8").read())
                is_root = f in ("mod.rs", "lib.rs", "main.rs") or os.path.isdir(path[:-3])
                self.files.append((module_path(src, path), text, is_root, path))
        # A file a `#[path = "f.rs"] mod name;` declares is that module, not a sibling.
        declared = {}
        for mod, text, _, path in self.files:
            for m in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', text):
                target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
                declared[target] = mod + [m.group(2)]
        self.files = [(declared.get(os.path.normpath(p), mod), t, r, p) for mod, t, r, p in self.files]
        self.modules = {tuple(p) for p, _, _, _ in self.files}
        for p in list(self.modules):
            for i in range(len(p)):
                self.modules.add(p[:i])

    def children_of(self, parent):
        parent = tuple(parent)
        return {m[-1] for m in self.modules if len(m) == len(parent) + 1 and m[:-1] == parent}

    def reexports(self, folder, root):
        """Item name -> the child of `folder` its root file re-exports it from."""
        out = {}
        if root is None:
            return out
        text = strip_tests(open(root, encoding="utf-8").read())
        children = self.children_of(folder)
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]*);", text):
            for p in use_paths(m.group(1)):
                p = [s for s in p if s != "self"]
                if len(p) >= 2 and p[0] in children:
                    out[p[-1]] = p[0]
        return out


def graph(folder):
    """The modules of `folder` and the edges between them."""
    src = crate_root(folder)
    crate = Crate(src)
    here = module_path(src, os.path.join(os.path.abspath(folder), "mod.rs"))
    root = root_file(os.path.abspath(folder), not here)
    children = crate.children_of(here)
    reexported = crate.reexports(here, root)
    edges = {}
    for path, text, is_root, _ in crate.files:
        if path[: len(here)] != here or len(path) == len(here):
            continue
        own = path[len(here)]
        # A folder's root file (`mod.rs`, or `x.rs` beside `x/`) resolves from the folder.
        in_mod_rs = is_root
        for inner, p in paths_in(text):
            target = resolve(p, path + inner, in_mod_rs and not inner, crate.children_of)
            if target is None or target[: len(here)] != here or len(target) == len(here):
                continue
            name = target[len(here)]
            if name not in children:
                name = reexported.get(name)
            if name and name != own:
                edges.setdefault(own, set()).add(name)
    return sorted(children), edges


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


def folder_modules(folder):
    """`folder` and every folder module under it (those holding Rust files)."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        is_crate_root = any(f in files for f in ("lib.rs", "main.rs"))
        if is_crate_root and "bin" in dirs:
            dirs.remove("bin")
        if any(f.endswith(".rs") for f in files):
            out.append(root)
    return out


def check(folder, dot):
    """Prints one folder's graph and circles; the circles."""
    modules, edges = graph(folder)
    if dot:
        print(f'digraph "{folder}" {{')
        for m in modules:
            for t in sorted(edges.get(m, ())):
                print(f'  "{m}" -> "{t}";')
        print("}")
    else:
        print(f"# {folder}")
        for m in modules:
            print(f"{m} -> {', '.join(sorted(edges.get(m, ()))) or '(nothing)'}")
    found = circles(modules, edges)
    for c in found:
        print(f"circle in {folder}: " + " <-> ".join(c))
    return found


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    folders = [os.path.normpath(a) for a in args or DEFAULT_DIRS]
    if "--deep" in sys.argv:
        folders = [m for f in folders for m in folder_modules(f)]
    found = []
    for f in folders:
        found += check(f, "--dot" in sys.argv)
    if not found:
        print("no circle")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()

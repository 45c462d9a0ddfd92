#!/usr/bin/env python3
"""The phase table at the end of every `.ci/run` (docs/TESTING.md says how to read it).

Reads what `.ci/run` left in its output folder:
- phases.tsv: one line a phase (name, start, end; seconds since the epoch);
- cargo-timing.html: cargo's `--timings` report of the build (every compiled unit);
- build.jsonl: cargo's JSON messages of the build (which package and target each test
  executable is);
- tests.log: the test run's output, each line stamped with the time it arrived.

Prints three tables, each line starting with `ci:`: the phases, the slowest compiled units,
and each test binary's wall time with its counts, then the whole run's test counts; last, for
each failed test, the lines of its panic (so a report cut short above still says why).
"""

import json
import os
import re
import sys

SLOWEST_UNITS = 12
# Lines of a failed test's panic message shown at the end.
PANIC_LINES = 12
PANICKED = re.compile(r"^thread '([^']+)' \(\d+\) panicked at (.*)$|^thread '([^']+)' panicked at (.*)$")


def say(line=""):
    print(f"ci: {line}".rstrip())


def minutes(seconds):
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def read_phases(folder):
    phases = []
    path = os.path.join(folder, "phases.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, start, end = line.rstrip("\n").split("\t")
                phases.append((name, float(start), float(end)))
    return phases


def read_units(folder):
    """Cargo's timing report embeds its units as `const UNIT_DATA = [...]`."""
    path = os.path.join(folder, "cargo-timing.html")
    if not os.path.exists(path):
        return []
    text = open(path, encoding="utf-8").read()
    at = text.find("UNIT_DATA = ")
    if at < 0:
        return []
    units, _ = json.JSONDecoder().raw_decode(text, at + len("UNIT_DATA = "))
    return units


def read_executables(folder):
    """Maps each test executable's path to `package: target (kind)`."""
    names = {}
    path = os.path.join(folder, "build.jsonl")
    if not os.path.exists(path):
        return names
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            if message.get("reason") != "compiler-artifact" or not message.get("executable"):
                continue
            if not message.get("profile", {}).get("test"):
                continue
            package = re.sub(r"@.*$", "", message["package_id"].rsplit("#", 1)[-1])
            target = message["target"]
            kind = target["kind"][0]
            if kind == "lib" and target["name"] == package.replace("-", "_"):
                names[message["executable"]] = f"{package} (lib)"
            else:
                names[message["executable"]] = f"{package}: {target['name']} ({kind})"
    return names


RUNNING = re.compile(r"^\s*Running (?:unittests )?(\S+) \((.+)\)\s*$")
DOC_TESTS = re.compile(r"^\s*Doc-tests (\S+)\s*$")
RESULT = re.compile(
    r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored; (\d+) measured; (\d+) filtered out"
)


def read_test_binaries(folder, executables):
    """Each test binary in the order it ran: label, wall seconds, passed, failed, ignored."""
    path = os.path.join(folder, "tests.log")
    if not os.path.exists(path):
        return []
    binaries = []
    current = None
    last_time = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            stamp, _, line = raw.rstrip("\n").partition("\t")
            now = float(stamp)
            last_time = now
            started = None
            running = RUNNING.match(line)
            if running:
                source, executable = running.groups()
                started = executables.get(executable) or f"{source} ({os.path.basename(executable)})"
            doc = DOC_TESTS.match(line)
            if doc:
                started = f"{doc.group(1).replace('_', '-')} (doc-tests)"
            if started:
                if current:
                    current["end"] = now
                    binaries.append(current)
                current = {"label": started, "start": now, "end": now, "counts": None}
                continue
            result = RESULT.search(line)
            if result and current:
                current["counts"] = tuple(int(n) for n in result.groups()[1:4])
    if current:
        current["end"] = last_time
        binaries.append(current)
    return binaries


def read_panics(folder):
    """(test name, where, message lines) of each panic in the test output, first per test."""
    path = os.path.join(folder, "tests.log")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [raw.rstrip("\n").partition("\t")[2] for raw in f]
    panics, seen = [], set()
    for i, line in enumerate(lines):
        m = PANICKED.match(line)
        if not m:
            continue
        name, where = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if name in seen or name == "main":
            continue
        seen.add(name)
        message = []
        for follow in lines[i + 1 : i + 1 + PANIC_LINES]:
            if follow.startswith(("note: run with", "stack backtrace:", "---- ")):
                break
            message.append(follow)
        panics.append((name, where, message))
    return panics


def main():
    folder, status = sys.argv[1], int(sys.argv[2])
    phases = read_phases(folder)
    say()
    say("== where the minutes went ==")
    total = sum(end - start for _, start, end in phases)
    for name, start, end in phases:
        say(f"{name:<28} {end - start:>8.1f} s  {minutes(end - start):>6}")
    say(f"{'whole run':<28} {total:>8.1f} s  {minutes(total):>6}  (exit status {status})")

    # A unit found fresh is listed with no time.
    units = [unit for unit in read_units(folder) if unit["duration"] > 0]
    say()
    if not units:
        say("== nothing compiled: every unit was fresh ==")
    else:
        say(f"== slowest of {len(units)} compiled units (wall time; build scripts' runs include their C/C++) ==")
        for unit in sorted(units, key=lambda u: -u["duration"])[:SLOWEST_UNITS]:
            what = unit.get("target", "").strip() or "lib"
            say(f"{unit['name'] + ' ' + unit['version']:<36} {what:<28} {unit['duration']:>8.1f} s")

    binaries = read_test_binaries(folder, read_executables(folder))
    if binaries:
        say()
        say("== test binaries, slowest first (wall time: start, tests, doc-tests' compile) ==")
        totals = [0, 0, 0]
        for binary in sorted(binaries, key=lambda b: -(b["end"] - b["start"])):
            counts = binary["counts"]
            if counts:
                totals = [t + c for t, c in zip(totals, counts)]
                shown = f"{counts[0]:>5} passed {counts[1]:>3} failed {counts[2]:>3} ignored"
            else:
                shown = "no result (crashed or stopped)"
            say(f"{binary['label']:<52} {binary['end'] - binary['start']:>7.1f} s  {shown}")
        say(
            f"tests: {len(binaries)} binaries, {totals[0]} passed, {totals[1]} failed, {totals[2]} ignored"
        )

    panics = read_panics(folder)
    if panics:
        say()
        say("== why the failed tests failed (their panics) ==")
        for name, where, message in panics:
            say(f"{name}: panicked at {where}")
            for line in message:
                say(f"    {line[:300]}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""RocketMQ's official Python client's Producer (rocketmq-python-client, see requirements.txt)
across an automatic failover, for the integration test `official_python` (tests/tests/integration).

Sends one message at a time to `--topic`, recording each acknowledged id with the time of its
acknowledgement and each failure with its time (a failed send is sent again as a new message
after 50 ms). After `--before` acknowledgements it prints `ready` on stdout; the test then
kills the group's master and writes the kill time (unix ms) as one line on stdin. The script
goes on until `--after` sends were acknowledged after that time, or `--timeout` seconds
passed, then prints one JSON line and exits (0: done, 2: timed out):

    {"kill_ms": ms, "acked": [{"id", "at_ms"}], "failures": [{"at_ms", "error"}]}

The same Producer object is used throughout: the client follows by its own route refresh.
"""

import argparse
import json
import logging
import sys
import threading
import time

from rocketmq import ClientConfiguration, Credentials, Message, Producer


def now_ms():
    return int(time.time() * 1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="NameServer host:port")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--before", type=int, default=20)
    parser.add_argument("--after", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds after the kill")
    args = parser.parse_args()

    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    errors.setFormatter(logging.Formatter("python client %(levelname)s: %(message)s"))
    logging.getLogger("rocketmq-python-client").addHandler(errors)

    producer = Producer(ClientConfiguration(args.endpoint, Credentials()), (args.topic,))
    producer.startup()

    kill = {"ms": None}
    killed = threading.Event()

    def read_kill_time():
        line = sys.stdin.readline()
        kill["ms"] = int(line.strip() or "0")
        killed.set()

    acked, failures = [], []
    reported_ready = False
    n = 0
    deadline = None
    while True:
        if killed.is_set():
            if deadline is None:
                deadline = time.monotonic() + args.timeout
            after = sum(1 for a in acked if a["at_ms"] > kill["ms"])
            if after >= args.after or time.monotonic() > deadline:
                break
        message = Message()
        message.topic = args.topic
        message.body = f"python-failover-{n}".encode()
        n += 1
        try:
            receipt = producer.send(message)
            acked.append({"id": receipt.message_id, "at_ms": now_ms()})
        except Exception as e:  # every failure is recorded, and the next send goes on
            failures.append({"at_ms": now_ms(), "error": str(e)[:300]})
            time.sleep(0.05)
        if not reported_ready and len(acked) >= args.before:
            reported_ready = True
            print("ready", flush=True)
            threading.Thread(target=read_kill_time, daemon=True).start()

    print(json.dumps({"kill_ms": kill["ms"], "acked": acked, "failures": failures}), flush=True)
    producer.shutdown()
    after = sum(1 for a in acked if a["at_ms"] > kill["ms"])
    return 0 if after >= args.after else 2


if __name__ == "__main__":
    sys.exit(main())

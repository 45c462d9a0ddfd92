#!/usr/bin/env python3
"""RocketMQ's official Python client (rocketmq-python-client, see requirements.txt) with
priority messages against an Apogee cluster, for the integration test `priority`
(tests/tests/integration).

A Producer sends `--rounds` rounds of priorities 0-9 (Message.priority; bodies `p<p>-<round>`)
to the PRIORITY topic `--topic`, one message at a time, before any consumer exists; then a
SimpleConsumer of `--group` receives and acks until every message arrived or `--timeout`
passed. It prints one JSON line:

    {"sent": n, "received": [{"body", "priority", "attempt"}], "error": null | "text"}
"""

import argparse
import json
import logging
import sys
import time

from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer
from rocketmq import SimpleConsumer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="NameServer host:port")
    parser.add_argument("--topic", required=True, help="the PRIORITY topic")
    parser.add_argument("--group", required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds")
    args = parser.parse_args()

    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.WARNING)
    errors.setFormatter(logging.Formatter("python client %(levelname)s: %(message)s"))
    logging.getLogger("rocketmq-python-client").addHandler(errors)

    config = ClientConfiguration(args.endpoint, Credentials())
    result = {"sent": 0, "received": [], "error": None}
    producer = Producer(config, (args.topic,))
    consumer = None
    try:
        producer.startup()
        for n in range(args.rounds):
            for p in range(10):
                message = Message()
                message.topic = args.topic
                message.body = f"p{p}-{n}".encode()
                message.priority = p
                producer.send(message)
                result["sent"] += 1
        consumer = SimpleConsumer(
            config, args.group, {args.topic: FilterExpression()}, await_duration=2
        )
        consumer.startup()
        deadline = time.time() + args.timeout
        while len(result["received"]) < result["sent"] and time.time() < deadline:
            for m in consumer.receive(32, 30):
                consumer.ack(m)
                result["received"].append({
                    "body": m.body.decode("utf-8", "replace"),
                    "priority": m.priority,
                    "attempt": m.delivery_attempt,
                })
    except Exception as e:  # reported to the test, which shows it
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result), flush=True)
    for c in (consumer, producer):
        if c is not None:
            try:
                c.shutdown()
            except Exception:
                pass


if __name__ == "__main__":
    main()

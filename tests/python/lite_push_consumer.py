#!/usr/bin/env python3
"""RocketMQ's official Python client (rocketmq-python-client, see requirements.txt) with a
LitePushConsumer against an Apogee cluster, for the integration test `official_python`
(tests/tests/integration).

A LitePushConsumer of `--group` (a group bound to the LITE parent `--topic`) subscribes
lite topics `p-0` .. `p-<n-1>` (`--lite-topics`) with `subscribe_lite`, as an application
does, and nothing more; a Producer then sends `--count` messages to each (Message.lite_topic;
bodies `p-<i>-<seq>`), round after round. The listener records every message it handles and
answers SUCCESS (the client then acks it). The script prints one JSON line on stdout when
everything arrived or `--timeout` passed:

    {"received": [{"lite_topic", "body", "attempt"}], "error": null | "text"}

(`received` in the order the listener ran), then keeps the consumer running until its
standard input ends (the test checks the broker's view of the group meanwhile) and shuts the
clients down. Exit 0 after a clean run, 2 when something did not arrive in time. The
client's warnings and errors go to stderr.
"""

import argparse
import json
import logging
import sys
import threading

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, LitePushConsumer,
                      Message, MessageListener, Producer)


class Recorder(MessageListener):
    """Records each message in the order the listener ran; answers SUCCESS."""

    def __init__(self, expected):
        self.expected = expected
        self.lock = threading.Lock()
        self.received = []
        self.all_arrived = threading.Event()

    def consume(self, message):
        with self.lock:
            self.received.append({
                "lite_topic": message.lite_topic,
                "body": message.body.decode("utf-8", "replace"),
                "attempt": message.delivery_attempt,
            })
            if len(self.received) >= self.expected:
                self.all_arrived.set()
        return ConsumeResult.SUCCESS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="NameServer host:port")
    parser.add_argument("--topic", required=True, help="the LITE parent topic")
    parser.add_argument("--group", required=True)
    parser.add_argument("--lite-topics", type=int, default=3)
    parser.add_argument("--count", type=int, default=10, help="messages per lite topic")
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds")
    args = parser.parse_args()

    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.WARNING)
    errors.setFormatter(logging.Formatter("python client %(levelname)s: %(message)s"))
    logging.getLogger("rocketmq-python-client").addHandler(errors)

    names = [f"p-{i}" for i in range(args.lite_topics)]
    config = ClientConfiguration(args.endpoint, Credentials())
    recorder = Recorder(args.count * len(names))
    consumer = LitePushConsumer(config, args.group, args.topic, recorder)
    consumer.startup()
    producer = None
    error = None
    try:
        for name in names:
            consumer.subscribe_lite(name)
        producer = Producer(config, (args.topic,))
        producer.startup()
        for seq in range(args.count):
            for name in names:
                message = Message()
                message.topic = args.topic
                message.body = f"{name}-{seq}".encode()
                message.lite_topic = name
                producer.send(message)
        recorder.all_arrived.wait(args.timeout)
    except Exception as e:  # reported to the test, which shows it
        error = f"{type(e).__name__}: {e}"
    with recorder.lock:
        result = {
            "received": list(recorder.received),
            "error": error,
        }
    print(json.dumps(result), flush=True)

    # Keep consuming (and acking) until the test closes our standard input.
    sys.stdin.read()
    if producer is not None:
        producer.shutdown()
    consumer.shutdown()
    complete = error is None and recorder.all_arrived.is_set()
    return 0 if complete else 2


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""RocketMQ's official Python client (rocketmq-python-client, see requirements.txt) against an
Apogee cluster, for the integration test `official_python` (tests/tests/integration).

Sends `--count` normal messages to `--topic` and one message to `--delay-topic` whose
`Message.delivery_timestamp` is `--delay-ms` ahead, consumes both topics with a PushConsumer
of `--group` whose listener records every message and answers SUCCESS (the client then acks
it), and prints one JSON line on stdout when everything arrived or `--timeout` passed:

    {"sent": [ids], "delayed": {"id": id, "due_ms": ms},
     "received": [{"id", "topic", "body", "at_ms", "delivery_ms", "transport_ms",
                   "attempt"}], "duplicates": [ids]}

It keeps the consumer running until its standard input ends (the test checks the broker's
view of the group meanwhile), then shuts the clients down. Exit 0 after a clean run, 2 when
something did not arrive in time. The client's errors go to stderr.
"""

import argparse
import json
import logging
import sys
import threading
import time

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials,
                      FilterExpression, Message, MessageListener, Producer,
                      PushConsumer)


def now_ms():
    return int(time.time() * 1000)


class Recorder(MessageListener):
    """Records each message's first arrival; answers SUCCESS so the client acks it."""

    def __init__(self, expected):
        self.expected = expected
        self.lock = threading.Lock()
        self.arrivals = {}
        self.duplicates = []
        self.all_arrived = threading.Event()

    def consume(self, message):
        at_ms = now_ms()
        with self.lock:
            if message.message_id in self.arrivals:
                self.duplicates.append(message.message_id)
            else:
                self.arrivals[message.message_id] = {
                    "id": message.message_id,
                    "topic": message.topic,
                    "body": message.body.decode("utf-8", "replace"),
                    "at_ms": at_ms,
                    "delivery_ms": message.delivery_timestamp,
                    "transport_ms": message.transport_delivery_timestamp,
                    "attempt": message.delivery_attempt,
                }
            if len(self.arrivals) >= self.expected:
                self.all_arrived.set()
        return ConsumeResult.SUCCESS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="NameServer host:port")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--delay-topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--delay-ms", type=int, default=4000)
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds")
    args = parser.parse_args()

    # The client logs to a file under $HOME; its warnings and errors go to stderr too.
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.WARNING)
    errors.setFormatter(logging.Formatter("python client %(levelname)s: %(message)s"))
    logging.getLogger("rocketmq-python-client").addHandler(errors)

    config = ClientConfiguration(args.endpoint, Credentials())
    producer = Producer(config, (args.topic, args.delay_topic))
    producer.startup()
    sent = []
    for i in range(args.count):
        message = Message()
        message.topic = args.topic
        message.body = f"python-{i}".encode()
        message.tag = "python"
        sent.append(producer.send(message).message_id)
    delayed = Message()
    delayed.topic = args.delay_topic
    delayed.body = b"python-delayed"
    due_ms = now_ms() + args.delay_ms
    # The client writes these milliseconds into the timestamp's seconds field.
    delayed.delivery_timestamp = due_ms
    delayed_id = producer.send(delayed).message_id

    recorder = Recorder(args.count + 1)
    consumer = PushConsumer(
        config,
        args.group,
        recorder,
        {args.topic: FilterExpression("python"), args.delay_topic: FilterExpression()},
    )
    consumer.startup()
    arrived = recorder.all_arrived.wait(args.timeout)
    with recorder.lock:
        result = {
            "sent": sent,
            "delayed": {"id": delayed_id, "due_ms": due_ms},
            "received": list(recorder.arrivals.values()),
            "duplicates": list(recorder.duplicates),
        }
    print(json.dumps(result), flush=True)

    # Keep consuming (and acking) until the test closes our standard input.
    sys.stdin.read()
    consumer.shutdown()
    producer.shutdown()
    return 0 if arrived else 2


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""RocketMQ's official Python client (rocketmq-python-client, see requirements.txt) with lite
topics against an Apogee cluster, for the integration test `lite` (tests/tests/integration).

A Producer sends `--count` messages to each of `--lite-topics` lite topics `s-0` .. under the
LITE parent `--topic` (Message.lite_topic; bodies `s-<i>-<seq>`), round after round; a
LiteSimpleConsumer of `--group` (a group bound to the parent) subscribes to every one of
them (the client checks each against the quota and name length the Settings reply gave it),
receives and acks (the acks carry the lite topic) until everything arrived or `--timeout`
passed, then unsubscribes one lite topic and shuts down. It prints one JSON line:

    {"quota": q, "max_len": n, "subscribed": [names],
     "received": [{"lite_topic", "body", "attempt"}], "error": null | "text"}

Exit 0 after a clean run, 2 when something did not arrive in time.
"""

import argparse
import json
import logging
import sys
import time

from rocketmq import ClientConfiguration, Credentials, LiteSimpleConsumer, Message, Producer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="NameServer host:port")
    parser.add_argument("--topic", required=True, help="the LITE parent topic")
    parser.add_argument("--group", required=True)
    parser.add_argument("--lite-topics", type=int, default=10)
    parser.add_argument("--count", type=int, default=3, help="messages per lite topic")
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds")
    args = parser.parse_args()

    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.WARNING)
    errors.setFormatter(logging.Formatter("python client %(levelname)s: %(message)s"))
    logging.getLogger("rocketmq-python-client").addHandler(errors)

    names = [f"s-{i}" for i in range(args.lite_topics)]
    config = ClientConfiguration(args.endpoint, Credentials())
    consumer = LiteSimpleConsumer(args.topic, config, args.group, await_duration=2)
    consumer.startup()
    result = {"quota": None, "max_len": None, "subscribed": [], "received": [], "error": None}
    producer = None
    try:
        manager = consumer._LiteSimpleConsumer__subscription_manager
        # The client's startup does not wait for the Settings a lite simple consumer gets on its
        # telemetry stream (Client.__init_routes in rocketmq/v5/client/client.py waits only
        # for other client types), and subscribe_lite refuses every name while the quota is
        # still 0: an application waits for the Settings first (the reply cannot come before
        # the client asks, so the server cannot spare it this).
        settings_by = time.time() + 10
        while manager.lite_subscription_quota <= 0:
            if time.time() > settings_by:
                raise TimeoutError("no Settings with a lite subscription quota within 10 s")
            time.sleep(0.05)
        # Each sends its name's characters as lite topics (client 5.1.2); Apogee joins them.
        for name in names:
            consumer.subscribe_lite(name)
        result["quota"] = manager.lite_subscription_quota
        result["max_len"] = manager.max_lite_topic_size
        result["subscribed"] = sorted(manager.lite_topics)

        producer = Producer(config, (args.topic,))
        producer.startup()
        for seq in range(args.count):
            for name in names:
                message = Message()
                message.topic = args.topic
                message.body = f"{name}-{seq}".encode()
                message.lite_topic = name
                producer.send(message)

        want = args.count * len(names)
        deadline = time.time() + args.timeout
        while len(result["received"]) < want and time.time() < deadline:
            for m in consumer.receive(32, 30):
                consumer.ack(m)
                result["received"].append({
                    "lite_topic": m.lite_topic,
                    "body": m.body.decode("utf-8", "replace"),
                    "attempt": m.delivery_attempt,
                })
        consumer.unsubscribe_lite(names[0])
        result["subscribed_after"] = sorted(manager.lite_topics)
    except Exception as e:  # reported to the test, which shows it
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result), flush=True)
    if producer is not None:
        producer.shutdown()
    consumer.shutdown()
    complete = result["error"] is None and len(result["received"]) >= args.count * len(names)
    return 0 if complete else 2


if __name__ == "__main__":
    sys.exit(main())

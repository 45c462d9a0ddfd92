package org.apogee.compat;

import static org.apogee.compat.Scenario.check;
import static org.apogee.compat.Scenario.checkEqual;
import static org.apogee.compat.Scenario.text;
import static org.apogee.compat.Scenario.utf8;
import static org.apogee.compat.Scenario.waitUntil;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.remoting.RPCHook;
import org.apache.rocketmq.remoting.protocol.heartbeat.MessageModel;

/**
 * Scenarios of the 4.x-style remoting client ({@code org.apache.rocketmq:rocketmq-client}:
 * DefaultMQProducer, DefaultMQPushConsumer, DefaultLitePullConsumer, TransactionMQProducer),
 * names starting {@code remoting-}.
 */
final class RemotingScenarios {
    private RemotingScenarios() {
    }

    static void register(Map<String, Scenario.Body> all) {
        all.put("remoting-send", RemotingScenarios::sendKinds);
        all.put("remoting-orderly", RemotingScenarios::orderly);
        all.put("remoting-clustering", RemotingScenarios::clustering);
        all.put("remoting-broadcast", RemotingScenarios::broadcast);
        all.put("remoting-lite-pull", RemotingScenarios::litePull);
        all.put("remoting-transaction", RemotingScenarios::transaction);
        all.put("remoting-delay", RemotingScenarios::delayLevel);
        all.put("remoting-retry-dlq", RemotingScenarios::retryThenDeadLetter);
        all.put("remoting-trace", RemotingScenarios::trace);
        all.put("remoting-auth", RemotingScenarios::auth);
    }

    /** A started producer of the scenario's producer group. */
    private static DefaultMQProducer producer(Scenario s) throws Exception {
        DefaultMQProducer producer = new DefaultMQProducer(s.group() + "-producers");
        producer.setNamesrvAddr(s.namesrv());
        producer.setInstanceName(s.instance("producer"));
        producer.start();
        return producer;
    }

    /** A push consumer of {@code group} on the scenario's topic, from the first offset, not started. */
    private static DefaultMQPushConsumer pushConsumer(Scenario s, String group, String instance) throws Exception {
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
        consumer.setNamesrvAddr(s.namesrv());
        consumer.setInstanceName(s.instance(instance));
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(s.topic(), "*");
        return consumer;
    }

    /** Records the bodies a concurrently consuming push consumer handled, in arrival order. */
    private static List<String> recordConcurrently(DefaultMQPushConsumer consumer) {
        List<String> got = Collections.synchronizedList(new ArrayList<>());
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            msgs.forEach(m -> got.add(text(m.getBody())));
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        return got;
    }

    private static Message message(Scenario s, String body) {
        return new Message(s.topic(), "tag-a", "key-" + body, utf8(body));
    }

    private static List<String> numbered(String prefix, int count) {
        List<String> bodies = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            bodies.add(prefix + "-" + i);
        }
        return bodies;
    }

    /** Waits until {@code got} holds every one of {@code expected}; then checks it holds nothing else. */
    private static void expectExactly(List<String> got, List<String> expected, String who) throws Exception {
        waitUntil(Duration.ofSeconds(40), who + "'s messages", () -> got.size() >= expected.size(), () -> got);
        Thread.sleep(300);
        List<String> sortedGot;
        synchronized (got) {
            sortedGot = new ArrayList<>(got);
        }
        Collections.sort(sortedGot);
        List<String> sortedExpected = new ArrayList<>(expected);
        Collections.sort(sortedExpected);
        checkEqual(sortedExpected, sortedGot, who + " received each message once");
    }

    /** Sync, async and oneway sends, all consumed by a push consumer. */
    static void sendKinds(Scenario s) throws Exception {
        DefaultMQProducer producer = producer(s);
        DefaultMQPushConsumer consumer = pushConsumer(s, s.group(), "consumer");
        List<String> got = recordConcurrently(consumer);
        try {
            List<String> sync = numbered("sync", 10);
            for (String body : sync) {
                SendResult result = producer.send(message(s, body));
                checkEqual(SendStatus.SEND_OK, result.getSendStatus(), "sync send status");
                check(result.getMsgId() != null && result.getOffsetMsgId() != null, "ids of a send: %s", result);
                checkEqual(s.topic(), result.getMessageQueue().getTopic(), "the send's queue's topic");
            }
            List<String> async = numbered("async", 10);
            CountDownLatch done = new CountDownLatch(async.size());
            List<String> asyncFailures = Collections.synchronizedList(new ArrayList<>());
            for (String body : async) {
                producer.send(message(s, body), new SendCallback() {
                    @Override
                    public void onSuccess(SendResult result) {
                        if (result.getSendStatus() != SendStatus.SEND_OK) {
                            asyncFailures.add(body + ": " + result.getSendStatus());
                        }
                        done.countDown();
                    }

                    @Override
                    public void onException(Throwable e) {
                        asyncFailures.add(body + ": " + e);
                        done.countDown();
                    }
                });
            }
            check(done.await(20, TimeUnit.SECONDS), "async send callbacks missing");
            checkEqual(List.of(), asyncFailures, "async sends failed");
            List<String> oneway = numbered("oneway", 10);
            for (String body : oneway) {
                producer.sendOneway(message(s, body));
            }
            consumer.start();
            List<String> all = new ArrayList<>(sync);
            all.addAll(async);
            all.addAll(oneway);
            expectExactly(got, all, "the push consumer");
        } finally {
            consumer.shutdown();
            producer.shutdown();
        }
    }

    /**
     * Ordered sends: each order's steps go to one queue chosen by a MessageQueueSelector, and a
     * MessageListenerOrderly consumer sees each order's steps in order from that queue.
     */
    static void orderly(Scenario s) throws Exception {
        final int orders = 4;
        final int steps = 10;
        DefaultMQProducer producer = producer(s);
        DefaultMQPushConsumer consumer = pushConsumer(s, s.group(), "consumer");
        Map<Integer, List<String>> seen = new ConcurrentHashMap<>();
        Map<Integer, Set<Integer>> queuesOfOrder = new ConcurrentHashMap<>();
        consumer.registerMessageListener((MessageListenerOrderly) (msgs, context) -> {
            for (MessageExt m : msgs) {
                int order = Integer.parseInt(m.getUserProperty("order"));
                seen.computeIfAbsent(order, k -> Collections.synchronizedList(new ArrayList<>())).add(text(m.getBody()));
                queuesOfOrder.computeIfAbsent(order, k -> ConcurrentHashMap.newKeySet()).add(m.getQueueId());
            }
            return ConsumeOrderlyStatus.SUCCESS;
        });
        try {
            Map<Integer, Integer> chosenQueue = new TreeMap<>();
            for (int step = 0; step < steps; step++) {
                for (int order = 0; order < orders; order++) {
                    Message m = message(s, "order-" + order + "-step-" + step);
                    m.putUserProperty("order", String.valueOf(order));
                    SendResult result = producer.send(m,
                        (mqs, msg, arg) -> mqs.get((Integer) arg % mqs.size()), order);
                    checkEqual(SendStatus.SEND_OK, result.getSendStatus(), "send status");
                    Integer before = chosenQueue.putIfAbsent(order, result.getMessageQueue().getQueueId());
                    if (before != null) {
                        checkEqual(before, result.getMessageQueue().getQueueId(), "queue of order " + order);
                    }
                }
            }
            consumer.start();
            waitUntil(Duration.ofSeconds(40), "every order's steps",
                () -> seen.values().stream().mapToInt(List::size).sum() >= orders * steps, () -> seen);
            for (int order = 0; order < orders; order++) {
                List<String> expected = new ArrayList<>();
                for (int step = 0; step < steps; step++) {
                    expected.add("order-" + order + "-step-" + step);
                }
                checkEqual(expected, seen.get(order), "steps of order " + order + " in order");
                checkEqual(Set.of(chosenQueue.get(order)), queuesOfOrder.get(order), "queue of order " + order);
            }
        } finally {
            consumer.shutdown();
            producer.shutdown();
        }
    }

    /** Two clustering consumers of one group share the topic's queues: each message handled once. */
    static void clustering(Scenario s) throws Exception {
        DefaultMQPushConsumer first = pushConsumer(s, s.group(), "first");
        DefaultMQPushConsumer second = pushConsumer(s, s.group(), "second");
        List<String> gotFirst = recordConcurrently(first);
        List<String> gotSecond = recordConcurrently(second);
        DefaultMQProducer producer = producer(s);
        try {
            first.start();
            second.start();
            // Both hold queues, and together all of them, before anything is sent.
            waitUntil(Duration.ofSeconds(30), "the queues shared by both consumers",
                () -> assigned(first, s.topic()) > 0 && assigned(second, s.topic()) > 0
                    && assigned(first, s.topic()) + assigned(second, s.topic()) == 4,
                () -> assigned(first, s.topic()) + " and " + assigned(second, s.topic()) + " queues");
            List<String> sent = numbered("shared", 40);
            for (String body : sent) {
                producer.send(message(s, body));
            }
            waitUntil(Duration.ofSeconds(40), "every message", () -> gotFirst.size() + gotSecond.size() >= sent.size(),
                () -> gotFirst + " / " + gotSecond);
            Thread.sleep(300);
            List<String> both = new ArrayList<>(gotFirst);
            both.addAll(gotSecond);
            expectExactly(both, sent, "the two consumers");
            check(!gotFirst.isEmpty() && !gotSecond.isEmpty(), "one consumer handled nothing: %s / %s", gotFirst,
                gotSecond);
        } finally {
            first.shutdown();
            second.shutdown();
            producer.shutdown();
        }
    }

    /** The queues a push consumer's rebalance gave it. */
    /**
     * The queues of {@code topic} the consumer holds. Its table also holds the group's retry topic's
     * queue (%RETRY%group, routed for every group as RocketMQ's brokers make it), not counted here.
     */
    private static int assigned(DefaultMQPushConsumer consumer, String topic) {
        return (int) consumer.getDefaultMQPushConsumerImpl().getRebalanceImpl().getProcessQueueTable().keySet()
            .stream().filter(mq -> mq.getTopic().equals(topic)).count();
    }

    /** Two broadcasting consumers of one group each handle every message. */
    static void broadcast(Scenario s) throws Exception {
        DefaultMQPushConsumer first = pushConsumer(s, s.group(), "first");
        DefaultMQPushConsumer second = pushConsumer(s, s.group(), "second");
        first.setMessageModel(MessageModel.BROADCASTING);
        second.setMessageModel(MessageModel.BROADCASTING);
        List<String> gotFirst = recordConcurrently(first);
        List<String> gotSecond = recordConcurrently(second);
        DefaultMQProducer producer = producer(s);
        try {
            List<String> sent = numbered("everyone", 20);
            for (String body : sent) {
                producer.send(message(s, body));
            }
            first.start();
            second.start();
            expectExactly(gotFirst, sent, "the first broadcasting consumer");
            expectExactly(gotSecond, sent, "the second broadcasting consumer");
        } finally {
            first.shutdown();
            second.shutdown();
            producer.shutdown();
        }
    }

    /** A DefaultLitePullConsumer polls every message and commits; a second one of the group gets none. */
    static void litePull(Scenario s) throws Exception {
        DefaultMQProducer producer = producer(s);
        List<String> sent = numbered("pulled", 30);
        try {
            for (String body : sent) {
                producer.send(message(s, body));
            }
        } finally {
            producer.shutdown();
        }
        List<String> got = pollAll(s, s.topic(), s.group(), "puller", sent.size());
        List<String> sortedGot = new ArrayList<>(got);
        Collections.sort(sortedGot);
        List<String> sortedSent = new ArrayList<>(sent);
        Collections.sort(sortedSent);
        checkEqual(sortedSent, sortedGot, "bodies polled");
        // The committed offsets hold: the group's next consumer starts after them.
        List<String> again = pollAll(s, s.topic(), s.group(), "puller-again", 0);
        checkEqual(List.of(), again, "polled again after the commit");
    }

    /**
     * Polls {@code topic} as {@code group} until {@code count} messages came (or, for 0, for 3 s),
     * commits, and returns the bodies.
     */
    private static List<String> pollAll(Scenario s, String topic, String group, String instance, int count)
        throws Exception {
        DefaultLitePullConsumer consumer = new DefaultLitePullConsumer(group);
        consumer.setNamesrvAddr(s.namesrv());
        consumer.setInstanceName(s.instance(instance));
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.setAutoCommit(false);
        consumer.setPollNameServerInterval(1000);
        consumer.setTopicMetadataCheckIntervalMillis(1000);
        consumer.subscribe(topic, "*");
        List<String> got = new ArrayList<>();
        try {
            consumer.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(count == 0 ? 3 : 40);
            while (System.nanoTime() < deadline && (count == 0 || got.size() < count)) {
                for (MessageExt m : consumer.poll(500)) {
                    got.add(text(m.getBody()));
                }
            }
            check(got.size() >= count, "polled %d of %d messages: %s", got.size(), count, got);
            consumer.commitSync();
        } finally {
            consumer.shutdown();
        }
        return got;
    }

    /**
     * A TransactionMQProducer: the local transaction commits one, rolls back one and leaves two
     * unknown, which the broker's check-back settles (one committed, one rolled back).
     */
    static void transaction(Scenario s) throws Exception {
        Set<String> checked = ConcurrentHashMap.newKeySet();
        TransactionMQProducer producer = new TransactionMQProducer(s.group() + "-producers");
        producer.setNamesrvAddr(s.namesrv());
        producer.setInstanceName(s.instance("producer"));
        producer.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                return switch (text(msg.getBody())) {
                    case "commit" -> LocalTransactionState.COMMIT_MESSAGE;
                    case "rollback" -> LocalTransactionState.ROLLBACK_MESSAGE;
                    default -> LocalTransactionState.UNKNOW;
                };
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                String body = text(msg.getBody());
                checked.add(body);
                return body.equals("unknown-commit") ? LocalTransactionState.COMMIT_MESSAGE
                    : LocalTransactionState.ROLLBACK_MESSAGE;
            }
        });
        DefaultMQPushConsumer consumer = pushConsumer(s, s.group(), "consumer");
        List<String> got = recordConcurrently(consumer);
        try {
            producer.start();
            consumer.start();
            Map<String, LocalTransactionState> expectedState = Map.of("commit", LocalTransactionState.COMMIT_MESSAGE,
                "rollback", LocalTransactionState.ROLLBACK_MESSAGE, "unknown-commit", LocalTransactionState.UNKNOW,
                "unknown-rollback", LocalTransactionState.UNKNOW);
            for (String body : List.of("commit", "rollback", "unknown-commit", "unknown-rollback")) {
                TransactionSendResult result = producer.sendMessageInTransaction(message(s, body), null);
                checkEqual(SendStatus.SEND_OK, result.getSendStatus(), "send status of " + body);
                checkEqual(expectedState.get(body), result.getLocalTransactionState(), "local state of " + body);
            }
            waitUntil(Duration.ofSeconds(30), "check-back of both unknown transactions",
                () -> checked.containsAll(Set.of("unknown-commit", "unknown-rollback")), () -> checked);
            expectExactly(got, List.of("commit", "unknown-commit"), "the consumer");
            checkEqual(Set.of("unknown-commit", "unknown-rollback"), new TreeSet<>(checked), "transactions checked");
        } finally {
            consumer.shutdown();
            producer.shutdown();
        }
    }

    /** Delay level 2 (5 s): the message is delivered 5 s after its send, not before. */
    static void delayLevel(Scenario s) throws Exception {
        DefaultMQProducer producer = producer(s);
        DefaultMQPushConsumer consumer = pushConsumer(s, s.group(), "consumer");
        AtomicReference<Long> arrivedAt = new AtomicReference<>();
        AtomicReference<String> arrived = new AtomicReference<>();
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            arrived.set(text(msgs.get(0).getBody()));
            arrivedAt.compareAndSet(null, System.currentTimeMillis());
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        try {
            consumer.start();
            Message m = message(s, "five seconds later");
            m.setDelayTimeLevel(2);
            long sentAt = System.currentTimeMillis();
            checkEqual(SendStatus.SEND_OK, producer.send(m).getSendStatus(), "send status");
            waitUntil(Duration.ofSeconds(30), "the delayed message", () -> arrivedAt.get() != null, () -> "nothing");
            checkEqual("five seconds later", arrived.get(), "body");
            long after = arrivedAt.get() - sentAt;
            check(after >= 5_000, "delivered %d ms after its send, before level 2's 5 s", after);
            check(after < 15_000, "delivered only %d ms after its send", after);
        } finally {
            consumer.shutdown();
            producer.shutdown();
        }
    }

    /**
     * A message the listener answers RECONSUME_LATER comes back (reconsume times 0, 1, 2 with
     * maxReconsumeTimes 2), then goes to {@code %DLQ%group}, where a pull consumer reads it.
     */
    static void retryThenDeadLetter(Scenario s) throws Exception {
        DefaultMQProducer producer = producer(s);
        DefaultMQPushConsumer consumer = pushConsumer(s, s.group(), "consumer");
        consumer.setMaxReconsumeTimes(2);
        List<Integer> reconsumeTimes = Collections.synchronizedList(new ArrayList<>());
        consumer.registerMessageListener((MessageListenerConcurrently) (msgs, context) -> {
            msgs.forEach(m -> reconsumeTimes.add(m.getReconsumeTimes()));
            // The next attempt after level 1 (1 s), not the broker's default of 10 s and more.
            context.setDelayLevelWhenNextConsume(1);
            return ConsumeConcurrentlyStatus.RECONSUME_LATER;
        });
        try {
            consumer.start();
            checkEqual(SendStatus.SEND_OK, producer.send(message(s, "never handled")).getSendStatus(), "send status");
            waitUntil(Duration.ofSeconds(40), "three deliveries", () -> reconsumeTimes.size() >= 3,
                () -> reconsumeTimes);
            List<String> dead = pollAll(s, "%DLQ%" + s.group(), s.group2(), "dlq-reader", 1);
            checkEqual(List.of("never handled"), dead, "the dead-letter queue");
            Thread.sleep(500);
            checkEqual(List.of(0, 1, 2), new ArrayList<>(reconsumeTimes), "reconsume times of the deliveries");
        } finally {
            consumer.shutdown();
            producer.shutdown();
        }
    }

    /**
     * Message trace on: a producer and a push consumer created with {@code enableMsgTrace} write
     * their trace records (Pub, SubBefore, SubAfter) of the message to {@code RMQ_SYS_TRACE_TOPIC}.
     */
    static void trace(Scenario s) throws Exception {
        DefaultMQProducer producer = new DefaultMQProducer(s.group() + "-producers", true, null);
        producer.setNamesrvAddr(s.namesrv());
        producer.setInstanceName(s.instance("producer"));
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(s.group(), true, null);
        consumer.setNamesrvAddr(s.namesrv());
        consumer.setInstanceName(s.instance("consumer"));
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(s.topic(), "*");
        List<String> got = recordConcurrently(consumer);
        try {
            producer.start();
            consumer.start();
            SendResult sent = producer.send(message(s, "traced"));
            expectExactly(got, List.of("traced"), "the traced consumer");
            String id = sent.getMsgId();
            List<String> records = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!(records.stream().anyMatch(r -> r.startsWith("Pub") && r.contains(id))
                && records.stream().anyMatch(r -> r.startsWith("SubAfter") && r.contains(id)))) {
                check(System.nanoTime() < deadline, "no Pub and SubAfter trace of %s: %s", id, records);
                for (String body : pollAll(s, "RMQ_SYS_TRACE_TOPIC", s.group2(), "trace-reader", 1)) {
                    records.addAll(List.of(body.split("\u0002")));
                }
            }
            // For the caller to look the trace up by key on the broker.
            System.out.println("TRACED " + id);
        } finally {
            consumer.shutdown();
            producer.shutdown();
        }
    }

    /** The request signer an application with ACL credentials hands its clients. */
    private static RPCHook signer(String accessKey, String secretKey) {
        return new AclClientRPCHook(new SessionCredentials(accessKey, secretKey));
    }

    /**
     * Authentication on: a producer and a push consumer signing with {@code AclClientRPCHook} and
     * the given credentials send and receive; a producer with the same access key and a wrong
     * secret cannot send.
     */
    static void auth(Scenario s) throws Exception {
        check(s.accessKey() != null && s.secretKey() != null, "remoting-auth needs --access-key and --secret-key");
        DefaultMQProducer producer = new DefaultMQProducer(s.group() + "-producers", signer(s.accessKey(), s.secretKey()));
        producer.setNamesrvAddr(s.namesrv());
        producer.setInstanceName(s.instance("producer"));
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(s.group(), signer(s.accessKey(), s.secretKey()));
        consumer.setNamesrvAddr(s.namesrv());
        consumer.setInstanceName(s.instance("consumer"));
        consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        consumer.subscribe(s.topic(), "*");
        List<String> got = recordConcurrently(consumer);
        DefaultMQProducer impostor = new DefaultMQProducer(s.group() + "-impostors",
            signer(s.accessKey(), s.secretKey() + "-wrong"));
        impostor.setNamesrvAddr(s.namesrv());
        impostor.setInstanceName(s.instance("impostor"));
        impostor.setRetryTimesWhenSendFailed(0);
        try {
            producer.start();
            List<String> signed = numbered("signed", 5);
            for (String body : signed) {
                checkEqual(SendStatus.SEND_OK, producer.send(message(s, body)).getSendStatus(), "signed send status");
            }
            impostor.start();
            String refused = null;
            try {
                SendResult result = impostor.send(message(s, "unsigned"));
                refused = result.getSendStatus() == SendStatus.SEND_OK ? null : result.toString();
            } catch (Exception e) {
                refused = e.toString();
            }
            check(refused != null, "a producer with a wrong secret sent a message");
            consumer.start();
            expectExactly(got, signed, "the signing consumer");
        } finally {
            producer.shutdown();
            impostor.shutdown();
            consumer.shutdown();
        }
    }
}

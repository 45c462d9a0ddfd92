package org.apogee.spring;

import static org.apogee.spring.Checks.check;
import static org.apogee.spring.Checks.checkEqual;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.spring.core.RocketMQTemplate;
import org.apache.rocketmq.spring.support.RocketMQHeaders;
import org.springframework.messaging.Message;
import org.springframework.messaging.support.MessageBuilder;
import org.springframework.stereotype.Component;

/**
 * The scenarios: RocketMQTemplate sends, the {@link Listeners} receive, and each scenario checks
 * what arrived (counts, payloads, tags, order, times, transaction outcomes).
 */
@Component
public class Scenarios {
    /** How long a scenario waits for one thing it expects. */
    private static final Duration WAIT = Duration.ofSeconds(40);
    private static final Comparator<Order> BY_ID = Comparator.comparing(Order::id);

    /** A scenario's code: returns when everything it checks held, throws otherwise. */
    @FunctionalInterface
    public interface Body {
        void run() throws Exception;
    }

    private final RocketMQTemplate template;
    private final ListenerContainers containers;
    private final Listeners.TagA tagA;
    private final Listeners.TagB tagB;
    private final Listeners.Orderly orderly;
    private final Listeners.Delayed delayed;
    private final Listeners.Committed committed;
    private final TransactionOutcomes outcomes;
    private final ObjectMapper json = new ObjectMapper();

    public Scenarios(RocketMQTemplate template, ListenerContainers containers, Listeners.TagA tagA,
        Listeners.TagB tagB, Listeners.Orderly orderly, Listeners.Delayed delayed, Listeners.Committed committed,
        TransactionOutcomes outcomes) {
        this.template = template;
        this.containers = containers;
        this.tagA = tagA;
        this.tagB = tagB;
        this.orderly = orderly;
        this.delayed = delayed;
        this.committed = committed;
        this.outcomes = outcomes;
    }

    /** Every scenario by name, in the order they are reported. */
    public Map<String, Body> all() {
        Map<String, Body> all = new LinkedHashMap<>();
        all.put("spring-send", this::sendAndFilterByTag);
        all.put("spring-orderly", this::orderlyByHashKey);
        all.put("spring-delay", this::delayed);
        all.put("spring-transaction", this::transactions);
        return all;
    }

    private static void checkSent(SendResult result, String what) {
        check(result.getSendStatus() == SendStatus.SEND_OK && result.getMsgId() != null,
            "%s: %s", what, result);
    }

    private static Message<Order> withKey(Order order, String key) {
        return MessageBuilder.withPayload(order).setHeader(RocketMQHeaders.KEYS, key).build();
    }

    /**
     * 10 syncSend and 10 asyncSend of orders to {@code topic:tagA}, 5 syncSend to
     * {@code topic:tagB} between them, then one {@code end} order to each queue (syncSendOrderly
     * with hash keys "0" to "3"). Once both listeners received their tag and every queue's
     * {@code end} and passed every stored message: the tagA listener got exactly the 20 tagA
     * orders as {@link Order}s, the tagB listener exactly the 5 tagB messages with their tag,
     * key and JSON body; neither got anything of the other's tag.
     */
    private void sendAndFilterByTag() throws Exception {
        String topic = Listeners.SEND_TOPIC;
        List<Order> sentA = new ArrayList<>();
        List<Order> sentB = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            Order order = new Order("a-" + i, i, "tagA");
            checkSent(template.syncSend(topic + ":tagA", order), "syncSend " + order);
            sentA.add(order);
        }
        for (int i = 0; i < 5; i++) {
            Order order = new Order("b-" + i, i, "tagB");
            checkSent(template.syncSend(topic + ":tagB", withKey(order, order.id())), "syncSend " + order);
            sentB.add(order);
        }
        CountDownLatch callbacks = new CountDownLatch(10);
        List<String> callbackErrors = new CopyOnWriteArrayList<>();
        for (int i = 10; i < 20; i++) {
            Order order = new Order("a-" + i, i, "tagA");
            sentA.add(order);
            template.asyncSend(topic + ":tagA", order, new SendCallback() {
                @Override
                public void onSuccess(SendResult result) {
                    if (result.getSendStatus() != SendStatus.SEND_OK) {
                        callbackErrors.add(order.id() + ": " + result);
                    }
                    callbacks.countDown();
                }

                @Override
                public void onException(Throwable e) {
                    callbackErrors.add(order.id() + ": " + e);
                    callbacks.countDown();
                }
            });
        }
        check(callbacks.await(WAIT.toSeconds(), TimeUnit.SECONDS), "asyncSend callbacks: %d missing",
            callbacks.getCount());
        checkEqual(List.of(), callbackErrors, "asyncSend callbacks that failed");
        // The last message of each queue is one both listeners take, so each consumer's offset
        // reaches every queue's end as soon as it consumed it.
        Set<Integer> endQueues = new TreeSet<>();
        for (int q = 0; q < 4; q++) {
            Order end = new Order("end-" + q, q, "end");
            SendResult result = template.syncSendOrderly(topic + ":end", withKey(end, end.id()), String.valueOf(q));
            checkSent(result, "syncSendOrderly " + end);
            endQueues.add(result.getMessageQueue().getQueueId());
        }
        checkEqual(Set.of(0, 1, 2, 3), endQueues, "queues of the end orders");

        tagA.inbox.awaitCount(sentA.size() + 4, WAIT, "tagA and end orders");
        tagB.inbox.awaitCount(sentB.size() + 4, WAIT, "tagB and end messages");
        containers.awaitCaughtUp(topic + "-g", WAIT);
        containers.awaitCaughtUp(topic + "-g2", WAIT);

        List<Order> gotA = new ArrayList<>(tagA.inbox.all());
        gotA.removeIf(order -> order.note().equals("end"));
        checkEqual(4, tagA.inbox.all().size() - gotA.size(), "end orders the tagA listener got");
        gotA.sort(BY_ID);
        sentA.sort(BY_ID);
        checkEqual(sentA, gotA, "the tagA listener's tagA orders (each once)");
        List<Order> gotB = new ArrayList<>();
        for (MessageExt message : tagB.inbox.all()) {
            Order order = json.readValue(message.getBody(), Order.class);
            checkEqual(order.note(), message.getTags(), "tag of " + order);
            checkEqual(order.id(), message.getKeys(), "key of " + order);
            if (!order.note().equals("end")) {
                gotB.add(order);
            }
        }
        gotB.sort(BY_ID);
        checkEqual(sentB, gotB, "the tagB listener's tagB orders (each once)");
        checkEqual(4, tagB.inbox.all().size() - gotB.size(), "end orders the tagB listener got");
    }

    /**
     * 4 orders of 8 steps each, interleaved, sent with syncSendOrderly by order id as hash key:
     * each order's sends go to one queue, and the ORDERLY listener gets each order's steps once,
     * in order.
     */
    private void orderlyByHashKey() throws Exception {
        int orders = 4;
        int steps = 8;
        Map<String, Integer> queueOfOrder = new HashMap<>();
        for (int step = 0; step < steps; step++) {
            for (int o = 0; o < orders; o++) {
                Order order = new Order("order-" + o, step, "step " + step);
                SendResult result = template.syncSendOrderly(Listeners.ORDERLY_TOPIC, order, order.id());
                checkSent(result, "syncSendOrderly " + order);
                int queue = result.getMessageQueue().getQueueId();
                Integer first = queueOfOrder.putIfAbsent(order.id(), queue);
                check(first == null || first == queue, "%s went to queue %d, its first step to %d", order, queue, first);
            }
        }
        orderly.inbox.awaitCount(orders * steps, WAIT, "orderly steps");
        containers.awaitCaughtUp(Listeners.ORDERLY_TOPIC + "-g", WAIT);
        Map<String, List<Integer>> stepsOfOrder = new TreeMap<>();
        for (Order order : orderly.inbox.all()) {
            stepsOfOrder.computeIfAbsent(order.id(), id -> new ArrayList<>()).add(order.step());
        }
        List<Integer> inOrder = IntStream.range(0, steps).boxed().toList();
        for (int o = 0; o < orders; o++) {
            checkEqual(inOrder, stepsOfOrder.get("order-" + o), "steps of order-" + o + " as received");
        }
        checkEqual(orders, stepsOfOrder.size(), "orders received");
    }

    /**
     * A syncSend with delay level 2 (5 s) and a syncSendDelayTimeSeconds of 3 s: each arrives
     * with its payload, not before its delay, the shorter one first.
     */
    private void delayed() throws Exception {
        long levelSentAt = System.nanoTime();
        checkSent(template.syncSend(Listeners.DELAY_TOPIC, withKey(new Order("level-2", 0, "5 s"), "level-2"),
            10_000, 2), "syncSend with delay level 2");
        long secondsSentAt = System.nanoTime();
        checkSent(template.syncSendDelayTimeSeconds(Listeners.DELAY_TOPIC,
            withKey(new Order("seconds-3", 0, "3 s"), "seconds-3"), 3), "syncSendDelayTimeSeconds 3");
        List<Listeners.Arrival> arrivals = delayed.inbox.awaitCount(2, WAIT, "delayed messages");
        checkEqual(List.of("seconds-3", "level-2"), arrivals.stream().map(a -> a.message().getKeys()).toList(),
            "delayed messages in arrival order");
        Map<String, Long> sentAt = Map.of("level-2", levelSentAt, "seconds-3", secondsSentAt);
        Map<String, Long> delayMs = Map.of("level-2", 5_000L, "seconds-3", 3_000L);
        for (Listeners.Arrival arrival : arrivals) {
            String key = arrival.message().getKeys();
            long afterMs = TimeUnit.NANOSECONDS.toMillis(arrival.atNanos() - sentAt.get(key));
            check(afterMs >= delayMs.get(key), "%s arrived %d ms after its send, before its delay", key, afterMs);
            checkEqual(key, json.readValue(arrival.message().getBody(), Order.class).id(), "payload of " + key);
        }
    }

    /**
     * Four sendMessageInTransaction: committed, rolled back, and two left unknown that the
     * broker's check-back settles (one committed, one rolled back). Exactly the two committed
     * arrive; the check-back asked about the unknown two only.
     */
    private void transactions() throws Exception {
        Map<String, LocalTransactionState> expected = new LinkedHashMap<>();
        expected.put("commit", LocalTransactionState.COMMIT_MESSAGE);
        expected.put("rollback", LocalTransactionState.ROLLBACK_MESSAGE);
        expected.put("unknown-commit", LocalTransactionState.UNKNOW);
        expected.put("unknown-rollback", LocalTransactionState.UNKNOW);
        for (Map.Entry<String, LocalTransactionState> outcome : expected.entrySet()) {
            String name = outcome.getKey();
            Message<Order> message = MessageBuilder.withPayload(new Order("tx-" + name, 0, name))
                .setHeader(RocketMQHeaders.KEYS, name)
                .setHeader("outcome", name)
                .build();
            TransactionSendResult result = template.sendMessageInTransaction(Listeners.TRANSACTION_TOPIC, message, name);
            checkSent(result, "sendMessageInTransaction " + name);
            checkEqual(outcome.getValue(), result.getLocalTransactionState(), "local transaction state of " + name);
        }
        checkEqual(List.copyOf(expected.keySet()), List.copyOf(outcomes.executed), "local transactions run");

        committed.inbox.awaitCount(2, WAIT, "committed messages");
        Checks.until(WAIT, "check-back of unknown-rollback", () -> outcomes.checked.contains("unknown-rollback"));
        containers.awaitCaughtUp(Listeners.TRANSACTION_TOPIC + "-g", WAIT);
        Set<String> got = committed.inbox.all().stream().map(MessageExt::getKeys).collect(Collectors.toSet());
        checkEqual(Set.of("commit", "unknown-commit"), got, "transactional messages delivered");
        checkEqual(2, committed.inbox.all().size(), "deliveries of the committed two");
        checkEqual(new TreeSet<>(Set.of("unknown-commit", "unknown-rollback")), new TreeSet<>(outcomes.checked),
            "messages the broker checked back");
    }
}

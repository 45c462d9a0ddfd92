package org.apogee.compat;

import static org.apogee.compat.Scenario.check;
import static org.apogee.compat.Scenario.checkEqual;
import static org.apogee.compat.Scenario.utf8;
import static org.apogee.compat.Scenario.waitUntil;

import java.io.Closeable;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import java.util.function.Predicate;
import org.apache.rocketmq.client.apis.ClientConfiguration;
import org.apache.rocketmq.client.apis.ClientConfigurationBuilder;
import org.apache.rocketmq.client.apis.ClientServiceProvider;
import org.apache.rocketmq.client.apis.StaticSessionCredentialsProvider;
import org.apache.rocketmq.client.apis.consumer.ConsumeResult;
import org.apache.rocketmq.client.apis.consumer.FilterExpression;
import org.apache.rocketmq.client.apis.consumer.LitePushConsumer;
import org.apache.rocketmq.client.apis.consumer.PushConsumer;
import org.apache.rocketmq.client.apis.consumer.SimpleConsumer;
import org.apache.rocketmq.client.apis.message.Message;
import org.apache.rocketmq.client.apis.message.Message;
import org.apache.rocketmq.client.apis.message.MessageBuilder;
import org.apache.rocketmq.client.apis.message.MessageView;
import org.apache.rocketmq.client.apis.producer.Producer;
import org.apache.rocketmq.client.apis.producer.SendReceipt;
import org.apache.rocketmq.client.apis.producer.Transaction;
import org.apache.rocketmq.client.apis.producer.TransactionResolution;

/**
 * Scenarios of the 5.x gRPC client ({@code org.apache.rocketmq:rocketmq-client-java}), names
 * starting {@code grpc-}: normal sends received and acked by a SimpleConsumer, FIFO order per
 * message group, a delivery timestamp, transactions settled by commit, rollback and the
 * broker's check-back, a PushConsumer, a recalled delay message, a backlog of priorities, and
 * a LitePushConsumer's lite topics; against a cluster with authentication, signed calls served
 * and a wrong secret refused.
 */
final class GrpcScenarios {
    private static final ClientServiceProvider PROVIDER = ClientServiceProvider.loadService();
    /** How long a received message stays invisible to other receives. */
    private static final Duration INVISIBLE = Duration.ofSeconds(30);

    private GrpcScenarios() {
    }

    static void register(Map<String, Scenario.Body> all) {
        all.put("grpc-normal", GrpcScenarios::normal);
        all.put("grpc-fifo", GrpcScenarios::fifo);
        all.put("grpc-delay", GrpcScenarios::delay);
        all.put("grpc-transaction", GrpcScenarios::transaction);
        all.put("grpc-push", GrpcScenarios::push);
        all.put("grpc-recall", GrpcScenarios::recall);
        all.put("grpc-priority", GrpcScenarios::priority);
        all.put("grpc-lite", GrpcScenarios::lite);
        all.put("grpc-auth", GrpcScenarios::auth);
    }

    private static ClientConfiguration config(Scenario s) {
        return config(s, s.secretKey());
    }

    /** The client's configuration, signing with the scenario's access key and {@code secret}. */
    private static ClientConfiguration config(Scenario s, String secret) {
        ClientConfigurationBuilder builder = ClientConfiguration.newBuilder()
            .setEndpoints(s.endpoint())
            .enableSsl(false)
            .setRequestTimeout(Duration.ofSeconds(5));
        if (s.accessKey() != null) {
            builder.setCredentialProvider(new StaticSessionCredentialsProvider(s.accessKey(), secret));
        }
        return builder.build();
    }

    private static Producer producer(Scenario s) throws Exception {
        return PROVIDER.newProducerBuilder()
            .setClientConfiguration(config(s))
            .setTopics(s.topic())
            .build();
    }

    private static SimpleConsumer simpleConsumer(Scenario s) throws Exception {
        return PROVIDER.newSimpleConsumerBuilder()
            .setClientConfiguration(config(s))
            .setConsumerGroup(s.group())
            .setAwaitDuration(Duration.ofSeconds(2))
            .setSubscriptionExpressions(Map.of(s.topic(), FilterExpression.SUB_ALL))
            .build();
    }

    private static MessageBuilder message(Scenario s, String body) {
        return PROVIDER.newMessageBuilder().setTopic(s.topic()).setBody(utf8(body));
    }

    static String body(MessageView view) {
        ByteBuffer buffer = view.getBody().duplicate();
        byte[] bytes = new byte[buffer.remaining()];
        buffer.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    /** One message a consumer handled: the view and when it arrived. */
    record Received(MessageView view, String body, long atMs) {
    }

    /**
     * Receives and acks until {@code done} holds of what arrived (or fails after {@code timeout});
     * returns everything received in order.
     */
    private static List<Received> receiveUntil(SimpleConsumer consumer, Duration timeout,
        Predicate<List<Received>> done) throws Exception {
        List<Received> got = new ArrayList<>();
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!done.test(got)) {
            check(System.nanoTime() < deadline, "not all received within %d s; got %s", timeout.toSeconds(),
                bodies(got));
            for (MessageView view : consumer.receive(16, INVISIBLE)) {
                got.add(new Received(view, body(view), System.currentTimeMillis()));
                consumer.ack(view);
            }
        }
        return got;
    }

    /** Receives for {@code window} more and fails on any message. */
    private static void receiveNothing(SimpleConsumer consumer, Duration window) throws Exception {
        long deadline = System.nanoTime() + window.toNanos();
        while (System.nanoTime() < deadline) {
            List<MessageView> extra = consumer.receive(16, INVISIBLE);
            check(extra.isEmpty(), "unexpected messages: %s", extra.stream().map(GrpcScenarios::body).toList());
        }
    }

    static List<String> bodies(List<Received> got) {
        return got.stream().map(Received::body).toList();
    }

    /** Normal sends, sync and async, each received once by a SimpleConsumer and acked. */
    static void normal(Scenario s) throws Exception {
        try (Producer producer = producer(s); SimpleConsumer consumer = simpleConsumer(s)) {
            Set<String> sent = new TreeSet<>();
            for (int i = 0; i < 20; i++) {
                String body = "normal-" + i;
                Message m = message(s, body).setTag(i % 2 == 0 ? "even" : "odd").setKeys("key-" + i)
                    .addProperty("seq", String.valueOf(i)).build();
                SendReceipt receipt = i < 10 ? producer.send(m) : producer.sendAsync(m).get();
                check(receipt.getMessageId() != null, "a receipt with no message id");
                sent.add(body);
            }
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(30), g -> g.size() >= sent.size());
            checkEqual(sent, new TreeSet<>(bodies(got)), "bodies received");
            checkEqual(sent.size(), got.size(), "messages received (no duplicates)");
            for (Received r : got) {
                int seq = Integer.parseInt(r.body().substring("normal-".length()));
                checkEqual(String.valueOf(seq), r.view().getProperties().get("seq"), "property seq of " + r.body());
                checkEqual(seq % 2 == 0 ? "even" : "odd", r.view().getTag().orElse(""), "tag of " + r.body());
                checkEqual(List.of("key-" + seq), List.copyOf(r.view().getKeys()), "keys of " + r.body());
                checkEqual(1, r.view().getDeliveryAttempt(), "delivery attempt of " + r.body());
                checkEqual(s.topic(), r.view().getTopic(), "topic");
            }
            receiveNothing(consumer, Duration.ofSeconds(2));
        }
    }

    /** FIFO: three message groups interleaved, each received in send order. */
    static void fifo(Scenario s) throws Exception {
        final int groups = 3;
        final int perGroup = 8;
        try (Producer producer = producer(s); SimpleConsumer consumer = simpleConsumer(s)) {
            for (int seq = 0; seq < perGroup; seq++) {
                for (int g = 0; g < groups; g++) {
                    producer.send(message(s, "order-" + g + "-" + seq).setMessageGroup("order-" + g).build());
                }
            }
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(40),
                list -> list.size() >= groups * perGroup);
            Map<String, List<String>> perMessageGroup = new LinkedHashMap<>();
            for (Received r : got) {
                String group = r.view().getMessageGroup().orElse("(none)");
                perMessageGroup.computeIfAbsent(group, k -> new ArrayList<>()).add(r.body());
            }
            for (int g = 0; g < groups; g++) {
                List<String> expected = new ArrayList<>();
                for (int seq = 0; seq < perGroup; seq++) {
                    expected.add("order-" + g + "-" + seq);
                }
                checkEqual(expected, perMessageGroup.get("order-" + g), "message group order-" + g + " in order");
            }
            checkEqual(groups * perGroup, got.size(), "messages received");
        }
    }

    /** A delay message arrives at its delivery timestamp, not before; a normal one at once. */
    static void delay(Scenario s) throws Exception {
        try (Producer producer = producer(s); SimpleConsumer consumer = simpleConsumer(s)) {
            long due = System.currentTimeMillis() + 3_000;
            producer.send(message(s, "later").setDeliveryTimestamp(due).build());
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(30), list -> !list.isEmpty());
            Received r = got.get(0);
            checkEqual(List.of("later"), bodies(got), "received");
            checkEqual(due, r.view().getDeliveryTimestamp().orElse(-1L), "the message's delivery timestamp");
            check(r.atMs() >= due, "arrived %d ms before its delivery time", due - r.atMs());
            check(r.atMs() < due + 10_000, "arrived %d ms after its delivery time", r.atMs() - due);
        }
    }

    /**
     * Transactions: one committed, one rolled back, two left unknown that the broker's check-back
     * settles through the producer's checker (one committed, one rolled back). Consumers get exactly
     * the committed ones.
     */
    static void transaction(Scenario s) throws Exception {
        Set<String> checked = ConcurrentHashMap.newKeySet();
        Producer producer = PROVIDER.newProducerBuilder()
            .setClientConfiguration(config(s))
            .setTopics(s.topic())
            .setTransactionChecker(view -> {
                String body = body(view);
                checked.add(body);
                return body.startsWith("unknown-commit") ? TransactionResolution.COMMIT
                    : TransactionResolution.ROLLBACK;
            })
            .build();
        try (producer; SimpleConsumer consumer = simpleConsumer(s)) {
            Map<String, Consumer<Transaction>> endings = new LinkedHashMap<>();
            endings.put("commit", GrpcScenarios::commit);
            endings.put("rollback", GrpcScenarios::rollback);
            endings.put("unknown-commit", t -> { });
            endings.put("unknown-rollback", t -> { });
            for (Map.Entry<String, Consumer<Transaction>> e : endings.entrySet()) {
                Transaction transaction = producer.beginTransaction();
                producer.send(message(s, e.getKey()).build(), transaction);
                e.getValue().accept(transaction);
            }
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(40), list -> list.size() >= 2);
            checkEqual(Set.of("commit", "unknown-commit"), Set.copyOf(bodies(got)), "committed messages received");
            waitUntil(Duration.ofSeconds(20), "check-back of both unknown transactions",
                () -> checked.containsAll(Set.of("unknown-commit", "unknown-rollback")), () -> checked);
            check(!checked.contains("commit") && !checked.contains("rollback"),
                "the broker checked back a transaction that had ended: %s", checked);
            receiveNothing(consumer, Duration.ofSeconds(2));
        }
    }

    private static void commit(Transaction t) {
        try {
            t.commit();
        } catch (Exception e) {
            throw new IllegalStateException("commit: " + e, e);
        }
    }

    private static void rollback(Transaction t) {
        try {
            t.rollback();
        } catch (Exception e) {
            throw new IllegalStateException("rollback: " + e, e);
        }
    }

    /** A PushConsumer handles every message once; one it fails comes back with attempt 2. */
    static void push(Scenario s) throws Exception {
        final int count = 20;
        Map<String, List<Integer>> attempts = new ConcurrentHashMap<>();
        PushConsumer consumer = PROVIDER.newPushConsumerBuilder()
            .setClientConfiguration(config(s))
            .setConsumerGroup(s.group())
            .setSubscriptionExpressions(Map.of(s.topic(), FilterExpression.SUB_ALL))
            .setMessageListener(view -> {
                String body = body(view);
                attempts.computeIfAbsent(body, k -> Collections.synchronizedList(new ArrayList<>()))
                    .add(view.getDeliveryAttempt());
                boolean fail = body.equals("push-0") && view.getDeliveryAttempt() == 1;
                return fail ? ConsumeResult.FAILURE : ConsumeResult.SUCCESS;
            })
            .build();
        try (Producer producer = producer(s)) {
            for (int i = 0; i < count; i++) {
                producer.send(message(s, "push-" + i).build());
            }
            waitUntil(Duration.ofSeconds(40), "every message handled and the failed one again",
                () -> attempts.size() == count && attempts.get("push-0").size() >= 2, () -> attempts);
            Map<String, List<Integer>> expected = new HashMap<>();
            for (int i = 0; i < count; i++) {
                expected.put("push-" + i, i == 0 ? List.of(1, 2) : List.of(1));
            }
            Thread.sleep(500);
            checkEqual(expected, new HashMap<>(attempts), "delivery attempts per message");
        } finally {
            closeInBackground(consumer);
        }
    }

    /** Closes a push consumer without waiting: closing waits out its long poll (up to 30 s). */
    private static void closeInBackground(Closeable consumer) {
        Thread closer = new Thread(() -> {
            try {
                consumer.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
        }, "push-consumer-close");
        closer.setDaemon(true);
        closer.start();
    }

    /** A delay message recalled before its time is never delivered; one not recalled is. */
    static void recall(Scenario s) throws Exception {
        try (Producer producer = producer(s); SimpleConsumer consumer = simpleConsumer(s)) {
            long now = System.currentTimeMillis();
            SendReceipt recalled = producer.send(message(s, "recalled").setDeliveryTimestamp(now + 3_000).build());
            producer.send(message(s, "kept").setDeliveryTimestamp(now + 4_000).build());
            String handle = recalled.getRecallHandle();
            check(handle != null && !handle.isEmpty(), "a delay message's receipt has no recall handle");
            producer.recallMessage(s.topic(), handle);
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(30), list -> !list.isEmpty());
            receiveNothing(consumer, Duration.ofSeconds(2));
            checkEqual(List.of("kept"), bodies(got), "delivered");
        }
    }

    /**
     * A backlog of priorities 0-9 on a PRIORITY topic (10 queues) is received highest first, in
     * send order within a priority, each message with its priority.
     */
    static void priority(Scenario s) throws Exception {
        final int rounds = 3;
        try (Producer producer = producer(s)) {
            for (int round = 0; round < rounds; round++) {
                for (int p = 0; p < 10; p++) {
                    producer.send(message(s, p + "-" + round).setPriority(p).build());
                }
            }
        }
        try (SimpleConsumer consumer = simpleConsumer(s)) {
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(30), list -> list.size() >= rounds * 10);
            List<String> expected = new ArrayList<>();
            for (int p = 9; p >= 0; p--) {
                for (int round = 0; round < rounds; round++) {
                    expected.add(p + "-" + round);
                }
            }
            checkEqual(expected, bodies(got), "highest priority first, in send order within one");
            for (Received r : got) {
                int p = Integer.parseInt(r.body().substring(0, 1));
                checkEqual(p, r.view().getPriority().orElse(-1), "priority of " + r.body());
            }
        }
    }

    /**
     * A LitePushConsumer bound to a LITE parent subscribes three lite topics and handles each
     * one's messages once, in send order.
     */
    static void lite(Scenario s) throws Exception {
        final int perTopic = 10;
        Map<String, List<String>> handled = new ConcurrentHashMap<>();
        LitePushConsumer consumer = PROVIDER.newLitePushConsumerBuilder()
            .setClientConfiguration(config(s))
            .bindTopic(s.topic())
            .setConsumerGroup(s.group())
            .setMessageListener(view -> {
                handled.computeIfAbsent(view.getLiteTopic().orElse("(none)"),
                    k -> Collections.synchronizedList(new ArrayList<>())).add(body(view));
                return ConsumeResult.SUCCESS;
            })
            .build();
        Map<String, List<String>> expected = new TreeMap<>();
        try (Producer producer = producer(s)) {
            for (int t = 0; t < 3; t++) {
                consumer.subscribeLite("chat-" + t);
            }
            for (int seq = 0; seq < perTopic; seq++) {
                for (int t = 0; t < 3; t++) {
                    String lite = "chat-" + t;
                    producer.send(message(s, lite + "-" + seq).setLiteTopic(lite).build());
                    expected.computeIfAbsent(lite, k -> new ArrayList<>()).add(lite + "-" + seq);
                }
            }
            waitUntil(Duration.ofSeconds(40), "every lite topic's messages",
                () -> handled.values().stream().mapToInt(List::size).sum() >= 3 * perTopic, () -> handled);
            Thread.sleep(300);
            checkEqual(expected, new TreeMap<>(handled), "each lite topic's messages once, in order");
        } finally {
            closeInBackground(consumer);
        }
    }

    /**
     * Authentication on: a producer and a SimpleConsumer signing with the given credentials send
     * and receive; a producer with the same access key and a wrong secret cannot send.
     */
    static void auth(Scenario s) throws Exception {
        check(s.accessKey() != null && s.secretKey() != null, "grpc-auth needs --access-key and --secret-key");
        try (Producer producer = producer(s); SimpleConsumer consumer = simpleConsumer(s)) {
            for (int i = 0; i < 5; i++) {
                producer.send(message(s, "signed-" + i).build());
            }
            String refused = null;
            try (Producer impostor = PROVIDER.newProducerBuilder()
                .setClientConfiguration(config(s, s.secretKey() + "-wrong"))
                .setTopics(s.topic())
                .setMaxAttempts(1)
                .build()) {
                impostor.send(message(s, "unsigned").build());
            } catch (Exception e) {
                refused = e.toString();
            }
            check(refused != null, "a producer with a wrong secret sent a message");
            List<Received> got = receiveUntil(consumer, Duration.ofSeconds(30), list -> list.size() >= 5);
            receiveNothing(consumer, Duration.ofSeconds(2));
            checkEqual(Set.of("signed-0", "signed-1", "signed-2", "signed-3", "signed-4"),
                Set.copyOf(bodies(got)), "messages received");
            checkEqual(5, got.size(), "messages received (no duplicates)");
        }
    }
}

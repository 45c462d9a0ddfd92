package org.apogee.compat;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.rocketmq.client.apis.ClientConfiguration;
import org.apache.rocketmq.client.apis.ClientServiceProvider;
import org.apache.rocketmq.client.apis.consumer.ConsumeResult;
import org.apache.rocketmq.client.apis.consumer.FilterExpression;
import org.apache.rocketmq.client.apis.consumer.PushConsumer;
import org.apache.rocketmq.client.apis.producer.Producer;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * A load generator with RocketMQ's official Java clients, so Apogee and Apache RocketMQ are
 * measured with the same client (tools/rocketmq-compare.sh runs it against both).
 *
 * <p>Usage: {@code java -cp apogee-java-scenarios.jar org.apogee.compat.Bench MODE [options]}.
 * Modes:
 * <ul>
 *   <li>{@code send}: PRODUCERS client instances, each with THREADS threads sending synchronously
 *   (one message, or a batch of BATCH with the 4.x client), for WARMUP then SECONDS seconds.</li>
 *   <li>{@code e2e}: one producer sending RATE messages a second, one push consumer of GROUP;
 *   reports the time from the start of each send to its delivery to the listener (both in this
 *   JVM, one clock).</li>
 *   <li>{@code fill}: sends COUNT messages as fast as {@code send} with batches would (4.x
 *   client), for a store to restart with.</li>
 *   <li>{@code failover}: one producer sending synchronously for SECONDS seconds; KILL_AFTER
 *   seconds in, the process whose pid MASTER_PID_COMMAND (a bash command) prints is
 *   SIGKILLed; reports {@code first_write_secs}, from the kill to the acknowledgement of the
 *   first send begun after it. The 4.x client asks the NameServer for routes every
 *   ROUTE_POLL_MS here ({@code pollNameServerInterval}, 30 s by default; 1,000 unless told), so
 *   the pause is the brokers' failover rather than the client's refresh period. Prints to
 *   standard error each distinct reason a send failed, with its count.</li>
 *   <li>{@code probe}: sends one message again and again until one succeeds (at most SECONDS);
 *   prints the milliseconds from this JVM's start to it, and the wall-clock time of it.</li>
 * </ul>
 * Options: {@code --client remoting|grpc} (the 4.x client to the NameServer at --endpoint, or
 * the 5.x client to the gRPC endpoint at --endpoint), {@code --topic}, {@code --group},
 * {@code --producers}, {@code --threads}, {@code --batch}, {@code --size} (body bytes),
 * {@code --seconds}, {@code --warmup-secs}, {@code --rate}, {@code --count},
 * {@code --kill-after-secs}, {@code --master-pid-command}, {@code --route-poll-ms}.
 *
 * <p>Prints one JSON object: {@code ok} (successful messages in the measured window),
 * {@code ok_total} (including the warm-up; what the broker processed while the caller measured
 * its CPU), {@code failed}, {@code secs}, {@code msgs_per_sec}, {@code p50_us}, {@code p99_us}
 * (per send call, or per delivery in {@code e2e}).
 */
public final class Bench {
    private static final ClientServiceProvider PROVIDER = ClientServiceProvider.loadService();

    private final String mode;
    private String client = "remoting";
    private String endpoint;
    private String topic = "bench";
    private String group = "bench-e2e-g";
    private int producers = 1;
    private int threads = 1;
    private int batch = 1;
    private int size = 1024;
    private int seconds = 20;
    private int warmupSecs = 3;
    private int rate = 1000;
    private long count = 1_000_000;
    private int killAfterSecs = 12;
    private int routePollMs = 1_000;
    private String masterPidCommand;

    private Bench(String mode) {
        this.mode = mode;
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            usage();
        }
        Bench bench = new Bench(args[0]);
        for (int i = 1; i < args.length; i++) {
            String value = i + 1 < args.length ? args[i + 1] : null;
            switch (args[i]) {
                case "--client" -> bench.client = value;
                case "--endpoint" -> bench.endpoint = value;
                case "--topic" -> bench.topic = value;
                case "--group" -> bench.group = value;
                case "--producers" -> bench.producers = Integer.parseInt(value);
                case "--threads" -> bench.threads = Integer.parseInt(value);
                case "--batch" -> bench.batch = Integer.parseInt(value);
                case "--size" -> bench.size = Integer.parseInt(value);
                case "--seconds" -> bench.seconds = Integer.parseInt(value);
                case "--warmup-secs" -> bench.warmupSecs = Integer.parseInt(value);
                case "--rate" -> bench.rate = Integer.parseInt(value);
                case "--count" -> bench.count = Long.parseLong(value);
                case "--kill-after-secs" -> bench.killAfterSecs = Integer.parseInt(value);
                case "--route-poll-ms" -> bench.routePollMs = Integer.parseInt(value);
                case "--master-pid-command" -> bench.masterPidCommand = value;
                default -> usage();
            }
            i++;
        }
        if (bench.endpoint == null || !List.of("remoting", "grpc").contains(bench.client)
            || (bench.batch > 1 && bench.client.equals("grpc"))) {
            usage();
        }
        String report = switch (bench.mode) {
            case "send" -> bench.send();
            case "e2e" -> bench.endToEnd();
            case "fill" -> bench.fill();
            case "failover" -> bench.failover();
            case "probe" -> bench.probe();
            default -> {
                usage();
                yield "";
            }
        };
        System.out.println(report);
        System.exit(0);
    }

    private static void usage() {
        System.err.println("usage: Bench send|e2e|fill|failover|probe --endpoint HOST:PORT [--client remoting|grpc]"
            + " [--topic T] [--group G] [--producers N] [--threads N] [--batch N (remoting)] [--size B]"
            + " [--seconds S] [--warmup-secs S] [--rate N] [--count N] [--kill-after-secs S]"
            + " [--master-pid-command CMD] [--route-poll-ms MS] (failover)");
        System.exit(2);
    }

    /** One way to send: a 4.x producer or a 5.x producer, each its own connection. */
    private interface Sender extends AutoCloseable {
        /** Sends {@code messages} bodies synchronously; true when the broker took all of them. */
        boolean send(List<byte[]> bodies) throws Exception;
    }

    private Sender sender(String instance) throws Exception {
        if (client.equals("remoting")) {
            DefaultMQProducer producer = new DefaultMQProducer("bench-producers");
            producer.setNamesrvAddr(endpoint);
            producer.setInstanceName(instance);
            // The probe asks again soon after a refused or unanswered call.
            producer.setSendMsgTimeout(mode.equals("probe") ? 1_000 : 10_000);
            producer.setMqClientApiTimeout(mode.equals("probe") ? 1_000 : 3_000);
            if (mode.equals("failover")) {
                producer.setSendMsgTimeout(1_000);
                producer.setPollNameServerInterval(routePollMs);
            }
            producer.start();
            return new Sender() {
                public boolean send(List<byte[]> bodies) throws Exception {
                    SendResult result;
                    if (bodies.size() == 1) {
                        result = producer.send(new Message(topic, bodies.get(0)));
                    } else {
                        List<Message> messages = new ArrayList<>(bodies.size());
                        for (byte[] body : bodies) {
                            messages.add(new Message(topic, body));
                        }
                        result = producer.send(messages);
                    }
                    return result.getSendStatus() == SendStatus.SEND_OK;
                }

                public void close() {
                    producer.shutdown();
                }
            };
        }
        Producer producer = PROVIDER.newProducerBuilder()
            .setClientConfiguration(grpcConfig())
            .setTopics(topic)
            .build();
        return new Sender() {
            public boolean send(List<byte[]> bodies) throws Exception {
                producer.send(PROVIDER.newMessageBuilder().setTopic(topic).setBody(bodies.get(0)).build());
                return true;
            }

            public void close() throws Exception {
                producer.close();
            }
        };
    }

    private ClientConfiguration grpcConfig() {
        return ClientConfiguration.newBuilder()
            .setEndpoints(endpoint)
            .enableSsl(false)
            .setRequestTimeout(Duration.ofSeconds(10))
            .build();
    }

    private byte[] body(long stamp) {
        byte[] body = new byte[size];
        Arrays.fill(body, (byte) 'a');
        ByteBuffer.wrap(body).putLong(0, stamp);
        return body;
    }

    /** Latencies in microseconds, one thread's. */
    private static final class Latencies {
        long[] values = new long[1 << 16];
        int length;

        void add(long micros) {
            if (length == values.length) {
                values = Arrays.copyOf(values, length * 2);
            }
            values[length++] = micros;
        }

        static long[] merged(List<Latencies> all) {
            long[] merged = new long[all.stream().mapToInt(l -> l.length).sum()];
            int at = 0;
            for (Latencies l : all) {
                System.arraycopy(l.values, 0, merged, at, l.length);
                at += l.length;
            }
            Arrays.sort(merged);
            return merged;
        }
    }

    private static Thread started(Runnable body) {
        Thread thread = new Thread(body, "bench-sender");
        thread.start();
        return thread;
    }

    private static long percentile(long[] sorted, double p) {
        return sorted.length == 0 ? 0 : sorted[(int) Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
    }

    private String send() throws Exception {
        List<Sender> senders = new ArrayList<>();
        for (int p = 0; p < producers; p++) {
            senders.add(sender("bench-" + p));
        }
        long warmupEnd = System.nanoTime() + TimeUnit.SECONDS.toNanos(warmupSecs);
        long end = warmupEnd + TimeUnit.SECONDS.toNanos(seconds);
        AtomicLong ok = new AtomicLong();
        AtomicLong okTotal = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        List<Latencies> latencies = new ArrayList<>();
        List<Thread> workers = new ArrayList<>();
        for (Sender sender : senders) {
            for (int t = 0; t < threads; t++) {
                Latencies mine = new Latencies();
                latencies.add(mine);
                workers.add(started(() -> {
                    List<byte[]> bodies = new ArrayList<>();
                    for (int b = 0; b < batch; b++) {
                        bodies.add(body(0));
                    }
                    for (long now = System.nanoTime(); now < end; ) {
                        boolean sent;
                        try {
                            sent = sender.send(bodies);
                        } catch (Exception e) {
                            sent = false;
                        }
                        long after = System.nanoTime();
                        if (!sent) {
                            failed.addAndGet(batch);
                        } else {
                            okTotal.addAndGet(batch);
                            if (now >= warmupEnd) {
                                ok.addAndGet(batch);
                                mine.add((after - now) / 1000);
                            }
                        }
                        now = after;
                    }
                }));
            }
        }
        for (Thread worker : workers) {
            worker.join();
        }
        for (Sender sender : senders) {
            sender.close();
        }
        return report(ok.get(), okTotal.get(), failed.get(), seconds, Latencies.merged(latencies));
    }

    private String endToEnd() throws Exception {
        Latencies delivered = new Latencies();
        AtomicBoolean measuring = new AtomicBoolean();
        AtomicLong received = new AtomicLong();
        java.util.function.Consumer<ByteBuffer> listener = body -> {
            long sentAt = body.getLong(0);
            long now = System.nanoTime();
            boolean measured = body.get(8) == 1;
            synchronized (delivered) {
                if (measured && measuring.get()) {
                    delivered.add((now - sentAt) / 1000);
                }
            }
            received.incrementAndGet();
        };
        AutoCloseable consumer = consumer(listener);
        try (Sender sender = sender("bench-e2e")) {
            // Until the consumer has its queues, messages wait; send until one arrives.
            long readyBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (received.get() == 0) {
                if (System.nanoTime() > readyBy) {
                    throw new IllegalStateException("the consumer received nothing in 60 s");
                }
                sender.send(List.of(body(System.nanoTime())));
                Thread.sleep(100);
            }
            measuring.set(true);
            long interval = TimeUnit.SECONDS.toNanos(1) / rate;
            long total = (long) rate * seconds;
            long failed = 0;
            long start = System.nanoTime();
            for (long i = 0; i < total; i++) {
                long due = start + i * interval;
                long wait = due - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(wait);
                }
                byte[] body = body(System.nanoTime());
                body[8] = 1;
                try {
                    if (!sender.send(List.of(body))) {
                        failed++;
                    }
                } catch (Exception e) {
                    failed++;
                }
            }
            long settleBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (deliveredCount(delivered) < total - failed && System.nanoTime() < settleBy) {
                Thread.sleep(50);
            }
            long[] sorted;
            synchronized (delivered) {
                sorted = Latencies.merged(List.of(delivered));
            }
            return report(sorted.length, total, failed, seconds, sorted);
        } finally {
            consumer.close();
        }
    }

    private static int deliveredCount(Latencies delivered) {
        synchronized (delivered) {
            return delivered.length;
        }
    }

    private AutoCloseable consumer(java.util.function.Consumer<ByteBuffer> listener) throws Exception {
        if (client.equals("remoting")) {
            DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(group);
            consumer.setNamesrvAddr(endpoint);
            consumer.setInstanceName("bench-e2e-consumer");
            consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET);
            consumer.subscribe(topic, "*");
            consumer.registerMessageListener((MessageListenerConcurrently) (messages, context) -> {
                for (MessageExt message : messages) {
                    listener.accept(ByteBuffer.wrap(message.getBody()));
                }
                return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
            });
            consumer.start();
            return consumer::shutdown;
        }
        PushConsumer consumer = PROVIDER.newPushConsumerBuilder()
            .setClientConfiguration(grpcConfig())
            .setConsumerGroup(group)
            .setSubscriptionExpressions(Map.of(topic, FilterExpression.SUB_ALL))
            .setMessageListener(view -> {
                listener.accept(view.getBody());
                return ConsumeResult.SUCCESS;
            })
            .build();
        return consumer;
    }

    private String fill() throws Exception {
        int senders = 4;
        int perSender = 4;
        AtomicLong next = new AtomicLong();
        AtomicLong ok = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        long start = System.nanoTime();
        List<Sender> opened = new ArrayList<>();
        CountDownLatch done = new CountDownLatch(senders * perSender);
        for (int p = 0; p < senders; p++) {
            Sender sender = sender("bench-fill-" + p);
            opened.add(sender);
            for (int t = 0; t < perSender; t++) {
                started(() -> {
                    List<byte[]> bodies = new ArrayList<>();
                    for (int b = 0; b < batch; b++) {
                        bodies.add(body(0));
                    }
                    while (next.getAndAdd(batch) < count) {
                        try {
                            if (sender.send(bodies)) {
                                ok.addAndGet(batch);
                            } else {
                                failed.addAndGet(batch);
                            }
                        } catch (Exception e) {
                            failed.addAndGet(batch);
                        }
                    }
                    done.countDown();
                });
            }
        }
        done.await();
        for (Sender sender : opened) {
            sender.close();
        }
        double secs = (System.nanoTime() - start) / 1e9;
        return report(ok.get(), ok.get(), failed.get(), secs, new long[0]);
    }

    private String failover() throws Exception {
        if (masterPidCommand == null) {
            usage();
        }
        AtomicLong killedAt = new AtomicLong(Long.MAX_VALUE);
        AtomicLong killed = new AtomicLong();
        Thread killer = started(() -> {
            try {
                Thread.sleep(TimeUnit.SECONDS.toMillis(killAfterSecs));
                Process find = new ProcessBuilder("bash", "-c", masterPidCommand)
                    .redirectError(ProcessBuilder.Redirect.INHERIT).start();
                long pid = Long.parseLong(new String(find.getInputStream().readAllBytes()).trim());
                find.waitFor();
                ProcessHandle master = ProcessHandle.of(pid).orElseThrow();
                killedAt.set(System.nanoTime());
                master.destroyForcibly();
                killed.set(pid);
            } catch (Exception e) {
                throw new IllegalStateException("could not kill the master", e);
            }
        });
        long ok = 0;
        long failed = 0;
        Map<String, Integer> failures = new TreeMap<>();
        long firstWriteNanos = -1;
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        try (Sender sender = sender("bench-failover")) {
            List<byte[]> bodies = List.of(body(0));
            while (System.nanoTime() < end) {
                long started = System.nanoTime();
                boolean sent;
                String reason = "not SEND_OK";
                try {
                    sent = sender.send(bodies);
                } catch (Exception e) {
                    sent = false;
                    reason = e.getClass().getSimpleName() + ": " + String.valueOf(e.getMessage()).lines().findFirst().orElse("");
                }
                if (sent) {
                    ok++;
                    // The first send begun after the kill that the new master acknowledged.
                    if (firstWriteNanos < 0 && started > killedAt.get()) {
                        firstWriteNanos = System.nanoTime() - killedAt.get();
                    }
                } else {
                    failed++;
                    failures.merge(reason, 1, Integer::sum);
                    Thread.sleep(10);
                }
            }
        }
        killer.join();
        failures.forEach((reason, count) -> System.err.println("failed sends: " + count + " x " + reason));
        if (killed.get() == 0) {
            throw new IllegalStateException("the master was not killed");
        }
        if (firstWriteNanos < 0) {
            throw new IllegalStateException("no acknowledged send after the master's kill");
        }
        return String.format(Locale.ROOT, "{\"ok\": %d, \"failed\": %d, \"killed_pid\": %d, \"first_write_secs\": %.3f}",
            ok, failed, killed.get(), firstWriteNanos / 1e9);
    }

    private String probe() throws Exception {
        long started = java.lang.management.ManagementFactory.getRuntimeMXBean().getStartTime();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        Exception last = null;
        while (System.nanoTime() < deadline) {
            try (Sender sender = sender("bench-probe")) {
                long retryBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (System.nanoTime() < Math.min(retryBy, deadline)) {
                    try {
                        if (sender.send(List.of(body(0)))) {
                            long now = System.currentTimeMillis();
                            return String.format(Locale.ROOT, "{\"ready_ms\": %d, \"ready_at_ms\": %d}", now - started, now);
                        }
                    } catch (Exception e) {
                        last = e;
                    }
                    Thread.sleep(20);
                }
            } catch (Exception e) {
                last = e;
                Thread.sleep(100);
            }
        }
        throw new IllegalStateException("no send succeeded in " + seconds + " s", last);
    }

    private static String report(long ok, long okTotal, long failed, double secs, long[] sorted) {
        return String.format(Locale.ROOT,
            "{\"ok\": %d, \"ok_total\": %d, \"failed\": %d, \"secs\": %.3f, \"msgs_per_sec\": %.1f,"
                + " \"p50_us\": %d, \"p99_us\": %d}",
            ok, okTotal, failed, secs, ok / secs, percentile(sorted, 0.50), percentile(sorted, 0.99));
    }
}

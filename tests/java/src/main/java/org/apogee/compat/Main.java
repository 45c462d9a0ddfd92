package org.apogee.compat;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Runs scenarios of RocketMQ's official Java clients against one cluster and prints one line
 * per scenario, {@code PASS name in N ms} or {@code FAIL name: reason}; exits 1 when any failed.
 *
 * <p>Usage: {@code java -jar apogee-java-scenarios.jar --endpoint HOST:PORT [--grpc-endpoint HOST:PORT]
 * [--namesrv HOST:PORT] [--parallel N] [--timeout-secs S] [--access-key K --secret-key S] SCENARIO...}.
 * The endpoint is the NameServer's address: the 5.x client's gRPC endpoint and the 4.x client's
 * {@code namesrvAddr} (on Apogee one port serves both protocols). Where they differ, as with
 * Apache RocketMQ's proxy, {@code --grpc-endpoint} and {@code --namesrv} set each (either one
 * given without {@code --endpoint} leaves the other unset).
 * Scenario {@code NAME} uses the topic {@code j-NAME} and the consumer group {@code j-NAME-g},
 * which the caller creates beforehand (see {@link Scenario}).
 */
public final class Main {
    private Main() {
    }

    /** Every scenario by name, the 5.x client's first. */
    static Map<String, Scenario.Body> registry() {
        Map<String, Scenario.Body> all = new LinkedHashMap<>();
        GrpcScenarios.register(all);
        RemotingScenarios.register(all);
        return all;
    }

    public static void main(String[] args) throws Exception {
        // The 4.x client rebalances every 20 s by default; a consumer joining a group should
        // get its queues within a second here (a client setting, as an application may set).
        System.setProperty("rocketmq.client.rebalance.waitInterval", "1000");
        String endpoint = null;
        String grpcEndpoint = null;
        String namesrv = null;
        String accessKey = null;
        String secretKey = null;
        int parallel = 4;
        long timeoutSecs = 90;
        List<String> names = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--endpoint" -> endpoint = args[++i];
                case "--grpc-endpoint" -> grpcEndpoint = args[++i];
                case "--namesrv" -> namesrv = args[++i];
                case "--access-key" -> accessKey = args[++i];
                case "--secret-key" -> secretKey = args[++i];
                case "--parallel" -> parallel = Integer.parseInt(args[++i]);
                case "--timeout-secs" -> timeoutSecs = Long.parseLong(args[++i]);
                case "--list" -> {
                    registry().keySet().forEach(System.out::println);
                    return;
                }
                default -> names.add(args[i]);
            }
        }
        Map<String, Scenario.Body> all = registry();
        grpcEndpoint = grpcEndpoint != null ? grpcEndpoint : endpoint;
        namesrv = namesrv != null ? namesrv : endpoint;
        if ((grpcEndpoint == null && namesrv == null) || names.isEmpty()) {
            System.err.println("usage: --endpoint HOST:PORT [--grpc-endpoint HOST:PORT] [--namesrv HOST:PORT] "
                + "[--parallel N] [--timeout-secs S] "
                + "[--access-key K --secret-key S] SCENARIO...; "
                + "scenarios: " + all.keySet());
            System.exit(2);
        }
        ExecutorService pool = Executors.newFixedThreadPool(parallel, r -> {
            Thread t = new Thread(r, "scenario");
            t.setDaemon(true);
            return t;
        });
        Map<String, Future<String>> running = new LinkedHashMap<>();
        for (String name : names) {
            Scenario.Body body = all.get(name);
            Scenario scenario = new Scenario(name, grpcEndpoint, namesrv, accessKey, secretKey);
            running.put(name, pool.submit(() -> run(scenario, body)));
        }
        int failed = 0;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSecs);
        for (Map.Entry<String, Future<String>> entry : running.entrySet()) {
            String line;
            try {
                long left = Math.max(1, deadline - System.nanoTime());
                line = entry.getValue().get(left, TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                line = "FAIL " + entry.getKey() + ": not done within " + timeoutSecs + " s";
            }
            if (!line.startsWith("PASS ")) {
                failed++;
            }
            System.out.println(line);
            System.out.flush();
        }
        System.out.println(failed == 0 ? "java scenarios: all passed" : "java scenarios: " + failed + " failed");
        System.out.flush();
        // Client threads (the 4.x client's are not all daemons) must not keep the JVM alive.
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }

    /** Runs one scenario; its report line. */
    private static String run(Scenario scenario, Scenario.Body body) {
        if (body == null) {
            return "FAIL " + scenario.name() + ": no such scenario";
        }
        long start = System.nanoTime();
        try {
            body.run(scenario);
            return "PASS " + scenario.name() + " in " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start) + " ms";
        } catch (Throwable e) {
            String reason = String.valueOf(e.getMessage()).replace('\n', ' ');
            Throwable cause = e.getCause();
            if (cause != null && cause != e) {
                reason += " (cause: " + cause + ")";
            }
            if (!(e instanceof AssertionError)) {
                reason = e.getClass().getSimpleName() + ": " + reason;
                e.printStackTrace();
            }
            return "FAIL " + scenario.name() + ": " + reason;
        }
    }
}

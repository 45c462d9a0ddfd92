package org.apogee.spring;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.ConfigurableApplicationContext;

/**
 * A Spring Boot application using Apache RocketMQ's Spring Boot starter, unchanged:
 * RocketMQTemplate sends, a {@code @RocketMQTransactionListener} runs the local transactions,
 * {@code @RocketMQMessageListener} beans consume ({@link Scenarios} says what each checks).
 *
 * <p>Usage: {@code java -jar apogee-spring-scenarios.jar --rocketmq.name-server=HOST:PORT
 * [--apogee.timeout-secs=S]}. The topics and groups ({@link Listeners}) exist before it starts.
 * It prints {@code PASS name in N ms} or {@code FAIL name: reason} per scenario, runs them in
 * parallel, and exits 1 when any failed or did not finish within the timeout (90 s by default);
 * a watchdog ends it 30 s after that whatever it is doing.
 */
@SpringBootApplication
public class ScenarioApplication {
    public static void main(String[] args) {
        // The remoting client rebalances every 20 s by default; a listener should get its queues
        // within a second here (a client setting, as an application may set).
        System.setProperty("rocketmq.client.rebalance.waitInterval", "1000");
        Duration timeout = Duration.ofSeconds(timeoutSecs(args));
        startWatchdog(timeout.plusSeconds(30));
        long start = System.nanoTime();
        int failed;
        try {
            ConfigurableApplicationContext context = SpringApplication.run(ScenarioApplication.class, args);
            System.out.println("spring: application started in " + millisSince(start) + " ms");
            failed = runAll(context.getBean(Scenarios.class), timeout);
        } catch (Throwable e) {
            e.printStackTrace();
            System.out.println("FAIL spring-application: " + e);
            failed = 1;
        }
        System.out.println(failed == 0 ? "spring scenarios: all passed" : "spring scenarios: " + failed + " failed");
        System.out.flush();
        // The client's threads (not all daemons) must not keep the JVM alive.
        Runtime.getRuntime().halt(failed == 0 ? 0 : 1);
    }

    private static long timeoutSecs(String[] args) {
        for (String arg : args) {
            if (arg.startsWith("--apogee.timeout-secs=")) {
                return Long.parseLong(arg.substring(arg.indexOf('=') + 1));
            }
        }
        return 90;
    }

    private static long millisSince(long startNanos) {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos);
    }

    /** Ends the JVM after {@code limit}, should anything hang (Spring's start included). */
    private static void startWatchdog(Duration limit) {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(limit.toMillis());
            } catch (InterruptedException e) {
                return;
            }
            System.out.println("FAIL spring-application: still running after " + limit.toSeconds() + " s");
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
    }

    /** Runs every scenario in parallel; how many failed. */
    private static int runAll(Scenarios scenarios, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        Map<String, Scenarios.Body> all = scenarios.all();
        ExecutorService pool = Executors.newFixedThreadPool(all.size(), r -> {
            Thread t = new Thread(r, "scenario");
            t.setDaemon(true);
            return t;
        });
        Map<String, Future<String>> running = new LinkedHashMap<>();
        all.forEach((name, body) -> running.put(name, pool.submit(() -> run(name, body))));
        int failed = 0;
        for (Map.Entry<String, Future<String>> entry : running.entrySet()) {
            String line;
            try {
                line = entry.getValue().get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
            } catch (TimeoutException e) {
                line = "FAIL " + entry.getKey() + ": not done within " + timeout.toSeconds() + " s";
            } catch (Exception e) {
                line = "FAIL " + entry.getKey() + ": " + e;
            }
            if (!line.startsWith("PASS ")) {
                failed++;
            }
            System.out.println(line);
            System.out.flush();
        }
        return failed;
    }

    /** Runs one scenario; its report line. */
    private static String run(String name, Scenarios.Body body) {
        long start = System.nanoTime();
        try {
            body.run();
            return "PASS " + name + " in " + millisSince(start) + " ms";
        } catch (Throwable e) {
            String reason = String.valueOf(e.getMessage()).replace('\n', ' ');
            if (!(e instanceof AssertionError)) {
                reason = e.getClass().getSimpleName() + ": " + reason;
                e.printStackTrace();
            }
            return "FAIL " + name + ": " + reason;
        }
    }
}

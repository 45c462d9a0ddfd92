package org.apogee.compat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * One scenario's names and the checks scenarios share. Scenario {@code NAME} works on the topic
 * {@code j-NAME} and the consumer group {@code j-NAME-g}; both exist before it runs. With an
 * access key and secret (both null without), the 5.x client's scenarios sign their calls.
 * {@code endpoint} is the 5.x client's gRPC endpoint, {@code namesrv} the 4.x client's
 * NameServer address (on Apogee one port serves both).
 */
public record Scenario(String name, String endpoint, String namesrv, String accessKey, String secretKey) {

    /** A scenario's code: returns when everything it checks held, throws otherwise. */
    @FunctionalInterface
    public interface Body {
        void run(Scenario scenario) throws Exception;
    }

    /** The scenario's topic. */
    public String topic() {
        return "j-" + name;
    }

    /** The scenario's consumer group. */
    public String group() {
        return "j-" + name + "-g";
    }

    /** A second group of the scenario's, for one more consumer (created like the first). */
    public String group2() {
        return "j-" + name + "-g2";
    }

    /** A client instance name unique to the scenario (and to {@code role} within it). */
    public String instance(String role) {
        return name + "-" + role;
    }

    /** Fails with the message unless the condition holds. */
    public static void check(boolean condition, String what, Object... args) {
        if (!condition) {
            throw new AssertionError(String.format(what, args));
        }
    }

    /** Fails unless {@code expected} equals {@code actual}. */
    public static void checkEqual(Object expected, Object actual, String what) {
        if (!expected.equals(actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    /** Polls the condition every 50 ms until it holds; fails after {@code timeout} with the state. */
    public static void waitUntil(Duration timeout, String what, BooleanSupplier condition, Supplier<Object> state)
        throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no " + what + " within " + timeout.toSeconds() + " s: " + state.get());
            }
            Thread.sleep(50);
        }
    }

    public static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }

    public static String text(byte[] body) {
        return new String(body, StandardCharsets.UTF_8);
    }
}

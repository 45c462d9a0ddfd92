package org.apogee.spring;

import java.time.Duration;
import java.util.Objects;

/** The scenarios' assertions: each failure is an {@link AssertionError} saying what was wrong. */
public final class Checks {
    private Checks() {
    }

    /** A condition to wait for; may fail with an exception (a call to the broker). */
    @FunctionalInterface
    public interface Condition {
        boolean holds() throws Exception;
    }

    /** Fails with the formatted message unless the condition holds. */
    public static void check(boolean condition, String what, Object... args) {
        if (!condition) {
            throw new AssertionError(String.format(what, args));
        }
    }

    /** Fails unless {@code expected} equals {@code actual}. */
    public static void checkEqual(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    /**
     * Checks the condition every 100 ms until it holds (for state no callback reports, such as a
     * consumer's offsets); fails after {@code timeout}.
     */
    public static void until(Duration timeout, String what, Condition condition) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.holds()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no " + what + " within " + timeout.toSeconds() + " s");
            }
            Thread.sleep(100);
        }
    }
}

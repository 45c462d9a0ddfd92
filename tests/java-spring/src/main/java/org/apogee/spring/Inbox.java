package org.apogee.spring;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * What one listener received, in arrival order. A scenario waits on it for a number of
 * deliveries (woken by each one, no polling).
 */
public final class Inbox<T> {
    private final List<T> items = new ArrayList<>();

    /** Records one delivery (called on a listener's consume thread). */
    public synchronized void add(T item) {
        items.add(item);
        notifyAll();
    }

    /** Every delivery so far. */
    public synchronized List<T> all() {
        return List.copyOf(items);
    }

    /** Waits until at least {@code count} deliveries arrived; every delivery then. */
    public synchronized List<T> awaitCount(int count, Duration timeout, String what) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (items.size() < count) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                throw new AssertionError("got " + items.size() + " of " + count + " " + what + " within "
                    + timeout.toSeconds() + " s: " + items);
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
        return List.copyOf(items);
    }
}

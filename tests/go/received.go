// What a consumer received, and waits for it.

package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// One message as a consumer saw it.
type delivery struct {
	body string
	tag  string
	// When the listener (or receive) got it.
	at time.Time
}

// What a consumer received, safe to add to from listener goroutines.
type received struct {
	mu  sync.Mutex
	got []delivery
}

func (r *received) add(body, tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, delivery{body: body, tag: tag, at: time.Now()})
}

func (r *received) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// Waits until a message with each of the bodies arrived, at most `limit`.
func (r *received) waitFor(bodies []string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		missing := r.missing(bodies)
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s, %d of %d messages not received: %s",
				limit, len(missing), len(bodies), strings.Join(first(missing, 5), ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *received) missing(bodies []string) []string {
	seen := map[string]bool{}
	for _, d := range r.all() {
		seen[d.body] = true
	}
	var missing []string
	for _, b := range bodies {
		if !seen[b] {
			missing = append(missing, b)
		}
	}
	return missing
}

// Checks that exactly the messages sent (body to tag) arrived, each once, with its tag.
func (r *received) exactly(sent map[string]string) error {
	count := map[string]int{}
	for _, d := range r.all() {
		count[d.body]++
		want, ok := sent[d.body]
		if !ok {
			return fmt.Errorf("received %q, which was not sent", d.body)
		}
		if d.tag != want {
			return fmt.Errorf("%q arrived with tag %q, sent with %q", d.body, d.tag, want)
		}
	}
	var twice []string
	for body, n := range count {
		if n > 1 {
			twice = append(twice, fmt.Sprintf("%s x%d", body, n))
		}
	}
	if len(twice) > 0 {
		sort.Strings(twice)
		return fmt.Errorf("received more than once: %s", strings.Join(first(twice, 5), ", "))
	}
	if len(count) != len(sent) {
		return fmt.Errorf("received %d distinct messages, sent %d", len(count), len(sent))
	}
	return nil
}

func first(items []string, n int) []string {
	if len(items) > n {
		return append(items[:n:n], "...")
	}
	return items
}

// Waits until `cond` holds, at most `limit`; `what` names it in the error.
func waitUntil(limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

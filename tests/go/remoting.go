package main

// Scenarios of rocketmq-client-go/v2, RocketMQ's 4.x-style Go client, over remoting.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	rocketmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// How long a consumer may take to receive what was sent.
const receiveLimit = 45 * time.Second

func remotingScenarios() []scenario {
	return []scenario{
		{
			name:   "remoting-sync-push",
			topics: []topicSpec{{"go-sync", 4, []string{"normal"}}},
			groups: []string{"go-sync-g"},
			run:    syncSendPushConsumer,
		},
		{
			name:   "remoting-async",
			topics: []topicSpec{{"go-async", 4, []string{"normal"}}},
			groups: []string{"go-async-g"},
			run:    asyncSend,
		},
		{
			name:   "remoting-transaction",
			topics: []topicSpec{{"go-txn", 2, []string{"normal", "transaction"}}},
			groups: []string{"go-txn-g"},
			run:    transactionWithCheckBack,
		},
		{
			name:   "remoting-delay-level",
			topics: []topicSpec{{"go-delay", 2, []string{"normal", "delay"}}},
			groups: []string{"go-delay-g"},
			run:    delayLevel,
		},
	}
}

func nameServer(e env) primitive.NsResolver {
	return primitive.NewPassthroughResolver([]string{e.namesrv})
}

// A started producer of `group`, with a client instance of its own.
func startProducer(e env, group string) (rocketmq.Producer, error) {
	p, err := rocketmq.NewProducer(
		producer.WithNsResolver(nameServer(e)),
		producer.WithGroupName(group),
		producer.WithInstanceName(group),
		producer.WithRetry(2),
	)
	if err != nil {
		return nil, fmt.Errorf("new producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("producer start: %w", err)
	}
	return p, nil
}

// A started clustering push consumer of `group` on `topic` (every tag), from the first
// offset, recording what it consumes into `into`.
func startPushConsumer(e env, group, topic string, into *received) (rocketmq.PushConsumer, error) {
	c, err := rocketmq.NewPushConsumer(
		consumer.WithNsResolver(nameServer(e)),
		consumer.WithGroupName(group),
		consumer.WithInstance(group),
		consumer.WithConsumerModel(consumer.Clustering),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	)
	if err != nil {
		return nil, fmt.Errorf("new push consumer: %w", err)
	}
	err = c.Subscribe(topic, consumer.MessageSelector{},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			for _, m := range msgs {
				into.add(string(m.Body), m.GetTags())
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("push consumer start: %w", err)
	}
	return c, nil
}

// `n` numbered message bodies with their tags (alternating between two).
func numbered(prefix string, n int) map[string]string {
	sent := map[string]string{}
	for i := 0; i < n; i++ {
		sent[fmt.Sprintf("%s-%02d", prefix, i)] = []string{"TagA", "TagB"}[i%2]
	}
	return sent
}

func message(topic, body, tag string) *primitive.Message {
	m := primitive.NewMessage(topic, []byte(body))
	m.WithTag(tag)
	m.WithKeys([]string{"key-" + body})
	return m
}

func bodies(sent map[string]string) []string {
	out := make([]string, 0, len(sent))
	for b := range sent {
		out = append(out, b)
	}
	return out
}

// Sync sends of 20 tagged messages; a clustering push consumer receives each once with its
// body and tag.
func syncSendPushConsumer(e env) error {
	const topic = "go-sync"
	rec := &received{}
	c, err := startPushConsumer(e, "go-sync-g", topic, rec)
	if err != nil {
		return err
	}
	defer c.Shutdown()
	p, err := startProducer(e, "go-sync-p")
	if err != nil {
		return err
	}
	defer p.Shutdown()
	sent := numbered("sync", 20)
	for body, tag := range sent {
		res, err := p.SendSync(context.Background(), message(topic, body, tag))
		if err != nil {
			return fmt.Errorf("send %s: %w", body, err)
		}
		if res.Status != primitive.SendOK || res.MsgID == "" {
			return fmt.Errorf("send %s: %v", body, res)
		}
	}
	if err := rec.waitFor(bodies(sent), receiveLimit); err != nil {
		return err
	}
	return rec.exactly(sent)
}

// Async sends of 20 messages: every callback reports SEND_OK; the consumer gets them all.
func asyncSend(e env) error {
	const topic = "go-async"
	p, err := startProducer(e, "go-async-p")
	if err != nil {
		return err
	}
	defer p.Shutdown()
	sent := numbered("async", 20)
	outcomes := make(chan error, len(sent))
	for body, tag := range sent {
		err := p.SendAsync(context.Background(),
			func(_ context.Context, res *primitive.SendResult, err error) {
				switch {
				case err != nil:
					outcomes <- fmt.Errorf("async send %s: %w", body, err)
				case res.Status != primitive.SendOK:
					outcomes <- fmt.Errorf("async send %s: %v", body, res)
				default:
					outcomes <- nil
				}
			}, message(topic, body, tag))
		if err != nil {
			return fmt.Errorf("async send %s not started: %w", body, err)
		}
	}
	for range sent {
		select {
		case err := <-outcomes:
			if err != nil {
				return err
			}
		case <-time.After(20 * time.Second):
			return fmt.Errorf("an async send's callback never ran")
		}
	}
	rec := &received{}
	c, err := startPushConsumer(e, "go-async-g", topic, rec)
	if err != nil {
		return err
	}
	defer c.Shutdown()
	if err := rec.waitFor(bodies(sent), receiveLimit); err != nil {
		return err
	}
	return rec.exactly(sent)
}

// Decides a transaction by its body: `commit...` and `rollback...` at once, `unknown...`
// only when the broker checks back (`unknown-commit...` commits, others roll back).
type byBody struct {
	mu      sync.Mutex
	checked []string
}

func (l *byBody) ExecuteLocalTransaction(m *primitive.Message) primitive.LocalTransactionState {
	body := string(m.Body)
	switch {
	case strings.HasPrefix(body, "commit"):
		return primitive.CommitMessageState
	case strings.HasPrefix(body, "rollback"):
		return primitive.RollbackMessageState
	default:
		return primitive.UnkonwnState
	}
}

func (l *byBody) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	body := string(m.Body)
	l.mu.Lock()
	l.checked = append(l.checked, body)
	l.mu.Unlock()
	if strings.HasPrefix(body, "unknown-commit") {
		return primitive.CommitMessageState
	}
	return primitive.RollbackMessageState
}

func (l *byBody) wasChecked(body string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.checked {
		if b == body {
			return true
		}
	}
	return false
}

// A transaction producer's commit, rollback and two unknowns settled by the check-back: the
// consumer gets exactly the committed ones; settled transactions are not checked.
func transactionWithCheckBack(e env) error {
	const topic = "go-txn"
	listener := &byBody{}
	p, err := rocketmq.NewTransactionProducer(listener,
		producer.WithNsResolver(nameServer(e)),
		producer.WithGroupName("go-txn-p"),
		producer.WithInstanceName("go-txn-p"),
		producer.WithRetry(2),
	)
	if err != nil {
		return fmt.Errorf("new transaction producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("transaction producer start: %w", err)
	}
	defer p.Shutdown()
	states := map[string]primitive.LocalTransactionState{
		"commit-1":           primitive.CommitMessageState,
		"rollback-1":         primitive.RollbackMessageState,
		"unknown-commit-1":   primitive.UnkonwnState,
		"unknown-rollback-1": primitive.UnkonwnState,
	}
	for body, want := range states {
		res, err := p.SendMessageInTransaction(context.Background(), message(topic, body, "txn"))
		if err != nil {
			return fmt.Errorf("transactional send %s: %w", body, err)
		}
		if res.Status != primitive.SendOK || res.State != want {
			return fmt.Errorf("transactional send %s: status %v, state %v (want %v)",
				body, res.Status, res.State, want)
		}
	}
	rec := &received{}
	c, err := startPushConsumer(e, "go-txn-g", topic, rec)
	if err != nil {
		return err
	}
	defer c.Shutdown()
	committed := map[string]string{"commit-1": "txn", "unknown-commit-1": "txn"}
	if err := rec.waitFor(bodies(committed), receiveLimit); err != nil {
		return err
	}
	err = waitUntil(receiveLimit, "the check-back of unknown-rollback-1", func() bool {
		return listener.wasChecked("unknown-rollback-1")
	})
	if err != nil {
		return err
	}
	// A rolled-back message published would arrive within the consumer's next pulls.
	time.Sleep(2 * time.Second)
	for _, body := range []string{"commit-1", "rollback-1"} {
		if listener.wasChecked(body) {
			return fmt.Errorf("the broker checked back %s, which was already settled", body)
		}
	}
	if !listener.wasChecked("unknown-commit-1") {
		return fmt.Errorf("unknown-commit-1 was committed without a check-back")
	}
	return rec.exactly(committed)
}

// A message of delay level 2 (5 s) arrives no earlier than 5 s after its send; an
// undelayed one sent with it arrives too.
func delayLevel(e env) error {
	const topic = "go-delay"
	const level, delay = 2, 5 * time.Second
	rec := &received{}
	c, err := startPushConsumer(e, "go-delay-g", topic, rec)
	if err != nil {
		return err
	}
	defer c.Shutdown()
	p, err := startProducer(e, "go-delay-p")
	if err != nil {
		return err
	}
	defer p.Shutdown()
	sentAt := time.Now()
	delayed := message(topic, "later", "delayed").WithDelayTimeLevel(level)
	for _, m := range []*primitive.Message{delayed, message(topic, "now", "plain")} {
		if res, err := p.SendSync(context.Background(), m); err != nil || res.Status != primitive.SendOK {
			return fmt.Errorf("send %s: %v %v", m.Body, res, err)
		}
	}
	if err := rec.waitFor([]string{"now", "later"}, delay+receiveLimit); err != nil {
		return err
	}
	for _, d := range rec.all() {
		if waited := d.at.Sub(sentAt); d.body == "later" && waited < delay {
			return fmt.Errorf("the level-%d message arrived %s after its send, before %s",
				level, waited, delay)
		}
	}
	return rec.exactly(map[string]string{"later": "delayed", "now": "plain"})
}

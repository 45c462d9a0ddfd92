package main

// Scenarios of the 5.x Go client of apache/rocketmq-clients, over gRPC.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	rmq "github.com/apache/rocketmq-clients/golang/v5"
	"github.com/apache/rocketmq-clients/golang/v5/credentials"
)

func grpcScenarios() []scenario {
	return []scenario{
		{
			name:   "grpc-normal-simple-consumer",
			topics: []topicSpec{{"go5-normal", 4, []string{"normal"}}},
			groups: []string{"go5-normal-g"},
			run:    normalSendSimpleConsumer,
		},
		{
			name:       "grpc-fifo",
			topics:     []topicSpec{{"go5-fifo", 2, []string{"fifo"}}},
			fifoGroups: []string{"go5-fifo-g"},
			run:        fifoInOrder,
		},
		{
			name:   "grpc-transaction",
			topics: []topicSpec{{"go5-txn", 2, []string{"transaction"}}},
			groups: []string{"go5-txn-g"},
			run:    transactionCommit,
		},
	}
}

// The client's configuration; without authentication on the cluster, any credentials do.
func grpcConfig(e env, group string) *rmq.Config {
	return &rmq.Config{
		Endpoint:      e.endpoint,
		ConsumerGroup: group,
		Credentials:   &credentials.SessionCredentials{},
	}
}

// A started producer knowing `topic`, with `opts`.
func startGrpcProducer(e env, topic string, opts ...rmq.ProducerOption) (rmq.Producer, error) {
	p, err := rmq.NewProducer(grpcConfig(e, ""), append(opts, rmq.WithTopics(topic))...)
	if err != nil {
		return nil, fmt.Errorf("new producer: %w", err)
	}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("producer start: %w", err)
	}
	return p, nil
}

// A started SimpleConsumer of `group` on every tag of `topic`.
func startSimpleConsumer(e env, group, topic string) (rmq.SimpleConsumer, error) {
	c, err := rmq.NewSimpleConsumer(grpcConfig(e, group),
		rmq.WithAwaitDuration(2*time.Second),
		rmq.WithSubscriptionExpressions(map[string]*rmq.FilterExpression{topic: rmq.SUB_ALL}),
	)
	if err != nil {
		return nil, fmt.Errorf("new simple consumer: %w", err)
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("simple consumer start: %w", err)
	}
	return c, nil
}

// A SimpleConsumer of `group` on `topic`, for as long as it takes to receive and ack `want`
// messages (receiveAndAck).
func consumeAll(e env, group, topic string, want int) (*received, error) {
	c, err := startSimpleConsumer(e, group, topic)
	if err != nil {
		return nil, err
	}
	defer c.GracefulStop()
	return receiveAndAck(c, want)
}

// Receives and acks until `want` messages arrived or the receive limit passed, recording each
// one's body and tag in order.
func receiveAndAck(c rmq.SimpleConsumer, want int) (*received, error) {
	rec := &received{}
	deadline := time.Now().Add(receiveLimit)
	for len(rec.all()) < want {
		if time.Now().After(deadline) {
			return rec, fmt.Errorf("after %s, %d of %d messages received", receiveLimit,
				len(rec.all()), want)
		}
		views, err := c.Receive(context.Background(), 16, 20*time.Second)
		if err != nil && !noMessage(err) {
			return rec, fmt.Errorf("receive: %w", err)
		}
		for _, v := range views {
			tag := ""
			if t := v.GetTag(); t != nil {
				tag = *t
			}
			rec.add(string(v.GetBody()), tag)
			if err := c.Ack(context.Background(), v); err != nil {
				return rec, fmt.Errorf("ack %s: %w", v.GetBody(), err)
			}
		}
	}
	return rec, nil
}

// Whether a receive's error only says that no message was there (the client turns the
// broker's MESSAGE_NOT_FOUND into an error).
func noMessage(err error) bool {
	var status *rmq.ErrRpcStatus
	if errors.As(err, &status) {
		return status.GetCode() == 40401 // MESSAGE_NOT_FOUND
	}
	return strings.Contains(err.Error(), "MESSAGE_NOT_FOUND")
}

func grpcMessage(topic, body, tag string) *rmq.Message {
	m := &rmq.Message{Topic: topic, Body: []byte(body)}
	m.SetTag(tag)
	m.SetKeys("key-" + body)
	return m
}

// Sends 20 tagged messages; a SimpleConsumer receives and acks each once, body and tag intact.
func normalSendSimpleConsumer(e env) error {
	const topic = "go5-normal"
	p, err := startGrpcProducer(e, topic)
	if err != nil {
		return err
	}
	defer p.GracefulStop()
	sent := numbered("normal", 20)
	for body, tag := range sent {
		receipts, err := p.Send(context.Background(), grpcMessage(topic, body, tag))
		if err != nil {
			return fmt.Errorf("send %s: %w", body, err)
		}
		if len(receipts) != 1 || receipts[0].MessageID == "" {
			return fmt.Errorf("send %s: receipts %v", body, receipts)
		}
	}
	rec, err := consumeAll(e, "go5-normal-g", topic, len(sent))
	if err != nil {
		return err
	}
	return rec.exactly(sent)
}

// Two message groups of 10 sent interleaved to a FIFO topic; a SimpleConsumer of a FIFO
// group receives each group's messages in send order.
func fifoInOrder(e env) error {
	const topic, perGroup = "go5-fifo", 10
	p, err := startGrpcProducer(e, topic)
	if err != nil {
		return err
	}
	defer p.GracefulStop()
	groups := []string{"order-a", "order-b"}
	sent := map[string]string{}
	for i := 0; i < perGroup; i++ {
		for _, g := range groups {
			body := fmt.Sprintf("%s/%02d", g, i)
			m := grpcMessage(topic, body, "fifo")
			m.SetMessageGroup(g)
			if _, err := p.Send(context.Background(), m); err != nil {
				return fmt.Errorf("send %s: %w", body, err)
			}
			sent[body] = "fifo"
		}
	}
	rec, err := consumeAll(e, "go5-fifo-g", topic, len(sent))
	if err != nil {
		return err
	}
	if err := rec.exactly(sent); err != nil {
		return err
	}
	next := map[string]int{}
	for _, d := range rec.all() {
		g, seq, _ := strings.Cut(d.body, "/")
		if want := fmt.Sprintf("%02d", next[g]); seq != want {
			return fmt.Errorf("message group %s: received %s where %s/%s was next", g, d.body, g, want)
		}
		next[g]++
	}
	return nil
}

// Two transactional sends, one committed and one rolled back: the consumer receives exactly
// the committed one.
func transactionCommit(e env) error {
	const topic = "go5-txn"
	checker := &rmq.TransactionChecker{
		// Both transactions end at once; a check-back settles a straggler by its body.
		Check: func(v *rmq.MessageView) rmq.TransactionResolution {
			if strings.HasPrefix(string(v.GetBody()), "commit") {
				return rmq.COMMIT
			}
			return rmq.ROLLBACK
		},
	}
	p, err := startGrpcProducer(e, topic, rmq.WithTransactionChecker(checker))
	if err != nil {
		return err
	}
	defer p.GracefulStop()
	for _, body := range []string{"commit-1", "rollback-1"} {
		tx := p.BeginTransaction()
		if _, err := p.SendWithTransaction(context.Background(), grpcMessage(topic, body, "txn"), tx); err != nil {
			return fmt.Errorf("transactional send %s: %w", body, err)
		}
		end := tx.Commit
		if strings.HasPrefix(body, "rollback") {
			end = tx.RollBack
		}
		if err := end(); err != nil {
			return fmt.Errorf("ending %s: %w", body, err)
		}
	}
	c, err := startSimpleConsumer(e, "go5-txn-g", topic)
	if err != nil {
		return err
	}
	defer c.GracefulStop()
	rec, err := receiveAndAck(c, 1)
	if err != nil {
		return err
	}
	// A rolled-back message published would come with the next receive.
	if views, err := c.Receive(context.Background(), 16, 20*time.Second); err == nil && len(views) > 0 {
		return fmt.Errorf("received %q after the commit", views[0].GetBody())
	} else if err != nil && !noMessage(err) {
		return fmt.Errorf("receive: %w", err)
	}
	return rec.exactly(map[string]string{"commit-1": "txn"})
}

package org.apogee.spring;

import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;
import org.apache.rocketmq.spring.annotation.ConsumeMode;
import org.apache.rocketmq.spring.annotation.MessageModel;
import org.apache.rocketmq.spring.annotation.RocketMQMessageListener;
import org.apache.rocketmq.spring.core.RocketMQListener;
import org.apache.rocketmq.spring.core.RocketMQPushConsumerLifecycleListener;
import org.springframework.stereotype.Component;

/**
 * The application's {@code @RocketMQMessageListener} consumers, one per consumer group, each
 * keeping what it received for the scenarios to check. Scenario {@code NAME} works on the topic
 * {@code j-NAME} and the groups {@code j-NAME-g} and {@code j-NAME-g2}, which the caller creates
 * before the application starts.
 *
 * <p>Each listener's new group starts at its queues' first message (the starter's
 * {@link RocketMQPushConsumerLifecycleListener} hook sets the consumer's ConsumeFromWhere):
 * with the default, the queues' end when the consumer first pulls, a message sent before that
 * would be skipped (docs/COMPATIBILITY.md, "Spring Boot starter", says why Apache RocketMQ's
 * broker differs here).
 */
public final class Listeners {
    static final String SEND_TOPIC = "j-spring-send";
    static final String ORDERLY_TOPIC = "j-spring-orderly";
    static final String DELAY_TOPIC = "j-spring-delay";
    static final String TRANSACTION_TOPIC = "j-spring-transaction";

    private Listeners() {
    }

    /** What every listener here is: a consumer of its group from the queues' first message. */
    abstract static class FromFirstOffset implements RocketMQPushConsumerLifecycleListener {
        @Override
        public void prepareStart(DefaultMQPushConsumer consumer) {
            consumer.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        }
    }

    /** A delivery and when it arrived ({@link System#nanoTime()}). */
    public record Arrival(MessageExt message, long atNanos) {
    }

    /**
     * Concurrent, clustering, only the tags {@code tagA} and {@code end}: payloads converted back
     * to {@link Order}.
     */
    @Component
    @RocketMQMessageListener(topic = SEND_TOPIC, consumerGroup = SEND_TOPIC + "-g", selectorExpression = "tagA || end",
        messageModel = MessageModel.CLUSTERING)
    public static class TagA extends FromFirstOffset implements RocketMQListener<Order> {
        final Inbox<Order> inbox = new Inbox<>();

        @Override
        public void onMessage(Order order) {
            inbox.add(order);
        }
    }

    /**
     * Concurrent, clustering, only the tags {@code tagB} and {@code end}: the messages themselves
     * (tag, keys, body).
     */
    @Component
    @RocketMQMessageListener(topic = SEND_TOPIC, consumerGroup = SEND_TOPIC + "-g2", selectorExpression = "tagB || end")
    public static class TagB extends FromFirstOffset implements RocketMQListener<MessageExt> {
        final Inbox<MessageExt> inbox = new Inbox<>();

        @Override
        public void onMessage(MessageExt message) {
            inbox.add(message);
        }
    }

    /** Orderly: one thread per queue at a time, each queue's messages in stored order. */
    @Component
    @RocketMQMessageListener(topic = ORDERLY_TOPIC, consumerGroup = ORDERLY_TOPIC + "-g",
        consumeMode = ConsumeMode.ORDERLY)
    public static class Orderly extends FromFirstOffset implements RocketMQListener<Order> {
        final Inbox<Order> inbox = new Inbox<>();

        @Override
        public void onMessage(Order order) {
            inbox.add(order);
        }
    }

    /** Delayed messages and when each arrived. */
    @Component
    @RocketMQMessageListener(topic = DELAY_TOPIC, consumerGroup = DELAY_TOPIC + "-g")
    public static class Delayed extends FromFirstOffset implements RocketMQListener<MessageExt> {
        final Inbox<Arrival> inbox = new Inbox<>();

        @Override
        public void onMessage(MessageExt message) {
            inbox.add(new Arrival(message, System.nanoTime()));
        }
    }

    /** The transaction topic's consumer: only committed messages may arrive. */
    @Component
    @RocketMQMessageListener(topic = TRANSACTION_TOPIC, consumerGroup = TRANSACTION_TOPIC + "-g")
    public static class Committed extends FromFirstOffset implements RocketMQListener<MessageExt> {
        final Inbox<MessageExt> inbox = new Inbox<>();

        @Override
        public void onMessage(MessageExt message) {
            inbox.add(message);
        }
    }
}

package org.apogee.spring;

import java.time.Duration;
import java.util.Collection;
import java.util.Set;
import org.apache.rocketmq.client.consumer.store.ReadOffsetType;
import org.apache.rocketmq.client.impl.consumer.DefaultMQPushConsumerImpl;
import org.apache.rocketmq.common.message.MessageQueue;
import org.apache.rocketmq.spring.support.DefaultRocketMQListenerContainer;
import org.springframework.context.ApplicationContext;
import org.springframework.stereotype.Component;

/**
 * The listener containers the starter made for the {@code @RocketMQMessageListener} beans, and
 * how far their push consumers got: a scenario proves that nothing more will arrive once a
 * consumer has passed every stored message.
 */
@Component
public class ListenerContainers {
    private final ApplicationContext context;

    public ListenerContainers(ApplicationContext context) {
        this.context = context;
    }

    private Collection<DefaultRocketMQListenerContainer> all() {
        return context.getBeansOfType(DefaultRocketMQListenerContainer.class).values();
    }

    private DefaultRocketMQListenerContainer of(String group) {
        return all().stream()
            .filter(c -> c.getConsumerGroup().equals(group))
            .findFirst()
            .orElseThrow(() -> new AssertionError("no listener container of group " + group));
    }

    /**
     * Waits until the group's consumer has consumed or skipped (filtered out) every message its
     * topic's queues hold: its offset in each queue is the queue's end.
     */
    public void awaitCaughtUp(String group, Duration timeout) throws Exception {
        DefaultRocketMQListenerContainer container = of(group);
        DefaultMQPushConsumerImpl consumer = container.getConsumer().getDefaultMQPushConsumerImpl();
        Set<MessageQueue> queues = container.getConsumer().fetchSubscribeMessageQueues(container.getTopic());
        Checks.until(timeout, group + " past every message of " + container.getTopic(), () -> {
            for (MessageQueue queue : queues) {
                // A queue it has not consumed from yet is at 0, its first message.
                long reached = Math.max(0, consumer.getOffsetStore().readOffset(queue, ReadOffsetType.READ_FROM_MEMORY));
                if (reached < consumer.maxOffset(queue)) {
                    return false;
                }
            }
            return true;
        });
    }
}

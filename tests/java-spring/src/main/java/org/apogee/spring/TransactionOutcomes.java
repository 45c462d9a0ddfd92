package org.apogee.spring;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.rocketmq.spring.annotation.RocketMQTransactionListener;
import org.apache.rocketmq.spring.core.RocketMQLocalTransactionListener;
import org.apache.rocketmq.spring.core.RocketMQLocalTransactionState;
import org.springframework.messaging.Message;

/**
 * The local transaction of RocketMQTemplate's {@code sendMessageInTransaction}: the argument
 * says what it ends with ({@code commit}, {@code rollback}, or {@code unknown-commit} and
 * {@code unknown-rollback}, left UNKNOWN for the broker's check-back to settle from the
 * message's {@code outcome} header). Records what it was asked.
 */
@RocketMQTransactionListener
public class TransactionOutcomes implements RocketMQLocalTransactionListener {
    /** The outcome of each local transaction run, in order. */
    final List<String> executed = new CopyOnWriteArrayList<>();
    /** The {@code outcome} header of each message the broker checked back, in order. */
    final List<String> checked = new CopyOnWriteArrayList<>();

    @Override
    public RocketMQLocalTransactionState executeLocalTransaction(Message msg, Object arg) {
        String outcome = String.valueOf(arg);
        executed.add(outcome);
        return switch (outcome) {
            case "commit" -> RocketMQLocalTransactionState.COMMIT;
            case "rollback" -> RocketMQLocalTransactionState.ROLLBACK;
            default -> RocketMQLocalTransactionState.UNKNOWN;
        };
    }

    @Override
    public RocketMQLocalTransactionState checkLocalTransaction(Message msg) {
        String outcome = String.valueOf(msg.getHeaders().get("outcome"));
        checked.add(outcome);
        return switch (outcome) {
            case "unknown-commit" -> RocketMQLocalTransactionState.COMMIT;
            case "unknown-rollback" -> RocketMQLocalTransactionState.ROLLBACK;
            default -> RocketMQLocalTransactionState.UNKNOWN;
        };
    }
}

// Topics and consumer groups for Apache RocketMQ beside Apogee, many in one JVM (one mqadmin
// JVM per topic costs seconds each on a busy machine): `tools/rocketmq-beside.sh apply` runs
// this file with Java's source launcher on the classpath of RocketMQ's tools, reading one
// resource a line from standard input:
//
//   topic NAME QUEUES [TYPE]             read and write queues; TYPE (NORMAL, FIFO, DELAY,
//                                        TRANSACTION, PRIORITY, LITE) sets message.type
//   group NAME [fifo] [retry=MS[,MS...]] [lite=PARENT]
//                                        fifo: consume orderly; retry: a customized retry
//                                        policy with these delays; lite: bound to the LITE
//                                        parent topic (the lite.bind.topic attribute)
//
// usage: java -cp 'LIB/*' rocketmq-beside-admin.java NAMESRV BROKER < RESOURCES
// It creates or updates each on the broker through DefaultMQAdminExt, as mqadmin's updateTopic
// and updateSubGroup do, and prints one line per resource.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import org.apache.rocketmq.common.TopicConfig;
import org.apache.rocketmq.remoting.protocol.subscription.CustomizedRetryPolicy;
import org.apache.rocketmq.remoting.protocol.subscription.GroupRetryPolicy;
import org.apache.rocketmq.remoting.protocol.subscription.GroupRetryPolicyType;
import org.apache.rocketmq.remoting.protocol.subscription.SubscriptionGroupConfig;
import org.apache.rocketmq.tools.admin.DefaultMQAdminExt;

public class RocketMQBesideAdmin {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: rocketmq-beside-admin.java NAMESRV BROKER < RESOURCES");
            System.exit(2);
        }
        String broker = args[1];
        DefaultMQAdminExt admin = new DefaultMQAdminExt(10_000);
        admin.setNamesrvAddr(args[0]);
        admin.setInstanceName("rocketmq-beside-admin");
        admin.start();
        try {
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
            for (String line; (line = in.readLine()) != null; ) {
                String[] words = line.trim().split("\\s+");
                switch (words[0]) {
                    case "topic" -> admin.createAndUpdateTopicConfig(broker, topic(words));
                    case "group" -> admin.createAndUpdateSubscriptionGroupConfig(broker, group(words));
                    case "" -> {
                        continue;
                    }
                    default -> throw new IllegalArgumentException("not a resource: " + line);
                }
                System.out.println("updated " + line.trim());
            }
        } finally {
            admin.shutdown();
        }
    }

    /** topic NAME QUEUES [TYPE] */
    private static TopicConfig topic(String[] words) {
        int queues = Integer.parseInt(words[2]);
        TopicConfig config = new TopicConfig(words[1], queues, queues);
        if (words.length > 3) {
            // As mqadmin's updateTopic -a +message.type=TYPE sends it.
            config.setAttributes(Map.of("+message.type", words[3].toUpperCase()));
        }
        return config;
    }

    /** group NAME [fifo] [retry=MS[,MS...]] [lite=PARENT] */
    private static SubscriptionGroupConfig group(String[] words) {
        SubscriptionGroupConfig config = new SubscriptionGroupConfig();
        config.setGroupName(words[1]);
        Map<String, String> attributes = new HashMap<>();
        for (String option : Arrays.copyOfRange(words, 2, words.length)) {
            if (option.equals("fifo")) {
                config.setConsumeMessageOrderly(true);
            } else if (option.startsWith("retry=")) {
                long[] next = Arrays.stream(option.substring(6).split(",")).mapToLong(Long::parseLong).toArray();
                GroupRetryPolicy policy = new GroupRetryPolicy();
                policy.setType(GroupRetryPolicyType.CUSTOMIZED);
                policy.setCustomizedRetryPolicy(new CustomizedRetryPolicy(next));
                config.setGroupRetryPolicy(policy);
            } else if (option.startsWith("lite=")) {
                attributes.put("+lite.bind.topic", option.substring(5));
            } else {
                throw new IllegalArgumentException("not a group option: " + option);
            }
        }
        config.setAttributes(attributes);
        return config;
    }
}

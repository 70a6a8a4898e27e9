// A consumer-group member on the Java KafkaConsumer subscribing with a regular expression
// that the broker resolves: `subscribe(SubscriptionPattern)` with group.protocol=consumer
// sends it as ConsumerGroupHeartbeat's SubscribedTopicRegex (`subscribe(Pattern)`, and the
// console consumer's --include, resolve it in the client instead). It prints one JSON event
// per line in kafka-verifiable-consumer.sh's shapes (partitions_assigned/revoked with
// topics, record_data with topic and value, offsets_committed), commits synchronously
// after each batch, and closes (leaving the group) on SIGTERM.
//
// Run with Java's single-file launcher through Kafka's classpath:
//   kafka-run-class.sh RegexMember.java BOOTSTRAP REGEX GROUP
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;

public class RegexMember {
    static String quote(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static synchronized void emit(String name, String fields) {
        System.out.println("{\"timestamp\":" + System.currentTimeMillis() + ",\"name\":" + quote(name)
            + (fields.isEmpty() ? "" : "," + fields) + "}");
        System.out.flush();
    }

    static String partitions(Collection<TopicPartition> tps) {
        List<String> out = new ArrayList<>();
        for (TopicPartition tp : tps)
            out.add("{\"topic\":" + quote(tp.topic()) + ",\"partition\":" + tp.partition() + "}");
        return "\"partitions\":[" + String.join(",", out) + "]";
    }

    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("group.id", args[2]);
        props.put("group.protocol", "consumer");
        props.put("enable.auto.commit", "false");
        props.put("auto.offset.reset", "earliest");
        props.put("client.id", "java-regex-member");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props);
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            consumer.wakeup();
            try {
                closed.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        consumer.subscribe(new SubscriptionPattern(args[1]), new ConsumerRebalanceListener() {
            public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                emit("partitions_assigned", partitions(tps));
            }

            public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                emit("partitions_revoked", partitions(tps));
            }
        });
        emit("startup_complete", "");
        try {
            while (true) {
                var records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : records) {
                    emit("record_data", "\"key\":" + quote(r.key()) + ",\"value\":" + quote(r.value())
                        + ",\"topic\":" + quote(r.topic()) + ",\"partition\":" + r.partition()
                        + ",\"offset\":" + r.offset());
                }
                if (!records.isEmpty()) {
                    consumer.commitSync();
                    emit("offsets_committed", "\"success\":true");
                }
            }
        } catch (WakeupException e) {
            // SIGTERM: close below.
        } finally {
            consumer.close();
            emit("shutdown_complete", "");
            closed.countDown();
        }
    }
}

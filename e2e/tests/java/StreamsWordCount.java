// A Kafka Streams word count, as Kafka's own WordCountDemo (kafka-streams-examples is not
// published on Maven Central for 4.x): lines of INPUT split into lower-case words, keyed
// by word through the repartition topic APP_ID-words-repartition and counted in the state
// store "counts" (changelog topic APP_ID-counts-changelog), every count written to OUTPUT
// as word -> Long. With processing.guarantee
// exactly_once_v2 the input offsets, the changelog and the output of each commit go in one
// transaction, so a kill -9 loses nothing and counts nothing twice.
//
// It prints one JSON event per line: {"name":"processed","count":N} after each word it
// counts (DELAY_MS later, to keep work in flight), {"name":"restored",...} when a store
// partition has been restored from its changelog, {"name":"state","state":S} on every
// state change, {"name":"error",...} when a stream thread dies.
//
// The e2e harness compiles it with javac against kafka-streams-4.1.0/libs
// (oxbow_e2e::streams); run as
//   java -cp CLASSES:LIBS/* StreamsWordCount BOOTSTRAP APP_ID INPUT OUTPUT STATE_DIR DELAY_MS
import java.util.Arrays;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.StateRestoreListener;

public class StreamsWordCount {
    static synchronized void emit(String fields) {
        System.out.println("{" + fields + "}");
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], appId = args[1], input = args[2], output = args[3];
        String stateDir = args[4];
        long delayMs = Long.parseLong(args[5]);

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // No record cache: every count goes to the changelog and the output as it changes,
        // not only at commit, so what the kill interrupts has reached the broker (in the
        // open transaction, aborted; with at_least_once it would be restored and counted
        // again).
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // A restarted instance should not wait 45 s for the killed one's session to expire.
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);

        AtomicLong processed = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        builder.<String, String>stream(input)
            .flatMapValues(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("\\W+")))
            .filter((key, word) -> !word.isEmpty())
            .selectKey((key, word) -> word)
            .repartition(Repartitioned.as("words"))
            // The delay is here, after the repartition topic: the first sub-topology splits
            // every line at once, the counting one then takes its time (committing every
            // second), so there is counting left to interrupt.
            .peek((word, w) -> {
                try {
                    Thread.sleep(delayMs);
                } catch (InterruptedException e) {
                    // Only pacing: shown, not passed on (a set interrupt flag would end
                    // every later sleep at once).
                    emit("\"name\":\"interrupted\"");
                }
                emit("\"name\":\"processed\",\"count\":" + processed.incrementAndGet());
            })
            .groupByKey()
            .count(Materialized.as("counts"))
            .toStream()
            .to(output, Produced.with(Serdes.String(), Serdes.Long()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}

            public void onBatchRestored(TopicPartition tp, String store, long end, long n) {}

            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                emit("\"name\":\"restored\",\"store\":\"" + store + "\",\"partition\":"
                    + tp.partition() + ",\"records\":" + total);
            }
        });
        streams.setStateListener((now, before) -> emit("\"name\":\"state\",\"state\":\"" + now + "\""));
        streams.setUncaughtExceptionHandler(e -> {
            emit("\"name\":\"error\",\"error\":\"" + e.toString().replace("\"", "'") + "\"");
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            closed.countDown();
        }));
        streams.start();
        closed.await();
    }
}

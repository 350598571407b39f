// The Java producer and consumer across a server crash (issue 12, "bad input and faults"): the
// Rust test (crates/evident-server/tests/kafka_java_client.rs) kills `evident serve` with SIGKILL
// while these run, restarts it on the same data and port, and checks what they report. The
// clients retry and reconnect on their own; the claims are that no acknowledged record is lost,
// none is stored twice (the idempotent producer's retries are deduplicated by sequence, also
// after a restart), and a group's committed offsets never fall behind a commit the client saw
// acknowledged.
//
//   CrashClients produce BOOTSTRAP TOPIC N      send N records (value "v-<i>"), print "acked <n>"
//                                               every 500 acknowledgements, then one JSON summary
//   CrashClients readback BOOTSTRAP TOPIC N     read the topic; JSON: values stored once, twice, missing
//   CrashClients consume BOOTSTRAP TOPIC GROUP N   consume in a group, commitSync after each poll
//                                               (failed commits are retried by the next), print
//                                               "consumed <n>" every 500, then a JSON summary

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

public final class CrashClients {
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        switch (args.length > 0 ? args[0] : "") {
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]));
            case "readback" -> readback(args[1], args[2], Integer.parseInt(args[3]));
            case "consume" -> consume(args[1], args[2], args[3], Integer.parseInt(args[4]));
            default -> {
                System.err.println("usage: CrashClients produce|readback BOOTSTRAP TOPIC N | consume BOOTSTRAP TOPIC GROUP N");
                System.exit(2);
            }
        }
    }

    static int valueIndex(String v) {
        return Integer.parseInt(v.substring(2));
    }

    static void produce(String bootstrap, String topic, int n) throws Exception {
        Properties p = Clients.idempotentProducer(bootstrap, 2);
        // Long enough to ride out the restart; short request timeouts so that the retries start soon.
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        BitSet acked = new BitSet(n);
        AtomicInteger ackedCount = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        Map<String, Integer> failures = new HashMap<>();
        CountDownLatch done = new CountDownLatch(n);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < n; i++) {
                final int index = i;
                producer.send(new ProducerRecord<>(topic, "k-" + (i % 10), "v-" + i), (meta, error) -> {
                    synchronized (acked) {
                        if (error == null) {
                            acked.set(index);
                            int c = ackedCount.incrementAndGet();
                            if (c % 500 == 0) {
                                System.out.println("acked " + c);
                                System.out.flush();
                            }
                        } else {
                            failed.incrementAndGet();
                            failures.merge(error.getClass().getSimpleName(), 1, Integer::sum);
                        }
                    }
                    done.countDown();
                });
                // A steady pace (about 2,000 a second), so that the crash lands mid-run.
                if (i % 100 == 99) {
                    Thread.sleep(50);
                }
            }
            done.await();
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("sent", n);
        out.put("acked", ackedCount.get());
        out.put("failed", failed.get());
        out.putPOJO("failures", failures);
        // The acknowledged indexes, as a hex bit set, for readback to check.
        StringBuilder hex = new StringBuilder();
        for (byte b : acked.toByteArray()) {
            hex.append(String.format("%02x", b));
        }
        out.put("acked_set", hex.toString());
        System.out.println(JSON.writeValueAsString(out));
    }

    static void readback(String bootstrap, String topic, int n) throws Exception {
        int[] seen = new int[n];
        int read = 0;
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, null))) {
            List<TopicPartition> parts = new ArrayList<>();
            c.partitionsFor(topic).forEach(pi -> parts.add(new TopicPartition(topic, pi.partition())));
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts);
            long deadline = System.currentTimeMillis() + 60_000;
            while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp)) && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    seen[valueIndex(r.value())]++;
                    read++;
                }
            }
        }
        int twice = 0;
        StringBuilder hex = new StringBuilder();
        BitSet stored = new BitSet(n);
        for (int i = 0; i < n; i++) {
            if (seen[i] > 1) {
                twice++;
            }
            if (seen[i] > 0) {
                stored.set(i);
            }
        }
        for (byte b : stored.toByteArray()) {
            hex.append(String.format("%02x", b));
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("read", read);
        out.put("distinct", stored.cardinality());
        out.put("stored_twice", twice);
        out.put("stored_set", hex.toString());
        System.out.println(JSON.writeValueAsString(out));
    }

    static Properties consumerProps(String bootstrap, String group) {
        Properties c = Clients.manualConsumer(bootstrap, group);
        c.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        c.put(ConsumerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        if (group != null) {
            c.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
        }
        return c;
    }

    /**
     * Consumes until every one of the N values was seen, committing after each poll. Records the
     * highest offset per partition whose commit was acknowledged, and checks after each poll
     * (and at the end) that the group's committed offset, as the server tells it, never falls
     * below it.
     */
    static void consume(String bootstrap, String topic, String group, int n) throws Exception {
        BitSet seen = new BitSet(n);
        int records = 0;
        int commitFailures = 0;
        int pollFailures = 0;
        List<String> backwards = new ArrayList<>();
        Map<TopicPartition, Long> acknowledged = new HashMap<>();
        long deadline = System.currentTimeMillis() + 240_000;
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(bootstrap, group))) {
            c.subscribe(List.of(topic));
            int lastPrinted = 0;
            while (seen.cardinality() < n && System.currentTimeMillis() < deadline) {
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                try {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                        seen.set(valueIndex(r.value()));
                        records++;
                        next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                } catch (Exception e) {
                    pollFailures++;
                    continue;
                }
                if (seen.cardinality() / 500 > lastPrinted) {
                    lastPrinted = seen.cardinality() / 500;
                    System.out.println("consumed " + seen.cardinality());
                    System.out.flush();
                }
                if (next.isEmpty()) {
                    continue;
                }
                try {
                    c.commitSync(next, Duration.ofSeconds(10));
                    next.forEach((tp, o) -> acknowledged.merge(tp, o.offset(), Math::max));
                    Map<TopicPartition, OffsetAndMetadata> now = c.committed(acknowledged.keySet(), Duration.ofSeconds(10));
                    for (Map.Entry<TopicPartition, Long> e : acknowledged.entrySet()) {
                        OffsetAndMetadata o = now.get(e.getKey());
                        if (o == null || o.offset() < e.getValue()) {
                            backwards.add(e.getKey() + " committed " + (o == null ? "none" : o.offset()) + " < acknowledged " + e.getValue());
                        }
                    }
                } catch (Exception e) {
                    // The server is down or the group is rebalancing: the next poll's commit covers it.
                    commitFailures++;
                }
            }
            // The end: the server's committed offsets against every acknowledged commit.
            Map<TopicPartition, OffsetAndMetadata> last = c.committed(acknowledged.keySet(), Duration.ofSeconds(30));
            for (Map.Entry<TopicPartition, Long> e : acknowledged.entrySet()) {
                OffsetAndMetadata o = last.get(e.getKey());
                if (o == null || o.offset() < e.getValue()) {
                    backwards.add("at the end " + e.getKey() + " committed " + (o == null ? "none" : o.offset()) + " < acknowledged " + e.getValue());
                }
            }
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("distinct", seen.cardinality());
        out.put("records", records);
        out.put("commit_failures", commitFailures);
        out.put("poll_failures", pollFailures);
        out.putPOJO("backwards", backwards);
        System.out.println(JSON.writeValueAsString(out));
    }
}

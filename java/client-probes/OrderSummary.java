// Seed 000's order_summary view as a Kafka Streams application (issue 12):
//
//   CREATE TABLE order_summary AS SELECT orderId, SUM(item_price) AS total FROM order-events GROUP BY orderId;
//
// The order events are keyed by customer (as a command side would write them), so grouping by
// order id re-keys them: Kafka Streams writes them through its internal repartition topic, and
// keeps the running sums in a state store backed by its internal changelog topic. Both are created
// by Streams itself on the server under test, which is the point: the Rust tests
// (crates/evident-server/tests/kafka_java_client.rs with at_least_once, kafka_streams_eos.rs with
// exactly_once_v2) run this against evident and Apache Kafka, kill it (or the server) with
// SIGKILL mid-run, restart it, and check the totals against a fold of the input.
//
//   OrderSummary produce BOOTSTRAP FROM TO     append order events FROM..TO (acks=all, idempotent)
//   OrderSummary produce-acked BOOTSTRAP FROM TO   the same, riding out a server crash (retries
//                                               for up to 120 s); prints "acked N" every 500
//                                               acknowledgements, then one JSON summary naming
//                                               the events never acknowledged
//   OrderSummary run BOOTSTRAP STATE_DIR [at_least_once|exactly_once_v2]
//                                               run the application (default at_least_once) until
//                                               killed; prints "processed N" every 500 records
//   OrderSummary verify BOOTSTRAP TIMEOUT_MS [EXPECTED]
//                                               wait until the application committed the end of
//                                               its input, then fold the input and compare
//   OrderSummary bench BOOTSTRAP STATE_DIR TIMEOUT_MS [COMMIT_INTERVAL_MS]
//                                               the benchmark's run (crates/evident-bench, sql.rs):
//                                               at_least_once over the input already produced,
//                                               until the group's committed offsets reach the end
//                                               of the input and then of the repartition topic;
//                                               prints one JSON line with the timings and the
//                                               store's totals, and exits
//
// verify prints one JSON object: the fold and the view per order compared (the output topic and
// the store's changelog), the internal topics, and with EXPECTED the events 0..EXPECTED missing
// from the input and any stored twice. Everything is read with isolation.level=read_committed:
// exactly_once_v2 writes the view, the changelog and the repartition topic in transactions, and
// what an aborted or open transaction wrote is not part of the result.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

public final class OrderSummary {
    static final String APP_ID = "order-summary-app";
    static final String INPUT = "order-events";
    static final String OUTPUT = "order-summary";
    static final int PARTITIONS = 4;
    static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        switch (args.length > 0 ? args[0] : "") {
            case "produce" -> produce(args[1], Integer.parseInt(args[2]), Integer.parseInt(args[3]));
            case "produce-acked" -> produceAcked(args[1], Integer.parseInt(args[2]), Integer.parseInt(args[3]));
            case "run" -> run(args[1], args[2], args.length > 3 ? args[3] : StreamsConfig.AT_LEAST_ONCE);
            case "verify" -> verify(args[1], Long.parseLong(args[2]), args.length > 3 ? Integer.parseInt(args[3]) : -1);
            case "bench" -> bench(args[1], args[2], Long.parseLong(args[3]), args.length > 4 ? Integer.parseInt(args[4]) : 100);
            default -> {
                System.err.println("usage: OrderSummary produce|produce-acked BOOTSTRAP FROM TO"
                        + " | run BOOTSTRAP STATE_DIR [at_least_once|exactly_once_v2] | verify BOOTSTRAP TIMEOUT_MS [EXPECTED]"
                        + " | bench BOOTSTRAP STATE_DIR TIMEOUT_MS [COMMIT_INTERVAL_MS]");
                System.exit(2);
            }
        }
    }

    /** Event i: customer i % 37 orders an item ("item-i") for order i % 101, priced 1..50. */
    static ProducerRecord<String, String> event(int i) throws Exception {
        ObjectNode v = JSON.createObjectNode();
        v.put("eventType", "ItemAdded");
        v.put("orderId", "order-" + (i % 101));
        v.put("customerId", "customer-" + (i % 37));
        v.put("item", "item-" + i);
        v.put("item_price", 1 + (i * 7L) % 50);
        return new ProducerRecord<>(INPUT, "customer-" + (i % 37), JSON.writeValueAsString(v));
    }

    static void createTopics(String bootstrap) throws Exception {
        Properties a = Clients.admin(bootstrap);
        try (Admin admin = Admin.create(a)) {
            for (String t : List.of(INPUT, OUTPUT)) {
                try {
                    admin.createTopics(List.of(new NewTopic(t, PARTITIONS, (short) 1))).all().get();
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
        }
    }

    static void produce(String bootstrap, int from, int to) throws Exception {
        createTopics(bootstrap);
        Properties p = Clients.idempotentProducer(bootstrap, 5);
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = from; i < to; i++) {
                acks.add(producer.send(event(i)));
            }
            for (Future<RecordMetadata> f : acks) {
                f.get();
            }
        }
        System.out.println("produced " + acks.size());
    }

    /**
     * Events FROM..TO at about 2,000 a second, so that a server crash lands while they are sent,
     * by a producer that rides it out: acks=all and idempotent (a retried batch is stored once),
     * 5 s request timeouts so that retries start soon after the crash, 120 s to deliver each.
     * The test folds what the input topic holds; the summary lets it check that this includes
     * every acknowledged event (and verify, that none is stored twice).
     */
    static void produceAcked(String bootstrap, int from, int to) throws Exception {
        createTopics(bootstrap);
        Properties p = Clients.idempotentProducer(bootstrap, 5);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        AtomicLong acked = new AtomicLong();
        TreeSet<Integer> unacked = new TreeSet<>();
        TreeMap<String, Integer> errors = new TreeMap<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = from; i < to; i++) {
                final int index = i;
                producer.send(event(i), (meta, error) -> {
                    if (error == null) {
                        long n = acked.incrementAndGet();
                        if (n % 500 == 0) {
                            System.out.println("acked " + n);
                            System.out.flush();
                        }
                    } else {
                        synchronized (unacked) {
                            unacked.add(index);
                            errors.merge(error.getClass().getSimpleName(), 1, Integer::sum);
                        }
                    }
                });
                if (i % 2 == 1) {
                    Thread.sleep(1);
                }
            }
            producer.flush();
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("sent", to - from);
        out.put("acked", acked.get());
        synchronized (unacked) {
            out.putPOJO("unacked", new ArrayList<>(unacked));
            out.putPOJO("errors", errors);
        }
        System.out.println(JSON.writeValueAsString(out));
    }

    static void run(String bootstrap, String stateDir, String guarantee) throws Exception {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, APP_ID);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        if (!guarantee.equals(StreamsConfig.AT_LEAST_ONCE) && !guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2)) {
            throw new IllegalArgumentException("processing guarantee " + guarantee);
        }
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        // at_least_once: commit often, so that a kill lands between commits with work after the
        // last one. exactly_once_v2: each commit ends a transaction (EndTxn, a marker in every
        // partition written), and read_committed readers downstream (the aggregation reading the
        // repartition topic, the verifier) see nothing of it before; 200 ms keeps a short run
        // flowing without a transaction per handful of records (Streams' own EOS default is 100 ms).
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, guarantee.equals(StreamsConfig.AT_LEAST_ONCE) ? 500 : 200);
        // Purge the repartition topic (DeleteRecords up to the committed offsets) every second
        // rather than every 30 s, so that a short run exercises it too.
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);
        // A restarted instance joins as a new member; the killed one's session must end first.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        AtomicLong processed = new AtomicLong();
        StreamsBuilder b = topology(n -> {
            long count = processed.incrementAndGet();
            if (count % 500 == 0) {
                System.out.println("processed " + count);
                System.out.flush();
            }
        });

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        CountDownLatch done = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("state " + before + " -> " + now);
            System.out.flush();
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(20));
            done.countDown();
        }));
        streams.start();
        done.await();
        System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
    }

    /**
     * Seed 000's aggregation: re-keyed by order id (through the "by-order" repartition topic),
     * summed into the "order-totals" store, its changes written to the output topic. `seen` is
     * called for every input record, before the re-keying.
     */
    static StreamsBuilder topology(java.util.function.LongConsumer seen) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(INPUT, Consumed.with(Serdes.String(), Serdes.String()))
                .peek((k, v) -> seen.accept(1))
                .map((customer, json) -> {
                    JsonNode e = parse(json);
                    return KeyValue.pair(e.get("orderId").asText(), e.get("item_price").asLong());
                })
                .groupByKey(Grouped.with("by-order", Serdes.String(), Serdes.Long()))
                .aggregate(() -> 0L, (order, price, total) -> total + price,
                        Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("order-totals")
                                .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(OUTPUT, Produced.with(Serdes.String(), Serdes.Long()));
        return b;
    }

    /**
     * The benchmark's run (crates/evident-bench/src/sql.rs): the input is produced before, the
     * application starts on a fresh state directory with at_least_once and Streams' defaults but
     * for the commit interval (default 100 ms here: Streams' own at_least_once default, 30 s,
     * would make the end of the run wait for a commit), and runs until its group's committed
     * offsets reach the input's end offsets and then the repartition topic's (the aggregation
     * reads the repartition topic, so only then is every input record summed and committed).
     * Prints one JSON line: the input's records, the milliseconds from the JVM's start to main,
     * from main to KafkaStreams.start(), and from start() to the first input record processed and
     * to the committed end; the records processed; the JVM's CPU time from start() to the
     * committed end (cpu_ms); and the store's totals per order (read by an
     * interactive query once caught up). Exits 1 on a timeout or when the application fails.
     */
    static void bench(String bootstrap, String stateDir, long timeoutMs, int commitIntervalMs) throws Exception {
        long mainAt = System.currentTimeMillis();
        long jvmStart = java.lang.management.ManagementFactory.getRuntimeMXBean().getStartTime();
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, APP_ID);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitIntervalMs);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        AtomicLong processed = new AtomicLong();
        AtomicLong firstAt = new AtomicLong();
        StreamsBuilder b = topology(n -> {
            if (processed.getAndIncrement() == 0) {
                firstAt.set(System.nanoTime());
            }
        });
        try (Admin admin = Admin.create(Clients.admin(bootstrap))) {
            Map<TopicPartition, Long> inputEnd = endOffsets(admin, INPUT);
            long records = inputEnd.values().stream().mapToLong(Long::longValue).sum();
            KafkaStreams streams = new KafkaStreams(b.build(), p);
            AtomicLong failed = new AtomicLong();
            streams.setStateListener((now, before) -> {
                if (now == KafkaStreams.State.ERROR) {
                    failed.set(1);
                }
            });
            long deadline = System.currentTimeMillis() + timeoutMs;
            long startAt = System.currentTimeMillis();
            long cpuAtStart = processCpuNanos();
            long start = System.nanoTime();
            streams.start();
            // The input's end first; then the repartition topic's end as it is once the input is
            // committed (Streams flushes what it wrote before it commits the offsets it read).
            Map<TopicPartition, Long> target = inputEnd;
            boolean repartition = false;
            long doneAt;
            long cpuAtDone;
            while (true) {
                if (failed.get() != 0 || System.currentTimeMillis() > deadline) {
                    System.out.println("{\"error\": \"" + (failed.get() != 0 ? "the application failed" : "timed out")
                            + " after " + processed.get() + " records\"}");
                    System.out.flush();
                    streams.close(Duration.ofSeconds(20));
                    System.exit(1);
                }
                Map<TopicPartition, OffsetAndMetadata> committed =
                        admin.listConsumerGroupOffsets(APP_ID).partitionsToOffsetAndMetadata().get();
                boolean reached = target.entrySet().stream().allMatch(e -> committed.get(e.getKey()) != null
                        && committed.get(e.getKey()).offset() >= e.getValue());
                if (reached && repartition) {
                    doneAt = System.nanoTime();
                    cpuAtDone = processCpuNanos();
                    break;
                }
                if (reached) {
                    target = endOffsets(admin, APP_ID + "-by-order-repartition");
                    repartition = true;
                    continue;
                }
                Thread.sleep(10);
            }
            ObjectNode totals = JSON.createObjectNode();
            var store = waitForStore(streams, deadline);
            try (var it = store.all()) {
                while (it.hasNext()) {
                    KeyValue<String, Long> kv = it.next();
                    totals.put(kv.key, kv.value);
                }
            }
            ObjectNode out = JSON.createObjectNode();
            out.put("input_records", records);
            out.put("jvm_to_main_ms", mainAt - jvmStart);
            out.put("main_to_start_ms", startAt - mainAt);
            out.put("first_record_ms", firstAt.get() == 0 ? -1.0 : (firstAt.get() - start) / 1e6);
            out.put("caught_up_ms", (doneAt - start) / 1e6);
            out.put("processed", processed.get());
            out.put("cpu_ms", cpuAtStart < 0 || cpuAtDone < 0 ? -1.0 : (cpuAtDone - cpuAtStart) / 1e6);
            out.put("commit_interval_ms", commitIntervalMs);
            out.set("totals", totals);
            System.out.println(JSON.writeValueAsString(out));
            System.out.flush();
            streams.close(Duration.ofSeconds(20));
        }
        System.exit(0);
    }

    /** This JVM's CPU time (all threads) in nanoseconds, or -1 where the JVM does not tell. */
    static long processCpuNanos() {
        if (java.lang.management.ManagementFactory.getOperatingSystemMXBean()
                instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getProcessCpuTime();
        }
        return -1;
    }

    /** The latest offset of each partition of `topic`. */
    static Map<TopicPartition, Long> endOffsets(Admin admin, String topic) throws Exception {
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (int p = 0; p < PARTITIONS; p++) {
            latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
        }
        Map<TopicPartition, Long> end = new HashMap<>();
        admin.listOffsets(latest).all().get().forEach((tp, info) -> end.put(tp, info.offset()));
        return end;
    }

    /** The "order-totals" store for interactive queries, once the application is RUNNING. */
    static org.apache.kafka.streams.state.ReadOnlyKeyValueStore<String, Long> waitForStore(KafkaStreams streams,
            long deadline) throws Exception {
        while (true) {
            try {
                return streams.store(org.apache.kafka.streams.StoreQueryParameters.fromNameAndType("order-totals",
                        org.apache.kafka.streams.state.QueryableStoreTypes.<String, Long>keyValueStore()));
            } catch (org.apache.kafka.streams.errors.InvalidStateStoreException e) {
                if (System.currentTimeMillis() > deadline) {
                    throw e;
                }
                Thread.sleep(50);
            }
        }
    }

    static JsonNode parse(String json) {
        try {
            return JSON.readTree(json);
        } catch (Exception e) {
            throw new IllegalArgumentException("not an order event: " + json, e);
        }
    }

    /**
     * A reader of what is committed: read_committed, so that with exactly_once_v2 what an aborted
     * or still open transaction wrote is left out (the same as read_uncommitted for at_least_once,
     * which writes no transactions), and the end offsets it is given are the last stable offsets.
     */
    static KafkaConsumer<String, Object> reader(String bootstrap, Class<?> valueDeserializer) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, valueDeserializer.getName());
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        return new KafkaConsumer<>(c);
    }

    /** Every committed record of a topic, from the first to the end offsets taken now. */
    @SuppressWarnings("unchecked")
    static <V> List<ConsumerRecord<String, V>> readAll(String bootstrap, String topic, Class<?> valueDeserializer) {
        List<ConsumerRecord<String, V>> out = new ArrayList<>();
        try (KafkaConsumer<String, Object> c = reader(bootstrap, valueDeserializer)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (int p = 0; p < PARTITIONS; p++) {
                parts.add(new TopicPartition(topic, p));
            }
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts);
            long deadline = System.currentTimeMillis() + 60_000;
            while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("reading " + topic + " to " + end + " timed out");
                }
                for (ConsumerRecord<String, Object> r : c.poll(Duration.ofMillis(200))) {
                    if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) {
                        out.add((ConsumerRecord<String, V>) r);
                    }
                }
            }
        }
        return out;
    }

    /** Orders whose total in `view` is below, above, above twice its fold, and the excess. */
    static void compare(ObjectNode out, String prefix, TreeMap<String, Long> fold, TreeMap<String, Long> view) {
        int below = 0;
        int above = 0;
        int overDouble = 0;
        long excess = 0;
        for (Map.Entry<String, Long> e : fold.entrySet()) {
            long total = view.getOrDefault(e.getKey(), 0L);
            if (total < e.getValue()) {
                below++;
            } else if (total > e.getValue()) {
                above++;
                excess += total - e.getValue();
            }
            if (total > 2 * e.getValue()) {
                overDouble++;
            }
        }
        out.put(prefix + "orders", view.size());
        out.put(prefix + "total", view.values().stream().mapToLong(Long::longValue).sum());
        out.put(prefix + "equal", fold.equals(view));
        out.put(prefix + "below", below);
        out.put(prefix + "above", above);
        out.put(prefix + "over_double", overDouble);
        out.put(prefix + "excess", excess);
    }

    /** The end offsets of every partition of `topics` as a reader at `isolation` sees them. */
    static Map<TopicPartition, Long> ends(Admin admin, List<String> topics, IsolationLevel isolation) throws Exception {
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (var d : admin.describeTopics(topics).allTopicNames().get().values()) {
            for (var partition : d.partitions()) {
                latest.put(new TopicPartition(d.name(), partition.partition()), OffsetSpec.latest());
            }
        }
        Map<TopicPartition, Long> out = new HashMap<>();
        admin.listOffsets(latest, new ListOffsetsOptions(isolation)).all().get().forEach((tp, info) -> out.put(tp, info.offset()));
        return out;
    }

    static void verify(String bootstrap, long timeoutMs, int expected) throws Exception {
        Properties a = Clients.admin(bootstrap);
        long deadline = System.currentTimeMillis() + timeoutMs;
        Map<TopicPartition, Long> inputEnd = new HashMap<>();
        TreeSet<String> internal = new TreeSet<>();
        boolean caughtUp = false;
        long repartitionPurged = 0;
        try (Admin admin = Admin.create(a)) {
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                latest.put(new TopicPartition(INPUT, p), OffsetSpec.latest());
            }
            admin.listOffsets(latest).all().get().forEach((tp, info) -> inputEnd.put(tp, info.offset()));
            // The application has consumed and committed its whole input once its group's
            // committed offsets reach the input's end; a commit flushes the store's cache to the
            // changelog and the view's topic first, so the view is then final.
            while (System.currentTimeMillis() < deadline) {
                Map<TopicPartition, OffsetAndMetadata> committed =
                        admin.listConsumerGroupOffsets(APP_ID).partitionsToOffsetAndMetadata().get();
                caughtUp = inputEnd.entrySet().stream().allMatch(e -> committed.get(e.getKey()) != null
                        && committed.get(e.getKey()).offset() >= e.getValue());
                if (caughtUp) {
                    break;
                }
                Thread.sleep(200);
            }
            for (String t : admin.listTopics().names().get()) {
                if (t.startsWith(APP_ID)) {
                    internal.add(t);
                }
            }
            // The aggregation reads the repartition topic: only once the group has committed
            // its end (as it is now) is every input record summed.
            String repartitionTopic = APP_ID + "-by-order-repartition";
            if (caughtUp && internal.contains(repartitionTopic)) {
                Map<TopicPartition, Long> repartitionEnd = ends(admin, List.of(repartitionTopic), IsolationLevel.READ_UNCOMMITTED);
                caughtUp = false;
                while (System.currentTimeMillis() < deadline) {
                    Map<TopicPartition, OffsetAndMetadata> committed =
                            admin.listConsumerGroupOffsets(APP_ID).partitionsToOffsetAndMetadata().get();
                    caughtUp = repartitionEnd.entrySet().stream().allMatch(e -> e.getValue() == 0
                            || (committed.get(e.getKey()) != null && committed.get(e.getKey()).offset() >= e.getValue()));
                    if (caughtUp) {
                        break;
                    }
                    Thread.sleep(200);
                }
            }
            // No transaction left open on what is read next: one a killed instance abandoned
            // holds read_committed readers back (last stable offset below the high watermark)
            // until the coordinator aborts it at its timeout; with the state directory wiped the
            // restarted instance has a new transactional id, so it does not fence the old one.
            List<String> read = new ArrayList<>(List.of(OUTPUT));
            if (internal.contains(APP_ID + "-order-totals-changelog")) {
                read.add(APP_ID + "-order-totals-changelog");
            }
            while (caughtUp && System.currentTimeMillis() < deadline) {
                if (ends(admin, read, IsolationLevel.READ_COMMITTED).equals(ends(admin, read, IsolationLevel.READ_UNCOMMITTED))) {
                    break;
                }
                Thread.sleep(200);
            }
            // Streams purges its repartition topic up to the committed offsets (DeleteRecords);
            // the sum of the partitions' earliest offsets shows whether the server did it.
            Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
            for (int p = 0; p < PARTITIONS; p++) {
                earliest.put(new TopicPartition(APP_ID + "-by-order-repartition", p), OffsetSpec.earliest());
            }
            if (internal.contains(APP_ID + "-by-order-repartition")) {
                for (var info : admin.listOffsets(earliest).all().get().values()) {
                    repartitionPurged += info.offset();
                }
            }
        }
        TreeMap<String, Long> fold = new TreeMap<>();
        List<ConsumerRecord<String, String>> input = readAll(bootstrap, INPUT, StringDeserializer.class);
        TreeMap<Integer, Integer> copies = new TreeMap<>();
        for (ConsumerRecord<String, String> r : input) {
            JsonNode e = parse(r.value());
            fold.merge(e.get("orderId").asText(), e.get("item_price").asLong(), Long::sum);
            copies.merge(Integer.parseInt(e.get("item").asText().substring("item-".length())), 1, Integer::sum);
        }
        TreeMap<String, Long> view = new TreeMap<>();
        List<ConsumerRecord<String, Long>> output = readAll(bootstrap, OUTPUT, LongDeserializer.class);
        for (ConsumerRecord<String, Long> r : output) {
            view.put(r.key(), r.value());
        }
        // The store's changelog, as a restore reads it: the DSL's aggregation store is a
        // timestamped one, whose changelog values are an 8-byte timestamp and then the value.
        TreeMap<String, Long> changelog = new TreeMap<>();
        List<ConsumerRecord<String, byte[]>> log =
                readAll(bootstrap, APP_ID + "-order-totals-changelog", ByteArrayDeserializer.class);
        for (ConsumerRecord<String, byte[]> r : log) {
            if (r.value() == null) {
                changelog.remove(r.key());
            } else {
                changelog.put(r.key(), java.nio.ByteBuffer.wrap(r.value()).getLong(r.value().length - 8));
            }
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("caught_up", caughtUp);
        out.put("input_records", input.size());
        out.put("orders", fold.size());
        out.put("fold_total", fold.values().stream().mapToLong(Long::longValue).sum());
        compare(out, "view_", fold, view);
        // The names kafka_java_client.rs reads.
        out.put("equal", out.get("view_equal").asBoolean());
        out.put("below", out.get("view_below").asInt());
        out.put("above", out.get("view_above").asInt());
        out.put("over_double", out.get("view_over_double").asInt());
        out.put("excess", out.get("view_excess").asLong());
        compare(out, "changelog_", fold, changelog);
        if (expected >= 0) {
            List<Integer> missing = new ArrayList<>();
            for (int i = 0; i < expected; i++) {
                if (!copies.containsKey(i)) {
                    missing.add(i);
                }
            }
            out.putPOJO("missing", missing);
            out.put("stored_twice", copies.values().stream().filter(n -> n > 1).count());
            out.put("beyond_expected", copies.keySet().stream().filter(i -> i >= expected).count());
        }
        out.putPOJO("internal_topics", new ArrayList<>(internal));
        out.put("repartition_purged", repartitionPurged);
        System.out.println(JSON.writeValueAsString(out));
    }
}

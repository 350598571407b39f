// The Java client 4.x probes of the conformance suite (issue 12): what applications and frameworks
// (Spring Kafka, Kafka Streams, Connect) do with kafka-clients, run against one server and
// summed up as one line per probe, so that the Rust test (crates/evident-server/tests/
// kafka_java_client.rs) can run the same program against evident and against Apache Kafka in the
// same run and compare the lines. Why a summary and not raw output: ids, member names and the
// order consumers join in are the server's or the scheduler's choice; what must be the same is
// what a program can rely on (every record acknowledged, read back in order, every partition
// owned by one member at a time, the offsets a group committed).
//
// Usage: java -cp <kafka jars>:<classes> ClientProbes BOOTSTRAP RESULTS.jsonl
// Each result is one JSON line {"name", "result", "millis"}, flushed as soon as the probe ends,
// so that a hang still leaves the earlier results. A probe that throws records
// "EXCEPTION <class>: <message>" and the next probe runs.

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.internals.RecordHeader;

public final class ClientProbes {
    static String bootstrap;
    static Writer results;
    static final ObjectMapper JSON = new ObjectMapper();
    /** The longest a probe waits for a group to settle or records to arrive. */
    static final long WAIT_MS = 60_000;
    /** Records carry explicit timestamps from here on, so that listOffsets by time is comparable. */
    static final long BASE_TS = 1_600_000_000_000L;

    interface Probe {
        String run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: ClientProbes BOOTSTRAP RESULTS.jsonl");
            System.exit(2);
        }
        bootstrap = args[0];
        results = new OutputStreamWriter(new FileOutputStream(args[1]), StandardCharsets.UTF_8);
        try (Admin admin = Admin.create(adminProps())) {
            probe("admin createTopics", () -> createTopics(admin));
            probe("admin describeCluster", () -> describeCluster(admin));
            probe("admin describeTopics", () -> describeTopics(admin));
            probe("idempotent producer: 3000 acked, read back in order", ClientProbes::idempotentProducer);
            probe("admin listOffsets earliest", () -> listOffsets(admin, OffsetSpec.earliest()));
            probe("admin listOffsets latest", () -> listOffsets(admin, OffsetSpec.latest()));
            probe("admin listOffsets by timestamp", () -> listOffsets(admin, OffsetSpec.forTimestamp(BASE_TS + 1500)));
            probe("admin listOffsets by timestamp past the end", () -> listOffsets(admin, OffsetSpec.forTimestamp(BASE_TS + 1_000_000)));
            probe("group range: 3 consumers join and leave", () -> groupRun(admin, "g-range", RangeAssignor.class, false));
            probe("admin describeConsumerGroups (empty)", () -> describeGroup(admin, "g-range"));
            probe("admin listConsumerGroupOffsets", () -> groupOffsets(admin, "g-range"));
            probe("admin alterConsumerGroupOffsets", () -> alterGroupOffsets(admin, "g-range"));
            probe("admin deleteConsumerGroups", () -> deleteGroup(admin, "g-range"));
            probe("admin describeConsumerGroups (deleted)", () -> describeGroup(admin, "g-range"));
            probe("group cooperative-sticky: 3 consumers join and leave",
                    () -> groupRun(admin, "g-coop", CooperativeStickyAssignor.class, false));
            probe("group static members: join, leave, restart", () -> groupRun(admin, "g-static", RangeAssignor.class, true));
            probe("admin describeConfigs topic", () -> describeTopicConfig(admin, "idem"));
            probe("admin describeConfigs broker", () -> describeBrokerConfig(admin));
            probe("admin incrementalAlterConfigs retention.ms", () -> alterTopicConfig(admin));
            probe("expected-version header", ClientProbes::expectedVersion);
        }
        results.close();
    }

    static void probe(String name, Probe p) throws Exception {
        long start = System.nanoTime();
        String result;
        try {
            result = p.run();
        } catch (Exception e) {
            Throwable t = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            result = "EXCEPTION " + t.getClass().getName() + ": " + t.getMessage();
            e.printStackTrace();
        }
        ObjectNode line = JSON.createObjectNode();
        line.put("name", name);
        line.put("result", result);
        line.put("millis", (System.nanoTime() - start) / 1_000_000);
        results.write(JSON.writeValueAsString(line) + "\n");
        results.flush();
        System.err.println("probe " + name + ": " + result);
    }

    static Properties adminProps() {
        Properties p = Clients.admin(bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return p;
    }

    static Properties producerProps() {
        Properties p = Clients.idempotentProducer(bootstrap, 5);
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        return p;
    }

    static Properties consumerProps(String group) {
        return Clients.manualConsumer(bootstrap, group);
    }

    static String createTopics(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("idem", 3, (short) 1), new NewTopic("g-range", 6, (short) 1),
                new NewTopic("g-coop", 6, (short) 1), new NewTopic("g-static", 6, (short) 1),
                new NewTopic("ledger", 1, (short) 1))).all().get();
        // Kafka's metadata reaches its broker a moment after a topic is created; wait for it so
        // that the probes after this one do not race it (evident's is immediate).
        waitFor(() -> {
            try {
                return admin.describeTopics(List.of("idem", "g-range", "g-coop", "g-static", "ledger"))
                        .allTopicNames().get().size() == 5;
            } catch (Exception e) {
                return false;
            }
        });
        return "created 5 topics";
    }

    static String describeCluster(Admin admin) throws Exception {
        DescribeClusterResult r = admin.describeCluster();
        int nodes = r.nodes().get().size();
        boolean controller = r.controller().get() != null;
        boolean clusterId = r.clusterId().get() != null;
        return "nodes=" + nodes + " controller=" + controller + " clusterId=" + clusterId;
    }

    static String describeTopics(Admin admin) throws Exception {
        Map<String, TopicDescription> d = admin.describeTopics(List.of("idem", "g-range")).allTopicNames().get();
        StringBuilder sb = new StringBuilder();
        for (String t : new TreeSet<>(d.keySet())) {
            TopicDescription td = d.get(t);
            boolean leaders = td.partitions().stream().allMatch(p -> p.leader() != null);
            boolean oneReplica = td.partitions().stream().allMatch(p -> p.replicas().size() == 1 && p.isr().size() == 1);
            sb.append(t).append(": partitions=").append(td.partitions().size()).append(" internal=")
                    .append(td.isInternal()).append(" leaders=").append(leaders).append(" one-replica-in-sync=")
                    .append(oneReplica).append("; ");
        }
        return sb.toString().trim();
    }

    /** 3,000 records on 3 partitions, 30 keys, each numbered per key; every one acknowledged and read back. */
    static String idempotentProducer() throws Exception {
        int n = 3000;
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
            for (int i = 0; i < n; i++) {
                String key = "k-" + (i % 30);
                acks.add(producer.send(new ProducerRecord<>("idem", null, BASE_TS + i, key, key + "#" + (i / 30))));
            }
            producer.flush();
        }
        Map<TopicPartition, List<Long>> ackedOffsets = new HashMap<>();
        for (Future<RecordMetadata> f : acks) {
            RecordMetadata m = f.get();
            ackedOffsets.computeIfAbsent(new TopicPartition(m.topic(), m.partition()), k -> new ArrayList<>()).add(m.offset());
        }
        // Read every partition back from the start, without a group.
        Map<String, List<Integer>> perKey = new TreeMap<>();
        Map<TopicPartition, List<Long>> readOffsets = new HashMap<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(null))) {
            List<TopicPartition> parts = List.of(new TopicPartition("idem", 0), new TopicPartition("idem", 1),
                    new TopicPartition("idem", 2));
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            long deadline = System.currentTimeMillis() + WAIT_MS;
            int read = 0;
            while (read < n && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    read++;
                    String[] kv = r.value().split("#");
                    perKey.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(Integer.parseInt(kv[1]));
                    readOffsets.computeIfAbsent(new TopicPartition(r.topic(), r.partition()), k -> new ArrayList<>())
                            .add(r.offset());
                }
            }
        }
        int read = perKey.values().stream().mapToInt(List::size).sum();
        boolean inOrder = perKey.size() == 30;
        for (List<Integer> seq : perKey.values()) {
            for (int i = 0; i < seq.size(); i++) {
                inOrder &= seq.get(i) == i;
            }
            inOrder &= seq.size() == n / 30;
        }
        boolean offsetsMatch = ackedOffsets.equals(readOffsets);
        TreeMap<Integer, Integer> sizes = new TreeMap<>();
        ackedOffsets.forEach((tp, l) -> sizes.put(tp.partition(), l.size()));
        return "acked=" + acks.size() + " read=" + read + " per-key-in-order=" + inOrder + " offsets-as-acked="
                + offsetsMatch + " per-partition=" + sizes;
    }

    static String listOffsets(Admin admin, OffsetSpec spec) throws Exception {
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (int p = 0; p < 3; p++) {
            req.put(new TopicPartition("idem", p), spec);
        }
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> r = admin.listOffsets(req).all().get();
        StringBuilder sb = new StringBuilder();
        for (int p = 0; p < 3; p++) {
            ListOffsetsResult.ListOffsetsResultInfo info = r.get(new TopicPartition("idem", p));
            sb.append("p").append(p).append("=").append(info.offset());
            // The timestamp of the record found, when looking one up by time (-1 for earliest/latest).
            if (info.timestamp() >= 0) {
                sb.append("@+").append(info.timestamp() - BASE_TS);
            }
            sb.append(' ');
        }
        return sb.toString().trim();
    }

    /** One consumer of a group, polling on its own thread; records what it owns and consumes. */
    static final class Member implements ConsumerRebalanceListener {
        final String name;
        final KafkaConsumer<String, String> consumer;
        final Run state;
        final Set<Integer> owned = ConcurrentHashMap.newKeySet();
        final AtomicInteger assignedCalls = new AtomicInteger();
        final AtomicInteger revokedPartitions = new AtomicInteger();
        final AtomicBoolean stop = new AtomicBoolean();
        final Thread thread;
        volatile Throwable failure;

        Member(String name, String group, Class<?> assignor, String instanceId, Run state) {
            this.name = name;
            this.state = state;
            Properties p = consumerProps(group);
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor.getName());
            p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "50");
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
            if (instanceId != null) {
                p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
            }
            consumer = new KafkaConsumer<>(p);
            thread = new Thread(this::loop, name);
            thread.start();
        }

        void loop() {
            try {
                consumer.subscribe(List.of(state.topic), this);
                while (!stop.get()) {
                    ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> r : records) {
                        if (!owned.contains(r.partition())) {
                            state.violations.add(name + " read partition " + r.partition() + " it does not own");
                        }
                        state.consumed.add(r.partition() + "@" + r.offset());
                    }
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                    }
                }
            } catch (Throwable t) {
                failure = t;
                t.printStackTrace();
            } finally {
                release(owned);
                consumer.close();
            }
        }

        void release(Collection<Integer> parts) {
            for (Integer p : parts) {
                state.owners.remove(p, name);
                owned.remove(p);
            }
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            revokedPartitions.addAndGet(partitions.size());
            // Commit what was consumed before giving the partitions away: the next owner starts there.
            if (!partitions.isEmpty()) {
                consumer.commitSync();
            }
            List<Integer> ps = new ArrayList<>();
            partitions.forEach(tp -> ps.add(tp.partition()));
            release(ps);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            List<Integer> ps = new ArrayList<>();
            partitions.forEach(tp -> ps.add(tp.partition()));
            release(ps);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            assignedCalls.incrementAndGet();
            for (TopicPartition tp : partitions) {
                String before = state.owners.putIfAbsent(tp.partition(), name);
                if (before != null && !before.equals(name)) {
                    state.violations.add("partition " + tp.partition() + " given to " + name + " while " + before + " owns it");
                }
                owned.add(tp.partition());
            }
        }

        void stopAndJoin() throws InterruptedException {
            stop.set(true);
            thread.join(30_000);
        }

        TreeSet<Integer> ownedNow() {
            return new TreeSet<>(owned);
        }
    }

    static final class Run {
        final String topic;
        final Map<Integer, String> owners = new ConcurrentHashMap<>();
        final Set<String> consumed = ConcurrentHashMap.newKeySet();
        final List<String> violations = Collections.synchronizedList(new ArrayList<>());

        Run(String topic) {
            this.topic = topic;
        }
    }

    static void produce(String topic, int from, int to) throws Exception {
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = from; i < to; i++) {
                acks.add(producer.send(new ProducerRecord<>(topic, "key-" + i, "v" + i)));
            }
            for (Future<RecordMetadata> f : acks) {
                f.get();
            }
        }
    }

    static void waitFor(BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("timed out waiting");
            }
            Thread.sleep(50);
        }
    }

    static String sizes(Member... ms) {
        List<Integer> s = new ArrayList<>();
        for (Member m : ms) {
            s.add(m.owned.size());
        }
        return s.toString();
    }

    static boolean balanced(int each, Member... ms) {
        int total = 0;
        for (Member m : ms) {
            if (m.owned.size() != each) {
                return false;
            }
            total += m.owned.size();
        }
        return total == 6;
    }

    /**
     * 600 records on 6 partitions through a group whose membership changes: A alone, then B joins,
     * then C joins, then B leaves (static: B restarts under the same instance id instead). Each
     * step waits until the assignment is the balanced one. Checks every record was consumed and
     * no partition was owned by two members at once, and reports what the assignor moved.
     */
    static String groupRun(Admin admin, String group, Class<?> assignor, boolean isStatic) throws Exception {
        Run st = new Run(group);
        List<String> steps = new ArrayList<>();
        produce(group, 0, 300);
        Member a = new Member("A", group, assignor, isStatic ? "static-a" : null, st);
        waitFor(() -> balanced(6, a));
        Member b = new Member("B", group, assignor, isStatic ? "static-b" : null, st);
        waitFor(() -> balanced(3, a, b));
        steps.add("A+B " + sizes(a, b));
        produce(group, 300, 450);
        int aRevokedBefore = a.revokedPartitions.get();
        int bRevokedBefore = b.revokedPartitions.get();
        Member c = new Member("C", group, assignor, isStatic ? "static-c" : null, st);
        waitFor(() -> balanced(2, a, b, c));
        // Let any follow-up rebalance (cooperative's second round) finish before counting.
        waitFor(() -> describeState(admin, group) == GroupState.STABLE);
        steps.add("A+B+C " + sizes(a, b, c) + " revoked-on-C-join="
                + (a.revokedPartitions.get() - aRevokedBefore + b.revokedPartitions.get() - bRevokedBefore));
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        steps.add("describe: state=" + d.groupState() + " members=" + d.members().size() + " assignor="
                + d.partitionAssignor() + " static=" + d.members().stream().filter(m -> m.groupInstanceId().isPresent()).count());
        if (isStatic) {
            // B goes away and comes back under the same instance id within its session: Kafka
            // hands B its partitions back without a rebalance (A and C see no callback).
            TreeSet<Integer> bHad = b.ownedNow();
            int aCalls = a.assignedCalls.get();
            int cCalls = c.assignedCalls.get();
            b.stopAndJoin();
            Member b2 = new Member("B", group, assignor, "static-b", st);
            waitFor(() -> balanced(2, a, b2, c));
            produce(group, 450, 600);
            waitFor(() -> st.consumed.size() >= 600);
            steps.add("B restarted: same partitions=" + bHad.equals(b2.ownedNow()) + " rebalances seen by A and C="
                    + (a.assignedCalls.get() - aCalls + c.assignedCalls.get() - cCalls));
            b2.stopAndJoin();
        } else {
            b.stopAndJoin();
            waitFor(() -> balanced(3, a, c));
            steps.add("B left: A+C " + sizes(a, c));
            produce(group, 450, 600);
            waitFor(() -> st.consumed.size() >= 600);
        }
        a.stopAndJoin();
        c.stopAndJoin();
        for (Member m : List.of(a, b, c)) {
            if (m.failure != null) {
                st.violations.add(m.name + " failed: " + m.failure);
            }
        }
        return "consumed=" + st.consumed.size() + "/600 violations=" + st.violations + " | " + String.join(" | ", steps);
    }

    static GroupState describeState(Admin admin, String group) {
        try {
            return admin.describeConsumerGroups(List.of(group)).all().get().get(group).groupState();
        } catch (Exception e) {
            return GroupState.UNKNOWN;
        }
    }

    static String describeGroup(Admin admin, String group) throws Exception {
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        return "state=" + d.groupState() + " members=" + d.members().size() + " simple=" + d.isSimpleConsumerGroup()
                + " type=" + d.type();
    }

    static String groupOffsets(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        TreeMap<Integer, Long> byPartition = new TreeMap<>();
        m.forEach((tp, o) -> byPartition.put(tp.partition(), o == null ? null : o.offset()));
        long total = byPartition.values().stream().mapToLong(Long::longValue).sum();
        return "partitions=" + byPartition.size() + " total=" + total + " " + byPartition;
    }

    static String alterGroupOffsets(Admin admin, String group) throws Exception {
        admin.alterConsumerGroupOffsets(group, Map.of(new TopicPartition(group, 0), new OffsetAndMetadata(5, "rewound"))).all().get();
        OffsetAndMetadata o = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()
                .get(new TopicPartition(group, 0));
        return "partition 0 now at " + o.offset() + " metadata=" + o.metadata();
    }

    static String deleteGroup(Admin admin, String group) throws Exception {
        admin.deleteConsumerGroups(List.of(group)).all().get();
        Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        return "deleted; offsets left=" + m.size();
    }

    static String describeTopicConfig(Admin admin, String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config c = admin.describeConfigs(List.of(r)).all().get().get(r);
        return "cleanup.policy=" + c.get("cleanup.policy").value() + " retention.ms=" + c.get("retention.ms").value();
    }

    static String describeBrokerConfig(Admin admin) throws Exception {
        String id = admin.describeCluster().nodes().get().iterator().next().idString();
        ConfigResource r = new ConfigResource(ConfigResource.Type.BROKER, id);
        Config c = admin.describeConfigs(List.of(r)).all().get().get(r);
        return "entries>0=" + !c.entries().isEmpty();
    }

    static String alterTopicConfig(Admin admin) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, "idem");
        admin.incrementalAlterConfigs(Map.of(r, List.of(new AlterConfigOp(
                new ConfigEntry("retention.ms", "86400000"), AlterConfigOp.OpType.SET))))
                .all().get();
        Config c = admin.describeConfigs(List.of(r)).all().get().get(r);
        return "retention.ms=" + c.get("retention.ms").value();
    }

    /**
     * evident's expected-version header: the first append expects no stream, the second expects
     * version 0 (the first event), the third again expects 0 while the stream is at 1. evident
     * refuses the third with INVALID_RECORD naming the stream's version; Kafka has no such header
     * and appends all three.
     */
    static String expectedVersion() throws Exception {
        List<String> out = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps())) {
            String[] expected = {"no_stream", "0", "0"};
            for (int i = 0; i < expected.length; i++) {
                ProducerRecord<String, String> rec = new ProducerRecord<>("ledger", "acct-1", "deposit " + i);
                rec.headers().add(new RecordHeader("evident-expected-version", expected[i].getBytes(StandardCharsets.UTF_8)));
                try {
                    RecordMetadata m = producer.send(rec).get(30, TimeUnit.SECONDS);
                    out.add("expect " + expected[i] + ": appended at " + m.offset());
                } catch (ExecutionException e) {
                    Throwable t = e.getCause();
                    out.add("expect " + expected[i] + ": " + t.getClass().getSimpleName() + " names version 1="
                            + String.valueOf(t.getMessage()).contains("stream is at 1"));
                    System.err.println("expected-version refusal: " + t);
                }
            }
        }
        return String.join("; ", out);
    }
}

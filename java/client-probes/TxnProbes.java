// Kafka transactions with the Java client 4.x (issue 14): what a JVM application relying on
// exactly-once does with kafka-clients' transactional producer and read_committed consumer, run
// against one server and summed up as one line per probe, so that the Rust test (crates/
// evident-server/tests/kafka_java_transactions.rs) can run the same program against evident and
// against Apache Kafka in the same run and compare the lines. Why a summary and not raw output:
// producer ids, epochs, member ids and times are each server's own; what must be the same is what
// a program can rely on (which records a read_committed reader sees and where it stops, the
// offsets records and markers take, which exception the client raises, the offsets a group holds).
//
//   TxnProbes probes BOOTSTRAP RESULTS.jsonl
//       the probes; each result is one JSON line {"name", "result", "millis"}, flushed as soon as
//       the probe ends, so that a hang still leaves the earlier results. A probe that throws
//       records "EXCEPTION <class>: <message>" and the next probe runs.
//   TxnProbes tv1 BOOTSTRAP
//       sets Apache Kafka's transaction.version feature to 1 (Kafka 4 clusters start at 2), the
//       protocol evident serves, so that both servers are compared on the same protocol (with 2
//       the Java client adds partitions implicitly and bumps the epoch at every transaction's
//       end); prints the levels before and after as one JSON line.
//   TxnProbes copier-input BOOTSTRAP IN OUT PARTITIONS PER_PARTITION
//       creates IN and OUT and fills IN (values "p<partition>-<i>") with the idempotent producer,
//       for Apache Kafka's TransactionalMessageCopier; prints one JSON line.
//   TxnProbes copier-verify BOOTSTRAP IN OUT PARTITIONS GROUP
//       reads IN and OUT (read_committed, and OUT read_uncommitted) and the copier's committed
//       offsets; prints one JSON line: whether OUT holds each input record exactly once, in order.

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;

public final class TxnProbes {
    static String bootstrap;
    static Writer results;
    static final ObjectMapper JSON = new ObjectMapper();
    /** The longest a probe waits for records, a group or a transaction's end. */
    static final long WAIT_MS = 60_000;
    /**
     * Records carry explicit timestamps from here on, printed relative to it: half an hour ahead,
     * so that every record is later than every transaction marker (a marker carries the broker's
     * clock) and offsetsForTimes never lands on one; within Kafka's 1 h
     * message.timestamp.after.max.ms.
     */
    static final long BASE_TS = (System.currentTimeMillis() / 1000 + 1800) * 1000;

    interface Probe {
        String run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "";
        if (mode.equals("probes") && args.length == 3) {
            bootstrap = args[1];
            results = new OutputStreamWriter(new FileOutputStream(args[2]), StandardCharsets.UTF_8);
            probes();
            results.close();
        } else if (mode.equals("tv1") && args.length == 2) {
            bootstrap = args[1];
            System.out.println(transactionVersion1());
        } else if (mode.equals("copier-input") && args.length == 6) {
            bootstrap = args[1];
            System.out.println(copierInput(args[2], args[3], Integer.parseInt(args[4]), Integer.parseInt(args[5])));
        } else if (mode.equals("copier-verify") && args.length == 6) {
            bootstrap = args[1];
            System.out.println(copierVerify(args[2], args[3], Integer.parseInt(args[4]), args[5]));
        } else {
            System.err.println("usage: TxnProbes probes BOOTSTRAP RESULTS.jsonl\n"
                    + "       TxnProbes tv1 BOOTSTRAP\n"
                    + "       TxnProbes copier-input BOOTSTRAP IN OUT PARTITIONS PER_PARTITION\n"
                    + "       TxnProbes copier-verify BOOTSTRAP IN OUT PARTITIONS GROUP");
            System.exit(2);
        }
    }

    static void probes() throws Exception {
        try (Admin admin = Admin.create(adminProps())) {
            probe("admin createTopics", () -> createTopics(admin, Map.of("txn-a", 3, "txn-b", 3, "ctp-in", 3,
                    "ctp-out", 3, "fence", 1, "expire", 1, "misc", 1)));
            probe("commit and abort: 6 transactions over 2 topics x 3 partitions", TxnProbes::commitAndAbort);
            probe("an open transaction: read_committed stops at the last stable offset", TxnProbes::openTransaction);
            probe("consume-transform-produce: sendOffsetsToTransaction(groupMetadata), one round aborted",
                    TxnProbes::consumeTransformProduce);
            probe("zombie fencing: a second producer with the same transactional.id", TxnProbes::zombieFencing);
            probe("transaction timeout: the coordinator aborts the open transaction", () -> transactionTimeout(admin));
            probe("sendOffsetsToTransaction: a stale generation, a member that left, never joined",
                    TxnProbes::groupFencing);
            probe("OffsetFetch while a transaction holds the group's offsets (require_stable)", TxnProbes::requireStable);
            probe("transaction.timeout.ms above the broker's maximum", TxnProbes::timeoutTooLong);
        }
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

    // ---- clients -------------------------------------------------------------------------

    static Properties adminProps() {
        Properties p = Clients.admin(bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return p;
    }

    static KafkaProducer<String, String> txnProducer(String id, Map<String, String> extra) {
        Properties p = Clients.idempotentProducer(bootstrap, 5);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        p.putAll(extra);
        return new KafkaProducer<>(p);
    }

    static KafkaProducer<String, String> txnProducer(String id) {
        return txnProducer(id, Map.of());
    }

    static KafkaConsumer<String, String> consumer(String isolation, String group) {
        Properties p = Clients.manualConsumer(bootstrap, group);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        return new KafkaConsumer<>(p);
    }

    static List<TopicPartition> partitions(String topic, int n) {
        List<TopicPartition> l = new ArrayList<>();
        for (int p = 0; p < n; p++) {
            l.add(new TopicPartition(topic, p));
        }
        return l;
    }

    /**
     * A record key of `partition`. evident keeps each key's records (an entity stream) in one
     * partition and refuses a key sent to another, so the probes, which choose partitions
     * explicitly, never share a key between partitions.
     */
    static String key(int partition, int i) {
        return "p" + partition + "-k" + i;
    }

    /** How a failed call ended: the exception's class (and its cause's), never its message (ids). */
    static String err(Throwable e) {
        Throwable t = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
        String s = t.getClass().getSimpleName();
        if (t.getCause() != null && t.getCause() != t) {
            s += "(" + t.getCause().getClass().getSimpleName() + ")";
        }
        // These two carry the client's own text for the error code (which member check failed,
        // what InitProducerId answered), no ids: worth comparing.
        if (t instanceof CommitFailedException || t.getClass() == KafkaException.class) {
            s += ": " + t.getMessage();
        }
        return s;
    }

    /** "ok" or how the call failed. */
    static String attempt(Callable<?> c) {
        try {
            c.call();
            return "ok";
        } catch (Exception e) {
            System.err.println("expected failure: " + e);
            return err(e);
        }
    }

    static void waitFor(String what, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("timed out waiting for " + what);
            }
            Thread.sleep(50);
        }
    }

    static String createTopics(Admin admin, Map<String, Integer> topics) throws Exception {
        List<NewTopic> l = new ArrayList<>();
        topics.forEach((t, n) -> l.add(new NewTopic(t, n, (short) 1)));
        admin.createTopics(l).all().get();
        // Kafka's metadata reaches its broker a moment after a topic is created; wait for it so
        // that the probes after this one do not race it (evident's is immediate).
        waitFor("the topics' metadata", () -> {
            try {
                return admin.describeTopics(topics.keySet()).allTopicNames().get().size() == topics.size();
            } catch (Exception e) {
                return false;
            }
        });
        return "created " + topics.size() + " topics";
    }

    /**
     * Every record of `parts` from the beginning up to the end the consumer's isolation level
     * sees (the last stable offset under read_committed, the high watermark under
     * read_uncommitted), by partition; also checks the reader's position lands exactly there.
     */
    static Map<TopicPartition, List<ConsumerRecord<String, String>>> readAll(List<TopicPartition> parts, String isolation)
            throws Exception {
        Map<TopicPartition, List<ConsumerRecord<String, String>>> got = new TreeMap<>(
                (a, b) -> a.toString().compareTo(b.toString()));
        try (KafkaConsumer<String, String> c = consumer(isolation, null)) {
            c.assign(parts);
            c.seekToBeginning(parts);
            Map<TopicPartition, Long> end = c.endOffsets(parts);
            for (TopicPartition tp : parts) {
                got.put(tp, new ArrayList<>());
            }
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (true) {
                boolean done = true;
                for (TopicPartition tp : parts) {
                    done &= c.position(tp) >= end.get(tp);
                }
                if (done) {
                    break;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("reading " + parts + " (" + isolation + ") did not reach " + end);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100))) {
                    got.get(new TopicPartition(r.topic(), r.partition())).add(r);
                }
            }
            for (TopicPartition tp : parts) {
                if (c.position(tp) != end.get(tp)) {
                    throw new IllegalStateException(isolation + " reader of " + tp + " at " + c.position(tp)
                            + ", past its end " + end.get(tp));
                }
            }
        }
        return got;
    }

    static List<String> values(List<ConsumerRecord<String, String>> records) {
        List<String> l = new ArrayList<>();
        records.forEach(r -> l.add(r.value()));
        return l;
    }

    static List<Long> offsets(List<ConsumerRecord<String, String>> records) {
        List<Long> l = new ArrayList<>();
        records.forEach(r -> l.add(r.offset()));
        return l;
    }

    static String ends(List<TopicPartition> parts, String isolation) {
        try (KafkaConsumer<String, String> c = consumer(isolation, null)) {
            Map<TopicPartition, Long> e = c.endOffsets(parts);
            List<Long> l = new ArrayList<>();
            parts.forEach(tp -> l.add(e.get(tp)));
            return l.toString();
        }
    }

    /** offsetsForTimes under `isolation`: "offset@+ts" (relative to BASE_TS), or "none". */
    static String forTime(TopicPartition tp, long ts, String isolation) {
        try (KafkaConsumer<String, String> c = consumer(isolation, null)) {
            OffsetAndTimestamp o = c.offsetsForTimes(Map.of(tp, ts)).get(tp);
            return o == null ? "none" : o.offset() + "@+" + (o.timestamp() - BASE_TS);
        }
    }

    // ---- the probes ---------------------------------------------------------------------

    /**
     * Six transactions of one producer, committed or aborted as OUTCOMES says, each writing 2-4
     * records to every partition of txn-a and txn-b (flushed before an abort, so the aborted
     * records are in the log). read_committed must return exactly the committed records in the
     * order sent, read_uncommitted every record; the control records (markers) are never
     * returned but take offsets, which the line shows for txn-a-0.
     */
    static final boolean[] OUTCOMES = {true, false, true, true, false, true};

    static String commitAndAbort() throws Exception {
        List<TopicPartition> parts = new ArrayList<>(partitions("txn-a", 3));
        parts.addAll(partitions("txn-b", 3));
        Map<TopicPartition, List<String>> committed = new HashMap<>();
        Map<TopicPartition, List<String>> sent = new HashMap<>();
        try (KafkaProducer<String, String> p = txnProducer("txn-probe")) {
            p.initTransactions();
            for (int t = 0; t < OUTCOMES.length; t++) {
                p.beginTransaction();
                for (TopicPartition tp : parts) {
                    int n = 2 + (t + tp.partition()) % 3;
                    for (int i = 0; i < n; i++) {
                        String v = "t" + t + ":" + tp + ":" + i;
                        p.send(new ProducerRecord<>(tp.topic(), tp.partition(), BASE_TS + t * 1000 + i, key(tp.partition(), i), v));
                        sent.computeIfAbsent(tp, k -> new ArrayList<>()).add(v);
                        if (OUTCOMES[t]) {
                            committed.computeIfAbsent(tp, k -> new ArrayList<>()).add(v);
                        }
                    }
                }
                if (OUTCOMES[t]) {
                    p.commitTransaction();
                } else {
                    p.flush();
                    p.abortTransaction();
                }
            }
        }
        Map<TopicPartition, List<ConsumerRecord<String, String>>> rc = readAll(parts, "read_committed");
        Map<TopicPartition, List<ConsumerRecord<String, String>>> ru = readAll(parts, "read_uncommitted");
        boolean asCommitted = true;
        boolean asSent = true;
        int rcN = 0;
        int ruN = 0;
        for (TopicPartition tp : parts) {
            asCommitted &= values(rc.get(tp)).equals(committed.get(tp));
            asSent &= values(ru.get(tp)).equals(sent.get(tp));
            rcN += rc.get(tp).size();
            ruN += ru.get(tp).size();
        }
        TopicPartition a0 = new TopicPartition("txn-a", 0);
        return "read_committed as committed=" + asCommitted + " (" + rcN + ") read_uncommitted as sent=" + asSent + " ("
                + ruN + ") | ends read_committed=" + ends(parts, "read_committed") + " read_uncommitted="
                + ends(parts, "read_uncommitted") + " | txn-a-0 offsets read_committed=" + offsets(rc.get(a0))
                + " read_uncommitted=" + offsets(ru.get(a0));
    }

    /**
     * A transaction left open (its records flushed) on txn-a: read_committed's end offsets are
     * the last stable offsets (where the open transaction starts), a read_committed reader stops
     * there, offsetsForTimes finds the open records only under read_uncommitted; after the commit
     * both ends agree and the records are read. offsetsForTimes on a committed and on an aborted
     * transaction's first timestamp too (Kafka does not skip aborted records there).
     */
    static String openTransaction() throws Exception {
        List<TopicPartition> parts = partitions("txn-a", 3);
        TopicPartition a0 = parts.get(0);
        long openTs = BASE_TS + 100_000;
        List<String> out = new ArrayList<>();
        try (KafkaProducer<String, String> p = txnProducer("txn-open")) {
            p.initTransactions();
            p.beginTransaction();
            for (TopicPartition tp : parts) {
                for (int i = 0; i < 2; i++) {
                    p.send(new ProducerRecord<>(tp.topic(), tp.partition(), openTs + i, key(tp.partition(), 100 + i), "open:" + tp + ":" + i));
                }
            }
            p.flush();
            out.add("open: ends read_committed=" + ends(parts, "read_committed") + " read_uncommitted="
                    + ends(parts, "read_uncommitted"));
            int openSeen = 0;
            int read = 0;
            for (List<ConsumerRecord<String, String>> l : readAll(parts, "read_committed").values()) {
                read += l.size();
                openSeen += (int) l.stream().filter(r -> r.value().startsWith("open:")).count();
            }
            out.add("read_committed read " + read + " (open records " + openSeen + ")");
            out.add("offsetsForTimes(open) read_committed=" + forTime(a0, openTs, "read_committed") + " read_uncommitted="
                    + forTime(a0, openTs, "read_uncommitted"));
            out.add("offsetsForTimes(t1, aborted) read_committed=" + forTime(a0, BASE_TS + 1000, "read_committed")
                    + " read_uncommitted=" + forTime(a0, BASE_TS + 1000, "read_uncommitted"));
            out.add("offsetsForTimes(t2) read_committed=" + forTime(a0, BASE_TS + 2000, "read_committed"));
            p.commitTransaction();
        }
        String rcEnds = ends(parts, "read_committed");
        int openSeen = 0;
        for (List<ConsumerRecord<String, String>> l : readAll(parts, "read_committed").values()) {
            openSeen += (int) l.stream().filter(r -> r.value().startsWith("open:")).count();
        }
        out.add("committed: ends equal=" + rcEnds.equals(ends(parts, "read_uncommitted")) + " " + rcEnds
                + " open records read " + openSeen);
        return String.join(" | ", out);
    }

    /**
     * The exactly-once loop of a Java application: a read_committed consumer in a group (joined by
     * subscribe, so groupMetadata carries a real member id and generation) reads ctp-in (3 x 100
     * records), and each poll's records are copied to ctp-out in one transaction that also
     * commits the consumer's positions (sendOffsetsToTransaction with groupMetadata). The second
     * round is aborted (outputs flushed first): the group's committed offsets must stay those of
     * the first round, the consumer rewinds to them, and the output holds each input once, in
     * order, under read_committed; read_uncommitted also shows the aborted outputs.
     */
    static String consumeTransformProduce() throws Exception {
        int perPartition = 100;
        List<TopicPartition> in = partitions("ctp-in", 3);
        List<TopicPartition> outParts = partitions("ctp-out", 3);
        try (KafkaProducer<String, String> plain = new KafkaProducer<>(Clients.idempotentProducer(bootstrap, 5))) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (TopicPartition tp : in) {
                for (int i = 0; i < perPartition; i++) {
                    acks.add(plain.send(new ProducerRecord<>(tp.topic(), tp.partition(), key(tp.partition(), i), "in-" + tp.partition() + "-" + i)));
                }
            }
            for (Future<RecordMetadata> f : acks) {
                f.get();
            }
        }
        int total = perPartition * in.size();
        Properties cp = Clients.manualConsumer(bootstrap, "ctp-group");
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "40");
        int copied = 0;
        int rounds = 0;
        boolean aborted = false;
        String afterAbort = "?";
        Map<TopicPartition, Long> committedSoFar = new HashMap<>();
        TreeMap<Integer, Long> groupOffsets = new TreeMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp);
                KafkaProducer<String, String> p = txnProducer("ctp-txn")) {
            p.initTransactions();
            c.subscribe(List.of("ctp-in"));
            long deadline = System.currentTimeMillis() + WAIT_MS;
            while (copied < total) {
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("copied only " + copied + " of " + total);
                }
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    continue;
                }
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> positions = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    p.send(new ProducerRecord<>("ctp-out", r.partition(), r.key(), "out:" + r.value()));
                    positions.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(positions, c.groupMetadata());
                rounds++;
                if (rounds == 2 && !aborted) {
                    p.flush();
                    p.abortTransaction();
                    aborted = true;
                    // committed() of a read_committed consumer asks for stable offsets: what the
                    // group holds once no transaction is pending on them.
                    Map<TopicPartition, OffsetAndMetadata> now = c.committed(new HashSet<>(in), Duration.ofSeconds(30));
                    Map<TopicPartition, Long> held = new HashMap<>();
                    now.forEach((tp, o) -> {
                        if (o != null) {
                            held.put(tp, o.offset());
                        }
                    });
                    afterAbort = "offsets unchanged by the abort=" + held.equals(committedSoFar);
                    for (TopicPartition tp : c.assignment()) {
                        Long at = committedSoFar.get(tp);
                        if (at == null) {
                            c.seekToBeginning(List.of(tp));
                        } else {
                            c.seek(tp, at);
                        }
                    }
                    continue;
                }
                p.commitTransaction();
                copied += records.count();
                positions.forEach((tp, o) -> committedSoFar.put(tp, o.offset()));
            }
            // Stable offsets (see above): Kafka applies a commit's offsets with its markers, a
            // moment after commitTransaction returns.
            c.committed(new HashSet<>(in), Duration.ofSeconds(30))
                    .forEach((tp, o) -> groupOffsets.put(tp.partition(), o == null ? null : o.offset()));
        }
        Map<TopicPartition, List<ConsumerRecord<String, String>>> rc = readAll(outParts, "read_committed");
        Map<TopicPartition, List<ConsumerRecord<String, String>>> ru = readAll(outParts, "read_uncommitted");
        boolean eachOnceInOrder = true;
        int rcN = 0;
        int ruN = 0;
        for (TopicPartition tp : outParts) {
            List<String> want = new ArrayList<>();
            for (int i = 0; i < perPartition; i++) {
                want.add("out:in-" + tp.partition() + "-" + i);
            }
            eachOnceInOrder &= values(rc.get(tp)).equals(want);
            rcN += rc.get(tp).size();
            ruN += ru.get(tp).size();
        }
        return "input=" + total + " output read_committed=" + rcN + " each once in order=" + eachOnceInOrder
                + " aborted outputs seen by read_uncommitted=" + (ruN > rcN) + " | " + afterAbort
                + " | group offsets=" + groupOffsets + " input ends=" + ends(in, "read_uncommitted");
    }

    /**
     * Producer A (transactional.id zombie) writes in an open transaction; producer B with the
     * same id calls initTransactions, which fences A and aborts its transaction. A's next send
     * and its commit fail (the exceptions are the line), A's record is never read_committed, B's
     * transaction commits.
     */
    static String zombieFencing() throws Exception {
        TopicPartition tp = new TopicPartition("fence", 0);
        List<String> out = new ArrayList<>();
        try (KafkaProducer<String, String> a = txnProducer("zombie")) {
            a.initTransactions();
            a.beginTransaction();
            a.send(new ProducerRecord<>("fence", 0, BASE_TS, "k", "from-A-1")).get(30, TimeUnit.SECONDS);
            try (KafkaProducer<String, String> b = txnProducer("zombie")) {
                b.initTransactions();
                out.add("A's send after B's init: " + attempt(() -> a.send(
                        new ProducerRecord<>("fence", 0, BASE_TS + 1, "k", "from-A-2")).get(30, TimeUnit.SECONDS)));
                out.add("A's commit: " + attempt(() -> {
                    a.commitTransaction();
                    return null;
                }));
                b.beginTransaction();
                b.send(new ProducerRecord<>("fence", 0, BASE_TS + 2, "k", "from-B"));
                b.commitTransaction();
                out.add("B's commit: ok");
            }
        }
        List<ConsumerRecord<String, String>> rc = readAll(List.of(tp), "read_committed").get(tp);
        List<ConsumerRecord<String, String>> ru = readAll(List.of(tp), "read_uncommitted").get(tp);
        out.add("read_committed=" + values(rc) + " at " + offsets(rc) + " read_uncommitted=" + values(ru) + " at "
                + offsets(ru));
        return String.join(" | ", out);
    }

    static TransactionDescription describe(Admin admin, String id) throws Exception {
        return admin.describeTransactions(List.of(id)).all().get().get(id);
    }

    /**
     * A transaction left open past its transaction.timeout.ms (2 s): the coordinator aborts it
     * (seen in describeTransactions) with the producer's epoch bumped; the producer's commit then
     * fails, and what its abort and a next transaction do is the client's recovery (the line).
     */
    static String transactionTimeout(Admin admin) throws Exception {
        TopicPartition tp = new TopicPartition("expire", 0);
        List<String> out = new ArrayList<>();
        try (KafkaProducer<String, String> p = txnProducer("expiring", Map.of(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "2000"))) {
            p.initTransactions();
            p.beginTransaction();
            p.send(new ProducerRecord<>("expire", 0, BASE_TS, "k", "expired-1")).get(30, TimeUnit.SECONDS);
            TransactionDescription before = describe(admin, "expiring");
            out.add("open: state=" + before.state() + " timeout=" + before.transactionTimeoutMs() + " partitions="
                    + before.topicPartitions());
            // Kafka looks for expired transactions every 10 s
            // (transaction.abort.timed.out.transaction.cleanup.interval.ms), evident every second.
            waitFor("the coordinator to abort the expired transaction", () -> {
                try {
                    return describe(admin, "expiring").state() == TransactionState.COMPLETE_ABORT;
                } catch (Exception e) {
                    return false;
                }
            });
            TransactionDescription after = describe(admin, "expiring");
            out.add("expired: state=" + after.state() + " same producer id=" + (after.producerId() == before.producerId())
                    + " epoch +" + (after.producerEpoch() - before.producerEpoch()) + " partitions=" + after.topicPartitions());
            out.add("commit: " + attempt(() -> {
                p.commitTransaction();
                return null;
            }));
            out.add("abort: " + attempt(() -> {
                p.abortTransaction();
                return null;
            }));
            out.add("next transaction: " + attempt(() -> {
                p.beginTransaction();
                p.send(new ProducerRecord<>("expire", 0, BASE_TS + 1, "k", "after-expiry")).get(30, TimeUnit.SECONDS);
                p.commitTransaction();
                return null;
            }));
        }
        List<ConsumerRecord<String, String>> rc = readAll(List.of(tp), "read_committed").get(tp);
        List<ConsumerRecord<String, String>> ru = readAll(List.of(tp), "read_uncommitted").get(tp);
        out.add("read_committed=" + values(rc) + " at " + offsets(rc) + " read_uncommitted=" + values(ru) + " at "
                + offsets(ru));
        return String.join(" | ", out);
    }

    /**
     * The group side of fencing (KIP-447): a transaction's offsets are refused when the group
     * metadata they carry is not the group's current one, as a zombie's is. Consumer A joins group
     * fencing-g; B joins, so A's first metadata is a generation behind (a stale generation); B
     * leaves, so B's metadata names a member the group no longer has (an unknown member); a
     * consumer that never joined (assign mode: generation -1, no member id, what Kafka's own
     * copier sends without --group-mode) while A is a member. Each transaction is aborted after.
     * Then A's current metadata, committed.
     */
    static String groupFencing() throws Exception {
        String group = "fencing-g";
        TopicPartition tp = new TopicPartition("ctp-in", 0);
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> a = groupConsumer(group);
                KafkaConsumer<String, String> never = consumer("read_committed", group);
                KafkaProducer<String, String> p = txnProducer("fencing-txn")) {
            a.subscribe(List.of("ctp-in"));
            pollUntil(() -> a.assignment().size() == 3, a);
            ConsumerGroupMetadata first = a.groupMetadata();
            ConsumerGroupMetadata left;
            try (KafkaConsumer<String, String> b = groupConsumer(group)) {
                b.subscribe(List.of("ctp-in"));
                pollUntil(() -> a.assignment().size() + b.assignment().size() == 3 && !b.assignment().isEmpty()
                        && a.groupMetadata().generationId() > first.generationId()
                        && a.groupMetadata().generationId() == b.groupMetadata().generationId(), a, b);
                left = b.groupMetadata();
            }
            p.initTransactions();
            List<ConsumerGroupMetadata> wrong = List.of(first, left, never.groupMetadata());
            List<String> labels = List.of("stale generation", "member that left", "never joined");
            for (int i = 0; i < wrong.size(); i++) {
                ConsumerGroupMetadata m = wrong.get(i);
                long offset = 10 + i;
                p.beginTransaction();
                p.send(new ProducerRecord<>("misc", 0, "k", "fencing-" + i));
                String sent = attempt(() -> {
                    p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(offset)), m);
                    return null;
                });
                String ended = attempt(() -> {
                    p.abortTransaction();
                    return null;
                });
                out.add(labels.get(i) + ": " + sent + ", abort " + ended);
            }
            // A takes all three partitions back once B's leaving is rebalanced.
            pollUntil(() -> a.assignment().size() == 3 && a.groupMetadata().generationId() > left.generationId(), a);
            p.beginTransaction();
            p.send(new ProducerRecord<>("misc", 0, "k", "fencing-ok"));
            p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(42)), a.groupMetadata());
            p.commitTransaction();
            OffsetAndMetadata held = a.committed(Set.of(tp), Duration.ofSeconds(30)).get(tp);
            out.add("current metadata: committed, group holds " + (held == null ? "none" : held.offset()));
        }
        return String.join(" | ", out);
    }

    static KafkaConsumer<String, String> groupConsumer(String group) {
        Properties cp = Clients.manualConsumer(bootstrap, group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        // Nothing is read here: only the membership matters.
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "1");
        return new KafkaConsumer<>(cp);
    }

    /** Polls `consumers` in turn (their rebalances run in poll) until `cond` holds. */
    @SafeVarargs
    static void pollUntil(BooleanSupplier cond, KafkaConsumer<String, String>... consumers) {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("the group did not settle");
            }
            for (KafkaConsumer<String, String> c : consumers) {
                c.poll(Duration.ofMillis(50));
            }
        }
    }

    /**
     * KIP-447: while a transaction holds offsets for a group (sendOffsetsToTransaction, not yet
     * committed), a read_committed consumer's committed() asks for stable offsets
     * (OffsetFetch require_stable: kafka-clients sets it whatever the isolation level) and Kafka
     * answers UNSTABLE_OFFSET_COMMIT until the transaction ends, so the client retries until its
     * timeout (3 s here). Why it matters: a consumer that takes over the partitions must not
     * start from the offsets before a transaction that may still commit, or it copies its
     * records again. After the commit both readers get the transaction's offset.
     */
    static String requireStable() throws Exception {
        String group = "stable-g";
        TopicPartition tp = new TopicPartition("ctp-in", 1);
        List<String> out = new ArrayList<>();
        try (KafkaProducer<String, String> p = txnProducer("stable-txn");
                KafkaConsumer<String, String> rc = consumer("read_committed", group);
                KafkaConsumer<String, String> ru = consumer("read_uncommitted", group)) {
            p.initTransactions();
            p.beginTransaction();
            p.send(new ProducerRecord<>("misc", 0, "k", "stable"));
            p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(7)), rc.groupMetadata());
            p.flush();
            out.add("pending: read_committed " + committed(rc, tp, 3) + ", read_uncommitted " + committed(ru, tp, 3));
            p.commitTransaction();
            out.add("committed: read_committed " + committed(rc, tp, 30) + ", read_uncommitted " + committed(ru, tp, 30));
        }
        return String.join(" | ", out);
    }

    static String committed(KafkaConsumer<String, String> c, TopicPartition tp, int seconds) {
        try {
            OffsetAndMetadata o = c.committed(Set.of(tp), Duration.ofSeconds(seconds)).get(tp);
            return o == null ? "none" : Long.toString(o.offset());
        } catch (Exception e) {
            return err(e);
        }
    }

    /** InitProducerId with transaction.timeout.ms one above Kafka's default maximum (900,000). */
    static String timeoutTooLong() throws Exception {
        try (KafkaProducer<String, String> p = txnProducer("too-long",
                Map.of(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "900001"))) {
            return "initTransactions: " + attempt(() -> {
                p.initTransactions();
                return null;
            });
        }
    }

    static short transactionVersion(Admin admin) throws Exception {
        FinalizedVersionRange r = admin.describeFeatures().featureMetadata().get().finalizedFeatures()
                .get("transaction.version");
        return r == null ? 0 : r.maxVersionLevel();
    }

    static String transactionVersion1() throws Exception {
        try (Admin admin = Admin.create(adminProps())) {
            short before = transactionVersion(admin);
            if (before > 1) {
                admin.updateFeatures(Map.of("transaction.version",
                        new FeatureUpdate((short) 1, FeatureUpdate.UpgradeType.SAFE_DOWNGRADE)),
                        new UpdateFeaturesOptions()).all().get();
                // The broker learns the level from the metadata log a moment later; clients read
                // it from the broker (ApiVersions), as describeFeatures does.
                waitFor("transaction.version 1", () -> {
                    try {
                        return transactionVersion(admin) == 1;
                    } catch (Exception e) {
                        return false;
                    }
                });
            }
            ObjectNode o = JSON.createObjectNode();
            o.put("before", before);
            o.put("after", transactionVersion(admin));
            return JSON.writeValueAsString(o);
        }
    }

    // ---- Apache Kafka's TransactionalMessageCopier ---------------------------------------

    static String copierInput(String in, String out, int partitions, int perPartition) throws Exception {
        try (Admin admin = Admin.create(adminProps())) {
            createTopics(admin, Map.of(in, partitions, out, partitions));
        }
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Clients.idempotentProducer(bootstrap, 5))) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < perPartition; i++) {
                    acks.add(p.send(new ProducerRecord<>(in, part, key(part, i % 7), "p" + part + "-" + i)));
                }
            }
            for (Future<RecordMetadata> f : acks) {
                f.get();
            }
            ObjectNode o = JSON.createObjectNode();
            o.put("input", acks.size());
            return JSON.writeValueAsString(o);
        }
    }

    /**
     * What the copier left: the copier writes each input record to the same partition of OUT, so
     * exactly-once is OUT's partition p, read_committed, equal to IN's partition p (each record
     * once, in order); also the multiset comparison (missing and duplicated values), how many
     * aborted records read_uncommitted shows (random aborts happened), and the group's stable
     * committed offsets against IN's ends.
     */
    static String copierVerify(String in, String out, int partitions, String group) throws Exception {
        List<TopicPartition> inParts = partitions(in, partitions);
        List<TopicPartition> outParts = partitions(out, partitions);
        Map<TopicPartition, List<ConsumerRecord<String, String>>> input = readAll(inParts, "read_committed");
        Map<TopicPartition, List<ConsumerRecord<String, String>>> rc = readAll(outParts, "read_committed");
        Map<TopicPartition, List<ConsumerRecord<String, String>>> ru = readAll(outParts, "read_uncommitted");
        Map<String, Integer> counts = new HashMap<>();
        int inN = 0;
        int rcN = 0;
        int ruN = 0;
        boolean inOrder = true;
        for (int p = 0; p < partitions; p++) {
            List<String> want = values(input.get(inParts.get(p)));
            List<String> got = values(rc.get(outParts.get(p)));
            inOrder &= want.equals(got);
            inN += want.size();
            rcN += got.size();
            ruN += ru.get(outParts.get(p)).size();
            for (String v : want) {
                counts.merge(v, 1, Integer::sum);
            }
            for (String v : got) {
                counts.merge(v, -1, Integer::sum);
            }
        }
        int missing = 0;
        int extra = 0;
        for (int c : counts.values()) {
            if (c > 0) {
                missing += c;
            } else {
                extra -= c;
            }
        }
        ObjectNode o = JSON.createObjectNode();
        o.put("input", inN);
        o.put("output_committed", rcN);
        o.put("missing", missing);
        o.put("duplicated", extra);
        o.put("in_order", inOrder);
        o.put("output_uncommitted", ruN);
        Map<TopicPartition, Long> inEnds;
        Map<TopicPartition, OffsetAndMetadata> held;
        try (KafkaConsumer<String, String> c = consumer("read_committed", group)) {
            inEnds = c.endOffsets(inParts);
            held = c.committed(new HashSet<>(inParts), Duration.ofSeconds(30));
        }
        boolean offsetsAtEnd = true;
        for (TopicPartition tp : inParts) {
            OffsetAndMetadata h = held.get(tp);
            offsetsAtEnd &= h != null && h.offset() == inEnds.get(tp);
        }
        o.put("group_offsets_at_input_end", offsetsAtEnd);
        return JSON.writeValueAsString(o);
    }
}

// Runs many of Apache Kafka's command-line tools in one JVM, one after the other, each with its own
// stdin, stdout and stderr, and records how each ended. Why: a JVM takes 1-3 s to start and load
// Kafka's classes on a small machine, and the conformance suite (crates/evident-server/tests/
// kafka_jvm_tools.rs) runs dozens of tools against two servers; in one JVM the classes load once.
//
// The tools are called unmodified through their `main`: Kafka's tools end through
// org.apache.kafka.common.utils.internals.Exit (Kafka 4.4; utils.Exit before), whose exit and halt procedures are replaced here by one that
// unwinds `main` with the status instead of ending the JVM. The FIRST exit call is the tool's
// status (in a real JVM it ends the process there); what the tool prints after it (some tools catch
// Throwable around their own exit call and print it) is dropped. Shutdown hooks a tool adds (through
// Exit.addShutdownHook or Runtime.addShutdownHook: the verifiable producer flushes and prints its
// summary in one) are taken back and run when the tool ends, as the JVM would run them at exit,
// and their output is the tool's. Seeing Runtime's hooks needs
// `--add-opens java.base/java.lang=ALL-UNNAMED` (java.lang.ApplicationShutdownHooks is private).
//
// Usage: java -cp <kafka jars>:<this> ToolRunner PROBES.json RESULTS.jsonl
// PROBES.json is an array of {"name", "main", "args": [..], "stdin": "..", "timeout_ms": n}; each
// result is one JSON line {"name", "code", "stdout", "stderr", "millis", "timed_out"}, written (and
// flushed) as soon as its tool ends, so that a hang still leaves the earlier results.

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.Writer;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.common.utils.internals.Exit;

public final class ToolRunner {
    /** Thrown by the replaced exit procedure: carries the status a tool asked to exit with. */
    static final class ExitCalled extends RuntimeException {
        final int status;

        ExitCalled(int status) {
            super("exit " + status, null, false, false);
            this.status = status;
        }
    }

    /** The current tool's first exit status, and how much it had printed by then. */
    static volatile Integer firstExit;
    static volatile int outAtExit;
    static volatile int errAtExit;
    static volatile ByteArrayOutputStream currentOut;
    static volatile ByteArrayOutputStream currentErr;
    /** The shutdown hooks the current tool added. */
    static final List<Runnable> hooks = new ArrayList<>();

    static void exitCalled(int status, String message) {
        synchronized (ToolRunner.class) {
            if (firstExit == null) {
                System.out.flush();
                System.err.flush();
                firstExit = status;
                outAtExit = currentOut.size();
                errAtExit = currentErr.size();
            }
        }
        throw new ExitCalled(status);
    }

    /** The JVM's registered shutdown hooks (empty when java.lang is not opened to the runner). */
    @SuppressWarnings("unchecked")
    static Set<Thread> runtimeHooks() {
        try {
            Field field = Class.forName("java.lang.ApplicationShutdownHooks").getDeclaredField("hooks");
            field.setAccessible(true);
            Object hooks = field.get(null);
            synchronized (Class.forName("java.lang.ApplicationShutdownHooks")) {
                return hooks == null ? new HashSet<>() : new HashSet<>(((Map<Thread, Thread>) hooks).keySet());
            }
        } catch (ReflectiveOperationException | RuntimeException e) {
            return new HashSet<>();
        }
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length != 2) {
            System.err.println("usage: ToolRunner PROBES.json RESULTS.jsonl");
            System.exit(2);
        }
        ObjectMapper json = new ObjectMapper();
        JsonNode probes = json.readTree(Files.readAllBytes(Paths.get(argv[0])));
        Exit.setExitProcedure(ToolRunner::exitCalled);
        Exit.setHaltProcedure(ToolRunner::exitCalled);
        Exit.setShutdownHookAdder((hookName, hook) -> {
            synchronized (ToolRunner.class) {
                hooks.add(hook);
            }
        });
        PrintStream realOut = System.out;
        PrintStream realErr = System.err;
        InputStream realIn = System.in;
        try (Writer results = new OutputStreamWriter(new FileOutputStream(argv[1]), StandardCharsets.UTF_8)) {
            for (JsonNode probe : probes) {
                ObjectNode result = run(probe);
                System.setOut(realOut);
                System.setErr(realErr);
                System.setIn(realIn);
                results.write(json.writeValueAsString(result));
                results.write('\n');
                results.flush();
            }
        }
        // A tool may leave non-daemon threads behind (a stuck client after a timeout): end anyway.
        System.exit(0);
    }

    static ObjectNode run(JsonNode probe) throws Exception {
        String name = probe.path("name").asText();
        List<String> args = new ArrayList<>();
        probe.path("args").forEach(a -> args.add(a.asText()));
        byte[] stdin = probe.path("stdin").asText("").getBytes(StandardCharsets.UTF_8);
        long timeoutMs = probe.path("timeout_ms").asLong(60_000);
        Method main = Class.forName(probe.path("main").asText()).getMethod("main", String[].class);

        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        synchronized (ToolRunner.class) {
            firstExit = null;
            hooks.clear();
            currentOut = out;
            currentErr = err;
        }
        System.setIn(new ByteArrayInputStream(stdin));
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));

        AtomicInteger code = new AtomicInteger(Integer.MIN_VALUE);
        Thread tool = new Thread(() -> {
            try {
                main.invoke(null, (Object) args.toArray(new String[0]));
                code.set(0);
            } catch (InvocationTargetException e) {
                Throwable cause = e.getCause();
                if (cause instanceof ExitCalled) {
                    code.set(((ExitCalled) cause).status);
                } else {
                    // What the JVM does with an uncaught exception in main: print it, exit 1.
                    cause.printStackTrace();
                    code.set(1);
                }
            } catch (ExitCalled e) {
                code.set(e.status);
            } catch (Throwable e) {
                e.printStackTrace();
                code.set(1);
            }
        }, "tool-" + name);
        // A tool's non-daemon helper threads must not keep the runner alive after its last probe.
        tool.setDaemon(true);
        Set<Thread> before = runtimeHooks();
        long started = System.nanoTime();
        tool.start();
        tool.join(timeoutMs);
        boolean timedOut = tool.isAlive();
        if (timedOut) {
            tool.interrupt();
            tool.join(5_000);
        }
        // The JVM would now run the shutdown hooks: so here, within what is left of the bound.
        // Output a hook prints after an exit call still counts (it is the JVM's exit).
        List<Runnable> toRun;
        synchronized (ToolRunner.class) {
            toRun = new ArrayList<>(hooks);
            hooks.clear();
        }
        for (Thread hook : runtimeHooks()) {
            if (!before.contains(hook) && Runtime.getRuntime().removeShutdownHook(hook)) {
                toRun.add(hook::run);
            }
        }
        int outBeforeHooks = out.size();
        int errBeforeHooks = err.size();
        if (!timedOut && !toRun.isEmpty()) {
            Thread hookThread = new Thread(() -> toRun.forEach(Runnable::run), "hooks-" + name);
            hookThread.setDaemon(true);
            hookThread.start();
            long left = Math.max(1_000, timeoutMs - (System.nanoTime() - started) / 1_000_000);
            hookThread.join(left);
            timedOut = hookThread.isAlive();
        }
        long millis = (System.nanoTime() - started) / 1_000_000;
        System.out.flush();
        System.err.flush();

        String stdout = out.toString(StandardCharsets.UTF_8);
        String stderr = err.toString(StandardCharsets.UTF_8);
        Integer exited;
        synchronized (ToolRunner.class) {
            exited = firstExit;
            if (exited != null) {
                byte[] o = out.toByteArray();
                byte[] e = err.toByteArray();
                stdout = new String(o, 0, outAtExit, StandardCharsets.UTF_8)
                        + new String(o, outBeforeHooks, o.length - outBeforeHooks, StandardCharsets.UTF_8);
                stderr = new String(e, 0, errAtExit, StandardCharsets.UTF_8)
                        + new String(e, errBeforeHooks, e.length - errBeforeHooks, StandardCharsets.UTF_8);
            }
        }
        ObjectNode result = new ObjectMapper().createObjectNode();
        result.put("name", name);
        if (exited != null) {
            result.put("code", exited.intValue());
        } else if (code.get() == Integer.MIN_VALUE) {
            result.putNull("code");
        } else {
            result.put("code", code.get());
        }
        result.put("stdout", stdout);
        result.put("stderr", stderr);
        result.put("millis", millis);
        result.put("timed_out", timedOut);
        return result;
    }
}

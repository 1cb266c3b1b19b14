package io.powertail.testing;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * A real {@code powertail demo} (the binary of the system property {@code powertail.bin},
 * which the build sets to the repository's {@code target/debug/powertail}) on a free
 * loopback port, started once for the whole test run at {@code POWERTAIL_DEMO_SCALE} times
 * its speed (default 0.1: a vLLM start-up in about 3 s), and stopped at its end. Tests get
 * it as a parameter: {@code @ExtendWith(PowertailDemo.class) void t(PowertailDemo demo)}.
 * {@link #authed()} starts, once too, a second powertail with API tokens in front of the
 * demo's simulated PowerJob server.
 */
public final class PowertailDemo implements ParameterResolver {
    /** The demo's speed factor. */
    public static final double SCALE = Double.parseDouble(System.getenv().getOrDefault("POWERTAIL_DEMO_SCALE", "0.1"));
    private static final Pattern SIM_URL = Pattern.compile("simulated PowerJob server at (http://[0-9.:]+)");

    /** One running powertail process. */
    public record Running(String url, Process process, Path log) implements AutoCloseable {
        @Override
        public void close() {
            process.destroy(); // SIGTERM: in-flight requests finish, at most 10 s
            try {
                if (!process.waitFor(15, TimeUnit.SECONDS)) {
                    process.destroyForcibly().waitFor();
                }
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }

    /** The second powertail: its URL and tokens ({@code reader}: logs:read; {@code runner}: also jobs:run). */
    public record Authed(String url, String reader, String runner) {}

    /**
     * The third powertail, for pushes: its URL and tokens ({@code reader}: logs:read;
     * {@code pusher}: logs:read, logs:push, jobs:run), at most {@link #PUSH_MAX_BATCH_LINES}
     * lines a batch.
     */
    public record Pushing(String url, String reader, String pusher) {}

    /** {@code push.max_batch_lines} of {@link #pushing()}: larger batches get 413. */
    public static final int PUSH_MAX_BATCH_LINES = 8;

    private Running demo;
    private String simUrl;
    private Authed authed;
    private Pushing pushing;
    private final List<Running> processes = new ArrayList<>();

    @Override
    public boolean supportsParameter(ParameterContext p, ExtensionContext c) {
        return p.getParameter().getType() == PowertailDemo.class;
    }

    @Override
    public Object resolveParameter(ParameterContext p, ExtensionContext c) {
        return c.getRoot().getStore(ExtensionContext.Namespace.create(PowertailDemo.class))
                .getOrComputeIfAbsent("demo", k -> new Shared(), Shared.class).demo;
    }

    /** The value the root store closes at the end of the run. */
    private static final class Shared implements AutoCloseable {
        final PowertailDemo demo = new PowertailDemo();

        @Override
        public void close() {
            demo.stopAll();
        }
    }

    /** powertail's URL ({@code http://127.0.0.1:port}). */
    public synchronized String url() {
        if (demo == null) {
            int port = freePort();
            demo = start(List.of("demo", "--listen", "127.0.0.1:" + port), "http://127.0.0.1:" + port,
                    Map.of("POWERTAIL_DEMO_SCALE", Double.toString(SCALE)));
            Matcher m = SIM_URL.matcher(read(demo.log()));
            if (!m.find()) {
                throw new IllegalStateException("no simulator URL in the demo's banner:\n" + read(demo.log()));
            }
            simUrl = m.group(1);
        }
        return demo.url();
    }

    /** The simulated PowerJob server's URL. */
    public synchronized String simUrl() {
        url();
        return simUrl;
    }

    /** A powertail with API tokens in front of the demo's simulator, started on first use. */
    public synchronized Authed authed() {
        if (authed == null) {
            String sim = simUrl();
            String reader = token();
            String runner = token();
            int port = freePort();
            String config = String.join("\n",
                    "[server]",
                    "listen = \"127.0.0.1:" + port + "\"",
                    "[powerjob]",
                    "addresses = [\"" + sim + "\"]",
                    "app_name = \"llm-test-platform\"",
                    "app_password = \"secret\"",
                    "request_timeout_ms = 5000",
                    "log_cache_ms = " + ms(2000),
                    "worker_flush_ms = " + ms(1000),
                    "clock_skew_ms = " + ms(500),
                    "sync_delay_ms = " + ms(20000),
                    "[logs]",
                    "refresh_interval_ms = " + Math.max(10, ms(500)),
                    "first_read_delay_ms = " + ms(1500),
                    "[jobs.vllm-start]",
                    "job_id = 12",
                    "[[auth.tokens]]",
                    "name = \"reader\"",
                    "token = \"" + reader + "\"",
                    "scopes = [\"logs:read\"]",
                    "[[auth.tokens]]",
                    "name = \"runner\"",
                    "token = \"" + runner + "\"",
                    "scopes = [\"logs:read\", \"jobs:run\"]",
                    "");
            try {
                Path file = Files.createTempFile("powertail-java-authed", ".toml");
                Files.writeString(file, config);
                file.toFile().deleteOnExit();
                Running r = start(List.of("--config", file.toString()), "http://127.0.0.1:" + port, Map.of());
                authed = new Authed(r.url(), reader, runner);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
        return authed;
    }

    /** A powertail with push limits and tokens in front of the demo's simulator, started on first use. */
    public synchronized Pushing pushing() {
        if (pushing == null) {
            String reader = token();
            String pusher = token();
            int port = freePort();
            String config = String.join("\n",
                    "[server]",
                    "listen = \"127.0.0.1:" + port + "\"",
                    "[powerjob]",
                    "addresses = [\"" + simUrl() + "\"]",
                    "app_name = \"llm-test-platform\"",
                    "app_password = \"secret\"",
                    "request_timeout_ms = 5000",
                    "log_cache_ms = " + ms(2000),
                    "worker_flush_ms = " + ms(1000),
                    "clock_skew_ms = " + ms(500),
                    "sync_delay_ms = " + ms(20000),
                    "[logs]",
                    "refresh_interval_ms = " + Math.max(10, ms(500)),
                    "first_read_delay_ms = " + ms(1500),
                    "[push]",
                    "max_batch_lines = " + PUSH_MAX_BATCH_LINES,
                    "[jobs.vllm-start]",
                    "job_id = 12",
                    "[[auth.tokens]]",
                    "name = \"reader\"",
                    "token = \"" + reader + "\"",
                    "scopes = [\"logs:read\"]",
                    "[[auth.tokens]]",
                    "name = \"pusher\"",
                    "token = \"" + pusher + "\"",
                    "scopes = [\"logs:read\", \"logs:push\", \"jobs:run\"]",
                    "");
            try {
                Path file = Files.createTempFile("powertail-java-pushing", ".toml");
                Files.writeString(file, config);
                file.toFile().deleteOnExit();
                Running r = start(List.of("--config", file.toString()), "http://127.0.0.1:" + port, Map.of());
                pushing = new Pushing(r.url(), reader, pusher);
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        }
        return pushing;
    }

    private static String token() {
        byte[] b = new byte[16];
        new java.security.SecureRandom().nextBytes(b);
        return java.util.HexFormat.of().formatHex(b);
    }

    /** The demo's times ({@code src/demo.rs} {@code setup}). */
    private static long ms(double v) {
        return Math.max(1, Math.round(v * SCALE));
    }

    /** A free loopback port. */
    public static int freePort() {
        try (ServerSocket s = new ServerSocket()) {
            s.bind(new InetSocketAddress("127.0.0.1", 0));
            return s.getLocalPort();
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static Path binary() {
        String bin = System.getProperty("powertail.bin");
        if (bin == null || !Files.isExecutable(Path.of(bin))) {
            throw new IllegalStateException(bin + " is not an executable: run `cargo build` first (or pass -Dpowertail.bin=...)");
        }
        return Path.of(bin);
    }

    private static String read(Path p) {
        try {
            return Files.readString(p, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "(" + e + ")";
        }
    }

    /** Starts powertail with {@code args} and waits until {@code url} answers /healthz. */
    private Running start(List<String> args, String url, Map<String, String> env) {
        List<String> command = new ArrayList<>();
        command.add(binary().toString());
        command.addAll(args);
        Running running;
        try {
            Path log = Files.createTempFile("powertail-java-tests", ".log");
            ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile());
            pb.environment().putAll(env);
            running = new Running(url, pb.start(), log);
        } catch (IOException e) {
            throw new IllegalStateException("cannot start " + command, e);
        }
        processes.add(running);
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(1)).build();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            if (!running.process().isAlive()) {
                throw new IllegalStateException("powertail " + args + " exited with " + running.process().exitValue() + ":\n" + read(running.log()));
            }
            try {
                HttpResponse<Void> r = http.send(HttpRequest.newBuilder(URI.create(url + "/healthz")).timeout(Duration.ofSeconds(1)).build(),
                        HttpResponse.BodyHandlers.discarding());
                if (r.statusCode() == 200) {
                    return running;
                }
            } catch (IOException e) {
                // not listening yet
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("powertail " + args + " did not answer /healthz in 30 s:\n" + read(running.log()));
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
    }

    private synchronized void stopAll() {
        for (Running r : processes) {
            r.close();
        }
        processes.clear();
    }
}

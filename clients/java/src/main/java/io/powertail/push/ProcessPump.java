package io.powertail.push;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.TimeUnit;

/**
 * Runs a subprocess and pumps its stdout and stderr, line by line, through a
 * {@link PushLogger} (so into PowerJob's {@code OmsLogger} and to powertail), until it
 * exits.
 *
 * <pre>{@code
 * int code = ProcessPump.of(log).run(new ProcessBuilder("python3", "start_vllm.py", paramsJson));
 * }</pre>
 *
 * <p>Lines end at {@code \n}, {@code \r\n} or a lone {@code \r} ({@code BufferedReader.readLine},
 * as PowerJob's own shell processors read them), so each tqdm update is a line. Both streams
 * are logged at {@code INFO} by default (vLLM, uvicorn and tqdm write their normal output to
 * stderr); see {@link #stderrLevel(Level)}. If the calling thread is interrupted (PowerJob
 * stops the instance), the process is destroyed (SIGTERM, then SIGKILL after
 * {@code killGrace}) and {@link InterruptedException} is thrown.
 */
public final class ProcessPump {
    /** How long the pumps may read on after the process exited (a child may hold the pipes). */
    private static final long DRAIN_AFTER_EXIT_MS = 2_000;

    private final PushLogger logger;
    private Level stdoutLevel = Level.INFO;
    private Level stderrLevel = Level.INFO;
    private Charset charset = StandardCharsets.UTF_8;
    private Duration killGrace = Duration.ofSeconds(5);

    private ProcessPump(PushLogger logger) {
        this.logger = Objects.requireNonNull(logger, "logger");
    }

    /**
     * A pump into {@code logger}.
     *
     * @param logger where the lines go
     * @return the pump
     */
    public static ProcessPump of(PushLogger logger) {
        return new ProcessPump(logger);
    }

    /**
     * The level of stdout lines (default INFO).
     *
     * @param level the level
     * @return this
     */
    public ProcessPump stdoutLevel(Level level) {
        this.stdoutLevel = Objects.requireNonNull(level);
        return this;
    }

    /**
     * The level of stderr lines (default INFO).
     *
     * @param level the level
     * @return this
     */
    public ProcessPump stderrLevel(Level level) {
        this.stderrLevel = Objects.requireNonNull(level);
        return this;
    }

    /**
     * The encoding of the process's output (default UTF-8).
     *
     * @param value the charset
     * @return this
     */
    public ProcessPump charset(Charset value) {
        this.charset = Objects.requireNonNull(value);
        return this;
    }

    /**
     * How long a process gets between SIGTERM and SIGKILL when it is stopped (default 5 s).
     *
     * @param value the time
     * @return this
     */
    public ProcessPump killGrace(Duration value) {
        this.killGrace = Objects.requireNonNull(value);
        return this;
    }

    /**
     * Starts the process, pumps its output until it exits, and returns its exit code.
     *
     * @param builder the process (its redirects of stdout and stderr are replaced by pipes)
     * @return the exit code
     * @throws IOException when the process cannot be started
     * @throws InterruptedException when the calling thread was interrupted (the process is
     *     destroyed first)
     */
    public int run(ProcessBuilder builder) throws IOException, InterruptedException {
        builder.redirectOutput(ProcessBuilder.Redirect.PIPE).redirectError(ProcessBuilder.Redirect.PIPE);
        Process process = builder.start();
        Thread out = pump(process.getInputStream(), stdoutLevel, "stdout", process.pid());
        Thread err = pump(process.getErrorStream(), stderrLevel, "stderr", process.pid());
        try {
            int code = process.waitFor();
            out.join(DRAIN_AFTER_EXIT_MS);
            err.join(DRAIN_AFTER_EXIT_MS);
            return code;
        } catch (InterruptedException e) {
            destroy(process);
            throw e;
        }
    }

    private void destroy(Process process) {
        process.descendants().forEach(ProcessHandle::destroy);
        process.destroy();
        try {
            if (!process.waitFor(killGrace.toMillis(), TimeUnit.MILLISECONDS)) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    private Thread pump(InputStream in, Level level, String name, long pid) {
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, charset))) {
                for (String line = r.readLine(); line != null; line = r.readLine()) {
                    logger.log(level, line);
                }
            } catch (IOException e) {
                // the pipe closed: the process is gone
            }
        }, "powertail-pump-" + pid + "-" + name);
        t.setDaemon(true);
        t.start();
        return t;
    }
}

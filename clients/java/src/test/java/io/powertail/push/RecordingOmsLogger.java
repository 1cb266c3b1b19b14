package io.powertail.push;

import java.util.ArrayList;
import java.util.List;
import tech.powerjob.worker.log.OmsLogger;

/** An {@link OmsLogger} that keeps what it was given: "LEVEL text" (the pattern filled SLF4J's way for "{}"). */
final class RecordingOmsLogger implements OmsLogger {
    private final List<String> lines = new ArrayList<>();

    synchronized List<String> lines() {
        return List.copyOf(lines);
    }

    private synchronized void add(String level, String pattern, Object... args) {
        String text = "{}".equals(pattern) && args.length == 1 ? String.valueOf(args[0]) : pattern;
        lines.add(level + " " + text);
    }

    @Override
    public void debug(String messagePattern, Object... args) {
        add("DEBUG", messagePattern, args);
    }

    @Override
    public void info(String messagePattern, Object... args) {
        add("INFO", messagePattern, args);
    }

    @Override
    public void warn(String messagePattern, Object... args) {
        add("WARN", messagePattern, args);
    }

    @Override
    public void error(String messagePattern, Object... args) {
        add("ERROR", messagePattern, args);
    }
}

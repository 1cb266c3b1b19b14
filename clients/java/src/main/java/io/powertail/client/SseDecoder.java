package io.powertail.client;

import java.util.ArrayList;
import java.util.List;

/**
 * A {@code text/event-stream} parser (the WHATWG HTML "event stream interpretation"). Feed
 * it lines without terminators; it returns the events they complete. {@link #lastEventId()}
 * survives the events, as the specification wants for a reconnection's
 * {@code Last-Event-ID}.
 */
public final class SseDecoder {
    private String lastEventId;
    private Long retry;
    private String event = "";
    private final List<String> data = new ArrayList<>();
    private boolean hasData;
    private Long eventRetry;

    /**
     * A decoder.
     *
     * @param lastEventId the id to start from (a reconnection's), or null
     */
    public SseDecoder(String lastEventId) {
        this.lastEventId = lastEventId;
    }

    /** The last event id set by the stream (or given), or null. */
    public String lastEventId() {
        return lastEventId;
    }

    /** The last {@code retry:} the stream gave, in milliseconds, or null. */
    public Long retry() {
        return retry;
    }

    /**
     * One line.
     *
     * @param line a line without its terminator
     * @return the event a blank line dispatches, or null
     */
    public ServerSentEvent feed(String line) {
        if (line.isEmpty()) {
            return dispatch();
        }
        if (line.startsWith(":")) {
            return null; // a comment: the heartbeat
        }
        int colon = line.indexOf(':');
        String field = colon < 0 ? line : line.substring(0, colon);
        String value = colon < 0 ? "" : line.substring(colon + 1);
        if (value.startsWith(" ")) {
            value = value.substring(1);
        }
        switch (field) {
            case "event" -> event = value;
            case "data" -> {
                data.add(value);
                hasData = true;
            }
            case "id" -> {
                if (value.indexOf('\0') < 0) {
                    lastEventId = value;
                }
            }
            case "retry" -> {
                if (!value.isEmpty() && value.chars().allMatch(c -> c >= '0' && c <= '9') && value.length() < 18) {
                    retry = Long.parseLong(value);
                    eventRetry = retry;
                }
            }
            default -> {
                // unknown fields are ignored
            }
        }
        return null;
    }

    private ServerSentEvent dispatch() {
        String name = event;
        String joined = String.join("\n", data);
        boolean had = hasData;
        Long r = eventRetry;
        event = "";
        data.clear();
        hasData = false;
        eventRetry = null;
        if (!had) {
            return null;
        }
        return new ServerSentEvent(name.isEmpty() ? "message" : name, joined, lastEventId, r);
    }
}

package io.powertail.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.concurrent.Flow;

/**
 * The state machine of one followed event stream ({@link PowertailClient#streamEvents}),
 * reconnecting as needed.
 */
final class EventStream implements Iterator<ServerSentEvent> {
    private final String path;
    private final boolean restart;
    private long fromLine;
    private String epoch;
    private String lastId;
    private Long reconnectMillis;
    private final Transport transport;
    private final Duration readTimeout;
    private final Transport.Tries tries;
    private BodyLines body;
    private SseDecoder decoder;
    private ServerSentEvent pending;
    private boolean finished;

    EventStream(Transport transport, String id, FollowOptions options, Duration readTimeout) {
        this.transport = transport;
        this.readTimeout = readTimeout;
        this.tries = transport.new Tries(true);
        this.path = "/llm/logs/" + id + "/stream";
        this.restart = options.restart();
        this.fromLine = options.fromLine();
        this.epoch = options.epoch();
    }

    @Override
    public boolean hasNext() {
        while (pending == null && !finished) {
            pending = step();
        }
        return pending != null;
    }

    @Override
    public ServerSentEvent next() {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        ServerSentEvent e = pending;
        pending = null;
        return e;
    }

    /** Stops following: closes the connection. */
    void close() {
        finished = true;
        if (body != null) {
            body.close();
            body = null;
        }
    }

    /** One event, or null after a reconnection or the end. */
    private ServerSentEvent step() {
        if (body == null) {
            connect();
            return null;
        }
        String line;
        try {
            line = body.next(readTimeout);
        } catch (IOException e) {
            broken(new PowertailConnectionException("connection_error", Transport.describe(e), null, null));
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close();
            throw new PowertailConnectionException("connection_error", "interrupted", null, null);
        }
        if (line == null) {
            broken(new PowertailConnectionException("connection_error", "the event stream ended before its `end` event", null, null));
            return null;
        }
        ServerSentEvent event = decoder.feed(line);
        if (event == null) {
            return null;
        }
        lastId = decoder.lastEventId();
        if (decoder.retry() != null) {
            reconnectMillis = decoder.retry();
        }
        tries.reset();
        EpochMismatchException rebuilt = null;
        if (event.event().equals("lines") || event.event().equals("end") || event.event().equals("error")) {
            JsonNode data;
            try {
                data = transport.json.readTree(event.data());
            } catch (JsonProcessingException e) {
                data = transport.json.nullNode();
            }
            if (!event.event().equals("error")) {
                if (data.path("epoch").isTextual()) {
                    epoch = data.get("epoch").asText();
                }
            } else if ("epoch_mismatch".equals(data.path("code").asText()) && data.path("epoch").isTextual()) {
                rebuilt = new EpochMismatchException("epoch_mismatch", data.path("message").asText(""), 410, null, data.get("epoch").asText());
            }
        }
        if (rebuilt != null) {
            if (!restart) {
                close();
                throw rebuilt;
            }
            dropConnection();
            epoch = rebuilt.epoch().orElse(null);
            lastId = null;
            fromLine = 0;
            return event;
        }
        if (event.event().equals("end")) {
            close();
        } else if (event.event().equals("shutdown")) {
            dropConnection();
        }
        return event;
    }

    private void dropConnection() {
        if (body != null) {
            body.close();
            body = null;
        }
    }

    private void broken(PowertailException error) {
        dropConnection();
        try {
            tries.onBrokenStream(error, reconnectMillis == null ? 0 : reconnectMillis);
        } catch (PowertailException e) {
            close();
            throw e;
        }
    }

    private void connect() {
        Map<String, Object> params = new LinkedHashMap<>();
        HttpRequest.Builder b;
        if (lastId == null && fromLine > 0) {
            params.put("fromLine", fromLine);
        }
        if (epoch != null) {
            params.put("epoch", epoch);
        }
        b = transport.request(path + Transport.query(params), transport.timeout.plusSeconds(30))
                .header("Accept", "text/event-stream")
                .header("Cache-Control", "no-cache")
                .GET();
        if (lastId != null) {
            b.header("Last-Event-ID", lastId);
        }
        HttpResponse<Flow.Publisher<List<ByteBuffer>>> response;
        try {
            response = transport.http.send(b.build(), HttpResponse.BodyHandlers.ofPublisher());
        } catch (IOException e) {
            try {
                tries.onTransportFailure(e);
            } catch (PowertailException ex) {
                close();
                throw ex;
            }
            return;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close();
            throw new PowertailConnectionException("connection_error", "interrupted", null, null);
        }
        BodyLines lines = new BodyLines();
        response.body().subscribe(lines);
        if (response.statusCode() / 100 != 2 || response.statusCode() == 204) {
            String text = readAll(lines);
            lines.close();
            if (response.statusCode() == 204) {
                // The log is complete and the id at its end: nothing more will come.
                finished = true;
                return;
            }
            PowertailException error = transport.errorOf(response.statusCode(), response.headers().firstValue("retry-after").orElse(null), text);
            // (An epoch_mismatch that names the epoch sent cannot be followed: thrown below.)
            if (error instanceof EpochMismatchException em && restart && em.epoch().isPresent() && !em.epoch().get().equals(epoch)) {
                epoch = em.epoch().get();
                lastId = null;
                fromLine = 0;
                return;
            }
            try {
                tries.onError(error);
            } catch (PowertailException e) {
                close();
                throw e;
            }
            return;
        }
        body = lines;
        decoder = new SseDecoder(lastId);
    }

    private String readAll(BodyLines lines) {
        StringBuilder sb = new StringBuilder();
        try {
            for (String l = lines.next(transport.timeout); l != null; l = lines.next(transport.timeout)) {
                sb.append(l).append('\n');
            }
        } catch (IOException e) {
            // what came is enough for the error
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return sb.toString();
    }
}

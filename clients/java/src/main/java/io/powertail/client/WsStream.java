package io.powertail.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The state machine of one log followed over {@code GET /llm/logs/{id}/ws} (issue 19 item 4),
 * reconnecting as needed: the WebSocket counterpart of {@link EventStream}. Each server
 * message {@code {"type": T, ...}} is yielded as {@code ServerSentEvent(T, <the JSON>, id,
 * null)}, {@code id} being the {@code nextLine} of a {@code lines} message, so that callers
 * handle both transports alike. One message is buffered at a time (the next is requested
 * when this one is taken): a slow reader slows the socket, as the server expects.
 */
final class WsStream implements Iterator<ServerSentEvent> {
    /** What the listener hands over: a whole text message, a sign of life, or the end of the socket. */
    private record Signal(String text, Integer closeCode, Throwable error) {}

    private static final Signal ALIVE = new Signal(null, null, null);

    private final Transport transport;
    private final String path;
    private final boolean restart;
    private final Duration readTimeout;
    private final Transport.Tries tries;
    private long fromLine;
    private String epoch;
    private WebSocket socket;
    private LinkedBlockingQueue<Signal> inbox;
    private ServerSentEvent pending;
    private boolean finished;
    /** Set when the server has no WebSocket route (404/405 on the handshake). */
    private boolean unsupported;
    /** The last {@code error} message of this socket: what a close 4000 + status refers to. */
    private JsonNode lastError;

    WsStream(Transport transport, String id, FollowOptions options, Duration readTimeout) {
        this.transport = transport;
        this.path = "/llm/logs/" + id + "/ws";
        this.restart = options.restart();
        this.fromLine = options.fromLine();
        this.epoch = options.epoch();
        this.readTimeout = readTimeout;
        this.tries = transport.new Tries(true);
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

    /** Whether the first handshake found no WebSocket route: the caller may use SSE. */
    boolean unsupported() {
        return unsupported;
    }

    /** Stops following: closes the socket. */
    void close() {
        finished = true;
        drop();
    }

    private void drop() {
        WebSocket s = socket;
        socket = null;
        if (s != null) {
            s.sendClose(WebSocket.NORMAL_CLOSURE, "").exceptionally(t -> null);
            s.abort();
        }
    }

    private ServerSentEvent step() {
        if (socket == null) {
            connect();
            return null;
        }
        Signal signal;
        try {
            signal = inbox.poll(readTimeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close();
            throw new PowertailConnectionException("connection_error", "interrupted", null, null);
        }
        if (signal == null) {
            broken("the WebSocket was silent for " + readTimeout.toSeconds() + " s");
            return null;
        }
        if (signal == ALIVE) {
            return null;
        }
        if (signal.text() == null && signal.closeCode() != null && signal.closeCode() >= 4000 && signal.closeCode() < 5000) {
            // This API's refusal after the upgrade: 4000 + the HTTP status, after an `error`
            // message with its code (an epoch_mismatch was handled with that message).
            refused(signal.closeCode() - 4000);
            return null;
        }
        if (signal.text() == null && Integer.valueOf(1008).equals(signal.closeCode())) {
            // Policy: the token was refused (or none was sent to a server that wants one).
            refused(lastError != null && "forbidden".equals(lastError.path("code").asText()) ? 403 : 401);
            return null;
        }
        if (signal.text() == null) {
            String why = signal.error() != null
                    ? Transport.describe(signal.error())
                    : "the WebSocket closed (" + signal.closeCode() + ") before its `end` message";
            broken(why);
            return null;
        }
        WebSocket s = socket;
        if (s != null) {
            s.request(1);
        }
        return message(signal.text());
    }

    private ServerSentEvent message(String text) {
        JsonNode data;
        try {
            data = transport.json.readTree(text);
        } catch (JsonProcessingException e) {
            data = null;
        }
        if (data == null || !data.path("type").isTextual()) {
            return null; // not a message of this protocol: ignored, as unknown SSE events are
        }
        String type = data.get("type").asText();
        tries.reset();
        String id = null;
        if (type.equals("lines") || type.equals("end")) {
            if (data.path("epoch").isTextual()) {
                epoch = data.get("epoch").asText();
            }
            if (data.path("nextLine").canConvertToLong()) {
                fromLine = data.get("nextLine").asLong();
                id = Long.toString(fromLine);
            }
        }
        ObjectNode body = data.deepCopy();
        body.remove("type");
        ServerSentEvent event = new ServerSentEvent(type, body.toString(), id, null);
        if (type.equals("error")) {
            lastError = data;
        }
        if (type.equals("error") && "epoch_mismatch".equals(data.path("code").asText()) && data.path("epoch").isTextual()) {
            EpochMismatchException rebuilt = new EpochMismatchException("epoch_mismatch", data.path("message").asText(""), 410, null,
                    data.get("epoch").asText());
            if (!restart) {
                close();
                throw rebuilt;
            }
            drop();
            epoch = rebuilt.epoch().orElse(null);
            fromLine = 0;
            return event;
        }
        if (type.equals("end")) {
            close();
        } else if (type.equals("shutdown")) {
            drop(); // the server restarts or sheds this socket: resume from fromLine
        }
        return event;
    }

    /** After a close 4000 + {@code status}: retried when retryable (429, 503), else thrown typed. */
    private void refused(int status) {
        drop();
        JsonNode e = lastError;
        lastError = null;
        String code = e != null && e.path("code").isTextual() ? e.get("code").asText() : "http_error";
        String message = e != null ? e.path("message").asText("") : "the WebSocket was closed with " + (4000 + status);
        PowertailException error = Errors.of(code, message, status, null, e != null && e.path("epoch").isTextual() ? e.get("epoch").asText() : null);
        try {
            tries.onError(error);
        } catch (PowertailException ex) {
            close();
            throw ex;
        }
    }

    private void broken(String why) {
        drop();
        try {
            tries.onBrokenStream(new PowertailConnectionException("connection_error", why, null, null), 0);
        } catch (PowertailException e) {
            close();
            throw e;
        }
    }

    private URI uri() {
        Map<String, Object> params = new LinkedHashMap<>();
        if (fromLine > 0) {
            params.put("fromLine", fromLine);
        }
        if (epoch != null) {
            params.put("epoch", epoch);
        }
        String base = transport.baseUrl.replaceFirst("^http", "ws");
        return URI.create(base + path + Transport.query(params));
    }

    private void connect() {
        LinkedBlockingQueue<Signal> box = new LinkedBlockingQueue<>();
        WebSocket.Builder b = transport.http.newWebSocketBuilder().connectTimeout(transport.timeout);
        transport.authorize(b);
        CompletableFuture<WebSocket> opening = b.buildAsync(uri(), new Listener(box));
        WebSocket s;
        try {
            s = opening.get(transport.timeout.toMillis() + 5_000, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            opening.cancel(true);
            close();
            throw new PowertailConnectionException("connection_error", "interrupted", null, null);
        } catch (TimeoutException e) {
            opening.cancel(true);
            broken("the WebSocket handshake took too long");
            return;
        } catch (ExecutionException e) {
            handshakeFailed(e.getCause() instanceof CompletionException c && c.getCause() != null ? c.getCause() : e.getCause());
            return;
        }
        inbox = box;
        socket = s;
    }

    private void handshakeFailed(Throwable cause) {
        if (cause instanceof WebSocketHandshakeException h) {
            int status = h.getResponse().statusCode();
            Object raw = h.getResponse().body();
            String body = raw instanceof String str ? str : raw instanceof byte[] bytes ? new String(bytes, StandardCharsets.UTF_8) : "";
            if ((status == 404 || status == 405) && !body.contains("instance_not_found")) {
                unsupported = true; // an older powertail: no WebSocket route
                close();
                throw transport.errorOf(status, null, body);
            }
            PowertailException error = transport.errorOf(status, h.getResponse().headers().firstValue("retry-after").orElse(null), body);
            if (error instanceof EpochMismatchException em && restart && em.epoch().isPresent() && !em.epoch().get().equals(epoch)) {
                epoch = em.epoch().get();
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
        try {
            tries.onTransportFailure(cause instanceof IOException io ? io : new IOException(cause));
        } catch (PowertailException e) {
            close();
            throw e;
        }
    }

    /** Collects whole text messages; requests the next one only after one was taken. */
    private static final class Listener implements WebSocket.Listener {
        private final LinkedBlockingQueue<Signal> box;
        private final StringBuilder partial = new StringBuilder();

        Listener(LinkedBlockingQueue<Signal> box) {
            this.box = box;
        }

        @Override
        public void onOpen(WebSocket webSocket) {
            webSocket.request(1);
        }

        @Override
        public CompletionStage<?> onText(WebSocket webSocket, CharSequence data, boolean last) {
            partial.append(data);
            if (last) {
                box.add(new Signal(partial.toString(), null, null));
                partial.setLength(0);
            } else {
                webSocket.request(1);
            }
            return null;
        }

        @Override
        public CompletionStage<?> onBinary(WebSocket webSocket, ByteBuffer data, boolean last) {
            webSocket.request(1); // not part of the protocol
            return null;
        }

        @Override
        public CompletionStage<?> onPing(WebSocket webSocket, ByteBuffer message) {
            box.add(ALIVE); // the JDK answers the ping itself
            webSocket.request(1);
            return null;
        }

        @Override
        public CompletionStage<?> onPong(WebSocket webSocket, ByteBuffer message) {
            box.add(ALIVE);
            webSocket.request(1);
            return null;
        }

        @Override
        public CompletionStage<?> onClose(WebSocket webSocket, int statusCode, String reason) {
            box.add(new Signal(null, statusCode, null));
            return null;
        }

        @Override
        public void onError(WebSocket webSocket, Throwable error) {
            box.add(new Signal(null, null, error));
        }
    }
}

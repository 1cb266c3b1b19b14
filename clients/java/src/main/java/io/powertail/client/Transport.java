package io.powertail.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;

/**
 * The HTTP side of a {@link PowertailClient}: requests, the retry policy (see the class
 * comment of {@link PowertailClient}) and the typed errors of answers.
 */
final class Transport {
    private static final String USER_AGENT = "powertail-client-java/0.1";

    final String baseUrl;
    private final String authorization;
    final Duration timeout;
    private final int maxRetries;
    private final Duration connectRetryBudget;
    final HttpClient http;
    final ObjectMapper json;
    /** How the client waits between tries (tests replace it). */
    Sleeper sleeper = Thread::sleep;

    /** How the client waits between tries. */
    @FunctionalInterface
    interface Sleeper {
        void sleep(long millis) throws InterruptedException;
    }

    Transport(String baseUrl, String token, Duration timeout, int maxRetries, Duration connectRetryBudget, HttpClient httpClient) {
        this.baseUrl = baseUrl.replaceAll("/+$", "");
        this.authorization = token == null ? null : "Bearer " + token;
        this.timeout = timeout;
        this.maxRetries = maxRetries;
        this.connectRetryBudget = connectRetryBudget;
        this.http = httpClient != null
                ? httpClient
                : HttpClient.newBuilder()
                        .version(HttpClient.Version.HTTP_1_1)
                        .connectTimeout(timeout)
                        .build();
        this.json = JsonMapper.builder()
                .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
                .build();
    }

    /** Between tries of a call that got an answer or lost its connection. */
    static final Backoff RETRY = new Backoff(Duration.ofMillis(500), Duration.ofSeconds(5));
    /** Between tries to connect, within {@code connectRetryBudget}. */
    static final Backoff CONNECT = new Backoff(Duration.ofMillis(100), Duration.ofSeconds(1));

    long backoffMillis(int failures) {
        return RETRY.delayMillis(failures);
    }

    static String query(Map<String, Object> params) {
        if (params.isEmpty()) {
            return "";
        }
        StringBuilder sb = new StringBuilder("?");
        for (Map.Entry<String, Object> e : params.entrySet()) {
            if (sb.length() > 1) {
                sb.append('&');
            }
            sb.append(URLEncoder.encode(e.getKey(), StandardCharsets.UTF_8))
                    .append('=')
                    .append(URLEncoder.encode(String.valueOf(e.getValue()), StandardCharsets.UTF_8));
        }
        return sb.toString();
    }

    HttpRequest.Builder request(String pathAndQuery, Duration requestTimeout) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(baseUrl + pathAndQuery))
                .timeout(requestTimeout)
                .header("User-Agent", USER_AGENT)
                .header("Accept", "application/json");
        if (authorization != null) {
            b.header("Authorization", authorization);
        }
        return b;
    }

    /** Adds the token to a WebSocket handshake ({@code Authorization: Bearer}, never in the URL). */
    void authorize(WebSocket.Builder b) {
        b.header("User-Agent", USER_AGENT);
        if (authorization != null) {
            b.header("Authorization", authorization);
        }
    }

    /** Whether a failure is one of connecting (nothing was sent). */
    static boolean isConnectFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ConnectException || t instanceof HttpConnectTimeoutException) {
                return true;
            }
        }
        return false;
    }

    static String describe(Throwable e) {
        String m = e.getMessage();
        return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
    }

    /** Tracks the failures of one call: the connect budget and the retries in a row. */
    final class Tries {
        private final boolean retry;
        private int failures;
        private int connectFailures;
        private long firstRefusal = -1;

        Tries(boolean retry) {
            this.retry = retry;
        }

        /** A success: the next failure is the first in a row. */
        void reset() {
            failures = 0;
            connectFailures = 0;
            firstRefusal = -1;
        }

        /** After a transport failure: sleeps before the next try, or throws. */
        void onTransportFailure(Throwable e) {
            if (isConnectFailure(e)) {
                long now = System.nanoTime();
                if (firstRefusal < 0) {
                    firstRefusal = now;
                }
                long delay = CONNECT.delayMillis(connectFailures + 1);
                long spent = (now - firstRefusal) / 1_000_000;
                if (spent + delay > connectRetryBudget.toMillis()) {
                    throw new PowertailConnectionException(
                            "connection_error",
                            "cannot connect to " + baseUrl + ": " + describe(e) + " (tried for " + spent + " ms)",
                            null,
                            null);
                }
                connectFailures++;
                pause(delay);
                return;
            }
            if (!retry || failures >= maxRetries) {
                throw new PowertailConnectionException("connection_error", describe(e), null, null);
            }
            failures++;
            pause(backoffMillis(failures));
        }

        /** After an error answer: sleeps before the next try, or throws it. */
        void onError(PowertailException error) {
            if (!retry || !error.isRetryable() || failures >= maxRetries) {
                throw error;
            }
            failures++;
            pause(error.retryAfter().map(Duration::toMillis).orElse(backoffMillis(failures)));
        }

        /** After a stream that broke: sleeps at least {@code floorMillis}, or throws. */
        void onBrokenStream(PowertailException error, long floorMillis) {
            if (failures >= maxRetries) {
                throw error;
            }
            failures++;
            pause(Math.max(backoffMillis(failures), floorMillis));
        }

        void pause(long millis) {
            try {
                sleeper.sleep(millis);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                throw new PowertailConnectionException("connection_error", "interrupted", null, null);
            }
        }
    }

    /** One call, retried (when {@code retry}) on 429/503 and broken connections. */
    HttpResponse<String> send(String method, String path, Map<String, Object> params, Object body, long waitMillis, boolean retry) {
        Duration requestTimeout = timeout.plusMillis(waitMillis).plusSeconds(30);
        HttpRequest.BodyPublisher publisher = HttpRequest.BodyPublishers.noBody();
        String contentType = null;
        if (body != null) {
            try {
                publisher = HttpRequest.BodyPublishers.ofByteArray(json.writeValueAsBytes(body));
                contentType = "application/json";
            } catch (JsonProcessingException e) {
                throw new IllegalArgumentException("the body cannot be written as JSON: " + e.getOriginalMessage(), e);
            }
        }
        Tries tries = new Tries(retry);
        while (true) {
            HttpRequest.Builder b = request(path + query(params), requestTimeout).method(method, publisher);
            if (contentType != null) {
                b.header("Content-Type", contentType);
            }
            HttpResponse<String> response;
            try {
                response = http.send(b.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            } catch (IOException e) {
                tries.onTransportFailure(e);
                continue;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new PowertailConnectionException("connection_error", "interrupted", null, null);
            }
            if (response.statusCode() / 100 == 2) {
                return response;
            }
            tries.onError(errorOf(response.statusCode(), response.headers().firstValue("retry-after").orElse(null), response.body()));
        }
    }

    <T> T sendJson(String method, String path, Map<String, Object> params, Object body, long waitMillis, boolean retry, Class<T> type) {
        HttpResponse<String> response = send(method, path, params, body, waitMillis, retry);
        try {
            return json.readValue(response.body(), type);
        } catch (JsonProcessingException e) {
            throw new ServerException("http_error", "the answer is not the expected JSON: " + e.getOriginalMessage(), response.statusCode(), null);
        }
    }

    /** {@code Retry-After}: delta-seconds or an HTTP date. */
    static Duration retryAfter(String value) {
        return Backoff.retryAfter(value);
    }

    /** The typed error of a non-2xx answer ({@code {"error": {"code", "message"}}}). */
    PowertailException errorOf(int status, String retryAfterHeader, String body) {
        Duration retryAfter = retryAfter(retryAfterHeader);
        try {
            JsonNode root = json.readTree(body == null ? "" : body);
            JsonNode error = root == null ? null : root.get("error");
            if (error != null && error.path("code").isTextual() && error.path("message").isTextual()) {
                JsonNode epoch = root.get("epoch");
                return Errors.of(error.get("code").asText(), error.get("message").asText(), status, retryAfter,
                        epoch != null && epoch.isTextual() ? epoch.asText() : null);
            }
        } catch (JsonProcessingException e) {
            // not powertail's shape: below
        }
        // A proxy's page, say.
        String text = body == null ? "" : body.strip();
        if (text.length() > 200) {
            text = text.substring(0, 200);
        }
        if (text.isEmpty()) {
            text = "HTTP " + status;
        }
        PowertailException err = Errors.of("http_error", text, status, retryAfter, null);
        if (status >= 500 && !err.isRetryable()) {
            return new ServerException("http_error", text, status, retryAfter);
        }
        return err;
    }
}

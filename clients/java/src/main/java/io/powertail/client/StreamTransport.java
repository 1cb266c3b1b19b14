package io.powertail.client;

/**
 * How {@link PowertailClient#stream} and {@link PowertailClient#streamEvents} follow a log
 * ({@link PowertailClient.Builder#streamTransport}).
 */
public enum StreamTransport {
    /** Server-Sent Events: {@code GET /llm/logs/{id}/stream}. */
    SSE,
    /** A WebSocket: {@code GET /llm/logs/{id}/ws} ({@code java.net.http.WebSocket}). */
    WEBSOCKET,
    /** The WebSocket, or Server-Sent Events when the server has no WebSocket route (an older powertail). */
    AUTO
}

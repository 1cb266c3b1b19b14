package io.powertail.client;

/**
 * One dispatched Server-Sent Event.
 *
 * @param event the event type ({@code message} when the stream named none)
 * @param data its {@code data:} lines joined with {@code \n}
 * @param id the last event id in force when it was dispatched, or null if none was ever set
 * @param retry a {@code retry:} field given with it, in milliseconds, or null
 */
public record ServerSentEvent(String event, String data, String id, Long retry) {}

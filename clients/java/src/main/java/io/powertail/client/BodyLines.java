package io.powertail.client;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.http.HttpTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.Flow;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The lines of a streamed response body, read with a timeout: {@code java.net.http} has no
 * read timeout once the headers came, and an event stream that falls silent (a dead
 * connection, no heartbeat) must be noticed. Lines end at {@code \n}, {@code \r\n} or a
 * lone {@code \r}, as the event-stream format says. One buffer is requested at a time, so
 * a slow reader holds the server back instead of filling memory.
 */
final class BodyLines implements Flow.Subscriber<List<ByteBuffer>>, AutoCloseable {
    private static final Object END = new Object();

    private final LinkedBlockingQueue<Object> items = new LinkedBlockingQueue<>();
    private final ArrayDeque<String> ready = new ArrayDeque<>();
    private final ByteArrayOutputStream partial = new ByteArrayOutputStream();
    private volatile Flow.Subscription subscription;
    private boolean lastWasCr;
    private boolean ended;

    @Override
    public void onSubscribe(Flow.Subscription s) {
        subscription = s;
        s.request(1);
    }

    @Override
    public void onNext(List<ByteBuffer> item) {
        items.add(item);
    }

    @Override
    public void onError(Throwable throwable) {
        items.add(throwable);
    }

    @Override
    public void onComplete() {
        items.add(END);
    }

    /**
     * The next line.
     *
     * @param timeout the longest silence allowed
     * @return the line, or null at the end of the body
     * @throws IOException when the body failed, or nothing came for {@code timeout}
     * @throws InterruptedException when the thread was interrupted
     */
    String next(Duration timeout) throws IOException, InterruptedException {
        while (ready.isEmpty()) {
            if (ended) {
                return null;
            }
            Object item = items.poll(timeout.toMillis(), TimeUnit.MILLISECONDS);
            if (item == null) {
                throw new HttpTimeoutException("nothing received for " + timeout.toMillis() + " ms");
            }
            if (item == END) {
                ended = true;
                if (partial.size() > 0) {
                    emit(); // a body that does not end with a line break (a JSON error)
                }
            } else if (item instanceof Throwable t) {
                ended = true;
                throw t instanceof IOException io ? io : new IOException(t);
            } else {
                @SuppressWarnings("unchecked")
                List<ByteBuffer> buffers = (List<ByteBuffer>) item;
                for (ByteBuffer b : buffers) {
                    split(b);
                }
                Flow.Subscription s = subscription;
                if (s != null) {
                    s.request(1);
                }
            }
        }
        return ready.poll();
    }

    private void split(ByteBuffer b) {
        while (b.hasRemaining()) {
            byte c = b.get();
            if (c == '\n') {
                if (!lastWasCr) {
                    emit();
                }
                lastWasCr = false;
            } else if (c == '\r') {
                emit();
                lastWasCr = true;
            } else {
                partial.write(c);
                lastWasCr = false;
            }
        }
    }

    private void emit() {
        // UTF-8 never has CR or LF inside a multi-byte sequence: a line's bytes decode alone.
        ready.add(partial.toString(StandardCharsets.UTF_8));
        partial.reset();
    }

    /** Stops the body (the connection is closed). */
    @Override
    public void close() {
        Flow.Subscription s = subscription;
        if (s != null) {
            s.cancel();
        }
        ended = true;
    }
}

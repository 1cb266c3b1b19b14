package io.powertail.push;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntPredicate;

/**
 * A loopback HTTP proxy in front of a real powertail that forwards every request and, for
 * the requests {@code lose} selects (numbered from 0), drops the connection instead of
 * relaying the answer: the request was applied, its answer lost, as when a network fails
 * after the server acted. One request per connection.
 */
final class LosingProxy implements AutoCloseable {
    private final ServerSocket listener;
    private final String target;
    private final IntPredicate lose;
    private final AtomicInteger requests = new AtomicInteger();
    private final AtomicInteger lost = new AtomicInteger();
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(2)).build();
    private final Thread acceptor;

    LosingProxy(String target, IntPredicate lose) throws IOException {
        this.target = target;
        this.lose = lose;
        this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        this.acceptor = new Thread(this::accept, "losing-proxy");
        this.acceptor.setDaemon(true);
        this.acceptor.start();
    }

    String url() {
        return "http://127.0.0.1:" + listener.getLocalPort();
    }

    /** Requests forwarded. */
    int requests() {
        return requests.get();
    }

    /** Answers that were dropped after powertail had the request. */
    int lost() {
        return lost.get();
    }

    private void accept() {
        while (!listener.isClosed()) {
            try {
                Socket s = listener.accept();
                Thread t = new Thread(() -> serve(s), "losing-proxy-conn");
                t.setDaemon(true);
                t.start();
            } catch (IOException e) {
                return; // closed
            }
        }
    }

    private void serve(Socket s) {
        try (s) {
            s.setSoTimeout(10_000);
            InputStream in = s.getInputStream();
            String head = readHead(in);
            if (head == null) {
                return;
            }
            String[] lines = head.split("\r\n");
            String[] requestLine = lines[0].split(" ");
            int length = 0;
            HttpRequest.Builder forward = HttpRequest.newBuilder(URI.create(target + requestLine[1])).timeout(Duration.ofSeconds(10));
            for (int i = 1; i < lines.length; i++) {
                int colon = lines[i].indexOf(':');
                if (colon <= 0) {
                    continue;
                }
                String name = lines[i].substring(0, colon).trim();
                String value = lines[i].substring(colon + 1).trim();
                switch (name.toLowerCase(Locale.ROOT)) {
                    case "content-length" -> length = Integer.parseInt(value);
                    case "authorization", "content-type" -> forward.header(name, value);
                    default -> { }
                }
            }
            byte[] body = in.readNBytes(length);
            forward.method(requestLine[0], HttpRequest.BodyPublishers.ofByteArray(body));
            HttpResponse<byte[]> answer = http.send(forward.build(), HttpResponse.BodyHandlers.ofByteArray());
            if (lose.test(requests.getAndIncrement())) {
                lost.incrementAndGet();
                return; // applied upstream; the caller sees the connection close without an answer
            }
            OutputStream out = s.getOutputStream();
            String type = answer.headers().firstValue("content-type").orElse("application/json");
            out.write(("HTTP/1.1 " + answer.statusCode() + " X\r\nContent-Type: " + type + "\r\nContent-Length: "
                    + answer.body().length + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.ISO_8859_1));
            out.write(answer.body());
            out.flush();
        } catch (IOException e) {
            // the caller went away
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String readHead(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        int c;
        while ((c = in.read()) >= 0) {
            b.write(c);
            int n = b.size();
            byte[] a = b.toByteArray();
            if (n >= 4 && a[n - 4] == '\r' && a[n - 3] == '\n' && a[n - 2] == '\r' && a[n - 1] == '\n') {
                return new String(a, 0, n - 4, StandardCharsets.ISO_8859_1);
            }
            if (n > 65_536) {
                return null;
            }
        }
        return null;
    }

    @Override
    public void close() throws IOException {
        listener.close();
    }
}

// powertail.js: follow a PowerJob instance's log through powertail from a browser.
// An ES module, no build step, no dependency; served by powertail at /powertail.js.
//
//   import { follow, stream, followStartup } from "http://powertail:8080/powertail.js";
//   const ctl = new AbortController();
//   await follow("http://powertail:8080", "677182124851200064", {
//     onLines: (lines, fromLine) => append(lines),
//     onStatus: (s) => show(s.status, s.complete, s.attempts),
//     signal: ctl.signal, token: "…",
//   });   // resolves with the last answer once the log is complete
//
// See docs/API.md, "Browser module".

/**
 * What ends following: a 4xx answer (bad id, unknown instance, token refused), or no
 * connection within the connect budget (`status` null, `code` "connection_error"). A
 * 410 `epoch_mismatch` (the log was rebuilt; see `follow`) carries the current `epoch`.
 */
export class PowertailError extends Error {
  constructor(status, code, message, epoch) {
    super(message);
    this.name = "PowertailError";
    this.status = status;
    this.code = code;
    if (epoch !== undefined) this.epoch = epoch;
  }
}

/** How long failed connections are retried in a row by default (ms); see `getJson`. */
export const CONNECT_BUDGET_MS = 2000;
/** The first pause after a failed connection (ms); each further one doubles, up to 5 s. */
const CONNECT_BACKOFF_MS = 250, CONNECT_BACKOFF_MAX_MS = 5000;

const isEpochMismatch = (e) => e instanceof PowertailError && e.code === "epoch_mismatch" && !!e.epoch;

const base = (url) => String(url || "").replace(/\/+$/, "");
const enc = encodeURIComponent;

function abortError() {
  return new DOMException("following was aborted", "AbortError");
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortError());
    const t = setTimeout(() => { if (signal) signal.removeEventListener("abort", stop); resolve(); }, ms);
    const stop = () => { clearTimeout(t); reject(abortError()); };
    if (signal) signal.addEventListener("abort", stop, { once: true });
  });
}

function headersFor(token) {
  return token ? { Authorization: "Bearer " + token } : {};
}

/** The status part of a log answer (or of a stream's `lines`/`end` event). */
function statusOf(body) {
  return {
    status: body.status, complete: !!body.complete, stale: !!body.stale,
    nextLine: body.nextLine, totalLines: body.totalLines, epoch: body.epoch,
    attempt: body.attempt, attempts: body.attempts || [],
    upstreamLost: !!body.upstreamLost, truncated: !!body.truncated,
  };
}

/** The `connection_error` that ends following when the connect budget is spent. */
function connectionError(e, failures, budgetMs) {
  const cause = (e && e.message) || String(e);
  return new PowertailError(null, "connection_error", `${cause} (retried ${failures} times for ${budgetMs} ms)`);
}

/**
 * One GET with powertail's error handling: resolves with the JSON body of a 2xx;
 * rejects with a PowertailError on a 4xx; on 503 waits `Retry-After` (or `retryMs`) and
 * on other 5xx `retryMs`, reporting them to `onError`, then tries again.
 * A failed connection (no answer: refused, unreachable, dropped) is reported to
 * `onError` and retried after 250 ms, 500 ms, 1 s, ... (doubling, at most 5 s) while less than
 * `connectBudgetMs` (default 2000; `Infinity`: for ever) have passed since the first
 * failure of the row, the last try at the budget's end; then it rejects with a
 * PowertailError `connection_error` (`status` null). Any answer ends the row.
 */
async function getJson(url, { token, signal, onError, retryMs = 1500, connectBudgetMs = CONNECT_BUDGET_MS }) {
  let failingSince = null, failures = 0;
  for (;;) {
    let resp, body;
    try {
      resp = await fetch(url, { headers: headersFor(token), cache: "no-store", signal });
      body = await resp.json().catch(() => null);
    } catch (e) {
      if (signal && signal.aborted) throw abortError();
      const now = Date.now();
      if (failingSince === null) failingSince = now;
      const left = failingSince + connectBudgetMs - now;
      if (!(left > 0)) throw connectionError(e, failures, connectBudgetMs);
      if (onError) onError(e);
      failures++;
      await sleep(Math.min(CONNECT_BACKOFF_MS * 2 ** (failures - 1), CONNECT_BACKOFF_MAX_MS, left), signal);
      continue;
    }
    failingSince = null; failures = 0;
    if (resp.ok) return body;
    const code = body && body.error ? body.error.code : "http_" + resp.status;
    const message = body && body.error ? body.error.message : "HTTP " + resp.status;
    const err = new PowertailError(resp.status, code, message, body && body.epoch);
    if (resp.status >= 400 && resp.status < 500) throw err;
    if (onError) onError(err);
    const retryAfter = Number(resp.headers.get("Retry-After"));
    await sleep(resp.status === 503 && retryAfter > 0 ? retryAfter * 1000 : retryMs, signal);
  }
}

/**
 * Follows a log by long-poll (`GET /llm/logs`) until it is complete.
 *
 * - `onLines(lines, fromLine, answer)`: each new batch, in order, every line once;
 * - `onStatus({status, complete, stale, nextLine, totalLines, attempt, attempts,
 *   upstreamLost, truncated})`: after every answer;
 * - `onError(error)`: a passing failure (5xx, network); following goes on;
 * - `connectBudgetMs` (default 2000): how long failed connections are retried in a
 *   row (see `getJson`) before the promise rejects with a PowertailError
 *   `connection_error`; `Infinity` retries for ever (the viewer does);
 * - `signal`: an AbortSignal that stops following (the promise rejects with AbortError);
 * - `token`: an API token, sent as `Authorization: Bearer`;
 * - `fromLine` (default 0), `waitMs` (long-poll, default 15000), `limit` (default 5000);
 * - `epoch`: the epoch `fromLine` belongs to (default: none; learnt from the first
 *   answer, and sent with every later request);
 * - `onRestart(epoch)`: the log was rebuilt from scratch (410 `epoch_mismatch`: a
 *   restart of powertail, an evicted log): drop every line shown; following starts over
 *   from line 0 under the new `epoch`. Without `onRestart` the promise rejects with that
 *   PowertailError (`code` "epoch_mismatch", `epoch`) instead: never lines of another
 *   sequence appended to the old ones.
 *
 * Resolves with the last answer once `complete`; rejects with a PowertailError on a 4xx
 * or when the connect budget is spent.
 */
export async function follow(baseUrl, instanceId, opts = {}) {
  const { onLines, onStatus, onError, onRestart, signal, token, connectBudgetMs } = opts;
  const waitMs = opts.waitMs ?? 15000, limit = opts.limit ?? 5000;
  let next = opts.fromLine ?? 0, epoch = opts.epoch || null;
  for (;;) {
    const url = `${base(baseUrl)}/llm/logs?instanceId=${enc(instanceId)}&fromLine=${next}&limit=${limit}&waitMs=${waitMs}`
      + (epoch ? `&epoch=${enc(epoch)}` : "");
    let body;
    try {
      body = await getJson(url, { token, signal, onError, connectBudgetMs });
    } catch (e) {
      if (!isEpochMismatch(e) || !onRestart) throw e;
      epoch = e.epoch; next = 0;
      onRestart(epoch);
      continue;
    }
    if (signal && signal.aborted) throw abortError();
    if (body.epoch) epoch = body.epoch;
    if (body.fromLine === next && body.lines.length) {
      if (onLines) onLines(body.lines, body.fromLine, body);
    }
    next = Math.max(next, body.nextLine);
    if (onStatus) onStatus(statusOf(body));
    if (body.complete) return body;
    // Stale: PowerJob unreachable, the cache answered at once; do not spin.
    if (body.lines.length === 0) await sleep(body.stale ? 1500 : 200, signal);
  }
}

/**
 * Follows the start-up state (`GET /llm/instances/{id}/startup`, long-poll) until it
 * is `complete`: `onStartup(state)` on every change. Options as for `follow`.
 * Resolves with the last state. In a state, `failure.final === false` means the cause
 * is provisional (a more specific one may follow; `phase` is not `failed` yet), and
 * `tracked === false` means the job has no start-up rules (no model server: nothing
 * to show). A server that does not send them means `final: true`, `tracked: true`.
 */
export async function followStartup(baseUrl, instanceId, opts = {}) {
  const { onStartup, onError, signal, token, connectBudgetMs } = opts;
  const waitMs = opts.waitMs ?? 15000;
  let query = "";
  for (;;) {
    const url = `${base(baseUrl)}/llm/instances/${enc(instanceId)}/startup?waitMs=${waitMs}${query}`;
    const body = await getJson(url, { token, signal, onError, connectBudgetMs });
    if (signal && signal.aborted) throw abortError();
    if (onStartup) onStartup(body);
    if (body.complete) return body;
    const fresh = `&attempt=${body.attempt}&fromEvent=${body.events.length}`;
    if (fresh === query && body.stale) await sleep(1500, signal);
    query = fresh;
  }
}

/**
 * Follows a log over Server-Sent Events (`GET /llm/logs/{id}/stream`) with the
 * browser's EventSource, which resumes by itself after a dropped connection. Closes on
 * `end`. Callbacks as for `follow`, plus `onStartup(state)` for `startup` events;
 * `fromLine`, `epoch` and `onRestart(epoch)` as for `follow` (the epoch goes in the URL,
 * so that the EventSource's own reconnects send it; a stream opened without one is
 * reopened with the epoch it learnt at its first lost connection).
 * EventSource cannot send an Authorization header: use it where reads need no token.
 * Resolves with the `end` event's data; rejects with AbortError when `signal` aborts,
 * with a PowertailError `epoch_mismatch` when the log was rebuilt and there is no
 * `onRestart`, with an Error when the stream is refused (a 4xx before it starts), or
 * with a PowertailError `connection_error` at the first reconnection that fails once
 * `connectBudgetMs` (default 2000; `Infinity`: never) have passed since the connection
 * was lost (the EventSource's reconnection delay, 3 s in browsers unless the server's
 * `retry:` says otherwise, decides when that is).
 */
export function stream(baseUrl, instanceId, opts = {}) {
  const { onLines, onStatus, onStartup, onError, onRestart, signal } = opts;
  const connectBudgetMs = opts.connectBudgetMs ?? CONNECT_BUDGET_MS;
  const root = base(baseUrl);
  let next = opts.fromLine ?? 0, epoch = opts.epoch || null;
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortError());
    let es = null, urlEpoch = null, lostAt = null, failures = 0;
    const done = (settle, value) => {
      es.close();
      if (signal) signal.removeEventListener("abort", abort);
      settle(value);
    };
    const abort = () => done(reject, abortError());
    if (signal) signal.addEventListener("abort", abort, { once: true });
    // The sequence was rebuilt: start over from line 0 under `current`, or reject.
    const rebuilt = (current, message) => {
      if (!onRestart) return done(reject, new PowertailError(410, "epoch_mismatch", message, current));
      es.close();
      epoch = current; next = 0;
      onRestart(current);
      open();
    };
    // Why a stream opened with an epoch was refused: a 410 names the current epoch.
    const refused = async () => {
      if (epoch) {
        try {
          const resp = await fetch(`${root}/llm/logs?instanceId=${enc(instanceId)}&limit=1&epoch=${enc(epoch)}`,
            { cache: "no-store", signal });
          const body = await resp.json().catch(() => null);
          if (resp.status === 410 && body && body.epoch) return rebuilt(body.epoch, body.error.message);
        } catch (e) { /* reported below */ }
      }
      done(reject, new Error("the stream was refused"));
    };
    const open = () => {
      const query = [next ? `fromLine=${next}` : "", epoch ? `epoch=${enc(epoch)}` : ""].filter(Boolean).join("&");
      urlEpoch = epoch;
      const source = es = new EventSource(`${root}/llm/logs/${enc(instanceId)}/stream${query ? "?" + query : ""}`);
      const mine = (f) => (ev) => { if (source === es) f(ev); };
      source.addEventListener("open", mine(() => { lostAt = null; failures = 0; }));
      source.addEventListener("lines", mine((ev) => {
        const body = JSON.parse(ev.data);
        if (body.epoch) epoch = body.epoch;
        next = body.nextLine;
        if (onLines) onLines(body.lines, body.fromLine, body);
        if (onStatus) onStatus(statusOf({ ...body, complete: false }));
      }));
      source.addEventListener("startup", mine((ev) => { if (onStartup) onStartup(JSON.parse(ev.data)); }));
      source.addEventListener("end", mine((ev) => {
        const body = JSON.parse(ev.data);
        if (onStatus) onStatus(statusOf({ ...body, complete: true }));
        done(resolve, body);
      }));
      source.addEventListener("error", mine((ev) => {
        // A server-sent `error` event (PowerJob failing; the stream goes on) has data;
        // a connection error has none: EventSource retries unless it gave up (CLOSED).
        if (ev.data) {
          const err = JSON.parse(ev.data);
          if (err.code === "epoch_mismatch" && err.epoch) return rebuilt(err.epoch, err.message);
          if (onError) onError(err);
          return;
        }
        if (source.readyState === EventSource.CLOSED) { refused(); return; }
        const now = Date.now();
        if (lostAt === null) lostAt = now;
        else if (now - lostAt >= connectBudgetMs) {
          return done(reject, connectionError(new Error("the event stream's connection was lost"), failures, connectBudgetMs));
        }
        failures++;
        if (onError) onError(new Error("stream connection lost; reconnecting"));
        // Opened without the epoch it now knows: reconnect with it in the URL.
        if (epoch && epoch !== urlEpoch) { source.close(); open(); }
      }));
    };
    open();
  });
}

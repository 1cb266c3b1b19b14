// powertail.js: follow a PowerJob instance's log through powertail from a browser.
// An ES module, no build step, no dependency; served by powertail at /powertail.js.
//
//   import { follow, stream, followStartup, search } from "http://powertail:8080/powertail.js";
//   const ctl = new AbortController();
//   await follow("http://powertail:8080", "677182124851200064", {
//     transport: "websocket",   // pushed over a WebSocket; SSE, then long-poll, where it cannot
//     onLines: (lines, fromLine) => append(lines),
//     onStatus: (s) => show(s.status, s.complete, s.attempts),
//     signal: ctl.signal, token: "…",
//   });   // resolves with the last answer once the log is complete
//   const { hits } = await search("http://powertail:8080", "CUDA out of memory", { job: "vllm-start" });
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
    push: body.push || null,
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
 * PowertailError `connection_error` (`status` null). Any answer ends the row. With
 * `once`, any answer that is no 2xx rejects (no retry of a 5xx).
 */
async function getJson(url, { token, signal, onError, retryMs = 1500, connectBudgetMs = CONNECT_BUDGET_MS, once = false }) {
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
    if ((resp.status >= 400 && resp.status < 500) || once) throw err;
    if (onError) onError(err);
    const retryAfter = Number(resp.headers.get("Retry-After"));
    await sleep(resp.status === 503 && retryAfter > 0 ? retryAfter * 1000 : retryMs, signal);
  }
}

/**
 * Follows a log until it is complete: by long-poll (`GET /llm/logs`), or, with
 * `transport: "websocket"`, pushed over a WebSocket (`GET /llm/logs/{id}/ws`), falling
 * back to Server-Sent Events (only without a token: an EventSource cannot send one) and
 * then to long-poll where the WebSocket cannot open (a proxy that does not pass it on).
 *
 * - `onLines(lines, fromLine, answer)`: each new batch, in order, every line once;
 * - `onStatus({status, complete, stale, nextLine, totalLines, attempt, attempts,
 *   upstreamLost, truncated, push})`: after every answer (`push`: the answer's `push`
 *   field, null when nothing was pushed);
 * - `onError(error)`: a passing failure (5xx, network); following goes on;
 * - `connectBudgetMs` (default 2000): how long failed connections are retried in a
 *   row (see `getJson`) before the promise rejects with a PowertailError
 *   `connection_error`; `Infinity` retries for ever (the viewer does);
 * - `signal`: an AbortSignal that stops following (the promise rejects with AbortError);
 * - `token`: an API token, sent as `Authorization: Bearer` (over a WebSocket: as its
 *   first message, `{"type":"auth","token"}`; never in a URL);
 * - `fromLine` (default 0), `waitMs` (long-poll, default 15000), `limit` (default 5000);
 * - `epoch`: the epoch `fromLine` belongs to (default: none; learnt from the first
 *   answer, and sent with every later request);
 * - `onRestart(epoch)`: the log was rebuilt from scratch (410 `epoch_mismatch`: a
 *   restart of powertail, an evicted log): drop every line shown; following starts over
 *   from line 0 under the new `epoch`. Without `onRestart` the promise rejects with that
 *   PowertailError (`code` "epoch_mismatch", `epoch`) instead: never lines of another
 *   sequence appended to the old ones;
 * - `transport`: `"poll"` (default) or `"websocket"`; `onTransport(name)` is called with
 *   `"websocket"`, `"sse"` or `"poll"` whenever the transport in use changes, and
 *   `onStartup(state)` with the start-up states a WebSocket or SSE stream carries.
 *
 * Resolves with the last answer (over a stream: its `end` data) once `complete`; rejects
 * with a PowertailError on a 4xx or when the connect budget is spent.
 */
export async function follow(baseUrl, instanceId, opts = {}) {
  const at = { next: opts.fromLine ?? 0, epoch: opts.epoch || null, transport: null };
  const use = (name) => {
    if (at.transport === name) return;
    at.transport = name;
    if (opts.onTransport) opts.onTransport(name);
  };
  if (opts.transport === "websocket" && typeof WebSocket === "function") {
    use("websocket");
    const end = await followSocket(base(baseUrl), instanceId, at, opts);
    if (end) return end;
    if (!opts.token && typeof EventSource === "function") {
      use("sse");
      const end = await followEvents(baseUrl, instanceId, at, opts);
      if (end) return end;
    }
  }
  use("poll");
  return followPoll(baseUrl, instanceId, at, opts);
}

/** The long-poll loop of `follow`, from `at.next` in `at.epoch`. */
async function followPoll(baseUrl, instanceId, at, opts) {
  const { onLines, onStatus, onError, onRestart, signal, token, connectBudgetMs } = opts;
  const waitMs = opts.waitMs ?? 15000, limit = opts.limit ?? 5000;
  for (;;) {
    const url = `${base(baseUrl)}/llm/logs?instanceId=${enc(instanceId)}&fromLine=${at.next}&limit=${limit}&waitMs=${waitMs}`
      + (at.epoch ? `&epoch=${enc(at.epoch)}` : "");
    let body;
    try {
      body = await getJson(url, { token, signal, onError, connectBudgetMs });
    } catch (e) {
      if (!isEpochMismatch(e) || !onRestart) throw e;
      at.epoch = e.epoch; at.next = 0;
      onRestart(at.epoch);
      continue;
    }
    if (signal && signal.aborted) throw abortError();
    if (body.epoch) at.epoch = body.epoch;
    if (body.fromLine === at.next && body.lines.length) {
      if (onLines) onLines(body.lines, body.fromLine, body);
    }
    at.next = Math.max(at.next, body.nextLine);
    if (onStatus) onStatus(statusOf(body));
    if (body.complete) return body;
    // Stale: PowerJob unreachable, the cache answered at once; do not spin.
    if (body.lines.length === 0) await sleep(body.stale ? 1500 : 200, signal);
  }
}

/** The `ws:`/`wss:` URL of the log's WebSocket (`root` may be "": this page's origin). */
function socketUrl(root, instanceId, at) {
  const here = typeof location === "object" && location ? location.href : undefined;
  const u = new URL(`${root}/llm/logs/${enc(instanceId)}/ws`, here);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  if (at.next) u.searchParams.set("fromLine", String(at.next));
  if (at.epoch) u.searchParams.set("epoch", at.epoch);
  return u.href;
}

/** The HTTP status that a close after the upgrade stands for (0: none; see docs/API.md). */
function closeStatus(code, error) {
  if (code >= 4000 && code < 5000) return code - 4000;
  if (code !== 1008) return 0;
  return { unauthorized: 401, forbidden: 403, bad_request: 400 }[error && error.code] || 401;
}

/**
 * One WebSocket connection: sends the token as the first message, hands each message to
 * `onMessage`; resolves once it closes with whether it opened, the close code and reason,
 * and the last `error` message. Rejects with AbortError when `signal` aborts.
 */
function socketOnce(url, { token, signal, onMessage }) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortError());
    let ws;
    try { ws = new WebSocket(url); } catch (e) { return resolve({ opened: false, code: 0, reason: String(e), error: null }); }
    let opened = false, error = null;
    const abort = () => { ws.close(1000); reject(abortError()); };
    if (signal) signal.addEventListener("abort", abort, { once: true });
    ws.onopen = () => {
      opened = true;
      if (token) ws.send(JSON.stringify({ type: "auth", token }));
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "error") error = m;
      onMessage(m);
    };
    ws.onclose = (ev) => {
      if (signal) signal.removeEventListener("abort", abort);
      resolve({ opened, code: ev.code, reason: ev.reason, error });
    };
  });
}

/**
 * The WebSocket loop of `follow`: reconnects from `at.next` after a lost connection (a
 * restart: 1001, a slow client: 1013, the network), starts over on a rebuilt log.
 * Resolves with the `end` data, or null when WebSockets do not get through (the socket
 * never opens while plain requests are answered, twice in a row): the caller falls back.
 */
async function followSocket(root, instanceId, at, opts) {
  const { onLines, onStatus, onStartup, onError, onRestart, signal, token, connectBudgetMs } = opts;
  let unopened = 0;
  const restart = (epoch) => { at.epoch = epoch; at.next = 0; onRestart(epoch); };
  for (;;) {
    let end = null;
    const r = await socketOnce(socketUrl(root, instanceId, at), { token, signal, onMessage: (m) => {
      if (m.type === "lines") {
        if (m.epoch) at.epoch = m.epoch;
        if (m.fromLine === at.next && m.lines.length && onLines) onLines(m.lines, m.fromLine, m);
        at.next = Math.max(at.next, m.nextLine);
        if (onStatus) onStatus(statusOf({ ...m, complete: false }));
      } else if (m.type === "startup") {
        if (onStartup) onStartup(m);
      } else if (m.type === "end") {
        end = m;
        if (onStatus) onStatus(statusOf({ ...m, complete: true }));
      } else if (m.type === "error" && m.code !== "epoch_mismatch") {
        if (onError) onError(new PowertailError(null, m.code, m.message));
      }
    } });
    if (signal && signal.aborted) throw abortError();
    if (end) return end;
    const status = closeStatus(r.code, r.error);
    if (status) {
      // Refused after the upgrade (its `error` message says why).
      const e = r.error || {};
      const err = new PowertailError(status, e.code || "websocket_" + r.code, e.message || r.reason, e.epoch);
      if (isEpochMismatch(err) && onRestart) { restart(err.epoch); continue; }
      if (status < 500) throw err;
      if (onError) onError(err);
      await sleep(1500, signal);
      continue;
    }
    if (r.opened) {
      unopened = 0;
      // 1001 (a restart), 1013 (too slow), 1006 (the network): resume where it stopped.
      if (onError) onError(new Error(`the WebSocket closed (${r.code}${r.reason ? ": " + r.reason : ""}); resuming`));
      await sleep(250, signal);
      continue;
    }
    // It never opened: refused before the upgrade (a page cannot read that answer), the
    // server unreachable, or no WebSocket on the way. A plain request tells which.
    const probe = `${root}/llm/logs?instanceId=${enc(instanceId)}&fromLine=${at.next}&limit=1`
      + (at.epoch ? `&epoch=${enc(at.epoch)}` : "");
    try {
      await getJson(probe, { token, signal, onError, connectBudgetMs });
    } catch (e) {
      if (isEpochMismatch(e) && onRestart) { restart(e.epoch); continue; }
      throw e;
    }
    if (++unopened >= 2) return null;
  }
}

/** The SSE stage of `follow`: `stream` from `at.next`; null when it cannot connect. */
async function followEvents(baseUrl, instanceId, at, opts) {
  const { onLines, onStatus } = opts;
  try {
    return await stream(baseUrl, instanceId, {
      ...opts, fromLine: at.next, epoch: at.epoch,
      onLines: (lines, fromLine, body) => {
        if (body.epoch) at.epoch = body.epoch;
        at.next = body.nextLine;
        if (onLines) onLines(lines, fromLine, body);
      },
      onRestart: opts.onRestart && ((epoch) => { at.epoch = epoch; at.next = 0; opts.onRestart(epoch); }),
      onStatus,
    });
  } catch (e) {
    if (e instanceof PowertailError && e.status !== null) throw e;
    if (e && e.name === "AbortError") throw e;
    return null;   // refused or lost: long-poll takes over from `at.next`
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

/** `?name=value&…` of the options that are set (undefined and null left out). */
function queryOf(params) {
  const q = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${k}=${enc(String(v))}`).join("&");
  return q ? "?" + q : "";
}

/**
 * Searches the archive (`GET /llm/search`): every archived line holding `q` (at least 3
 * characters, case-insensitive), newest runs first. Options: `job`, `status`, `cause`,
 * `since`, `until` (epoch ms), `limit` (1..500, default 50), `cursor` (the previous
 * answer's `nextCursor`), and `token`, `signal`, `connectBudgetMs` as for `follow`.
 * Resolves with `{hits: [{instanceId, attempt, line, text, jobName, finishedAt, url}],
 * nextCursor, tookMs}`; rejects with a PowertailError on any error answer (400 for a
 * query too short, 404 when the archive is off, 503 when it is down).
 */
export function search(baseUrl, q, opts = {}) {
  const { job, status, cause, since, until, limit, cursor } = opts;
  const url = `${base(baseUrl)}/llm/search${queryOf({ q, job, status, cause, since, until, limit, cursor })}`;
  return getJson(url, { ...opts, once: true });
}

/**
 * The archived runs of job `job` (a configured name or a job id), newest first
 * (`GET /llm/jobs/{job}/runs`): `{job, runs: [{instanceId, attempt, status, startedAt,
 * finishedAt, phase, readyAfterMs, cause, causeLine, lines}], nextCursor}`. Options:
 * `since`, `until`, `limit`, `cursor`, and as for `search`.
 */
export function runs(baseUrl, job, opts = {}) {
  const { since, until, limit, cursor } = opts;
  const url = `${base(baseUrl)}/llm/jobs/${enc(job)}/runs${queryOf({ since, until, limit, cursor })}`;
  return getJson(url, { ...opts, once: true });
}

/**
 * Start-up statistics of job `job` (`GET /llm/jobs/{job}/stats`): `{job, since, runs,
 * byOutcome, byCause, readyP50Ms, readyP95Ms}`. Options: `since`, and as for `search`.
 */
export function stats(baseUrl, job, opts = {}) {
  const url = `${base(baseUrl)}/llm/jobs/${enc(job)}/stats${queryOf({ since: opts.since })}`;
  return getJson(url, { ...opts, once: true });
}

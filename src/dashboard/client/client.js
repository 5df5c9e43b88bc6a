// Generated from clients/js/src by `npm run build` in clients/js: do not edit.
/**
 * `Client`: a tickcast subscriber over the platform `WebSocket` (browsers, Node ≥ 22,
 * Node 20 with `--experimental-websocket`) or any constructor with the same API, such
 * as the `ws` package's.
 *
 * ```ts
 * import { connect } from 'tickcast-client';
 *
 * const client = connect('ws://127.0.0.1:9001/ws', { symbols: ['SYM0', 'SYM1'] });
 * client.on('tick', (t) => console.log(t.symbol, t.seq, t.kind === 'trade' ? t.price : t.bidPx));
 * client.on('gap', (g) => console.warn(`lost ${g.missed} updates of ${g.symbol}`));
 * ```
 *
 * The same rules as the Rust and Python clients:
 *
 * - **Reconnect.** When the connection ends the client reconnects: at once after the
 *   server announced its shutdown (`{"type":"shutdown"}` or close code 1001, so a load
 *   balancer can send it to another server; at most once a second, then the backoff
 *   applies), otherwise after an exponential backoff with equal jitter (100 ms doubling
 *   to 5 s by default), reset once a connection opens.
 * - **Resume.** Every connection subscribes again with `"resume": {symbol: last_seq}`;
 *   the server replays what was missed (ticks flagged `replay`) or sends a snapshot. A
 *   restarted server that does not know every symbol yet rejects that subscribe: the
 *   client sends it again after a backoff until it is accepted.
 * - **Gaps.** Sequence accounting per symbol ({@link GapDetector}), judged at the end
 *   of each message: a `gap` event follows the batch that showed it.
 * - **Token.** `docs/operations.md`: a browser cannot set headers on a WebSocket, so the
 *   token goes in `?token=` (the default, `tokenIn: "query"`); with a constructor that
 *   takes headers (the `ws` package), `tokenIn: "header"` sends
 *   `Authorization: Bearer <token>` instead. A function as `token` is called before
 *   every connection, so a reconnect can present a fresh token.
 *
 * Backpressure: a browser's WebSocket reads as fast as the network delivers and queues
 * what the page has not handled; every message is handled at once, in order, in the
 * socket's `message` callback, so the queue holds only what arrives during one turn of
 * the event loop. A page too slow for its feed should subscribe with `maxRate`.
 *
 * @module
 */
import { Backoff } from './backoff.js';
import { Session, } from './session.js';
/** A connection-level failure: the client gave up, or the `token` function failed. */
export class ConnectionError extends Error {
    name = 'ConnectionError';
}
const OPEN = 1;
/** Immediate reconnects after a shutdown notice at most this often. */
const IMMEDIATE_MIN_INTERVAL_MS = 1000;
/** A tickcast subscriber; see the module documentation. Made by {@link connect}. */
export class Client {
    /** The URL connected to (without the token). */
    url;
    options;
    session;
    backoff;
    resubscribeBackoff;
    listeners = new Map();
    ws = null;
    current = 'connecting';
    everOpened = false;
    userClosed = false;
    /** Failed attempts in a row (reset when a connection opens). */
    failures = 0;
    lastImmediate = -Infinity;
    reconnectTimer;
    connectTimer;
    resubscribeTimer;
    lastReason = '';
    constructor(url, options = {}) {
        this.url = resolveUrl(url);
        this.options = options;
        const random = options.random ?? Math.random;
        this.backoff = new Backoff(options.backoffInitialMs ?? 100, options.backoffMaxMs ?? 5000, random);
        this.resubscribeBackoff = new Backoff(options.backoffInitialMs ?? 100, options.backoffMaxMs ?? 5000, random);
        this.session = new Session(this.sink(), options.format ?? 'binary', options.summary ?? true);
        if (options.resume) {
            const entries = options.resume instanceof Map ? options.resume : Object.entries(options.resume);
            for (const [name, seq] of entries)
                this.session.seedResume(name, seq);
        }
        if (options.symbols && options.symbols.length > 0) {
            const opts = {};
            if (options.maxRate !== undefined)
                opts.maxRate = options.maxRate;
            if (options.channels !== undefined)
                opts.channels = options.channels;
            this.session.subscribe(options.symbols, opts);
        }
        if (!(options.WebSocket ?? globalThis.WebSocket)) {
            throw new ConnectionError('no WebSocket: pass one as the WebSocket option (e.g. the ws package), or use Node >= 22 (Node 20: --experimental-websocket)');
        }
    }
    /** Starts connecting (called by {@link connect}). */
    start() {
        void this.open();
        return this;
    }
    /** Where the connection stands. */
    get state() {
        return this.current;
    }
    /** The highest sequence number seen per symbol: what a reconnect resumes from. */
    lastSeqs() {
        return this.session.lastSeqs();
    }
    /** The book of `symbol` (subscribed with the `book` channel), as rebuilt so far. */
    book(symbol) {
        return this.session.book(symbol);
    }
    /** The session summary of `symbol`, when the server sent one. */
    summary(symbol) {
        return this.session.summary(symbol);
    }
    /** The symbols subscribed by name. */
    subscriptions() {
        return this.session.subscriptions();
    }
    /** The format of ticks on the connection. */
    get format() {
        return this.session.format;
    }
    /**
     * Adds symbols (`["*"]` for all), or changes their `maxRate` or the connection's
     * `format`. The server answers with `subscribed`, `symbols` and a snapshot; while
     * disconnected, the subscription is sent on reconnect.
     */
    subscribe(symbols, opts = {}) {
        this.send(this.session.subscribe(symbols, opts));
    }
    /** Removes symbols (`["*"]` for all); their sequence accounting is forgotten. */
    unsubscribe(symbols) {
        this.send(this.session.unsubscribe(symbols));
    }
    /** Closes the connection with code 1000 and stops reconnecting. */
    close() {
        this.userClosed = true;
        this.clearTimers();
        const ws = this.ws;
        this.ws = null;
        if (ws) {
            detach(ws);
            try {
                ws.close(1000, 'client closing');
            }
            catch {
                // already closed
            }
        }
        this.setState({ state: 'closed', reason: 'closed by the client' });
    }
    /**
     * Drops the connection as a network failure would (close code 4000), to test what
     * follows: the client reconnects and resumes.
     */
    drop() {
        if (this.ws)
            this.ws.close(4000, 'dropped by the client');
    }
    /** Adds a listener; returns a function that removes it. */
    on(type, fn) {
        let set = this.listeners.get(type);
        if (!set)
            this.listeners.set(type, (set = new Set()));
        set.add(fn);
        return () => this.off(type, fn);
    }
    /** Removes a listener. */
    off(type, fn) {
        this.listeners.get(type)?.delete(fn);
    }
    emit(type, ...args) {
        const set = this.listeners.get(type);
        if (!set)
            return;
        for (const fn of set) {
            try {
                fn(...args);
            }
            catch (e) {
                // A listener's bug is its own: report it as uncaught, and keep the stream going.
                queueMicrotask(() => {
                    throw e;
                });
            }
        }
    }
    sink() {
        return {
            tick: (t) => this.emit('tick', t),
            batch: (ticks, tsOut) => this.emit('batch', ticks, tsOut),
            gap: (g) => this.emit('gap', g),
            symbols: (m) => this.emit('symbols', m),
            subscribed: (a) => this.emit('subscribed', a),
            unsubscribed: (s) => this.emit('unsubscribed', s),
            conflated: (c) => this.emit('conflated', c),
            summary: (s) => this.emit('summary', s),
            shutdown: (m) => {
                this.emit('shutdown', m);
                this.serverLeaving();
            },
            error: (e) => this.emit('error', e),
            control: (m) => this.emit('control', m),
            book: (b) => this.emit('book', b),
            bookGap: (g) => this.emit('bookGap', g),
        };
    }
    setState(change) {
        this.current = change.state;
        this.emit('state', change);
    }
    send(text) {
        const ws = this.ws;
        if (ws && ws.readyState === OPEN) {
            ws.send(text);
            return true;
        }
        return false;
    }
    clearTimers() {
        clearTimeout(this.reconnectTimer);
        clearTimeout(this.connectTimer);
        clearTimeout(this.resubscribeTimer);
        this.reconnectTimer = this.connectTimer = this.resubscribeTimer = undefined;
    }
    async open() {
        this.reconnectTimer = undefined;
        if (this.userClosed || this.ws)
            return;
        this.setState({ state: this.everOpened ? 'reconnecting' : 'connecting' });
        let token;
        try {
            const t = this.options.token;
            token = typeof t === 'function' ? await t() : t;
        }
        catch (e) {
            this.emit('error', new ConnectionError(`token: ${e.message}`));
            this.failed(`token: ${e.message}`, false);
            return;
        }
        if (this.userClosed || this.ws)
            return;
        const header = this.options.tokenIn === 'header' && token;
        const url = token && !header ? withQuery(this.url, 'token', token) : this.url;
        const WS = (this.options.WebSocket ?? globalThis.WebSocket);
        let ws;
        try {
            ws = header ? new WS(url, [], { headers: { Authorization: `Bearer ${token}` } }) : new WS(url);
        }
        catch (e) {
            this.failed(`cannot open ${this.url}: ${e.message}`, false);
            return;
        }
        this.ws = ws;
        this.lastReason = '';
        ws.binaryType = 'arraybuffer';
        const timeoutMs = this.options.connectTimeoutMs ?? 5000;
        this.connectTimer = setTimeout(() => {
            if (this.ws === ws && ws.readyState !== OPEN) {
                this.lastReason = `no connection within ${timeoutMs} ms`;
                ws.close();
                this.ended(ws, 1006, this.lastReason);
            }
        }, timeoutMs);
        ws.onopen = () => {
            if (this.ws !== ws)
                return;
            clearTimeout(this.connectTimer);
            this.opened();
        };
        ws.onmessage = (ev) => {
            if (this.ws !== ws)
                return;
            const data = ev.data;
            if (typeof data === 'string') {
                this.session.onText(data);
                if (this.session.takeRetry())
                    this.scheduleResubscribe(ws);
            }
            else {
                this.session.onBinary(data);
            }
        };
        ws.onerror = (ev) => {
            this.lastReason = ev?.message ?? ev?.error?.message ?? 'connection error';
        };
        ws.onclose = (ev) => this.ended(ws, ev.code, ev.reason);
    }
    opened() {
        const again = this.everOpened;
        this.everOpened = true;
        this.failures = 0;
        this.backoff.reset();
        this.resubscribeBackoff.reset();
        const resumed = this.session.lastSeqs().size;
        for (const msg of this.session.connected())
            this.send(msg);
        this.setState({ state: 'open', reconnected: again, resumed });
    }
    scheduleResubscribe(ws) {
        clearTimeout(this.resubscribeTimer);
        this.resubscribeTimer = setTimeout(() => {
            if (this.ws !== ws)
                return;
            for (const msg of this.session.resubscribe())
                this.send(msg);
        }, this.resubscribeBackoff.nextDelayMs());
    }
    /** The server announced its shutdown: leave now and reconnect at once. */
    serverLeaving() {
        const ws = this.ws;
        if (!ws)
            return;
        detach(ws);
        try {
            ws.close(1000, 'server shutting down');
        }
        catch {
            // already closed
        }
        this.ended(ws, 1001, 'server shutting down');
    }
    ended(ws, code, reason) {
        if (this.ws !== ws)
            return;
        detach(ws);
        this.ws = null;
        clearTimeout(this.connectTimer);
        clearTimeout(this.resubscribeTimer);
        const wasOpen = this.current === 'open';
        const why = `${code}${reason ? ' ' + reason : ''}${this.lastReason ? ` (${this.lastReason})` : ''}`;
        const goingAway = code === 1001 || this.session.isShutdownAnnounced();
        this.failed(why, goingAway, wasOpen);
    }
    /** The connection ended or an attempt failed: schedule the next one, or give up. */
    failed(reason, goingAway, wasOpen = false) {
        if (this.userClosed)
            return;
        if (this.options.reconnect === false) {
            this.setState({ state: 'closed', reason });
            return;
        }
        if (!wasOpen) {
            this.failures++;
            const max = this.options.maxReconnectAttempts;
            if (max !== undefined && this.failures >= max) {
                this.userClosed = true;
                this.emit('error', new ConnectionError(`gave up after ${this.failures} attempts: ${reason}`));
                this.setState({ state: 'closed', reason });
                return;
            }
        }
        let delayMs;
        const now = Date.now();
        if (goingAway && now - this.lastImmediate >= IMMEDIATE_MIN_INTERVAL_MS) {
            // The server is leaving on purpose: come back (or go elsewhere) at once.
            this.lastImmediate = now;
            this.backoff.reset();
            delayMs = 0;
        }
        else {
            delayMs = this.backoff.nextDelayMs();
        }
        this.setState({ state: 'reconnecting', reason, delayMs, failures: this.failures });
        this.reconnectTimer = setTimeout(() => void this.open(), delayMs);
    }
}
function detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => { };
}
/** `url` as an absolute `ws:`/`wss:` URL: a relative one is resolved against the page. */
function resolveUrl(url) {
    const loc = globalThis.location;
    const u = new URL(url, loc?.href);
    if (u.protocol === 'http:')
        u.protocol = 'ws:';
    else if (u.protocol === 'https:')
        u.protocol = 'wss:';
    return u.toString();
}
function withQuery(url, key, value) {
    const u = new URL(url);
    u.searchParams.set(key, value);
    return u.toString();
}
/**
 * Connects to `url` (`ws://host:port/ws`; in a page, `/ws` resolves against it) and
 * subscribes to `options.symbols`. Returns at once; events tell what follows.
 */
export function connect(url, options = {}) {
    return new Client(url, options).start();
}

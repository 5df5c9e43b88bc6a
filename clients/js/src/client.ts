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

import type { Book, BookGap } from './book.js';
import { Backoff } from './backoff.js';
import type { Gap } from './gaps.js';
import {
  Session,
  type Format,
  type SessionSink,
  type Subscribed,
  type SubscribeOptions,
  type Summary,
  type Tick,
} from './session.js';

/** The part of the WebSocket API the client uses (the platform's, or `ws`'s). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the platform's `WebSocket`, or `ws`'s (which takes `headers`). */
export type WebSocketConstructor = new (url: string, protocols?: string[], options?: { headers: Record<string, string> }) => WebSocketLike;

/** Where the connection stands. */
export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A `state` event. */
export interface StateChange {
  readonly state: State;
  /** `reconnecting`, `closed`: why the last connection ended or failed. */
  readonly reason?: string;
  /** `reconnecting`: the delay before the next attempt, in ms. */
  readonly delayMs?: number;
  /** `reconnecting`: failed attempts in a row so far. */
  readonly failures?: number;
  /** `open`: whether this is a reconnect. */
  readonly reconnected?: boolean;
  /** `open`: symbols whose resume point was sent. */
  readonly resumed?: number;
}

/** A connection-level failure: the client gave up, or the `token` function failed. */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
}

/** Settings of {@link connect}; every one has a default. */
export interface ConnectOptions {
  /** Symbols to subscribe on connect (`["*"]` for every symbol). Default: none. */
  symbols?: string[];
  /** How ticks are sent: `"binary"` (default) or `"json"`. */
  format?: Format;
  /** At most this many updates per second per symbol of `symbols`. Default: unlimited. */
  maxRate?: number;
  /** The channels of `symbols` (`"trade"`, `"quote"`, `"book"`); absent: trades and quotes. */
  channels?: string[];
  /** A token for a server with `[auth]`, or a function giving one before each connection. */
  token?: string | (() => string | Promise<string>);
  /** Where the token goes: `"query"` (`?token=`, default) or `"header"` (needs a constructor that takes headers). */
  tokenIn?: 'query' | 'header';
  /** Resume points for the first connection (from an earlier client's `lastSeqs()`). */
  resume?: Record<string, number> | Map<string, number>;
  /** Ask for the session summary (open, high, low, volume) of every symbol subscribed. Default: true. */
  summary?: boolean;
  /** Reconnect when the connection ends. Default: true. */
  reconnect?: boolean;
  /** First reconnect delay, in ms; doubles per failed attempt. Default: 100. */
  backoffInitialMs?: number;
  /** Longest reconnect delay, in ms. Default: 5,000. */
  backoffMaxMs?: number;
  /** Failed attempts in a row before giving up; absent: never. */
  maxReconnectAttempts?: number;
  /** Longest wait for a connection to open, in ms. Default: 5,000. */
  connectTimeoutMs?: number;
  /** The WebSocket constructor. Default: `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Source of the jitter, 0 ≤ x < 1. Default: `Math.random`. */
  random?: () => number;
}

/** The events of a {@link Client} and their listeners' arguments. */
export interface ClientEvents {
  /** One tick, in message order. */
  tick: [tick: Tick];
  /** Every tick of one data message, after their `tick` events; `tsOut` in binary format only. */
  batch: [ticks: Tick[], tsOut: bigint | undefined];
  /** Updates of a symbol were lost. */
  gap: [gap: Gap];
  /** The server started or stopped merging updates for this connection (`merged` when it stops). */
  conflated: [state: { on: boolean; merged?: number }];
  /** The connection's state changed. */
  state: [change: StateChange];
  /** A bad message (`DecodeError`), a rejected control message (`ServerError`), or a `ConnectionError`. */
  error: [error: Error];
  /** The server acknowledged a subscribe. */
  subscribed: [ack: Subscribed];
  /** The server acknowledged an unsubscribe. */
  unsubscribed: [symbols: string[]];
  /** Id ↔ name of symbols newly added. */
  symbols: [map: Array<{ id: number; name: string }>];
  /** A symbol's session summary (open, high, low, volume since the server's session start) changed. */
  summary: [summary: Summary];
  /** The server announced its shutdown; the client reconnects at once. */
  shutdown: [message: string];
  /** Any other text message from the server. */
  control: [message: unknown];
  /** A book message changed a symbol's book (subscribed with the `book` channel). */
  book: [book: Book];
  /** Book changes of a symbol were lost; its book is not the server's until the next snapshot. */
  bookGap: [gap: BookGap];
}

type Listener<K extends keyof ClientEvents> = (...args: ClientEvents[K]) => void;

const OPEN = 1;
/** Immediate reconnects after a shutdown notice at most this often. */
const IMMEDIATE_MIN_INTERVAL_MS = 1000;

/** A tickcast subscriber; see the module documentation. Made by {@link connect}. */
export class Client {
  /** The URL connected to (without the token). */
  readonly url: string;
  private readonly options: ConnectOptions;
  private readonly session: Session;
  private readonly backoff: Backoff;
  private readonly resubscribeBackoff: Backoff;
  private readonly listeners = new Map<keyof ClientEvents, Set<(...args: any[]) => void>>();
  private ws: WebSocketLike | null = null;
  private current: State = 'connecting';
  private everOpened = false;
  private userClosed = false;
  /** Failed attempts in a row (reset when a connection opens). */
  private failures = 0;
  private lastImmediate = -Infinity;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private resubscribeTimer: ReturnType<typeof setTimeout> | undefined;
  private lastReason = '';

  constructor(url: string, options: ConnectOptions = {}) {
    this.url = resolveUrl(url);
    this.options = options;
    const random = options.random ?? Math.random;
    this.backoff = new Backoff(options.backoffInitialMs ?? 100, options.backoffMaxMs ?? 5000, random);
    this.resubscribeBackoff = new Backoff(options.backoffInitialMs ?? 100, options.backoffMaxMs ?? 5000, random);
    this.session = new Session(this.sink(), options.format ?? 'binary', options.summary ?? true);
    if (options.resume) {
      const entries = options.resume instanceof Map ? options.resume : Object.entries(options.resume);
      for (const [name, seq] of entries) this.session.seedResume(name, seq);
    }
    if (options.symbols && options.symbols.length > 0) {
      const opts: SubscribeOptions = {};
      if (options.maxRate !== undefined) opts.maxRate = options.maxRate;
      if (options.channels !== undefined) opts.channels = options.channels;
      this.session.subscribe(options.symbols, opts);
    }
    if (!(options.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket)) {
      throw new ConnectionError(
        'no WebSocket: pass one as the WebSocket option (e.g. the ws package), or use Node >= 22 (Node 20: --experimental-websocket)',
      );
    }
  }

  /** Starts connecting (called by {@link connect}). */
  start(): this {
    void this.open();
    return this;
  }

  /** Where the connection stands. */
  get state(): State {
    return this.current;
  }

  /** The highest sequence number seen per symbol: what a reconnect resumes from. */
  lastSeqs(): Map<string, number> {
    return this.session.lastSeqs();
  }

  /** The book of `symbol` (subscribed with the `book` channel), as rebuilt so far. */
  book(symbol: string): Book | undefined {
    return this.session.book(symbol);
  }

  /** The session summary of `symbol`, when the server sent one. */
  summary(symbol: string): Summary | undefined {
    return this.session.summary(symbol);
  }

  /** The symbols subscribed by name. */
  subscriptions(): string[] {
    return this.session.subscriptions();
  }

  /** The format of ticks on the connection. */
  get format(): Format {
    return this.session.format;
  }

  /**
   * Adds symbols (`["*"]` for all), or changes their `maxRate` or the connection's
   * `format`. The server answers with `subscribed`, `symbols` and a snapshot; while
   * disconnected, the subscription is sent on reconnect.
   */
  subscribe(symbols: string[], opts: SubscribeOptions = {}): void {
    this.send(this.session.subscribe(symbols, opts));
  }

  /** Removes symbols (`["*"]` for all); their sequence accounting is forgotten. */
  unsubscribe(symbols: string[]): void {
    this.send(this.session.unsubscribe(symbols));
  }

  /** Closes the connection with code 1000 and stops reconnecting. */
  close(): void {
    this.userClosed = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, 'client closing');
      } catch {
        // already closed
      }
    }
    this.setState({ state: 'closed', reason: 'closed by the client' });
  }

  /**
   * Drops the connection as a network failure would (close code 4000), to test what
   * follows: the client reconnects and resumes.
   */
  drop(): void {
    if (this.ws) this.ws.close(4000, 'dropped by the client');
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof ClientEvents>(type: K, fn: Listener<K>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /** Removes a listener. */
  off<K extends keyof ClientEvents>(type: K, fn: Listener<K>): void {
    this.listeners.get(type)?.delete(fn);
  }

  private emit<K extends keyof ClientEvents>(type: K, ...args: ClientEvents[K]): void {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of set) {
      try {
        fn(...args);
      } catch (e) {
        // A listener's bug is its own: report it as uncaught, and keep the stream going.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }

  private sink(): SessionSink {
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

  private setState(change: StateChange): void {
    this.current = change.state;
    this.emit('state', change);
  }

  private send(text: string): boolean {
    const ws = this.ws;
    if (ws && ws.readyState === OPEN) {
      ws.send(text);
      return true;
    }
    return false;
  }

  private clearTimers(): void {
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.connectTimer);
    clearTimeout(this.resubscribeTimer);
    this.reconnectTimer = this.connectTimer = this.resubscribeTimer = undefined;
  }

  private async open(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.userClosed || this.ws) return;
    this.setState({ state: this.everOpened ? 'reconnecting' : 'connecting' });
    let token: string | undefined;
    try {
      const t = this.options.token;
      token = typeof t === 'function' ? await t() : t;
    } catch (e) {
      this.emit('error', new ConnectionError(`token: ${(e as Error).message}`));
      this.failed(`token: ${(e as Error).message}`, false);
      return;
    }
    if (this.userClosed || this.ws) return;
    const header = this.options.tokenIn === 'header' && token;
    const url = token && !header ? withQuery(this.url, 'token', token) : this.url;
    const WS = (this.options.WebSocket ?? (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket)!;
    let ws: WebSocketLike;
    try {
      ws = header ? new WS(url, [], { headers: { Authorization: `Bearer ${token}` } }) : new WS(url);
    } catch (e) {
      this.failed(`cannot open ${this.url}: ${(e as Error).message}`, false);
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
      if (this.ws !== ws) return;
      clearTimeout(this.connectTimer);
      this.opened();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const data = ev.data;
      if (typeof data === 'string') {
        this.session.onText(data);
        if (this.session.takeRetry()) this.scheduleResubscribe(ws);
      } else {
        this.session.onBinary(data as ArrayBuffer);
      }
    };
    ws.onerror = (ev: { message?: string; error?: { message?: string } }) => {
      this.lastReason = ev?.message ?? ev?.error?.message ?? 'connection error';
    };
    ws.onclose = (ev) => this.ended(ws, ev.code, ev.reason);
  }

  private opened(): void {
    const again = this.everOpened;
    this.everOpened = true;
    this.failures = 0;
    this.backoff.reset();
    this.resubscribeBackoff.reset();
    const resumed = this.session.lastSeqs().size;
    for (const msg of this.session.connected()) this.send(msg);
    this.setState({ state: 'open', reconnected: again, resumed });
  }

  private scheduleResubscribe(ws: WebSocketLike): void {
    clearTimeout(this.resubscribeTimer);
    this.resubscribeTimer = setTimeout(() => {
      if (this.ws !== ws) return;
      for (const msg of this.session.resubscribe()) this.send(msg);
    }, this.resubscribeBackoff.nextDelayMs());
  }

  /** The server announced its shutdown: leave now and reconnect at once. */
  private serverLeaving(): void {
    const ws = this.ws;
    if (!ws) return;
    detach(ws);
    try {
      ws.close(1000, 'server shutting down');
    } catch {
      // already closed
    }
    this.ended(ws, 1001, 'server shutting down');
  }

  private ended(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
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
  private failed(reason: string, goingAway: boolean, wasOpen = false): void {
    if (this.userClosed) return;
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
    let delayMs: number;
    const now = Date.now();
    if (goingAway && now - this.lastImmediate >= IMMEDIATE_MIN_INTERVAL_MS) {
      // The server is leaving on purpose: come back (or go elsewhere) at once.
      this.lastImmediate = now;
      this.backoff.reset();
      delayMs = 0;
    } else {
      delayMs = this.backoff.nextDelayMs();
    }
    this.setState({ state: 'reconnecting', reason, delayMs, failures: this.failures });
    this.reconnectTimer = setTimeout(() => void this.open(), delayMs);
  }
}

function detach(ws: WebSocketLike): void {
  ws.onopen = ws.onmessage = ws.onclose = null;
  ws.onerror = () => {};
}

/** `url` as an absolute `ws:`/`wss:` URL: a relative one is resolved against the page. */
function resolveUrl(url: string): string {
  const loc = (globalThis as { location?: { href: string } }).location;
  const u = new URL(url, loc?.href);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}

function withQuery(url: string, key: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(key, value);
  return u.toString();
}

/**
 * Connects to `url` (`ws://host:port/ws`; in a page, `/ws` resolves against it) and
 * subscribes to `options.symbols`. Returns at once; events tell what follows.
 */
export function connect(url: string, options: ConnectOptions = {}): Client {
  return new Client(url, options).start();
}

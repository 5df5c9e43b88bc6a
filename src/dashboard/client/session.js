// Generated from clients/js/src by `npm run build` in clients/js: do not edit.
/**
 * `Session`: what a client knows across connections, sans-IO, as the Rust client's
 * `client::Session`. It takes the server's messages and hands ticks, gaps and control
 * events to a {@link SessionSink}, and writes the control messages to send: the
 * subscriptions to restore, with resume points, after a reconnect. No sockets, no
 * timers: {@link Client} is the I/O around it, and tests drive it directly.
 *
 * @module
 */
import { decode, DecodeError, FLAG_CONFLATED, FLAG_REPLAY, FLAG_SNAPSHOT, HEADER_SIZE, KIND_BOOK, KIND_TRADE, RECORD_SIZE, } from './decode.js';
import { formatFixed, formatFixedAt, parseFixed } from './fixed.js';
import { Book } from './book.js';
import { GapDetector } from './gaps.js';
/** The server rejected a control message (`{"type":"error"}`). */
export class ServerError extends Error {
    name = 'ServerError';
    /** Symbols the error names (unknown, or not entitled), if any. */
    symbols;
    /** The `id` of the message it answers. */
    id;
    /** Whether it answers the client's own resubscribe after a reconnect (retried). */
    resubscribe;
    constructor(message, symbols, id, resubscribe) {
        super(message);
        this.symbols = symbols;
        this.id = id;
        this.resubscribe = resubscribe;
    }
}
const FLAG_BITS = { snapshot: FLAG_SNAPSHOT, conflated: FLAG_CONFLATED, replay: FLAG_REPLAY };
/** Integer fields past 2^53 (ns timestamps), read as strings, then as bigints. */
const TS_FIELDS = /"(ts_event|ts_recv|since)":(\d+)/g;
const SUMMARY_PREFIX = '{"type":"summary"';
/** Subscriptions, sequence accounting and the id map of one client. */
export class Session {
    sink;
    /** Symbols the user subscribed (and did not unsubscribe) → their `max_rate`. */
    wanted = new Map();
    /** Whether the user subscribed to `*`, and at which rate. */
    wildcard = false;
    wildcardRate = 0;
    /** Format of ticks on the connection, sent with every subscribe. */
    format;
    gaps = new GapDetector();
    /** Id → name and name → id on the current connection. */
    names = [];
    ids = new Map();
    summaries = new Map();
    shutdownAnnounced = false;
    /** Messages sent so far, for their `id`s. */
    sent = 0;
    /** Ids of the resubscribes awaiting their reply. */
    awaiting = new Set();
    /** The user's subscribes awaiting their reply → the symbols each newly added. */
    pending = new Map();
    /** The server rejected a resubscribe: send it again later. */
    retry = false;
    /** Each symbol's channels, when a subscribe named them (sent again on reconnect). */
    channelsOf = new Map();
    /** The wildcard's channels, when its subscribe named them. */
    wildcardChannels;
    /** Each symbol's book, by name (it survives a reconnect; `resume_book` continues it). */
    books = new Map();
    /** Whether subscribes ask for the symbols' session summaries (`"summary": true`). */
    wantSummary;
    constructor(sink, format = 'binary', summary = true) {
        this.sink = sink;
        this.format = format;
        this.wantSummary = summary;
    }
    /** Records a subscribe and returns the message to send. */
    subscribe(symbols, opts = {}) {
        const rate = opts.maxRate ?? 0;
        if (opts.format !== undefined)
            this.format = opts.format;
        const channels = opts.channels === undefined ? undefined : opts.channels.join(',');
        const added = [];
        for (const s of symbols) {
            if (s === '*') {
                this.wildcard = true;
                this.wildcardRate = rate;
                if (channels !== undefined)
                    this.wildcardChannels = channels;
            }
            else {
                if (!this.wanted.has(s))
                    added.push(s);
                this.wanted.set(s, rate);
                if (channels !== undefined) {
                    this.channelsOf.set(s, channels);
                    if (!opts.channels?.includes('book'))
                        this.books.delete(s);
                }
            }
        }
        const id = `subscribe-${++this.sent}`;
        this.pending.set(id, added);
        return this.subscribeMessage(symbols, rate, undefined, id, channels);
    }
    /** A resume point for the first connection (from an earlier client's `lastSeqs()`). */
    seedResume(symbol, seq) {
        this.gaps.seed(symbol, seq);
    }
    /** Records an unsubscribe and returns the message to send. */
    unsubscribe(symbols) {
        for (const s of symbols) {
            if (s === '*') {
                this.wildcard = false;
                for (const name of this.wanted.keys())
                    this.forget(name);
                this.wanted.clear();
                for (const name of [...this.gaps.lastSeqs().keys()])
                    this.forget(name);
            }
            else {
                this.wanted.delete(s);
                this.forget(s);
            }
        }
        return JSON.stringify({ op: 'unsubscribe', symbols });
    }
    forget(name) {
        this.gaps.forget(name);
        this.summaries.delete(name);
        this.books.delete(name);
        this.channelsOf.delete(name);
    }
    /** The book of `symbol` (subscribed with the `book` channel), as rebuilt so far. */
    book(symbol) {
        return this.books.get(symbol);
    }
    bookOf(symbol) {
        let b = this.books.get(symbol);
        if (b === undefined) {
            b = new Book(symbol);
            this.books.set(symbol, b);
        }
        return b;
    }
    /** Whether anything is subscribed. */
    hasSubscriptions() {
        return this.wildcard || this.wanted.size > 0;
    }
    /** The symbols subscribed by name (not through `*`). */
    subscriptions() {
        return [...this.wanted.keys()];
    }
    /**
     * A new connection is up: forgets the old id map and returns the subscribes to
     * send, resuming each symbol from the last `seq` seen (none when nothing is
     * subscribed).
     */
    connected() {
        this.gaps.newConnection();
        this.names = [];
        this.ids.clear();
        this.shutdownAnnounced = false;
        this.retry = false;
        this.pending.clear();
        return this.resubscribe();
    }
    /**
     * Whether the server rejected the last resubscribe (a restarted server whose feed
     * has not yet seen every symbol answers `unknown symbol`): the caller sends
     * {@link Session.resubscribe} again after a delay. Reading clears it.
     */
    takeRetry() {
        const r = this.retry;
        this.retry = false;
        return r;
    }
    /**
     * The subscribes that restore every subscription, with resume points and `id`s to
     * recognise their replies: one per distinct `max_rate` (the wildcard first).
     */
    resubscribe() {
        this.awaiting.clear();
        if (!this.hasSubscriptions())
            return [];
        const last = this.gaps.lastSeqs();
        const resumeOf = (names) => {
            const out = {};
            let any = false;
            for (const [name, seq] of last) {
                if (names === null || names.has(name)) {
                    out[name] = seq;
                    any = true;
                }
            }
            return any ? out : undefined;
        };
        const messages = [];
        const send = (symbols, rate, resume, channels) => {
            const id = `resubscribe-${++this.sent}`;
            this.awaiting.add(id);
            messages.push(this.subscribeMessage(symbols, rate, resume, id, channels));
        };
        if (this.wildcard)
            send(['*'], this.wildcardRate, resumeOf(null), this.wildcardChannels);
        // One subscribe per distinct (rate, channels).
        const groups = new Map();
        for (const [name, rate] of this.wanted) {
            const channels = this.channelsOf.get(name);
            if (this.wildcard && rate === this.wildcardRate && channels === this.wildcardChannels)
                continue;
            const key = `${rate}|${channels ?? ''}`;
            const g = groups.get(key);
            if (g)
                g.names.push(name);
            else
                groups.set(key, { rate, channels, names: [name] });
        }
        for (const { rate, channels, names } of groups.values()) {
            names.sort();
            send(names, rate, this.wildcard ? undefined : resumeOf(new Set(names)), channels);
        }
        return messages;
    }
    /** The highest sequence number seen per symbol: what a reconnect resumes from. */
    lastSeqs() {
        return this.gaps.lastSeqs();
    }
    /** The session summary of `symbol`, if the server sent one. */
    summary(symbol) {
        const s = this.summaries.get(symbol);
        return s && toSummary(symbol, s);
    }
    /** Whether the server said `{"type":"shutdown"}` on the current connection. */
    isShutdownAnnounced() {
        return this.shutdownAnnounced;
    }
    subscribeMessage(symbols, rate, resume, id, channels) {
        const msg = { op: 'subscribe', symbols, format: this.format };
        if (rate > 0)
            msg['max_rate'] = rate;
        if (resume !== undefined)
            msg['resume'] = resume;
        if (channels !== undefined)
            msg['channels'] = channels.split(',');
        if (id.startsWith('resubscribe-')) {
            const books = {};
            let any = false;
            for (const s of symbols[0] === '*' ? this.books.keys() : symbols) {
                const b = this.books.get(s);
                if (b?.synced) {
                    books[s] = b.seq;
                    any = true;
                }
            }
            if (any)
                msg['resume_book'] = books;
        }
        if (this.wantSummary)
            msg['summary'] = true;
        msg['id'] = id;
        return JSON.stringify(msg);
    }
    // ------------------------------------------------------------------ incoming
    /**
     * A binary data message: decoded, accounted, handed on as ticks, a batch and any
     * gaps. A bad message goes to `sink.error` as a {@link DecodeError} and is skipped.
     */
    onBinary(data) {
        let decoded;
        try {
            decoded = decode(data);
        }
        catch (e) {
            this.sink.error(e);
            return;
        }
        const ticks = [];
        decoded.records.forEach((r) => {
            if (r.kindCode === KIND_BOOK) {
                // Numbered apart: the symbol's book accounts for book changes.
                const name = this.names[r.symbolId];
                if (name === undefined)
                    return;
                const book = this.bookOf(name);
                const done = book.applyRecord(r);
                if (done === false)
                    return;
                if (done !== true)
                    this.sink.bookGap?.(done);
                this.sink.book?.(book);
                return;
            }
            const t = binaryTick(r, this.names[r.symbolId] ?? '');
            ticks.push(t);
            if (t.symbol !== '') {
                this.gaps.observe(t.symbol, t.seq, t.flags, t.count, t.tsRecv);
                if (t.kind === 'trade' && this.summaries.has(t.symbol)) {
                    this.countTrade(t, r.fixed(0), r.fixed(1), r.fixed(2), r.fixed(3));
                }
            }
            this.sink.tick(t);
        });
        this.sink.batch(ticks, decoded.tsOut);
        for (const g of this.gaps.endMessage(HEADER_SIZE + decoded.header.recordCount * RECORD_SIZE))
            this.sink.gap(g);
    }
    /** A text message: a JSON tick array, or a control message. */
    onText(text) {
        let v;
        try {
            // Timestamps exceed 2^53: read them as strings, then as bigints.
            const big = text.charCodeAt(0) === 91 /* [ */ || text.startsWith(SUMMARY_PREFIX);
            v = JSON.parse(big ? text.replace(TS_FIELDS, '"$1":"$2"') : text);
        }
        catch (e) {
            this.sink.error(new DecodeError('json', `a text message that is not JSON: ${e.message}`));
            return;
        }
        if (Array.isArray(v)) {
            this.onJsonTicks(v, text.length);
        }
        else if (v !== null && typeof v === 'object') {
            this.onControl(v);
        }
        else {
            this.sink.control(v);
        }
    }
    onJsonTicks(list, length) {
        const ticks = [];
        for (const o of list) {
            const rec = o;
            if (rec !== null && typeof rec === 'object' && rec['type'] === 'book' && typeof rec['symbol'] === 'string') {
                const book = this.bookOf(rec['symbol']);
                const gap = book.applyJson(rec);
                if (gap !== null)
                    this.sink.bookGap?.(gap);
                this.sink.book?.(book);
                continue;
            }
            const t = jsonTick(rec, this.ids);
            if (t === null) {
                this.sink.error(new DecodeError('json', `not a tick: ${JSON.stringify(o)}`));
                continue;
            }
            ticks.push(t);
            this.gaps.observe(t.symbol, t.seq, t.flags, t.count, t.tsRecv);
            if (t.kind === 'trade') {
                if (this.summaries.has(t.symbol)) {
                    this.countTrade(t, parseFixed(t.price), parseFixed(t.size), parseFixed(t.high), parseFixed(t.low));
                }
            }
            this.sink.tick(t);
        }
        this.sink.batch(ticks, undefined);
        for (const g of this.gaps.endJsonMessage(length))
            this.sink.gap(g);
    }
    /** Adds a trade record that comes after a symbol's summary to it. */
    countTrade(t, price, size, high, low) {
        const s = this.summaries.get(t.symbol);
        if (s === undefined || t.seq <= s.seq)
            return;
        if (s.trades === 0) {
            s.open = price;
            s.high = high;
            s.low = low;
            s.since = t.tsEvent;
        }
        s.seq = t.seq;
        s.trades += t.count;
        s.volume += size;
        if (high > s.high)
            s.high = high;
        if (low < s.low)
            s.low = low;
        this.sink.summary(toSummary(t.symbol, s));
    }
    onControl(v) {
        const type = v['type'];
        const id = v['id'];
        const resubscribe = typeof id === 'string' && this.awaiting.delete(id);
        if (resubscribe && type === 'error')
            this.retry = true;
        const names = (x) => (Array.isArray(x) ? x.filter((s) => typeof s === 'string') : []);
        switch (type) {
            case 'symbols': {
                const map = [];
                for (const s of Array.isArray(v['symbols']) ? v['symbols'] : []) {
                    const sid = s?.id;
                    const name = s?.name;
                    // Ids are dense from 0 on the server; refuse absurd ones rather than allocate.
                    if (!Number.isInteger(sid) || sid < 0 || sid > 1 << 24 || typeof name !== 'string')
                        continue;
                    this.names[sid] = name;
                    this.ids.set(name, sid);
                    map.push({ id: sid, name });
                }
                this.sink.symbols(map);
                break;
            }
            case 'subscribed': {
                if (typeof id === 'string')
                    this.pending.delete(id);
                const format = v['format'] === 'json' ? 'json' : 'binary';
                const ack = {
                    symbols: names(v['symbols']),
                    format,
                    maxRate: typeof v['max_rate'] === 'number' ? v['max_rate'] : 0,
                    ...(id === undefined ? {} : { id }),
                };
                this.sink.subscribed(ack);
                break;
            }
            case 'unsubscribed':
                this.sink.unsubscribed(names(v['symbols']));
                break;
            case 'summary':
                for (const s of Array.isArray(v['symbols']) ? v['symbols'] : [])
                    this.onSummary(s);
                break;
            case 'conflation': {
                const merged = v['merged'];
                this.sink.conflated(typeof merged === 'number' ? { on: v['state'] === 'on', merged } : { on: v['state'] === 'on' });
                break;
            }
            case 'shutdown':
                this.shutdownAnnounced = true;
                this.sink.shutdown(typeof v['message'] === 'string' ? v['message'] : '');
                break;
            case 'error': {
                const symbols = names(v['symbols']);
                if (typeof id === 'string') {
                    // Nothing of a rejected subscribe was subscribed: forget what it added.
                    for (const s of this.pending.get(id) ?? [])
                        this.wanted.delete(s);
                    this.pending.delete(id);
                }
                this.sink.error(new ServerError(String(v['message'] ?? ''), symbols, id, resubscribe));
                break;
            }
            default:
                this.sink.control(v);
        }
    }
    onSummary(s) {
        const symbol = s?.['symbol'];
        if (typeof symbol !== 'string')
            return;
        try {
            const state = {
                seq: Number(s['seq']),
                trades: Number(s['trades']),
                open: parseFixed(String(s['open'])),
                high: parseFixed(String(s['high'])),
                low: parseFixed(String(s['low'])),
                volume: parseFixed(String(s['volume'])),
                since: BigInt(String(s['since'])),
            };
            if (!Number.isFinite(state.seq) || !Number.isFinite(state.trades))
                throw new Error('seq and trades are numbers');
            this.summaries.set(symbol, state);
            this.sink.summary(toSummary(symbol, state));
        }
        catch (e) {
            this.sink.error(new DecodeError('json', `bad summary of ${symbol}: ${e.message}`));
        }
    }
}
function toSummary(symbol, s) {
    return {
        symbol,
        seq: s.seq,
        trades: s.trades,
        open: formatFixed(s.open),
        high: formatFixed(s.high),
        low: formatFixed(s.low),
        volume: formatFixed(s.volume),
        since: s.since,
    };
}
/** A binary record as a {@link Tick}; each kind built as one literal, so ticks share a shape. */
function binaryTick(r, symbol) {
    const v = r.view;
    const o = r.offset;
    const flags = v.getUint8(o + 1);
    const symbolId = v.getUint32(o + 4, true);
    const seq = r.seq;
    const count = v.getUint32(o + 32, true);
    const tsEvent = v.getBigUint64(o + 16, true);
    const tsRecv = v.getBigUint64(o + 24, true);
    const snapshot = (flags & FLAG_SNAPSHOT) !== 0;
    const conflated = (flags & FLAG_CONFLATED) !== 0;
    const replay = (flags & FLAG_REPLAY) !== 0;
    const a = formatFixedAt(v, o + 40);
    const b = formatFixedAt(v, o + 48);
    const c = formatFixedAt(v, o + 56);
    const d = formatFixedAt(v, o + 64);
    if (v.getUint8(o) === KIND_TRADE) {
        return { symbol, symbolId, seq, kind: 'trade', flags, snapshot, conflated, replay, count, tsEvent, tsRecv, price: a, size: b, high: c, low: d };
    }
    return { symbol, symbolId, seq, kind: 'quote', flags, snapshot, conflated, replay, count, tsEvent, tsRecv, bidPx: a, bidSz: b, askPx: c, askSz: d };
}
/** A JSON tick object (timestamps already strings) as a {@link Tick}; null if it is not one. */
function jsonTick(o, ids) {
    if (o === null || typeof o !== 'object' || o['type'] !== 'tick')
        return null;
    const symbol = o['symbol'];
    const seq = o['seq'];
    if (typeof symbol !== 'string' || typeof seq !== 'number')
        return null;
    let flags = 0;
    for (const f of Array.isArray(o['flags']) ? o['flags'] : [])
        flags |= FLAG_BITS[f] ?? 0;
    let tsEvent;
    let tsRecv;
    try {
        tsEvent = BigInt(o['ts_event']);
        tsRecv = BigInt(o['ts_recv']);
    }
    catch {
        return null;
    }
    const symbolId = ids.get(symbol) ?? -1;
    const count = typeof o['count'] === 'number' ? o['count'] : 1;
    const snapshot = (flags & FLAG_SNAPSHOT) !== 0;
    const conflated = (flags & FLAG_CONFLATED) !== 0;
    const replay = (flags & FLAG_REPLAY) !== 0;
    const str = (k) => (typeof o[k] === 'string' ? o[k] : null);
    if (o['kind'] === 'trade') {
        const [price, size, high, low] = [str('price'), str('size'), str('high'), str('low')];
        if (price === null || size === null || high === null || low === null)
            return null;
        return { symbol, symbolId, seq, kind: 'trade', flags, snapshot, conflated, replay, count, tsEvent, tsRecv, price, size, high, low };
    }
    if (o['kind'] === 'quote') {
        const [bidPx, bidSz, askPx, askSz] = [str('bid_px'), str('bid_sz'), str('ask_px'), str('ask_sz')];
        if (bidPx === null || bidSz === null || askPx === null || askSz === null)
            return null;
        return { symbol, symbolId, seq, kind: 'quote', flags, snapshot, conflated, replay, count, tsEvent, tsRecv, bidPx, bidSz, askPx, askSz };
    }
    return null;
}

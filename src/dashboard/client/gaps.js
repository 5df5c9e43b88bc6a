// Generated from clients/js/src by `npm run build` in clients/js: do not edit.
/**
 * Per-symbol gap detection from sequence accounting, sans-IO: the same rules as the
 * Rust client (`src/client/gaps.rs`) and the Python one (`tickcast/gaps.py`).
 *
 * The protocol's rule (`docs/protocol.md`, "Sequence numbers and gaps"): for a symbol,
 * the `count`s of the records received add up to the sequence numbers advanced, and a
 * record flagged `snapshot` stands for everything before it. So each symbol keeps the
 * highest `seq` seen and a *deficit*, the updates not yet accounted for. A deficit can
 * be temporary: a conflated quote and trade of one symbol go out together, the lower
 * `seq` first, and the first of them may jump ahead of what it accounts for until the
 * second arrives. The records of one flush arrive in one message, so the deficit is
 * judged at the end of each message; a message that is full (the server splits larger
 * batches) defers the judgement to the next one.
 *
 * @module
 */
import { FLAG_SNAPSHOT, HEADER_SIZE, MAX_MESSAGE_BYTES, RECORD_SIZE } from './decode.js';
/** Longest JSON tick the server writes, in bytes (names are at most 31 bytes). */
const JSON_TICK_MAX_BYTES = 512;
/**
 * Tracks every symbol's sequence and reports {@link Gap}s. Symbols are kept by name,
 * so the accounting survives a reconnect, where ids may be numbered afresh.
 */
export class GapDetector {
    trackers = new Map();
    touched = [];
    touchedNames = [];
    /** A new connection: what was pending on the old one is forgotten. */
    newConnection() {
        for (const t of this.trackers.values()) {
            t.touched = false;
            t.deficit = 0;
        }
        this.touched = [];
        this.touchedNames = [];
    }
    /** Forgets a symbol (unsubscribed): a later subscribe starts it afresh. */
    forget(symbol) {
        this.trackers.delete(symbol);
    }
    /** The highest sequence number seen per symbol: what a resume continues from. */
    lastSeqs() {
        const out = new Map();
        for (const [name, t] of this.trackers)
            if (t.last > 0)
                out.set(name, t.last);
        return out;
    }
    /** The highest sequence number seen for `symbol`, if any. */
    lastSeq(symbol) {
        const t = this.trackers.get(symbol);
        return t && t.last > 0 ? t.last : undefined;
    }
    /** Sets a resume point for a symbol not seen yet (from an earlier client). */
    seed(symbol, seq) {
        if (!this.trackers.has(symbol) && Number.isSafeInteger(seq) && seq > 0) {
            this.trackers.set(symbol, { last: seq, deficit: 0, lastRecv: 0n, touched: false });
        }
    }
    /** Accounts for one record. */
    observe(symbol, seq, flags, count, tsRecv) {
        let t = this.trackers.get(symbol);
        if (t === undefined) {
            t = { last: 0, deficit: 0, lastRecv: 0n, touched: false };
            this.trackers.set(symbol, t);
        }
        if (!t.touched) {
            t.touched = true;
            this.touched.push(t);
            this.touchedNames.push(symbol);
        }
        const afresh = seq <= t.last && tsRecv > t.lastRecv;
        if (tsRecv > t.lastRecv)
            t.lastRecv = tsRecv;
        if ((flags & FLAG_SNAPSHOT) !== 0 || t.last === 0 || afresh) {
            // A snapshot stands for everything before it, even when its seq is lower (a
            // restarted server numbers afresh). A first record starts the count, and so does
            // a lower seq ingested later than anything seen: a restarted server that had no
            // value to snapshot when the client came back.
            t.last = seq;
            t.deficit = 0;
        }
        else if (seq <= t.last) {
            // A late record of a flush: it accounts for updates already counted short.
            t.deficit = Math.max(0, t.deficit - count);
        }
        else {
            t.deficit = Math.max(0, seq - t.last + t.deficit - count);
            t.last = seq;
        }
    }
    /**
     * Ends a binary message of `messageBytes` bytes: every symbol it touched that is
     * still short is a gap, unless the message was full (the rest of the batch follows).
     */
    endMessage(messageBytes) {
        if (messageBytes + RECORD_SIZE > MAX_MESSAGE_BYTES && messageBytes > HEADER_SIZE)
            return [];
        return this.judge();
    }
    /** Ends a JSON data message of `length` characters: as {@link endMessage}. */
    endJsonMessage(length) {
        if (length + JSON_TICK_MAX_BYTES > MAX_MESSAGE_BYTES)
            return [];
        return this.judge();
    }
    judge() {
        const gaps = [];
        this.touched.forEach((t, i) => {
            t.touched = false;
            if (t.deficit > 0) {
                const expected = Math.max(0, t.last - t.deficit);
                gaps.push({ symbol: this.touchedNames[i], expected, got: t.last, missed: t.last - expected });
                t.deficit = 0;
            }
        });
        this.touched = [];
        this.touchedNames = [];
        return gaps;
    }
}

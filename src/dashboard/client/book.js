// Generated from clients/js/src by `npm run build` in clients/js: do not edit.
/**
 * `Book`: one symbol's order book as a subscriber rebuilds it from the server's book
 * messages (`docs/protocol.md`, "Order books"), with gap detection; the port of the
 * Rust client's `client::BookTracker`.
 *
 * A book message is a group of binary records of kind 3 (one per level, the group word
 * giving the levels and the record's index) or one JSON `book` object. A message
 * flagged snapshot replaces the whole book; any other one sets each level's size (0
 * removes it). Books are numbered per symbol on their own sequence and each message
 * accounts for `count` of them: one that does not follow the last is a {@link BookGap}.
 *
 * @module
 */
import { FLAG_SNAPSHOT } from './decode.js';
import { formatFixed, parseFixed } from './fixed.js';
/** One symbol's book. */
export class Book {
    symbol;
    /** Book sequence number of the last complete message: what `resume_book` carries. */
    seq = 0;
    /** A snapshot (or the symbol's first change) was applied, and no gap since. */
    synced = false;
    sides = [new Map(), new Map()];
    remaining = 0;
    constructor(symbol) {
        this.symbol = symbol;
    }
    /** The levels of a side, best first (bids highest, asks lowest), at most `depth`. */
    levels(side, depth = Infinity) {
        const m = this.sides[side === 'bid' ? 0 : 1];
        const prices = [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        if (side === 'bid')
            prices.reverse();
        return prices.slice(0, depth).map((px) => {
            const sz = m.get(px) ?? 0n;
            return { px, sz, price: formatFixed(px), size: formatFixed(sz) };
        });
    }
    set(side, px, sz) {
        const m = this.sides[side === 1 ? 1 : 0];
        if (sz <= 0n)
            m.delete(px);
        else
            m.set(px, sz);
    }
    clear() {
        this.sides[0].clear();
        this.sides[1].clear();
    }
    complete(seq, flags, count) {
        const expected = this.seq + Math.max(count, 1);
        const first = this.seq === 0 && !this.synced;
        const last = this.seq;
        this.seq = seq;
        if ((flags & FLAG_SNAPSHOT) !== 0 || (first && seq === expected) || (this.synced && seq === expected)) {
            this.synced = true;
            return null;
        }
        this.synced = false;
        return { symbol: this.symbol, expected: last + 1, got: seq };
    }
    /**
     * Applies one binary book record. Returns `true` when it completed a message, the
     * gap when that message did not follow the last one (its levels are applied
     * anyway), `false` while the message has more records.
     */
    applyRecord(r) {
        const levels = r.bookLevels;
        if (r.bookIndex === 0) {
            if ((r.flags & FLAG_SNAPSHOT) !== 0)
                this.clear();
            this.remaining = levels;
        }
        if (levels > 0) {
            this.set(r.bookSide === 'ask' ? 1 : 0, r.fixed(0), r.fixed(1));
            this.remaining = Math.max(0, this.remaining - 1);
        }
        if (this.remaining > 0)
            return false;
        return this.complete(r.seq, r.flags, r.count) ?? true;
    }
    /** Applies one JSON `book` object; returns the gap it showed, if any. */
    applyJson(o) {
        const snapshot = (o.flags ?? []).includes('snapshot');
        if (snapshot)
            this.clear();
        for (const [p, s] of o.bids ?? [])
            this.set(0, parseFixed(p), parseFixed(s));
        for (const [p, s] of o.asks ?? [])
            this.set(1, parseFixed(p), parseFixed(s));
        return this.complete(Number(o.seq), snapshot ? FLAG_SNAPSHOT : 0, Number(o.count ?? 1));
    }
}

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

import { FLAG_SNAPSHOT, type RecordView } from './decode.js';
import { formatFixed, parseFixed } from './fixed.js';

/** Book changes of `symbol` lost: numbers from `expected` up to (not including) `got`. */
export interface BookGap {
  readonly symbol: string;
  readonly expected: number;
  readonly got: number;
}

/** One price level, best first in {@link Book.levels}. */
export interface BookLevel {
  /** Exact decimal price. */
  readonly price: string;
  /** Exact decimal size. */
  readonly size: string;
  /** The price in fixed point (value × 10⁸). */
  readonly px: bigint;
  /** The size in fixed point. */
  readonly sz: bigint;
}

/** The JSON form of a book message. */
export interface BookMessageJson {
  readonly symbol: string;
  readonly seq: number;
  readonly flags?: readonly string[];
  readonly count?: number;
  readonly bids?: ReadonlyArray<readonly [string, string]>;
  readonly asks?: ReadonlyArray<readonly [string, string]>;
}

/** One symbol's book. */
export class Book {
  readonly symbol: string;
  /** Book sequence number of the last complete message: what `resume_book` carries. */
  seq = 0;
  /** A snapshot (or the symbol's first change) was applied, and no gap since. */
  synced = false;
  private readonly sides: [Map<bigint, bigint>, Map<bigint, bigint>] = [new Map(), new Map()];
  private remaining = 0;

  constructor(symbol: string) {
    this.symbol = symbol;
  }

  /** The levels of a side, best first (bids highest, asks lowest), at most `depth`. */
  levels(side: 'bid' | 'ask', depth = Infinity): BookLevel[] {
    const m = this.sides[side === 'bid' ? 0 : 1];
    const prices = [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (side === 'bid') prices.reverse();
    return prices.slice(0, depth).map((px) => {
      const sz = m.get(px) ?? 0n;
      return { px, sz, price: formatFixed(px), size: formatFixed(sz) };
    });
  }

  private set(side: number, px: bigint, sz: bigint): void {
    const m = this.sides[side === 1 ? 1 : 0];
    if (sz <= 0n) m.delete(px);
    else m.set(px, sz);
  }

  private clear(): void {
    this.sides[0].clear();
    this.sides[1].clear();
  }

  private complete(seq: number, flags: number, count: number): BookGap | null {
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
  applyRecord(r: RecordView): boolean | BookGap {
    const levels = r.bookLevels;
    if (r.bookIndex === 0) {
      if ((r.flags & FLAG_SNAPSHOT) !== 0) this.clear();
      this.remaining = levels;
    }
    if (levels > 0) {
      this.set(r.bookSide === 'ask' ? 1 : 0, r.fixed(0), r.fixed(1));
      this.remaining = Math.max(0, this.remaining - 1);
    }
    if (this.remaining > 0) return false;
    return this.complete(r.seq, r.flags, r.count) ?? true;
  }

  /** Applies one JSON `book` object; returns the gap it showed, if any. */
  applyJson(o: BookMessageJson): BookGap | null {
    const snapshot = (o.flags ?? []).includes('snapshot');
    if (snapshot) this.clear();
    for (const [p, s] of o.bids ?? []) this.set(0, parseFixed(p), parseFixed(s));
    for (const [p, s] of o.asks ?? []) this.set(1, parseFixed(p), parseFixed(s));
    return this.complete(Number(o.seq), snapshot ? FLAG_SNAPSHOT : 0, Number(o.count ?? 1));
  }
}

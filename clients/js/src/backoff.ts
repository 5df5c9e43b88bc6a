/**
 * Reconnect delays: exponential backoff with "equal jitter", as the Rust client's
 * `Backoff` and the Python client: each delay is drawn between half and all of
 * `min(max, initial × 2^attempt)`, so clients dropped together spread out.
 *
 * @module
 */

/** Delays from `initialMs` doubling up to `maxMs`, jittered by `random` (0 ≤ x < 1). */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  /** Failed attempts since the last success. */
  private attempt = 0;

  constructor(initialMs: number, maxMs: number, random: () => number = Math.random) {
    this.initialMs = Math.max(1, initialMs);
    this.maxMs = Math.max(this.initialMs, maxMs);
    this.random = random;
  }

  /** The delay before the next attempt, in ms. */
  nextDelayMs(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    return cap / 2 + (this.random() * cap) / 2;
  }

  /** Back to the initial delay, after a connection that worked. */
  reset(): void {
    this.attempt = 0;
  }
}

/** A seeded generator of numbers in [0, 1) (mulberry32), for reproducible jitter. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

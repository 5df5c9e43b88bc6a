/**
 * Fixed-point prices and sizes (`docs/protocol.md`, "Ticks in binary"): the integer is
 * the value × 10⁸. On the wire, binary records carry the integer and JSON ticks its
 * shortest exact decimal form (`81636000000` ↔ `"816.36"`); these helpers convert
 * between the two without going through floating point.
 *
 * @module
 */

/** Decimal places of the fixed-point scale. */
export const DECIMALS = 8;
/** The fixed-point scale: the integer is the value × `SCALE`. */
export const SCALE = 100_000_000n;

const SCALE_NUMBER = 1e8;
const TWO_POW_32 = 4294967296;
/** |hi| below this keeps `hi × 2³² + lo` under 2⁵³, exact in a double. */
const SAFE_HI = 2097152; // 2^21

/** Why a decimal string could not be read as a fixed-point value. */
export class FixedError extends Error {
  override readonly name = 'FixedError';
}

/** Eight digits of a fraction in 0..10⁸, without its trailing zeros ("" for 0). */
function fraction(frac: number): string {
  if (frac === 0) return '';
  let s = String(frac).padStart(DECIMALS, '0');
  let end = s.length;
  while (s.charCodeAt(end - 1) === 48 /* '0' */) end--;
  return '.' + s.slice(0, end);
}

/**
 * The shortest exact decimal form of a fixed-point integer, exactly as the server
 * writes it in JSON (`150000000n` → `"1.5"`, `-1n` → `"-0.00000001"`).
 */
export function formatFixed(raw: bigint): string {
  const negative = raw < 0n;
  const abs = negative ? -raw : raw;
  const int = abs / SCALE;
  const frac = Number(abs % SCALE);
  return (negative ? '-' : '') + int.toString() + fraction(frac);
}

/**
 * The decimal form of the little-endian i64 at `offset` of `view`, read as two 32-bit
 * halves: below 2⁵³ (every realistic price and size) without a `BigInt`.
 */
export function formatFixedAt(view: DataView, offset: number): string {
  const lo = view.getUint32(offset, true);
  const hi = view.getInt32(offset + 4, true);
  if (hi >= -SAFE_HI && hi < SAFE_HI) {
    const v = hi * TWO_POW_32 + lo;
    const abs = v < 0 ? -v : v;
    const int = Math.floor(abs / SCALE_NUMBER);
    return (v < 0 ? '-' : '') + String(int) + fraction(abs - int * SCALE_NUMBER);
  }
  return formatFixed(view.getBigInt64(offset, true));
}

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

/**
 * Parses a decimal string (`"-12.34"`, at most 8 decimal places, no exponent) into
 * its fixed-point integer, the inverse of {@link formatFixed}. Throws
 * {@link FixedError} for anything else, or a value outside the i64 range.
 */
export function parseFixed(s: string): bigint {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (m === null || (m[2] === '' && (m[3] === undefined || m[3] === ''))) {
    throw new FixedError(`not a decimal: ${JSON.stringify(s)}`);
  }
  let frac = m[3] ?? '';
  if (frac.length > DECIMALS) {
    if (/[^0]/.test(frac.slice(DECIMALS))) {
      throw new FixedError(`more than ${DECIMALS} decimal places: ${JSON.stringify(s)}`);
    }
    frac = frac.slice(0, DECIMALS);
  }
  const v = BigInt(m[2] || '0') * SCALE + BigInt(frac.padEnd(DECIMALS, '0'));
  const signed = m[1] === '-' ? -v : v;
  if (signed > I64_MAX || signed < I64_MIN) {
    throw new FixedError(`out of range: ${JSON.stringify(s)}`);
  }
  return signed;
}

/** Decimal places of a decimal string (`"816.36"` → 2): how many a display needs. */
export function decimalPlaces(s: string): number {
  const i = s.indexOf('.');
  return i < 0 ? 0 : s.length - i - 1;
}

/**
 * Decoding of binary data messages (`docs/protocol.md`, "Ticks in binary"): a 16-byte
 * header, then `record_count` records of 72 bytes, little-endian.
 *
 * ```text
 * header: version u16, record_size u16, record_count u32, ts_out u64
 * record: kind u8, flags u8, reserved u16, symbol_id u32, seq u64, ts_event u64,
 *         ts_recv u64, count u32, reserved u32, value0..value3 i64
 * ```
 *
 * {@link decode} checks the header against the message's length and returns one
 * {@link RecordView} per record: a cursor over the message's own bytes (a `DataView`),
 * which reads a field only when it is asked for. Nothing is copied.
 *
 * @module
 */

import { formatFixedAt } from './fixed.js';

/** Protocol version of every message header. */
export const VERSION = 1;
/** Bytes of the message header. */
export const HEADER_SIZE = 16;
/** Bytes of one record. */
export const RECORD_SIZE = 72;
/** Largest payload of a server data message, in bytes ("Batching"). */
export const MAX_MESSAGE_BYTES = 65_535;

/** `kind` byte of a trade. */
export const KIND_TRADE = 1;
/** `kind` byte of a quote. */
export const KIND_QUOTE = 2;
/** `kind` byte of a book level change (`docs/protocol.md`, "Order books"). */
export const KIND_BOOK = 3;
/** Flag bit: the latest value, sent on subscribe or after the server lost its place. */
export const FLAG_SNAPSHOT = 1;
/** Flag bit: the record stands for `count` merged updates. */
export const FLAG_CONFLATED = 2;
/** Flag bit: re-sent from the server's ring after a resume. */
export const FLAG_REPLAY = 4;

/** What kind of update a record is. */
export type Kind = 'trade' | 'quote';

/** What was wrong with a binary message ({@link DecodeError.code}). */
export type DecodeErrorCode = 'type' | 'truncated' | 'version' | 'record_size' | 'length' | 'kind' | 'json';

/**
 * A message that does not follow the documented layout: a binary message (codes
 * `type` … `kind`) or a text message that is not JSON or not a tick (`json`).
 */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  /** Which check failed. */
  readonly code: DecodeErrorCode;

  constructor(code: DecodeErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The header of a binary message. */
export interface MessageHeader {
  /** {@link VERSION}. */
  readonly version: number;
  /** {@link RECORD_SIZE}. */
  readonly recordSize: number;
  /** Records after the header. */
  readonly recordCount: number;
  /** When the server wrote this message, ns since the Unix epoch. */
  readonly tsOut: bigint;
}

/** A decoded binary message. */
export interface Decoded {
  /** The message header. */
  readonly header: MessageHeader;
  /** `header.tsOut`: when the server wrote the message, ns since the Unix epoch. */
  readonly tsOut: bigint;
  /** One view per record, in message order. */
  readonly records: RecordView[];
}

const TWO_POW_32 = 4294967296;

/**
 * One record of a message, read in place. Field getters follow `docs/protocol.md`;
 * prices and sizes are exact decimal strings, and {@link RecordView.fixed} gives the
 * fixed-point integers (value × 10⁸) themselves.
 */
export class RecordView {
  /** The message's bytes. */
  readonly view: DataView;
  /** Where this record starts in `view`. */
  readonly offset: number;

  constructor(view: DataView, offset: number) {
    this.view = view;
    this.offset = offset;
  }

  /** The `kind` byte: {@link KIND_TRADE} or {@link KIND_QUOTE}. */
  get kindCode(): number {
    return this.view.getUint8(this.offset);
  }
  /** `"trade"` or `"quote"`. */
  get kind(): Kind {
    return this.view.getUint8(this.offset) === KIND_TRADE ? 'trade' : 'quote';
  }
  /** Bit 0 snapshot, bit 1 conflated, bit 2 replay. */
  get flags(): number {
    return this.view.getUint8(this.offset + 1);
  }
  /** The symbol's id (named by the `symbols` messages). */
  get symbolId(): number {
    return this.view.getUint32(this.offset + 4, true);
  }
  /** Per-symbol sequence number (exact below 2⁵³, that is, always in practice). */
  get seq(): number {
    const o = this.offset + 8;
    return this.view.getUint32(o + 4, true) * TWO_POW_32 + this.view.getUint32(o, true);
  }
  /** Event time at the source, ns since the Unix epoch. */
  get tsEvent(): bigint {
    return this.view.getBigUint64(this.offset + 16, true);
  }
  /** When tickcast ingested it, ns since the Unix epoch. */
  get tsRecv(): bigint {
    return this.view.getBigUint64(this.offset + 24, true);
  }
  /** Updates this record stands for: 1, or more when conflated. */
  get count(): number {
    return this.view.getUint32(this.offset + 32, true);
  }
  /** Value `i` (0..3) as its fixed-point integer: the value × 10⁸. */
  fixed(i: number): bigint {
    return this.view.getBigInt64(this.offset + 40 + 8 * i, true);
  }
  /** Value `i` (0..3) as an exact decimal string. */
  decimal(i: number): string {
    return formatFixedAt(this.view, this.offset + 40 + 8 * i);
  }
  /** Trade: last price. */
  get price(): string {
    return this.decimal(0);
  }
  /** Trade: size (total size of the trades a conflated record merges). */
  get size(): string {
    return this.decimal(1);
  }
  /** Trade: highest price of the trades merged (the price for a single trade). */
  get high(): string {
    return this.decimal(2);
  }
  /** Trade: lowest price of the trades merged (the price for a single trade). */
  get low(): string {
    return this.decimal(3);
  }
  /** Quote: bid price. */
  get bidPx(): string {
    return this.decimal(0);
  }
  /** Quote: bid size. */
  get bidSz(): string {
    return this.decimal(1);
  }
  /** Quote: ask price. */
  get askPx(): string {
    return this.decimal(2);
  }
  /** Quote: ask size. */
  get askSz(): string {
    return this.decimal(3);
  }
  /** Book: the level's side (side word, bits 0–7). */
  get bookSide(): 'bid' | 'ask' {
    return this.view.getUint8(this.offset + 56) === 1 ? 'ask' : 'bid';
  }
  /** Book: levels in the book message this record belongs to (group word, low half). */
  get bookLevels(): number {
    return this.view.getUint32(this.offset + 64, true);
  }
  /** Book: this record's index in its book message (group word, high half). */
  get bookIndex(): number {
    return this.view.getUint32(this.offset + 68, true);
  }
}

function asView(data: ArrayBuffer | ArrayBufferView): DataView {
  if (data instanceof ArrayBuffer) return new DataView(data);
  if (ArrayBuffer.isView(data)) return new DataView(data.buffer, data.byteOffset, data.byteLength);
  // SharedArrayBuffer and buffers from another realm (an iframe, a worker).
  const tag = Object.prototype.toString.call(data);
  if (tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]') {
    return new DataView(data as ArrayBuffer);
  }
  throw new DecodeError('type', `a binary message is an ArrayBuffer or a typed array, not ${tag}`);
}

/**
 * Checks a message's header and length and returns the header. Throws
 * {@link DecodeError} for a message shorter than its header, a version or record size
 * other than 1 and 72, or a length that disagrees with the record count.
 */
export function decodeHeader(data: ArrayBuffer | ArrayBufferView): MessageHeader {
  return header(asView(data));
}

function header(view: DataView): MessageHeader {
  const n = view.byteLength;
  if (n < HEADER_SIZE) {
    throw new DecodeError('truncated', `truncated message: ${n} bytes, shorter than the ${HEADER_SIZE}-byte header`);
  }
  const version = view.getUint16(0, true);
  if (version !== VERSION) {
    throw new DecodeError('version', `unsupported version ${version} (this decoder reads version ${VERSION})`);
  }
  const recordSize = view.getUint16(2, true);
  if (recordSize !== RECORD_SIZE) {
    throw new DecodeError(
      'record_size',
      `unsupported record_size ${recordSize} (version ${VERSION} records are ${RECORD_SIZE} bytes)`,
    );
  }
  const recordCount = view.getUint32(4, true);
  const want = HEADER_SIZE + recordCount * RECORD_SIZE;
  if (n !== want) {
    throw new DecodeError(
      'length',
      `message of ${n} bytes does not hold its ${recordCount} records (${want} bytes expected${n < want ? ': truncated' : ''})`,
    );
  }
  return { version, recordSize, recordCount, tsOut: view.getBigUint64(8, true) };
}

/**
 * Decodes a binary data message: its header, checked against the length, and a view
 * of each record. Throws {@link DecodeError} when the message does not follow the
 * layout, including a record whose kind is not a trade, a quote or a book change.
 */
export function decode(data: ArrayBuffer | ArrayBufferView): Decoded {
  const view = asView(data);
  const h = header(view);
  const records = new Array<RecordView>(h.recordCount);
  for (let i = 0, o = HEADER_SIZE; i < h.recordCount; i++, o += RECORD_SIZE) {
    const kind = view.getUint8(o);
    if (kind !== KIND_TRADE && kind !== KIND_QUOTE && kind !== KIND_BOOK) {
      throw new DecodeError('kind', `record ${i}: unknown kind ${kind} (1 is a trade, 2 a quote, 3 a book change)`);
    }
    records[i] = new RecordView(view, o);
  }
  return { header: h, tsOut: h.tsOut, records };
}

/** One record to encode with {@link encode} (for tests and tools). */
export interface EncodableRecord {
  kind: number;
  flags?: number;
  symbolId: number;
  seq: number | bigint;
  tsEvent: bigint;
  tsRecv: bigint;
  count?: number;
  /** The four fixed-point values. */
  values: readonly [bigint, bigint, bigint, bigint];
}

/** Encodes records into a binary data message: the inverse of {@link decode}. */
export function encode(records: readonly EncodableRecord[], tsOut: bigint = 0n): ArrayBuffer {
  const buf = new ArrayBuffer(HEADER_SIZE + records.length * RECORD_SIZE);
  const v = new DataView(buf);
  v.setUint16(0, VERSION, true);
  v.setUint16(2, RECORD_SIZE, true);
  v.setUint32(4, records.length, true);
  v.setBigUint64(8, tsOut, true);
  records.forEach((r, i) => {
    const o = HEADER_SIZE + i * RECORD_SIZE;
    v.setUint8(o, r.kind);
    v.setUint8(o + 1, r.flags ?? 0);
    v.setUint32(o + 4, r.symbolId, true);
    v.setBigUint64(o + 8, BigInt(r.seq), true);
    v.setBigUint64(o + 16, r.tsEvent, true);
    v.setBigUint64(o + 24, r.tsRecv, true);
    v.setUint32(o + 32, r.count ?? 1, true);
    r.values.forEach((x, j) => v.setBigInt64(o + 40 + 8 * j, x, true));
  });
  return buf;
}

/** Names of a trade's four values, in record order. */
export const TRADE_FIELDS = ['price', 'size', 'high', 'low'] as const;
/** Names of a quote's four values, in record order. */
export const QUOTE_FIELDS = ['bidPx', 'bidSz', 'askPx', 'askSz'] as const;

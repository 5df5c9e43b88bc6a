// Generated from clients/js/src by `npm run build` in clients/js: do not edit.
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
/**
 * A message that does not follow the documented layout: a binary message (codes
 * `type` … `kind`) or a text message that is not JSON or not a tick (`json`).
 */
export class DecodeError extends Error {
    name = 'DecodeError';
    /** Which check failed. */
    code;
    constructor(code, message) {
        super(message);
        this.code = code;
    }
}
const TWO_POW_32 = 4294967296;
/**
 * One record of a message, read in place. Field getters follow `docs/protocol.md`;
 * prices and sizes are exact decimal strings, and {@link RecordView.fixed} gives the
 * fixed-point integers (value × 10⁸) themselves.
 */
export class RecordView {
    /** The message's bytes. */
    view;
    /** Where this record starts in `view`. */
    offset;
    constructor(view, offset) {
        this.view = view;
        this.offset = offset;
    }
    /** The `kind` byte: {@link KIND_TRADE} or {@link KIND_QUOTE}. */
    get kindCode() {
        return this.view.getUint8(this.offset);
    }
    /** `"trade"` or `"quote"`. */
    get kind() {
        return this.view.getUint8(this.offset) === KIND_TRADE ? 'trade' : 'quote';
    }
    /** Bit 0 snapshot, bit 1 conflated, bit 2 replay. */
    get flags() {
        return this.view.getUint8(this.offset + 1);
    }
    /** The symbol's id (named by the `symbols` messages). */
    get symbolId() {
        return this.view.getUint32(this.offset + 4, true);
    }
    /** Per-symbol sequence number (exact below 2⁵³, that is, always in practice). */
    get seq() {
        const o = this.offset + 8;
        return this.view.getUint32(o + 4, true) * TWO_POW_32 + this.view.getUint32(o, true);
    }
    /** Event time at the source, ns since the Unix epoch. */
    get tsEvent() {
        return this.view.getBigUint64(this.offset + 16, true);
    }
    /** When tickcast ingested it, ns since the Unix epoch. */
    get tsRecv() {
        return this.view.getBigUint64(this.offset + 24, true);
    }
    /** Updates this record stands for: 1, or more when conflated. */
    get count() {
        return this.view.getUint32(this.offset + 32, true);
    }
    /** Value `i` (0..3) as its fixed-point integer: the value × 10⁸. */
    fixed(i) {
        return this.view.getBigInt64(this.offset + 40 + 8 * i, true);
    }
    /** Value `i` (0..3) as an exact decimal string. */
    decimal(i) {
        return formatFixedAt(this.view, this.offset + 40 + 8 * i);
    }
    /** Trade: last price. */
    get price() {
        return this.decimal(0);
    }
    /** Trade: size (total size of the trades a conflated record merges). */
    get size() {
        return this.decimal(1);
    }
    /** Trade: highest price of the trades merged (the price for a single trade). */
    get high() {
        return this.decimal(2);
    }
    /** Trade: lowest price of the trades merged (the price for a single trade). */
    get low() {
        return this.decimal(3);
    }
    /** Quote: bid price. */
    get bidPx() {
        return this.decimal(0);
    }
    /** Quote: bid size. */
    get bidSz() {
        return this.decimal(1);
    }
    /** Quote: ask price. */
    get askPx() {
        return this.decimal(2);
    }
    /** Quote: ask size. */
    get askSz() {
        return this.decimal(3);
    }
    /** Book: the level's side (side word, bits 0–7). */
    get bookSide() {
        return this.view.getUint8(this.offset + 56) === 1 ? 'ask' : 'bid';
    }
    /** Book: levels in the book message this record belongs to (group word, low half). */
    get bookLevels() {
        return this.view.getUint32(this.offset + 64, true);
    }
    /** Book: this record's index in its book message (group word, high half). */
    get bookIndex() {
        return this.view.getUint32(this.offset + 68, true);
    }
}
function asView(data) {
    if (data instanceof ArrayBuffer)
        return new DataView(data);
    if (ArrayBuffer.isView(data))
        return new DataView(data.buffer, data.byteOffset, data.byteLength);
    // SharedArrayBuffer and buffers from another realm (an iframe, a worker).
    const tag = Object.prototype.toString.call(data);
    if (tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]') {
        return new DataView(data);
    }
    throw new DecodeError('type', `a binary message is an ArrayBuffer or a typed array, not ${tag}`);
}
/**
 * Checks a message's header and length and returns the header. Throws
 * {@link DecodeError} for a message shorter than its header, a version or record size
 * other than 1 and 72, or a length that disagrees with the record count.
 */
export function decodeHeader(data) {
    return header(asView(data));
}
function header(view) {
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
        throw new DecodeError('record_size', `unsupported record_size ${recordSize} (version ${VERSION} records are ${RECORD_SIZE} bytes)`);
    }
    const recordCount = view.getUint32(4, true);
    const want = HEADER_SIZE + recordCount * RECORD_SIZE;
    if (n !== want) {
        throw new DecodeError('length', `message of ${n} bytes does not hold its ${recordCount} records (${want} bytes expected${n < want ? ': truncated' : ''})`);
    }
    return { version, recordSize, recordCount, tsOut: view.getBigUint64(8, true) };
}
/**
 * Decodes a binary data message: its header, checked against the length, and a view
 * of each record. Throws {@link DecodeError} when the message does not follow the
 * layout, including a record whose kind is not a trade, a quote or a book change.
 */
export function decode(data) {
    const view = asView(data);
    const h = header(view);
    const records = new Array(h.recordCount);
    for (let i = 0, o = HEADER_SIZE; i < h.recordCount; i++, o += RECORD_SIZE) {
        const kind = view.getUint8(o);
        if (kind !== KIND_TRADE && kind !== KIND_QUOTE && kind !== KIND_BOOK) {
            throw new DecodeError('kind', `record ${i}: unknown kind ${kind} (1 is a trade, 2 a quote, 3 a book change)`);
        }
        records[i] = new RecordView(view, o);
    }
    return { header: h, tsOut: h.tsOut, records };
}
/** Encodes records into a binary data message: the inverse of {@link decode}. */
export function encode(records, tsOut = 0n) {
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
export const TRADE_FIELDS = ['price', 'size', 'high', 'low'];
/** Names of a quote's four values, in record order. */
export const QUOTE_FIELDS = ['bidPx', 'bidSz', 'askPx', 'askSz'];

// Generated from clients/js/src by `npm run build` in clients/js: do not edit.
/**
 * tickcast-client: the browser and Node client of the tickcast market-data server
 * (`docs/protocol.md`).
 *
 * - {@link connect} → a {@link Client}: subscribe, events (`tick`, `gap`, `conflated`,
 *   `state`, `error`, …), reconnect with backoff and resume, the token of `[auth]`;
 * - {@link decode}: a binary data message into its header and zero-copy record views;
 * - {@link Session}, {@link GapDetector}: the sans-IO rules the client is made of;
 * - {@link formatFixed}, {@link parseFixed}: exact fixed-point ↔ decimal strings.
 *
 * No runtime dependencies: it uses the platform's `WebSocket` (or one passed in).
 *
 * @module
 */
export { Backoff, seededRandom } from './backoff.js';
export { Book } from './book.js';
export { Client, ConnectionError, connect, } from './client.js';
export { decode, decodeHeader, encode, DecodeError, RecordView, FLAG_CONFLATED, FLAG_REPLAY, FLAG_SNAPSHOT, HEADER_SIZE, KIND_BOOK, KIND_QUOTE, KIND_TRADE, MAX_MESSAGE_BYTES, QUOTE_FIELDS, RECORD_SIZE, TRADE_FIELDS, VERSION, } from './decode.js';
export { decimalPlaces, DECIMALS, FixedError, formatFixed, formatFixedAt, parseFixed, SCALE } from './fixed.js';
export { GapDetector } from './gaps.js';
export { ServerError, Session, } from './session.js';

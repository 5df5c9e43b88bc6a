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
export { Book, type BookGap, type BookLevel, type BookMessageJson } from './book.js';
export {
  Client,
  ConnectionError,
  connect,
  type ClientEvents,
  type ConnectOptions,
  type State,
  type StateChange,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export {
  decode,
  decodeHeader,
  encode,
  DecodeError,
  RecordView,
  FLAG_CONFLATED,
  FLAG_REPLAY,
  FLAG_SNAPSHOT,
  HEADER_SIZE,
  KIND_BOOK,
  KIND_QUOTE,
  KIND_TRADE,
  MAX_MESSAGE_BYTES,
  QUOTE_FIELDS,
  RECORD_SIZE,
  TRADE_FIELDS,
  VERSION,
  type Decoded,
  type DecodeErrorCode,
  type EncodableRecord,
  type Kind,
  type MessageHeader,
} from './decode.js';
export { decimalPlaces, DECIMALS, FixedError, formatFixed, formatFixedAt, parseFixed, SCALE } from './fixed.js';
export { GapDetector, type Gap } from './gaps.js';
export {
  ServerError,
  Session,
  type Format,
  type Quote,
  type SessionSink,
  type Subscribed,
  type SubscribeOptions,
  type Summary,
  type Tick,
  type TickBase,
  type Trade,
} from './session.js';

// The sans-IO parts, without a server: decode against hand-built messages, bad frames,
// fixed-point conversions, the gap rules (the Rust client's table), the session's
// resubscribe messages and the backoff.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Backoff,
  Book,
  decode,
  decodeHeader,
  DecodeError,
  encode,
  FixedError,
  formatFixed,
  GapDetector,
  parseFixed,
  seededRandom,
  ServerError,
  Session,
} from '../dist/index.js';

const T0 = 1795312649479377653n;

function randomRecords(n, rand) {
  const big = (bits) => {
    let v = 0n;
    for (let i = 0; i < bits; i += 16) v = (v << 16n) | BigInt(Math.floor(rand() * 65536));
    return v & ((1n << BigInt(bits)) - 1n);
  };
  return Array.from({ length: n }, () => ({
    kind: rand() < 0.5 ? 1 : 2,
    flags: Math.floor(rand() * 8),
    symbolId: Math.floor(rand() * 2 ** 32),
    seq: BigInt(Math.floor(rand() * 2 ** 53)),
    tsEvent: big(64),
    tsRecv: big(64),
    count: Math.floor(rand() * 2 ** 32),
    values: [0, 1, 2, 3].map(() => BigInt.asIntN(64, big(64))),
  }));
}

test('decode reads every field of 2,000 random records, in place', () => {
  const recs = randomRecords(2000, seededRandom(7));
  const msg = encode(recs, 123n);
  const d = decode(msg);
  assert.deepEqual(d.header, { version: 1, recordSize: 72, recordCount: 2000, tsOut: 123n });
  assert.equal(d.tsOut, 123n);
  assert.equal(d.records.length, 2000);
  d.records.forEach((r, i) => {
    const w = recs[i];
    assert.equal(r.view.buffer, msg, 'a view of the message, not a copy');
    assert.equal(r.kindCode, w.kind);
    assert.equal(r.kind, w.kind === 1 ? 'trade' : 'quote');
    assert.equal(r.flags, w.flags);
    assert.equal(r.symbolId, w.symbolId);
    assert.equal(r.seq, Number(w.seq));
    assert.equal(r.tsEvent, w.tsEvent);
    assert.equal(r.tsRecv, w.tsRecv);
    assert.equal(r.count, w.count);
    for (let j = 0; j < 4; j++) {
      assert.equal(r.fixed(j), w.values[j]);
      assert.equal(r.decimal(j), formatFixed(w.values[j]));
      assert.equal(parseFixed(r.decimal(j)), w.values[j]);
    }
  });
  // A typed array over part of a larger buffer decodes the same.
  const bytes = new Uint8Array(msg.byteLength + 24);
  bytes.set(new Uint8Array(msg), 8);
  const sub = decode(bytes.subarray(8, 8 + msg.byteLength));
  assert.equal(sub.records[1999].tsRecv, recs[1999].tsRecv);
});

test('bad frames raise a DecodeError that says what is wrong', () => {
  const good = new Uint8Array(encode(randomRecords(2, seededRandom(1)).map((r) => ({ ...r, kind: 1 }))));
  const patch = (at, bytes) => {
    const b = good.slice();
    b.set(bytes, at);
    return b;
  };
  const cases = [
    [good.slice(0, 10), 'truncated', /truncated message: 10 bytes/],
    [new Uint8Array(0), 'truncated', /truncated message: 0 bytes/],
    [good.slice(0, -1), 'length', /does not hold its 2 records .*truncated/],
    [good.slice(0, 16 + 72), 'length', /does not hold its 2 records/],
    [new Uint8Array([...good, 0]), 'length', /does not hold its 2 records/],
    [patch(0, [2, 0]), 'version', /unsupported version 2/],
    [patch(2, [80, 0]), 'record_size', /unsupported record_size 80/],
    [patch(4, [3, 0, 0, 0]), 'length', /does not hold its 3 records/],
    [patch(16 + 72, [7]), 'kind', /record 1: unknown kind 7/],
    ['text', 'type', /ArrayBuffer or a typed array/],
  ];
  for (const [msg, code, message] of cases) {
    assert.throws(() => decode(msg), (e) => e instanceof DecodeError && e.code === code && message.test(e.message), code);
  }
  assert.throws(() => decodeHeader(good.slice(0, 3)), DecodeError);
});

test('fixed point: exact both ways, as the server writes it', () => {
  const table = [
    [0n, '0'],
    [100000000n, '1'],
    [150000000n, '1.5'],
    [-150000000n, '-1.5'],
    [1n, '0.00000001'],
    [-1n, '-0.00000001'],
    [81636000000n, '816.36'],
    [6423157000000n, '64231.57'],
    [9223372036854775807n, '92233720368.54775807'],
    [-9223372036854775808n, '-92233720368.54775808'],
  ];
  for (const [raw, s] of table) {
    assert.equal(formatFixed(raw), s);
    assert.equal(parseFixed(s), raw);
    const msg = encode([{ kind: 1, symbolId: 0, seq: 1, tsEvent: 0n, tsRecv: 0n, values: [raw, raw, raw, raw] }]);
    assert.equal(decode(msg).records[0].price, s, `fast path of ${raw}`);
  }
  assert.equal(parseFixed('64231.57000000'), 6423157000000n);
  assert.equal(parseFixed('+2'), 200000000n);
  assert.equal(parseFixed('.5'), 50000000n);
  for (const bad of ['', '-', '.', '1e5', '1.2.3', ' 1', '0.123456789', '92233720369']) {
    assert.throws(() => parseFixed(bad), FixedError, bad);
  }
});

// The Rust client's accounting table (src/client/gaps.rs), message by message.
test('gap rules: the same table as the Rust client', () => {
  const SNAP = 1;
  const CONFLATED = 2;
  const REPLAY = 4;
  const run = (messages) => {
    const d = new GapDetector();
    return messages.map((m) => {
      for (const [seq, flags, count] of m) d.observe('A', seq, flags, count, 1n);
      return d.endMessage(16 + m.length * 72).map((g) => [g.expected, g.got]);
    });
  };
  const table = [
    ['contiguous live ticks', [[[5, SNAP, 1], [6, 0, 1]], [[7, 0, 1]]], [[], []]],
    ['a jump is a gap', [[[5, 0, 1]], [[9, 0, 1]], [[10, 0, 1]]], [[], [[6, 9]], []]],
    ['conflated pair, lower seq first, both partial', [[[10, 0, 1]], [[14, CONFLATED, 3], [15, CONFLATED, 2]]], [[], []]],
    ['conflated pair whose first record is a single update', [[[10, 0, 1]], [[13, 0, 1], [15, CONFLATED, 4]]], [[], []]],
    ['conflation that does not add up', [[[10, 0, 1]], [[14, CONFLATED, 2], [15, 0, 1]]], [[], [[13, 15]]]],
    ['a snapshot resets, even to a lower seq (restart)', [[[500, 0, 1]], [[3, SNAP, 1], [4, 0, 1]]], [[], []]],
    ['replayed records continue the sequence', [[[20, 0, 1]], [[21, REPLAY, 1], [22, REPLAY, 1], [23, 0, 1]]], [[], []]],
    ['late record of a flush settles the deficit', [[[10, 0, 1]], [[12, 0, 1], [11, 0, 1]]], [[], []]],
  ];
  for (const [name, msgs, want] of table) assert.deepEqual(run(msgs), want, name);

  // A lower seq ingested later is a new run (a restarted server with nothing to snapshot).
  const d = new GapDetector();
  d.observe('A', 900, 0, 1, 1000n);
  d.observe('A', 899, 0, 1, 999n);
  assert.deepEqual(d.endMessage(16 + 2 * 72), []);
  d.observe('A', 1, 0, 1, 5000n);
  d.observe('A', 2, 0, 1, 5001n);
  assert.deepEqual(d.endMessage(16 + 2 * 72), []);
  d.observe('A', 4, 0, 1, 5002n);
  assert.deepEqual(d.endMessage(16 + 72), [{ symbol: 'A', expected: 3, got: 4, missed: 1 }]);

  // A full message defers the judgement to the next one.
  const f = new GapDetector();
  f.observe('A', 10, 0, 1, 1n);
  f.endMessage(16 + 72);
  f.observe('A', 14, CONFLATED, 3, 1n);
  assert.deepEqual(f.endMessage(16 + 910 * 72), [], 'not judged yet');
  f.observe('A', 15, CONFLATED, 2, 1n);
  assert.deepEqual(f.endMessage(16 + 72), []);
});

function recorder() {
  const seen = { ticks: [], gaps: [], errors: [], acks: [], summaries: [], other: [] };
  const sink = {
    tick: (t) => seen.ticks.push(t),
    batch: () => {},
    gap: (g) => seen.gaps.push(g),
    symbols: () => {},
    subscribed: (a) => seen.acks.push(a),
    unsubscribed: () => {},
    conflated: (c) => seen.other.push(c),
    summary: (s) => seen.summaries.push(s),
    shutdown: () => seen.other.push('shutdown'),
    error: (e) => seen.errors.push(e),
    control: (m) => seen.other.push(m),
  };
  return { seen, sink };
}

const trade = (symbolId, seq, flags = 0, price = 100000000n, size = 100000000n) => ({
  kind: 1,
  flags,
  symbolId,
  seq,
  tsEvent: T0 + BigInt(seq),
  tsRecv: T0 + BigInt(seq),
  values: [price, size, price, price],
});

test('session: resume points on reconnect, retried after a rejection, a new id map', () => {
  const { seen, sink } = recorder();
  const s = new Session(sink, 'binary');
  s.subscribe(['A', 'B']);
  const first = s.connected().map((m) => JSON.parse(m));
  assert.deepEqual(first, [{ op: 'subscribe', symbols: ['A', 'B'], format: 'binary', summary: true, id: first[0].id }]);
  assert.equal(JSON.parse(new Session(sink, 'json', false).subscribe(['A'])).summary, undefined);
  s.onText('{"type":"symbols","symbols":[{"id":0,"name":"A"},{"id":1,"name":"B"}]}');
  s.onBinary(encode([trade(0, 7, 1), trade(1, 3, 1), trade(0, 8)]));
  assert.deepEqual(seen.ticks.map((t) => [t.symbol, t.seq, t.snapshot]), [['A', 7, true], ['B', 3, true], ['A', 8, false]]);
  assert.deepEqual(seen.gaps, []);
  const again = JSON.parse(s.connected()[0]);
  assert.deepEqual(again.resume, { A: 8, B: 3 });
  // A restarted server that does not know the symbols yet rejects it: retried.
  s.onText(JSON.stringify({ type: 'error', message: 'unknown symbol "A"', symbols: ['A'], id: again.id }));
  assert.ok(seen.errors.at(-1) instanceof ServerError && seen.errors.at(-1).resubscribe);
  assert.equal(s.takeRetry(), true);
  assert.equal(s.takeRetry(), false, 'reading clears it');
  const retry = JSON.parse(s.resubscribe()[0]);
  assert.notEqual(retry.id, again.id);
  assert.deepEqual(retry.resume, again.resume);
  // A user's own rejected subscribe is not retried, and what it added is forgotten.
  const own = JSON.parse(s.subscribe(['X']));
  s.onText(JSON.stringify({ type: 'error', message: 'unknown symbol "X"', symbols: ['X'], id: own.id }));
  assert.equal(s.takeRetry(), false);
  assert.deepEqual(s.subscriptions().sort(), ['A', 'B']);
  // After the reconnect, ids may differ: the new map is used, and a jump is a gap.
  s.onText('{"type":"symbols","symbols":[{"id":0,"name":"B"},{"id":1,"name":"A"}]}');
  s.onBinary(encode([trade(1, 10)]));
  assert.deepEqual(seen.gaps, [{ symbol: 'A', expected: 9, got: 10, missed: 1 }]);
  // Rates are restored per group.
  s.subscribe(['B'], { maxRate: 2, format: 'json' });
  const third = s.connected().map((m) => JSON.parse(m));
  assert.deepEqual(
    third.map((m) => [m.symbols, m.max_rate, m.format, m.resume]),
    [
      [['A'], undefined, 'json', { A: 10 }],
      [['B'], 2, 'json', { B: 3 }],
    ],
  );
  s.unsubscribe(['*']);
  assert.deepEqual(s.connected(), []);
  // Resume points given up front (connect's `resume` option) go with the first subscribe.
  const seeded = new Session(sink, 'binary');
  seeded.seedResume('A', 41);
  seeded.subscribe(['A', 'B']);
  assert.deepEqual(JSON.parse(seeded.connected()[0]).resume, { A: 41 });
});

test('session: JSON ticks decode with exact timestamps, bad text is an error', () => {
  const { seen, sink } = recorder();
  const s = new Session(sink, 'json');
  s.onText('{"type":"symbols","symbols":[{"id":4,"name":"SYM0"}]}');
  s.onText(
    '[{"type":"tick","symbol":"SYM0","seq":98,"kind":"trade","ts_event":1795312649479377653,' +
      '"ts_recv":1795312649479465469,"flags":["snapshot"],"count":1,"price":"816.36","size":"2","high":"816.36","low":"816.36"},' +
      '{"type":"tick","symbol":"SYM0","seq":99,"kind":"quote","ts_event":1795312649479377700,' +
      '"ts_recv":1795312649479465500,"flags":[],"count":1,"bid_px":"816.3","bid_sz":"1","ask_px":"816.4","ask_sz":"0.5"}]',
  );
  assert.deepEqual(seen.ticks[0], {
    symbol: 'SYM0',
    symbolId: 4,
    seq: 98,
    kind: 'trade',
    flags: 1,
    snapshot: true,
    conflated: false,
    replay: false,
    count: 1,
    tsEvent: 1795312649479377653n,
    tsRecv: 1795312649479465469n,
    price: '816.36',
    size: '2',
    high: '816.36',
    low: '816.36',
  });
  assert.equal(seen.ticks[1].askSz, '0.5');
  s.onText('not json');
  s.onText('[{"type":"tick","symbol":"SYM0"}]');
  assert.deepEqual(seen.errors.map((e) => [e.name, e.code]), [
    ['DecodeError', 'json'],
    ['DecodeError', 'json'],
  ]);
  s.onBinary(new Uint8Array(3));
  assert.equal(seen.errors.at(-1).code, 'truncated', 'a bad binary message is reported, and skipped');
});

test('session: a summary is kept current by the trades after it', () => {
  const { seen, sink } = recorder();
  const s = new Session(sink, 'binary');
  s.subscribe(['A']);
  s.connected();
  s.onText('{"type":"symbols","symbols":[{"id":0,"name":"A"}]}');
  s.onText(
    '{"type":"summary","symbols":[{"symbol":"A","seq":7,"trades":3,"open":"1","high":"3","low":"0.5","volume":"6","since":1795312649479377653}]}',
  );
  // The snapshot trade (seq 7) is already counted; later trades add to the totals.
  s.onBinary(encode([trade(0, 7, 1, 200000000n, 100000000n)]));
  s.onBinary(encode([trade(0, 8, 0, 400000000n, 150000000n), trade(0, 9, 0, 25000000n, 50000000n)]));
  assert.deepEqual(s.summary('A'), {
    symbol: 'A',
    seq: 9,
    trades: 5,
    open: '1',
    high: '4',
    low: '0.25',
    volume: '8',
    since: 1795312649479377653n,
  });
  assert.equal(seen.summaries.length, 3);
  s.unsubscribe(['A']);
  assert.equal(s.summary('A'), undefined);
});

test('backoff: equal jitter between half and all of a doubling cap, reset to the start', () => {
  const b = new Backoff(100, 1000, seededRandom(3));
  const caps = [100, 200, 400, 800, 1000, 1000];
  for (const cap of caps) {
    const d = b.nextDelayMs();
    assert.ok(d >= cap / 2 && d <= cap, `${d} within [${cap / 2}, ${cap}]`);
  }
  b.reset();
  assert.ok(b.nextDelayMs() <= 100);
});

const level = (symbolId, seq, flags, count, side, price, size, levels, index) => ({
  kind: 3,
  flags,
  symbolId,
  seq,
  tsEvent: T0,
  tsRecv: T0,
  count,
  values: [price, size, BigInt(side), BigInt(levels) | (BigInt(index) << 32n)],
});

test('books: snapshot, changes, merged changes and gaps, binary and JSON, resumed on reconnect', () => {
  const { seen, sink } = recorder();
  const books = [];
  const bookGaps = [];
  const s = new Session({ ...sink, book: (b) => books.push(b.seq), bookGap: (g) => bookGaps.push(g) }, 'binary', false);
  const sub = JSON.parse(s.subscribe(['A'], { channels: ['book'] }));
  assert.deepEqual(sub.channels, ['book']);
  s.connected();
  s.onText('{"type":"symbols","symbols":[{"id":0,"name":"A"}]}');
  s.onBinary(
    encode([
      level(0, 7, 1, 1, 0, 100n, 1n, 3, 0),
      level(0, 7, 1, 1, 0, 101n, 2n, 3, 1),
      level(0, 7, 1, 1, 1, 103n, 5n, 3, 2),
      level(0, 8, 0, 1, 0, 100n, 0n, 1, 0),
      level(0, 11, 2, 3, 0, 0n, 0n, 0, 0),
    ]),
  );
  assert.deepEqual(books, [7, 8, 11], 'one event per complete message');
  assert.deepEqual(seen.ticks, [], 'book records are not ticks');
  assert.deepEqual(seen.gaps, [], 'nor counted by the trade-and-quote gap detector');
  const b = s.book('A');
  assert.deepEqual(b.levels('bid').map((l) => [l.price, l.size]), [['0.00000101', '0.00000002']]);
  assert.deepEqual(b.levels('ask').map((l) => l.px), [103n]);
  const again = JSON.parse(s.connected()[0]);
  assert.deepEqual([again.channels, again.resume_book], [['book'], { A: 11 }]);
  s.onText('{"type":"symbols","symbols":[{"id":0,"name":"A"}]}');
  s.onBinary(encode([level(0, 13, 0, 1, 1, 104n, 1n, 1, 0)]));
  assert.deepEqual(bookGaps, [{ symbol: 'A', expected: 12, got: 13 }]);
  assert.equal(b.synced, false);
  // JSON book objects, with exact decimals.
  const j = new Book('B');
  assert.equal(j.applyJson({ symbol: 'B', seq: 5, flags: ['snapshot'], count: 1, bids: [['816.35', '1.5']], asks: [] }), null);
  assert.equal(j.applyJson({ symbol: 'B', seq: 6, flags: [], count: 1, bids: [['816.35', '0']], asks: [['817', '2']] }), null);
  assert.deepEqual([j.levels('bid'), j.levels('ask').map((l) => [l.price, l.sz])], [[], [['817', 200000000n]]]);
});

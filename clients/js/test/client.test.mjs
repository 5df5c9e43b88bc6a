// The client against a real tickcast server (target/debug/tickcast, or TICKCAST_BIN):
// binary decode equals the JSON form of the same (symbol, seq); a dropped connection
// resumes with replayed ticks and no gap; reconnect across a server restart on the same
// port; the token of [auth] in the query (platform WebSocket) and in a header (ws);
// a bad frame from a server is a typed error and the stream goes on.
//
// Run with `npm test` (node --experimental-websocket: Node 20's global WebSocket).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer, WebSocket as WsWebSocket } from 'ws';

import { connect, DecodeError, encode, ServerError } from '../dist/index.js';
import { freePort, jwt, next, startServer, until, WAIT_MS } from './server.mjs';

const SYMBOLS = ['SYM0', 'SYM1', 'SYM2', 'SYM3'];
const running = new Set();
const clients = new Set();

async function server(port, args, config) {
  const s = await startServer(port, args, config);
  running.add(s);
  return {
    ...s,
    stop: async () => {
      running.delete(s);
      await s.stop();
    },
  };
}

function client(url, opts) {
  const c = connect(url, opts);
  clients.add(c);
  return c;
}

after(async () => {
  for (const c of clients) c.close();
  for (const s of running) await s.stop().catch(() => {});
});

/** Ticks, gaps and errors a client sees, and its ticks by `symbol/seq/kind`. */
function watch(c) {
  const seen = { ticks: [], gaps: [], errors: [], states: [], bySeq: new Map() };
  c.on('tick', (t) => {
    seen.ticks.push(t);
    seen.bySeq.set(`${t.symbol}/${t.seq}/${t.kind}`, t);
  });
  c.on('gap', (g) => seen.gaps.push(g));
  c.on('error', (e) => seen.errors.push(e));
  c.on('state', (s) => seen.states.push(s));
  return seen;
}

test('binary decode equals the JSON form of the same (symbol, seq)', { timeout: 60_000 }, async () => {
  const s = await server(await freePort(), ['--rate', '2000']);
  const bin = client(s.url, { symbols: SYMBOLS, format: 'binary' });
  const json = client(s.url, { symbols: SYMBOLS, format: 'json' });
  const b = watch(bin);
  const j = watch(json);
  const common = () => [...b.bySeq.keys()].filter((k) => j.bySeq.has(k));
  await until('200 ticks seen in both formats', () => common().length >= 200);
  let compared = 0;
  for (const k of common()) {
    const x = b.bySeq.get(k);
    const y = j.bySeq.get(k);
    // The same update: flags may differ (a snapshot on one connection is live on the other).
    if (x.count !== 1 || y.count !== 1) continue;
    const { flags: _f1, snapshot: _s1, replay: _r1, conflated: _c1, ...xs } = x;
    const { flags: _f2, snapshot: _s2, replay: _r2, conflated: _c2, ...ys } = y;
    assert.deepEqual(xs, ys, k);
    assert.equal(typeof x.tsEvent, 'bigint');
    assert.ok(x.tsEvent > 1_600_000_000_000_000_000n, 'nanoseconds since the epoch, exact');
    compared++;
  }
  assert.ok(compared >= 150, `${compared} ticks compared`);
  assert.ok(b.ticks.some((t) => t.kind === 'trade') && b.ticks.some((t) => t.kind === 'quote'));
  assert.deepEqual([b.gaps, j.gaps, b.errors, j.errors], [[], [], [], []]);
  await s.stop();
});

test('a dropped connection resumes: missed ticks replayed, no gap', { timeout: 60_000 }, async () => {
  const s = await server(await freePort(), ['--rate', '2000']);
  // A reconnect delay of 0.5-1 s: ticks are surely missed meanwhile.
  const c = client(s.url, { symbols: SYMBOLS, backoffInitialMs: 1000 });
  const seen = watch(c);
  await until('live ticks', () => seen.ticks.filter((t) => !t.snapshot).length > 50);
  const before = new Map(c.lastSeqs());
  c.drop();
  const reopened = await next(c, 'state', (st) => st.state === 'open');
  assert.equal(reopened.reconnected, true);
  assert.equal(reopened.resumed, SYMBOLS.length);
  const from = seen.ticks.length;
  await until('replayed ticks and live ticks after them', () => {
    const after = seen.ticks.slice(from);
    return after.some((t) => t.replay) && after.filter((t) => !t.replay && !t.snapshot).length > 50;
  });
  const after = seen.ticks.slice(from);
  assert.ok(!after.some((t) => t.snapshot), 'the ring held the gap: replay, not snapshot');
  for (const sym of SYMBOLS) assert.ok(c.lastSeqs().get(sym) > before.get(sym), sym);
  // Every sequence number after the resume point arrives exactly once per symbol.
  for (const sym of SYMBOLS) {
    const seqs = after.filter((t) => t.symbol === sym).map((t) => t.seq);
    assert.equal(seqs[0], before.get(sym) + 1, `${sym} continues from its resume point`);
    seqs.forEach((q, i) => i > 0 && assert.equal(q, seqs[i - 1] + 1, `${sym} ${seqs[i - 1]} -> ${q}`));
  }
  assert.deepEqual(seen.gaps, []);
  assert.deepEqual(seen.errors, []);
  await s.stop();
});

test('reconnects across a server restart on the same port', { timeout: 60_000 }, async () => {
  const port = await freePort();
  let s = await server(port, ['--symbols', '4', '--rate', '2000']);
  const c = client(s.url, { symbols: SYMBOLS, format: 'json', backoffMaxMs: 500 });
  const seen = watch(c);
  let shutdownNotices = 0;
  c.on('shutdown', () => shutdownNotices++);
  await until('SYM0 past seq 300', () => (c.lastSeqs().get('SYM0') ?? 0) > 300);
  const high = c.lastSeqs().get('SYM0');
  await s.stop();
  await until('reconnecting', () => c.state === 'reconnecting');
  assert.equal(shutdownNotices, 1, 'the server said it was shutting down');
  // A slower feed: the restarted server's numbers stay below the client's for the test.
  s = await server(port, ['--symbols', '4', '--rate', '40']);
  const from = seen.ticks.length;
  await until('ticks from the restarted server', () => seen.ticks.slice(from).filter((t) => t.symbol === 'SYM0').length >= 3);
  const restarted = seen.ticks.slice(from).filter((t) => t.symbol === 'SYM0');
  assert.ok(restarted[0].seq < high, `numbered afresh: ${restarted[0].seq} < ${high}`);
  assert.ok(c.lastSeqs().get('SYM0') < high, 'the resume point follows the new server');
  assert.ok(seen.states.some((st) => st.state === 'open' && st.reconnected));
  assert.deepEqual(seen.gaps, []);
  await s.stop();
});

test('session summaries: one plus the trades after it equals the next, in both formats', { timeout: 60_000 }, async () => {
  const feed = '[[feeds]]\nkind = "synthetic"\nsymbols = 4\nrate = 2000\nlimit = 4000\n';
  const s = await server(await freePort(), [], feed);
  const early = [client(s.url, { symbols: SYMBOLS, format: 'json' }), client(s.url, { symbols: SYMBOLS })];
  const first = new Map();
  early[0].on('summary', (x) => first.has(x.symbol) || first.set(x.symbol, x));
  const stats = async () => (await (await fetch(`${s.http}/stats`)).json()).sequencer.ticks;
  const end = Date.now() + WAIT_MS;
  while ((await stats()) < 4000) {
    assert.ok(Date.now() < end, 'the feed finished');
    await new Promise((r) => setTimeout(r, 50));
  }
  const late = client(s.url, { symbols: SYMBOLS });
  const final = new Map();
  late.on('summary', (x) => final.set(x.symbol, x));
  // The late client's snapshot holds every symbol's last seq.
  await until('the late snapshot', () => SYMBOLS.every((sym) => late.lastSeqs().has(sym) && final.has(sym)));
  const last = late.lastSeqs();
  for (const c of early) await until('every tick', () => SYMBOLS.every((sym) => c.lastSeqs().get(sym) === last.get(sym)));
  assert.ok([...first.values()].some((x) => x.trades > 0 && x.trades < final.get(x.symbol).trades), 'trades after the first summary');
  for (const sym of SYMBOLS) {
    const want = final.get(sym);
    assert.ok(want.trades > 0 && Number(want.low) <= Number(want.open) && Number(want.open) <= Number(want.high), sym);
    assert.equal(typeof want.since, 'bigint');
    for (const c of early) assert.deepEqual(c.summary(sym), want, `${sym} (${c.format})`);
  }
  await s.stop();
});

const SECRET = 'js-client-test-secret';
const AUTH = `[auth]\njwt_secret = "${SECRET}"\n`;

test('the token of [auth]: ?token= with the platform WebSocket, a header with ws', { timeout: 60_000 }, async () => {
  const s = await server(await freePort(), ['--rate', '1000'], AUTH);
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const token = jwt({ sub: 'js', exp, symbols: ['SYM1', 'SYM2'] }, SECRET);

  const inQuery = client(s.url, { symbols: ['SYM1'], token });
  const q = watch(inQuery);
  let calls = 0;
  const inHeader = client(s.url, {
    symbols: ['SYM2'],
    token: async () => {
      calls++;
      return token;
    },
    tokenIn: 'header',
    WebSocket: WsWebSocket,
  });
  const h = watch(inHeader);
  await until('ticks on both', () => q.ticks.length > 5 && h.ticks.length > 5);
  assert.equal(calls, 1);
  // A symbol outside the token's entitlements is refused by the server, by name.
  inQuery.subscribe(['SYM3']);
  const refused = await next(inQuery, 'error');
  assert.ok(refused instanceof ServerError);
  assert.deepEqual(refused.symbols, ['SYM3']);
  assert.match(refused.message, /not entitled/);
  assert.deepEqual(inQuery.subscriptions(), ['SYM1'], 'a refused subscribe is forgotten');
  // The header is really what carries it: the same constructor without a token is refused.
  const none = client(s.url, { symbols: ['SYM1'], WebSocket: WsWebSocket, maxReconnectAttempts: 2, backoffInitialMs: 20 });
  const gaveUp = await next(none, 'error');
  assert.match(gaveUp.message, /gave up after 2 attempts: .*401/);
  assert.equal(none.state, 'closed');
  // A function token is asked again on every connection.
  inHeader.drop();
  await next(inHeader, 'state', (st) => st.state === 'open');
  assert.equal(calls, 2);
  await s.stop();
});

test('a bad frame from the server is a DecodeError; the stream goes on', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const wss = new WebSocketServer({ host: '127.0.0.1', port });
  after(() => wss.close());
  wss.on('connection', (sock) => {
    sock.on('message', () => {
      sock.send('{"type":"subscribed","symbols":["A"],"format":"binary"}');
      sock.send('{"type":"symbols","symbols":[{"id":0,"name":"A"}]}');
      const good = encode([{ kind: 1, symbolId: 0, seq: 1, tsEvent: 1n, tsRecv: 1n, values: [1n, 1n, 1n, 1n] }]);
      sock.send(Buffer.from(good).subarray(0, 40)); // cut short
      sock.send(Buffer.from(new Uint8Array([2, 0, 72, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))); // version 2
      sock.send(Buffer.from(good));
    });
  });
  const c = client(`ws://127.0.0.1:${port}/ws`, { symbols: ['A'] });
  const seen = watch(c);
  await until('the good message after the bad ones', () => seen.ticks.length === 1, WAIT_MS);
  assert.deepEqual(
    seen.errors.map((e) => [e instanceof DecodeError, e.code]),
    [
      [true, 'length'],
      [true, 'version'],
    ],
  );
  assert.equal(seen.ticks[0].price, '0.00000001');
  assert.equal(c.state, 'open', 'bad frames do not end the connection');
});

test('books: the client rebuilds the server\'s books, binary and JSON', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const limit = 6000;
  const s = await server(port, [], `[[feeds]]\nkind = "synthetic"\nsymbols = 2\nrate = 4000\nlimit = ${limit}\nbook_depth = 5\n`);
  const url = `ws://127.0.0.1:${port}/ws`;
  const symbols = ['SYM0', 'SYM1'];
  const bin = client(url, { symbols, channels: ['book'] });
  const json = client(url, { symbols, channels: ['book'], format: 'json', maxRate: 5 });
  const gaps = [];
  for (const c of [bin, json]) c.on('bookGap', (g) => gaps.push(g));
  const stats = async () => (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()).sequencer.ticks;
  const end = Date.now() + WAIT_MS;
  while ((await stats()) < limit) {
    assert.ok(Date.now() < end, 'the feed ends');
    await new Promise((r) => setTimeout(r, 50));
  }
  // A late subscriber's snapshot is the server's current book.
  const late = client(url, { symbols, channels: ['book'], format: 'json' });
  await until('the late snapshots', () => symbols.every((n) => late.book(n)?.synced));
  for (const c of [bin, json]) {
    await until('the books to catch up', () => symbols.every((n) => c.book(n)?.seq === late.book(n).seq));
    for (const n of symbols) {
      for (const side of ['bid', 'ask']) {
        const want = late.book(n).levels(side).map((l) => [l.price, l.size]);
        assert.ok(want.length > 0, `${n} ${side}`);
        assert.deepEqual(c.book(n).levels(side).map((l) => [l.price, l.size]), want, `${n} ${side}`);
      }
    }
  }
  assert.deepEqual(gaps, []);
  await s.stop();
});

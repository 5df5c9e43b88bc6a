// Decode throughput, in records per second, of the built package (npm run build first):
//
//   node bench/decode.mjs
//
// - `decode` alone: header check and one RecordView per record (the zero-copy path);
// - `decode` + every field: seq, timestamps (bigint), count, four exact decimals;
// - `Session.onBinary`: what the client does per message (ticks, gap accounting);
// - `Session.onText`: the same records as the server's JSON, for comparison.
//
// Messages of 910 records (the largest the server sends), 20 (the median of a live
// stream, docs/benchmarks.md) and 1. Each case runs for
// about one second after a warm-up, over a fixed set of messages; the best of three
// runs is reported.

import { decode, encode, Session } from '../dist/index.js';

const T0 = 1795312649479377653n;

function messages(recordsPerMessage, total) {
  const out = [];
  let seq = 1;
  for (let m = 0; m < total / recordsPerMessage; m++) {
    const recs = [];
    for (let i = 0; i < recordsPerMessage; i++, seq++) {
      const trade = seq % 3 === 0;
      const px = 8163600000n + BigInt(seq % 1000) * 1000000n;
      recs.push({
        kind: trade ? 1 : 2,
        symbolId: seq % 100,
        seq,
        tsEvent: T0 + BigInt(seq),
        tsRecv: T0 + BigInt(seq) + 5000n,
        values: trade ? [px, 250000000n, px, px] : [px, 120000000n, px + 1000000n, 80000000n],
      });
    }
    out.push(encode(recs, T0));
  }
  return out;
}

function json(msg, names) {
  const d = decode(msg);
  return JSON.stringify(
    d.records.map((r) => {
      const o = { type: 'tick', symbol: names[r.symbolId], seq: r.seq, kind: r.kind, ts_event: 0, ts_recv: 0, flags: [], count: r.count };
      if (r.kind === 'trade') Object.assign(o, { price: r.price, size: r.size, high: r.high, low: r.low });
      else Object.assign(o, { bid_px: r.bidPx, bid_sz: r.bidSz, ask_px: r.askPx, ask_sz: r.askSz });
      return o;
    }),
  ).replace(/"ts_event":0,"ts_recv":0/g, () => `"ts_event":${T0},"ts_recv":${T0 + 5000n}`);
}

function time(name, msgs, perMessage, fn) {
  let best = 0;
  for (let run = 0; run < 4; run++) {
    let records = 0;
    const start = process.hrtime.bigint();
    let now = start;
    while (now - start < 1_000_000_000n) {
      for (const m of msgs) fn(m);
      records += msgs.length * perMessage;
      now = process.hrtime.bigint();
    }
    const rate = records / (Number(now - start) / 1e9);
    if (run > 0 && rate > best) best = rate; // run 0 warms up
  }
  console.log(`${name.padEnd(44)} ${(best / 1e6).toFixed(2).padStart(7)} M records/s`);
  return best;
}

const names = Array.from({ length: 100 }, (_, i) => `SYM${i}`);
const symbolsMsg = JSON.stringify({ type: 'symbols', symbols: names.map((name, id) => ({ id, name })) });
let sink = 0;
const noop = {
  tick: () => sink++,
  batch: () => {},
  gap: () => {},
  symbols: () => {},
  subscribed: () => {},
  unsubscribed: () => {},
  conflated: () => {},
  summary: () => {},
  shutdown: () => {},
  error: (e) => {
    throw e;
  },
  control: () => {},
};

console.log(`node ${process.version}, ${new Date().toISOString()}`);
for (const per of [910, 20, 1]) {
  const msgs = messages(per, 91_000);
  console.log(`-- ${per} records per message (${msgs.length} messages)`);
  time('decode (views)', msgs, per, (m) => {
    sink += decode(m).records.length;
  });
  time('decode + every field', msgs, per, (m) => {
    for (const r of decode(m).records) {
      sink += r.seq + r.count + r.flags + r.symbolId;
      if (r.tsEvent === 0n || r.tsRecv === 0n) sink++;
      sink += r.decimal(0).length + r.decimal(1).length + r.decimal(2).length + r.decimal(3).length;
    }
  });
  const session = new Session(noop);
  session.onText(symbolsMsg);
  time('Session.onBinary (ticks, gaps)', msgs, per, (m) => session.onBinary(m));
  const texts = msgs.map((m) => json(m, names));
  const js = new Session(noop, 'json');
  time('Session.onText (the same records as JSON)', texts, per, (t) => js.onText(t));
}
if (sink === 42) console.log('');

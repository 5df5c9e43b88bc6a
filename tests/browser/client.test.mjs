// The JavaScript client package (clients/js) in headless Chromium, as the server serves
// it (/client/index.js): binary decode equals the JSON form of the same (symbol, seq),
// bad frames are typed errors, and a dropped connection resumes with no gap, all with
// the browser's own WebSocket.
//
// Run through ./run.sh, which installs what is missing and builds the server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.TICKCAST_BIN || path.join(ROOT, 'target', 'debug', 'tickcast');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 20_000;

let server;
let browser;
let page;
const pageErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `server binary missing: ${BIN} (run tests/browser/run.sh, which builds it)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} missing (run tests/browser/run.sh, which installs it)`);
  const port = await freePort();
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--no-pin', '--workers', '1', '--rate', '2000'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  server = child;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tickcast did not start')), WAIT_MS);
    child.once('exit', (code) => reject(new Error(`tickcast exited early (code ${code})`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('tickcast listening on')) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve();
      }
    });
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    timeout: 60_000,
  });
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // A same-origin document that runs no client of its own.
  await page.goto(`http://127.0.0.1:${port}/healthz`, { timeout: WAIT_MS });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
});

test('in Chromium: binary decode equals the JSON form of the same (symbol, seq)', { timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (waitMs) => {
    const m = await import('/client/index.js');
    const symbols = ['SYM0', 'SYM1', 'SYM2', 'SYM3'];
    const bin = m.connect('/ws', { symbols, format: 'binary' });
    const json = m.connect('/ws', { symbols, format: 'json' });
    const a = new Map();
    const b = new Map();
    const gaps = [];
    const errors = [];
    for (const [c, seen] of [
      [bin, a],
      [json, b],
    ]) {
      c.on('tick', (t) => seen.set(`${t.symbol}/${t.seq}/${t.kind}`, t));
      c.on('gap', (g) => gaps.push(g));
      c.on('error', (e) => errors.push(e.message));
    }
    const common = () => [...a.keys()].filter((k) => b.has(k));
    const end = Date.now() + waitMs;
    while (common().length < 200 && Date.now() < end) await new Promise((res) => setTimeout(res, 50));
    bin.close();
    json.close();
    const strip = ({ flags, snapshot, replay, conflated, tsEvent, tsRecv, ...rest }) => ({
      ...rest,
      tsEvent: String(tsEvent),
      tsRecv: String(tsRecv),
    });
    let compared = 0;
    const mismatches = [];
    for (const k of common()) {
      const x = a.get(k);
      const y = b.get(k);
      if (x.count !== 1 || y.count !== 1) continue;
      compared++;
      if (JSON.stringify(strip(x)) !== JSON.stringify(strip(y))) mismatches.push([strip(x), strip(y)]);
    }
    return { compared, mismatches, gaps: gaps.length, errors, bigint: typeof [...a.values()][0].tsEvent };
  }, WAIT_MS);
  assert.ok(r.compared >= 150, `${r.compared} ticks compared`);
  assert.deepEqual(r.mismatches, []);
  assert.deepEqual([r.gaps, r.errors], [0, []]);
  assert.equal(r.bigint, 'bigint');
});

test('in Chromium: bad frames raise a typed DecodeError', async () => {
  const codes = await page.evaluate(async () => {
    const m = await import('/client/index.js');
    const good = new Uint8Array(
      m.encode([{ kind: 1, symbolId: 0, seq: 1, tsEvent: 1n, tsRecv: 1n, values: [1n, 2n, 3n, 4n] }]),
    );
    const bad = [good.slice(0, 10), good.slice(0, -1), new Uint8Array([2, ...good.slice(1)])];
    const out = bad.map((b) => {
      try {
        m.decode(b);
        return 'decoded';
      } catch (e) {
        return e instanceof m.DecodeError ? e.code : String(e);
      }
    });
    out.push(m.decode(good).records[0].size);
    return out;
  });
  assert.deepEqual(codes, ['truncated', 'length', 'version', '0.00000002']);
});

test('in Chromium: a dropped connection resumes with replayed ticks and no gap', { timeout: 60_000 }, async () => {
  const r = await page.evaluate(async (waitMs) => {
    const m = await import('/client/index.js');
    // A reconnect delay of 0.5-1 s: ticks are surely missed meanwhile.
    const c = m.connect('/ws', { symbols: ['SYM0', 'SYM1'], format: 'binary', backoffInitialMs: 1000 });
    const ticks = [];
    const gaps = [];
    const states = [];
    c.on('tick', (t) => ticks.push(t));
    c.on('gap', (g) => gaps.push(g));
    c.on('state', (s) => states.push(s));
    const wait = async (pred) => {
      const end = Date.now() + waitMs;
      while (!pred()) {
        if (Date.now() > end) throw new Error('timed out');
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    await wait(() => ticks.filter((t) => !t.snapshot).length > 20);
    const from = c.lastSeqs().get('SYM0');
    const n = ticks.length;
    c.drop();
    await wait(() => states.some((s) => s.state === 'open' && s.reconnected));
    await wait(() => ticks.slice(n).filter((t) => t.symbol === 'SYM0' && !t.replay).length > 5);
    const after = ticks.slice(n).filter((t) => t.symbol === 'SYM0');
    c.close();
    return {
      from,
      first: after[0].seq,
      replayed: after.filter((t) => t.replay).length,
      snapshots: after.filter((t) => t.snapshot).length,
      contiguous: after.every((t, i) => i === 0 || t.seq === after[i - 1].seq + 1),
      gaps: gaps.length,
    };
  }, WAIT_MS);
  assert.equal(r.first, r.from + 1, 'continues from the resume point');
  assert.ok(r.replayed > 0, 'missed ticks replayed');
  assert.equal(r.snapshots, 0);
  assert.ok(r.contiguous);
  assert.equal(r.gaps, 0);
  assert.deepEqual(pageErrors, []);
});

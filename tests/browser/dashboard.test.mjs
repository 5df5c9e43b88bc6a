// Drives the dashboard in headless Chromium against a real tickcast server:
// default watchlist, symbol search, live cells, resume after a dropped connection,
// reconnect across a server restart on the same port, persistence, max rate, binary
// mode, and 200 symbols on screen.
//
// Run through ./run.sh, which installs what is missing and builds the server.
// Every wait is bounded; anything missing is a failure, never a skip.

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
const ARTIFACTS = path.join(ROOT, 'artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'dashboard.png');
const SCREENSHOT_200 = path.join(ARTIFACTS, 'dashboard-200.png');

const SERVER_START_MS = 20_000;
const SERVER_STOP_MS = 10_000;
const WAIT_MS = 20_000;
const STEP_MS = 90_000;

// Symbols added through the search box (not in the default watchlist SYM0..SYM9).
const ADDED = ['SYM42', 'SYM57', 'SYM83'];

let port;
let server;
let context;
let page;
let userDataDir;
let failed = false;
const pageErrors = [];

/** A port that was free a moment ago on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port: p } = srv.address();
      srv.close(() => resolve(p));
    });
  });
}

/** Starts `tickcast serve` and resolves once it prints its listening line. */
function startServer(extra = []) {
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--no-pin', '--workers', '1', ...extra];
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  readline.createInterface({ input: child.stderr }).on('line', (l) => {
    log.push(l);
    if (log.length > 200) log.shift();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tickcast did not print its listening line within ${SERVER_START_MS} ms:\n${log.join('\n')}`));
    }, SERVER_START_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`tickcast exited early (code ${code}, signal ${signal}):\n${log.join('\n')}`));
    });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^tickcast listening on http:\/\/(\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve({ child, log, url: `http://${m[1]}/` });
      }
    });
  });
}

/** Sends SIGTERM and waits for the exit; SIGKILL and fail if it takes too long. */
function stopServer(s) {
  return new Promise((resolve, reject) => {
    if (s.child.exitCode !== null || s.child.signalCode !== null) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      s.child.kill('SIGKILL');
      reject(new Error(`tickcast did not exit within ${SERVER_STOP_MS} ms of SIGTERM`));
    }, SERVER_STOP_MS);
    s.child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    s.child.kill('SIGTERM');
  });
}

/** Every step after a failed one fails too, naming the cause, instead of piling up noise. */
function step(name, fn) {
  test(name, { timeout: STEP_MS }, async () => {
    if (failed) throw new Error('an earlier step failed');
    try {
      await fn();
    } catch (e) {
      failed = true;
      if (server) console.error(`--- tickcast stderr (last lines) ---\n${server.log.slice(-30).join('\n')}`);
      throw e;
    }
  });
}

const status = () => page.locator('#status');
const row = (sym) => page.locator(`tr[data-symbol="${sym}"]`);

async function waitConnected() {
  await page.waitForSelector('#status[data-state="connected"]', { timeout: WAIT_MS });
}

/** The price cells of `symbols`: {sym: "last|bid|ask"}. */
function cellsOf(symbols) {
  return page.evaluate((syms) => {
    const out = {};
    for (const s of syms) {
      const tr = document.querySelector(`tr[data-symbol="${s}"]`);
      out[s] = tr
        ? ['last', 'bid', 'ask'].map((f) => tr.querySelector(`[data-field="${f}"]`).textContent).join('|')
        : null;
    }
    return out;
  }, symbols);
}

/** Waits until every symbol shows prices and they differ from `before`. */
async function waitCellsChange(symbols, beforeCells) {
  await page.waitForFunction(
    ([syms, prev]) =>
      syms.every((s) => {
        const tr = document.querySelector(`tr[data-symbol="${s}"]`);
        if (!tr) return false;
        const cells = ['last', 'bid', 'ask'].map((f) => tr.querySelector(`[data-field="${f}"]`).textContent);
        return cells.every((c) => c !== '') && cells.join('|') !== prev[s];
      }),
    [symbols, beforeCells],
    { timeout: WAIT_MS, polling: 100 },
  );
}

const stats = () => page.evaluate(() => ({ ...window.tickcast.stats }));

before(async () => {
  assert.ok(fs.existsSync(BIN), `server binary missing: ${BIN} (run tests/browser/run.sh, which builds it)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} missing (run tests/browser/run.sh, which installs it)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  port = await freePort();
  server = await startServer(['--rate', '2000']);
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tickcast-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 720 },
    timeout: 60_000,
  });
  page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
});

after(async () => {
  if (context) await context.close().catch(() => {});
  if (server) await stopServer(server).catch(() => {});
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

step('first visit shows the default watchlist with live prices', async () => {
  await page.goto(server.url, { timeout: WAIT_MS });
  await waitConnected();
  await page.waitForFunction(() => document.querySelectorAll('#rows tr[data-symbol]').length === 10, null, {
    timeout: WAIT_MS,
  });
  const names = await page.$$eval('#rows tr[data-symbol]', (trs) => trs.map((tr) => tr.dataset.symbol));
  assert.deepEqual(names, Array.from({ length: 10 }, (_, i) => `SYM${i}`));
  await waitCellsChange(['SYM0', 'SYM1'], await cellsOf(['SYM0', 'SYM1']));
  assert.equal(await page.getAttribute('#watchlist', 'data-stale'), 'false');
});

step('adds three symbols through the search box', async () => {
  for (const [i, sym] of ADDED.entries()) {
    await page.click('#search');
    await page.keyboard.type(sym, { delay: 10 });
    if (i === 0) {
      // The exact name and Enter.
      await page.keyboard.press('Enter');
    } else {
      // Pick it from the list of matches.
      await page.click(`#search-results li[data-symbol="${sym}"]`);
    }
    await row(sym).waitFor({ timeout: WAIT_MS });
    assert.equal(await page.inputValue('#search'), '');
  }
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('tickcast.watchlist')));
  for (const sym of ADDED) assert.ok(stored.includes(sym), `${sym} stored in the watchlist`);
});

step('the added symbols get live cells that keep changing', async () => {
  const first = await cellsOf(ADDED);
  await waitCellsChange(ADDED, first);
  const second = await cellsOf(ADDED);
  await waitCellsChange(ADDED, second);
  const meters = await page.evaluate(() => ({
    msgs: document.getElementById('msg-rate').textContent,
    latency: document.getElementById('latency').textContent,
    spark: document.querySelector('tr[data-symbol="SYM0"] canvas[data-field="spark"]').width,
  }));
  assert.ok(Number(meters.msgs.replace(/,/g, '')) > 0, `messages per second shown: ${meters.msgs}`);
  assert.match(meters.latency, /^-?\d+(\.\d)? ms$/);
  assert.ok(meters.spark > 0);
});

step('a dropped connection resumes from the last seq: missed ticks replayed, no gap', async () => {
  const before = await stats();
  const seqs = () => page.evaluate((syms) => syms.map((s) => window.tickcast.row(s).maxSeq), ADDED);
  const seqBefore = await seqs();
  await page.evaluate(() => window.tickcast.drop());
  await page.waitForFunction((n) => window.tickcast.stats.reconnects > n, before.reconnects, { timeout: WAIT_MS });
  await waitConnected();
  await page.waitForFunction((n) => window.tickcast.stats.replayed > n, before.replayed, { timeout: WAIT_MS });
  await waitCellsChange(ADDED, await cellsOf(ADDED));
  const after = await stats();
  const seqAfter = await seqs();
  console.log(`drop: ${after.replayed - before.replayed} ticks replayed, ${after.snapshots - before.snapshots} snapshots`);
  assert.equal(after.gaps, 0, 'no sequence gap');
  assert.equal(after.snapshots, before.snapshots, 'the ring still held the gap: replay, not snapshot');
  seqAfter.forEach((seq, i) => assert.ok(seq > seqBefore[i], `${ADDED[i]} seq ${seqBefore[i]} -> ${seq}`));
});

step('reconnects after the server restarts on the same port, and cells change again', async () => {
  const before = await stats();
  await stopServer(server);
  await page.waitForFunction(() => document.getElementById('status').dataset.state !== 'connected', null, {
    timeout: WAIT_MS,
  });
  assert.equal(await page.getAttribute('#watchlist', 'data-stale'), 'true', 'prices are marked stale while offline');
  server = await startServer(['--rate', '2000']);
  await waitConnected();
  const after = await stats();
  assert.ok(after.reconnects > before.reconnects, `reconnected (${before.reconnects} -> ${after.reconnects})`);
  const watched = [...ADDED, 'SYM0'];
  const reconnectedAt = Date.now();
  await waitCellsChange(watched, await cellsOf(watched));
  const changedMs = Date.now() - reconnectedAt;
  assert.equal(await page.getAttribute('#watchlist', 'data-stale'), 'false');
  console.log(
    `reconnect: shutdown notices ${after.shutdownNotices - before.shutdownNotices}, ` +
      `sequence restarts detected ${after.seqResets - before.seqResets}, gaps ${after.gaps}, ` +
      `cells changed ${changedMs} ms after the reconnect`,
  );
  // Let flashes and sparklines settle into a typical frame, then keep the picture.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.ok(fs.statSync(SCREENSHOT).size > 10_000, 'screenshot written');
});

step('the watchlist and settings survive a reload', async () => {
  await page.reload({ timeout: WAIT_MS });
  await waitConnected();
  const names = await page.$$eval('#rows tr[data-symbol]', (trs) => trs.map((tr) => tr.dataset.symbol));
  assert.deepEqual(names.slice(-3), ADDED);
  assert.equal(names.length, 13);
  await waitCellsChange(ADDED, await cellsOf(ADDED));
});

step('removing a symbol unsubscribes it', async () => {
  await row('SYM9').hover();
  await page.click('tr[data-symbol="SYM9"] button.remove');
  await row('SYM9').waitFor({ state: 'detached', timeout: WAIT_MS });
  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('tickcast.watchlist')));
  assert.ok(!stored.includes('SYM9'));
});

step('the max-rate selector limits updates per symbol', async () => {
  const symbols = (await page.evaluate(() => window.tickcast.watchlist())).length;
  const rate = async (ms) => {
    const a = (await stats()).ticks;
    await page.waitForTimeout(ms);
    return (((await stats()).ticks - a) * 1000) / ms;
  };
  await page.selectOption('#max-rate', '1');
  await page.waitForFunction(() => window.tickcast.stats.lastAck && window.tickcast.stats.lastAck.max_rate === 1);
  await page.waitForTimeout(1200); // let what was queued before the ack drain
  const limited = await rate(3000);
  // At most one trade and one quote per symbol per second, with slack for timer skew.
  assert.ok(limited <= symbols * 2 * 1.5 + 2, `${limited.toFixed(1)} ticks/s for ${symbols} symbols at 1/s`);
  assert.ok(limited > 0, 'rate-limited symbols still update');
  await page.selectOption('#max-rate', '0');
  await page.waitForFunction(() => window.tickcast.stats.lastAck.max_rate === 0);
  const unlimited = await rate(2000);
  assert.ok(unlimited > limited * 2, `unlimited ${unlimited.toFixed(1)}/s vs limited ${limited.toFixed(1)}/s`);
  assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('tickcast.settings')).maxRate), 0);
});

step('binary frames decode to the same cells', async () => {
  await page.selectOption('#format', 'binary');
  await page.waitForFunction(() => window.tickcast.stats.lastAck.format === 'binary');
  await waitCellsChange(ADDED, await cellsOf(ADDED));
  const last = await page.textContent('tr[data-symbol="SYM42"] [data-field="last"]');
  assert.match(last, /^\d+\.\d{2,8}$/);
  await page.selectOption('#format', 'json');
  await page.waitForFunction(() => window.tickcast.stats.lastAck.format === 'json');
  await waitCellsChange(ADDED, await cellsOf(ADDED));
});

step('200 symbols at 10,000 ticks/s stay responsive', async () => {
  await stopServer(server);
  server = await startServer(['--symbols', '200', '--rate', '10000']);
  await waitConnected();
  const all = Array.from({ length: 200 }, (_, i) => `SYM${i}`);
  await page.evaluate((names) => localStorage.setItem('tickcast.watchlist', JSON.stringify(names)), all);
  await page.reload({ timeout: WAIT_MS });
  await waitConnected();
  await page.waitForFunction(() => document.querySelectorAll('#rows tr[data-symbol]').length === 200);
  // Rows on screen update; rows below the fold are drawn when scrolled into view.
  const top = ['SYM0', 'SYM5', 'SYM10'];
  await waitCellsChange(top, await cellsOf(top));
  // Frames rendered and the longest gap between two frames, over three seconds.
  const perf = await page.evaluate(
    () =>
      new Promise((resolve) => {
        let frames = 0;
        let worst = 0;
        let prev = performance.now();
        const start = prev;
        const tick = (now) => {
          frames++;
          worst = Math.max(worst, now - prev);
          prev = now;
          if (now - start < 3000) requestAnimationFrame(tick);
          else resolve({ fps: (frames * 1000) / (now - start), worstMs: worst, ticks: window.tickcast.stats.ticks });
        };
        requestAnimationFrame(tick);
      }),
  );
  console.log(`200 symbols: ${perf.fps.toFixed(1)} frames/s, longest frame gap ${perf.worstMs.toFixed(0)} ms`);
  // Headless on a shared 2-core machine: generous bounds that still catch a page
  // that chokes (a frame per tick, or a blocked main thread).
  assert.ok(perf.fps >= 15, `frames per second ${perf.fps.toFixed(1)}`);
  assert.ok(perf.worstMs < 1000, `longest frame gap ${perf.worstMs.toFixed(0)} ms`);
  const t0 = Date.now();
  await page.click('#search');
  await page.keyboard.type('SYM1');
  await page.waitForSelector('#search-results li[data-symbol="SYM1"]', { timeout: WAIT_MS });
  const inputMs = Date.now() - t0;
  console.log(`200 symbols: search answered typing in ${inputMs} ms`);
  assert.ok(inputMs < 3000, `search answered in ${inputMs} ms`);
  await page.keyboard.press('Escape');
  await row('SYM199').scrollIntoViewIfNeeded();
  await waitCellsChange(['SYM199', 'SYM190'], await cellsOf(['SYM199', 'SYM190']));
  await page.screenshot({ path: SCREENSHOT_200 });
});

step('no uncaught errors in the page', async () => {
  assert.deepEqual(pageErrors, []);
});

// Drives the dashboard in headless Chromium against a real tickcast server:
// default watchlist, symbol search, live cells, resume after a dropped connection,
// reconnect across a server restart on the same port, persistence, max rate, binary
// mode, 200 symbols on screen, and a lost tick reported as a gap.
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
import crypto from 'node:crypto';
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

/**
 * Starts `tickcast serve` (with `config`, TOML text, when given) and resolves once it
 * prints its listening line.
 */
function startServer(extra = [], config = null) {
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--no-pin', '--workers', '1', ...extra];
  if (config !== null) {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tickcast-config-')), 'tickcast.toml');
    fs.writeFileSync(file, config);
    args.push('--config', file);
  }
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
  // Three ways: the exact name and Enter; a click on a match; arrows through the
  // matches of "SYM8" (SYM8, SYM80, SYM81, SYM82, SYM83) and Enter.
  const ways = [
    async (sym) => {
      await page.keyboard.type(sym, { delay: 10 });
      await page.keyboard.press('Enter');
    },
    async (sym) => {
      await page.keyboard.type(sym, { delay: 10 });
      await page.click(`#search-results li[data-symbol="${sym}"]`);
    },
    async (sym) => {
      await page.keyboard.type(sym.slice(0, 4), { delay: 10 });
      await page.waitForSelector(`#search-results li[data-symbol="${sym}"]`, { timeout: WAIT_MS });
      for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowDown');
      assert.equal(await page.getAttribute('#search', 'aria-activedescendant'), `opt-${sym}`);
      await page.keyboard.press('Enter');
    },
  ];
  for (const [i, sym] of ADDED.entries()) {
    await page.click('#search');
    await ways[i](sym);
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
  // Never negative: clamped at 0 (a clock that disagrees is flagged, see below).
  assert.match(meters.latency, /^\d+(\.\d)? ms$/);
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
  await page.waitForFunction(() => window.tickcast.stats.lastAck && window.tickcast.stats.lastAck.maxRate === 1);
  await page.waitForTimeout(1200); // let what was queued before the ack drain
  const limited = await rate(3000);
  // At most one trade and one quote per symbol per second, with slack for timer skew.
  assert.ok(limited <= symbols * 2 * 1.5 + 2, `${limited.toFixed(1)} ticks/s for ${symbols} symbols at 1/s`);
  assert.ok(limited > 0, 'rate-limited symbols still update');
  await page.selectOption('#max-rate', '0');
  await page.waitForFunction(() => window.tickcast.stats.lastAck.maxRate === 0);
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

step('columns sort the rows, both ways and back to the watchlist order', async () => {
  // Click and read the order in one turn of the page: the values it sorted by are the
  // ones read back.
  const clickAndRead = (key) =>
    page.evaluate((k) => {
      document.querySelector(`#watchlist th[data-sort="${k}"]`).click();
      const order = window.tickcast.order();
      return {
        order,
        values: order.map((n) => window.tickcast.row(n).last),
        aria: document.querySelector(`#watchlist th[data-sort="${k}"]`).getAttribute('aria-sort'),
      };
    }, key);
  const watchlist = await page.evaluate(() => window.tickcast.watchlist());
  const desc = await clickAndRead('last');
  assert.equal(desc.aria, 'descending');
  assert.deepEqual([...desc.values].sort((a, b) => b - a), desc.values, `descending: ${desc.values}`);
  assert.deepEqual([...desc.order].sort(), [...watchlist].sort(), 'every row is still there');
  const asc = await clickAndRead('last');
  assert.equal(asc.aria, 'ascending');
  assert.deepEqual([...asc.values].sort((a, b) => a - b), asc.values, `ascending: ${asc.values}`);
  const none = await clickAndRead('last');
  assert.equal(none.aria, 'none');
  assert.deepEqual(none.order, watchlist, 'third click: the watchlist order again');
  const byName = await clickAndRead('symbol');
  assert.equal(byName.order[0], 'SYM0');
  assert.deepEqual(byName.order.slice(-3), ['SYM42', 'SYM57', 'SYM83'], 'natural order of names');
  assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('tickcast.settings')).sort.key), 'symbol');
  await clickAndRead('symbol');
  await clickAndRead('symbol');
});

step('every row shows the age of its last update', async () => {
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll('#rows [data-field="age"]')].every((td) => /^\d+(\.\d)? s$/.test(td.textContent)),
    null,
    { timeout: WAIT_MS },
  );
  const ages = await page.$$eval('#rows [data-field="age"]', (tds) => tds.map((td) => parseFloat(td.textContent)));
  // 2,000 ticks/s over 100 symbols: every symbol updates many times a second.
  assert.ok(Math.max(...ages) < 5, `ages ${ages}`);
});

step('change, high, low and volume come from the server: since the session start', async () => {
  const symbols = [...ADDED, 'SYM0'];
  // The row's model against the client's summary, read in one turn of the page.
  const read = () =>
    page.evaluate(
      (syms) =>
        syms.map((s) => {
          const r = window.tickcast.row(s);
          const sum = window.tickcast.summary(s);
          const cell = (f) => document.querySelector(`tr[data-symbol="${s}"] [data-field="${f}"]`).textContent;
          return { s, r, sum: sum && { ...sum, since: String(sum.since) }, cells: ['change', 'change_pct', 'high', 'low', 'volume', 'last'].map(cell) };
        }),
      symbols,
    );
  await page.waitForFunction(
    (syms) => syms.every((s) => window.tickcast.summary(s) && window.tickcast.summary(s).trades > 0),
    symbols,
    { timeout: WAIT_MS },
  );
  for (const { s, r, sum } of await read()) {
    assert.equal(r.open, Number(sum.open), `${s} open`);
    assert.equal(r.high, Number(sum.high), `${s} high`);
    assert.equal(r.low, Number(sum.low), `${s} low`);
    assert.equal(r.volume, Number(sum.volume), `${s} volume`);
    assert.ok(r.low <= r.open && r.open <= r.high && r.low <= r.last && r.last <= r.high, `${s}: ${JSON.stringify(r)}`);
    assert.ok(BigInt(sum.since) > 0n && sum.trades >= 1, `${s}: ${JSON.stringify(sum)}`);
  }
  // The cells show the model: change against the session's open, never "-0.00".
  await page.waitForFunction(
    (syms) =>
      syms.every((s) => {
        const r = window.tickcast.row(s);
        const cell = (f) => document.querySelector(`tr[data-symbol="${s}"] [data-field="${f}"]`).textContent;
        const last = cell('last');
        const dp = last.includes('.') ? last.length - last.indexOf('.') - 1 : 0;
        const c = window.tickcast.formatChange(Number(last), r.open, dp);
        return cell('change') === c.change && cell('change_pct') === c.changePct && cell('high') === r.high.toFixed(dp);
      }),
    symbols,
    { timeout: WAIT_MS, polling: 50 },
  );
});

step('a feed clock ahead of this one shows latency 0, flagged, never negative', async () => {
  // A second tab whose clock runs a minute behind: every ts_event is "in the future".
  const skewed = await context.newPage();
  skewed.on('pageerror', (e) => pageErrors.push(String(e)));
  await skewed.addInitScript(() => {
    const real = Date.now;
    Date.now = () => real() - 60_000;
  });
  await skewed.goto(server.url, { timeout: WAIT_MS });
  await skewed.waitForSelector('#latency[data-skew="true"]', { timeout: WAIT_MS });
  const shown = await skewed.evaluate(() => ({
    text: document.getElementById('latency').textContent,
    title: document.getElementById('latency').title,
    skew: window.tickcast.stats.clockSkewMs,
  }));
  assert.match(shown.text, /^0\.0 ms$/);
  assert.match(shown.title, /clocks disagree/);
  assert.ok(shown.skew > 50_000, `skew ${shown.skew} ms`);
  await skewed.close();
});

step('change is never shown as -0.00 or -0.00%', async () => {
  const cases = await page.evaluate(() =>
    [
      [100, 100, 2],
      [99.9999, 100, 2],
      [100.0001, 100, 2],
      [9999.99, 10000, 2],
      [0.5, 0.5000001, 8],
      [101, 100, 2],
      [99, 100, 2],
    ].map(([last, open, dp]) => window.tickcast.formatChange(last, open, dp)),
  );
  assert.deepEqual(
    cases.map((c) => [c.change, c.changePct, c.sign, c.pctSign]),
    [
      ['0.00', '0.00%', '', ''],
      ['0.00', '0.00%', '', ''],
      ['0.00', '0.00%', '', ''],
      ['-0.01', '0.00%', 'down', ''],
      ['-0.00000010', '0.00%', 'down', ''],
      ['+1.00', '+1.00%', 'up', 'up'],
      ['-1.00', '-1.00%', 'down', 'down'],
    ],
  );
  const cells = await page.$$eval('#rows [data-field="change"], #rows [data-field="change_pct"]', (tds) =>
    tds.map((td) => td.textContent),
  );
  assert.ok(!cells.some((t) => /^-0(\.0*)?%?$/.test(t)), `cells: ${cells}`);
});

step('reconnects after the server restarts on the same port, and cells change again', async () => {
  const before = await stats();
  const oldSince = await page.evaluate(() => String(window.tickcast.summary('SYM0').since));
  await stopServer(server);
  await page.waitForFunction(() => document.getElementById('status').dataset.state !== 'connected', null, {
    timeout: WAIT_MS,
  });
  assert.equal(await page.getAttribute('#watchlist', 'data-stale'), 'true', 'prices are marked stale while offline');
  // A slower feed: the new server's sequence numbers (from 1 again) stay below the
  // page's for longer than the wait, so the cells can only change again if the page
  // takes the new server's numbers (snapshot after the resume, or a fresh subscribe).
  server = await startServer(['--rate', '500']);
  await waitConnected();
  const reconnectedAt = Date.now();
  const mid = await stats();
  assert.ok(mid.reconnects > before.reconnects, `reconnected (${before.reconnects} -> ${mid.reconnects})`);
  const watched = [...ADDED, 'SYM0'];
  await waitCellsChange(watched, await cellsOf(watched));
  const changedMs = Date.now() - reconnectedAt;
  const after = await stats();
  assert.equal(await page.getAttribute('#watchlist', 'data-stale'), 'false');
  assert.ok(after.shutdownNotices > before.shutdownNotices, 'the server said it was shutting down');
  // The session figures are the new server's: its session started after the old one's.
  await page.waitForFunction(
    (since) => {
      const s = window.tickcast.summary('SYM0');
      const r = window.tickcast.row('SYM0');
      return s && s.trades > 0 && s.since > BigInt(since) && r.open === Number(s.open) && r.volume === Number(s.volume);
    },
    oldSince,
    { timeout: WAIT_MS },
  );
  console.log(
    `reconnect: shutdown notices ${after.shutdownNotices - before.shutdownNotices}, gaps ${after.gaps}, ` +
      `cells changed ${changedMs} ms after the reconnect` +
      (after.lastGap ? `; last gap ${JSON.stringify(after.lastGap)}` : ''),
  );
  // Let flashes and sparklines settle into a typical frame, then keep the picture.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.ok(fs.statSync(SCREENSHOT).size > 10_000, 'screenshot written');
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
  // Over three seconds: CPU time of the page's main thread (its own cost, whatever else
  // runs on the machine), ticks applied, frames rendered and the longest frame gap.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const metrics = async () =>
    Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  const m0 = await metrics();
  const ticks0 = (await stats()).ticks;
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
          else resolve({ fps: (frames * 1000) / (now - start), worstMs: worst });
        };
        requestAnimationFrame(tick);
      }),
  );
  const m1 = await metrics();
  const secs = m1.Timestamp - m0.Timestamp;
  const cpu = (m1.ThreadTime - m0.ThreadTime) / secs;
  const tps = ((await stats()).ticks - ticks0) / secs;
  console.log(
    `200 symbols: main thread ${(cpu * 100).toFixed(0)}% of a core, ${tps.toFixed(0)} ticks/s applied, ` +
      `${perf.fps.toFixed(1)} frames/s, longest frame gap ${perf.worstMs.toFixed(0)} ms`,
  );
  // Frame rates and ticks applied per second depend on how much CPU the machine leaves
  // the browser (on a loaded 2-core CI machine, under half of 10,000 ticks/s reached
  // the page while the server conflated the rest, as it should): they are logged, not
  // asserted. The main thread's own CPU time is the page's cost whatever else runs,
  // and a page that chokes (a frame per tick, a blocked main thread) spends a whole
  // core; a frame gap of seconds is a blocked thread, not a busy machine.
  assert.ok(cpu < 0.8, `main thread busy ${(cpu * 100).toFixed(0)}% of a core`);
  assert.ok(tps > 0, 'ticks applied while measuring');
  assert.ok(perf.worstMs < 5000, `longest frame gap ${perf.worstMs.toFixed(0)} ms`);
  await cdp.detach();
  // Input to the next frame, timed inside the page: the test's own control channel
  // carries every WebSocket frame too and is slower than the page.
  const inputMs = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const el = document.getElementById('search');
        const t0 = performance.now();
        el.value = 'SYM1';
        el.dispatchEvent(new Event('input'));
        requestAnimationFrame(() => resolve(performance.now() - t0));
      }),
  );
  console.log(`200 symbols: search results on screen ${inputMs.toFixed(0)} ms after the input`);
  assert.ok(inputMs < 5000, `search answered in ${inputMs.toFixed(0)} ms`);
  assert.ok(await page.isVisible('#search-results li[data-symbol="SYM1"]'));
  await page.fill('#search', '');
  await page.keyboard.press('Escape');
  await row('SYM199').scrollIntoViewIfNeeded();
  await waitCellsChange(['SYM199', 'SYM190'], await cellsOf(['SYM199', 'SYM190']));
  await page.screenshot({ path: SCREENSHOT_200 });
});

step('a tick lost on the way shows up as a gap', async () => {
  // From here on every WebSocket message passes through the test, which drops one live
  // SYM42 tick; the page must count the hole in SYM42's sequence. A slower feed keeps
  // the relay through the test light.
  // The second live SYM42 tick is dropped: the first one fixes where the restarted
  // server's sequence stands, so the hole after it is a real gap.
  let dropped = null;
  let seen = 0;
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => {
      if (!dropped && typeof m === 'string' && m.startsWith('[')) {
        const ticks = JSON.parse(m);
        const i = ticks.findIndex((t) => t.symbol === 'SYM42' && t.flags.length === 0 && ++seen === 2);
        if (i >= 0) {
          dropped = ticks.splice(i, 1)[0];
          if (ticks.length > 0) ws.send(JSON.stringify(ticks));
          return;
        }
      }
      ws.send(m);
    });
  });
  const before = await stats();
  await stopServer(server);
  server = await startServer(['--symbols', '200', '--rate', '500']);
  await page.waitForFunction((n) => window.tickcast.stats.reconnects > n, before.reconnects, { timeout: WAIT_MS });
  await page.waitForFunction((n) => window.tickcast.stats.gaps > n, before.gaps, { timeout: WAIT_MS });
  const after = await stats();
  assert.ok(dropped, 'a tick was dropped');
  assert.equal(after.gaps, before.gaps + 1);
  assert.equal(after.lastGap.symbol, 'SYM42');
  console.log(`dropped SYM42 seq ${dropped.seq}: gap reported ${JSON.stringify(after.lastGap)}`);
});

step('a symbol clicked shows its depth ladder, equal to the server\'s book', async () => {
  const limit = 9000;
  await stopServer(server);
  server = await startServer(
    [],
    `[[feeds]]\nkind = "synthetic"\nsymbols = 200\nrate = 3000\nlimit = ${limit}\nbook_depth = 6\n`,
  );
  await waitConnected();
  await page.click('tr[data-symbol="SYM0"] th');
  await page.waitForSelector('#depth:not([hidden])', { timeout: WAIT_MS });
  await page.waitForFunction(() => window.tickcast.ladder().length > 0, null, { timeout: WAIT_MS });
  // The feed ends; a subscriber that joins then gets the server's book as its snapshot.
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const s = await (await fetch(`${server.url}stats`)).json();
    if (s.sequencer.ticks >= limit) break;
    assert.ok(Date.now() < end, 'the feed ends');
    await new Promise((r) => setTimeout(r, 50));
  }
  const want = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.onopen = () => ws.send(JSON.stringify({ op: 'subscribe', symbols: ['SYM0'], channels: ['book'], format: 'json' }));
        ws.onerror = () => reject(new Error('snapshot subscriber failed'));
        ws.onmessage = (m) => {
          const v = JSON.parse(m.data);
          const b = Array.isArray(v) && v.find((o) => o.type === 'book');
          if (!b) return;
          ws.close();
          resolve({ seq: b.seq, bids: b.bids, asks: b.asks });
        };
      }),
    server.url.replace('http://', 'ws://') + 'ws',
  );
  assert.ok(want.bids.length > 0 && want.asks.length > 0, JSON.stringify(want));
  await page.waitForFunction((seq) => window.tickcast.book('SYM0')?.seq === seq, want.seq, { timeout: WAIT_MS });
  const rowsWanted = Array.from({ length: Math.min(10, Math.max(want.bids.length, want.asks.length)) }, (_, i) => [
    want.bids[i]?.[1] ?? '',
    want.bids[i]?.[0] ?? '',
    want.asks[i]?.[0] ?? '',
    want.asks[i]?.[1] ?? '',
  ]);
  await page.waitForFunction((w) => JSON.stringify(window.tickcast.ladder()) === JSON.stringify(w), rowsWanted, {
    timeout: WAIT_MS,
  });
  assert.match(await page.textContent('#depth-note'), new RegExp(`book #${want.seq}$`));
  assert.equal(await page.getAttribute('tr[data-symbol="SYM0"]', 'aria-selected'), 'true');
  await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-depth.png'), fullPage: true });
  console.log(`depth ladder of SYM0 at book #${want.seq}: ${rowsWanted.length} rows as the server's book`);
  // Clicked again: the ladder goes, and the symbol keeps its trades and quotes.
  await page.click('tr[data-symbol="SYM0"] th');
  await page.waitForSelector('#depth[hidden]', { state: 'attached', timeout: WAIT_MS });
  assert.equal(await page.getAttribute('tr[data-symbol="SYM0"]', 'aria-selected'), null);
  assert.equal((await stats()).bookGaps, 0);
});

/** An HS256 JWT with `claims`, signed with `secret`. */
function jwt(claims, secret) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${crypto.createHmac('sha256', secret).update(body).digest('base64url')}`;
}

step('with [auth], the page asks for a token, refuses a bad one and connects with a good one', async () => {
  const secret = 'dashboard-test-secret';
  await stopServer(server);
  server = await startServer(['--symbols', '200', '--rate', '500'], `[auth]\njwt_secret = "${secret}"\n`);
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const good = jwt({ sub: 'dashboard-test', exp, symbols: ['*'] }, secret);
  const expired = jwt({ sub: 'dashboard-test', exp: exp - 7200, symbols: ['*'] }, secret);
  // A new tab: no token kept (tokens live in the tab's sessionStorage).
  const p = await context.newPage();
  p.on('pageerror', (e) => pageErrors.push(String(e)));
  await p.goto(server.url, { timeout: WAIT_MS });
  await p.waitForSelector('#auth:not([hidden])', { timeout: WAIT_MS });
  assert.equal(await p.getAttribute('#status', 'data-state'), 'auth');
  assert.match(await p.textContent('#auth-message'), /needs a token: missing token/);
  await p.fill('#token', 'not-a-token');
  await p.click('#auth button[type="submit"]');
  await p.waitForFunction(() => /refused the token: malformed token/.test(document.getElementById('auth-message').textContent), null, {
    timeout: WAIT_MS,
  });
  assert.ok(await p.isVisible('#auth'));
  await p.fill('#token', good);
  await p.click('#auth button[type="submit"]');
  await p.waitForSelector('#status[data-state="connected"]', { timeout: WAIT_MS });
  assert.ok(await p.isHidden('#auth'));
  const live = async (pg) => {
    const before = await pg.textContent('tr[data-symbol="SYM0"] [data-field="last"]');
    await pg.waitForFunction(
      (b) => {
        const t = document.querySelector('tr[data-symbol="SYM0"] [data-field="last"]').textContent;
        return t !== '' && t !== b;
      },
      before,
      { timeout: WAIT_MS },
    );
  };
  await live(p);
  await p.close();

  // ?token= in the address: connects at once, and the token leaves the address bar.
  const q = await context.newPage();
  q.on('pageerror', (e) => pageErrors.push(String(e)));
  await q.goto(`${server.url}?token=${encodeURIComponent(good)}`, { timeout: WAIT_MS });
  await q.waitForSelector('#status[data-state="connected"]', { timeout: WAIT_MS });
  assert.equal(await q.evaluate(() => location.search), '');
  await live(q);
  // An expired token: asked for a new one, with the server's reason.
  await q.goto(`${server.url}?token=${encodeURIComponent(expired)}`, { timeout: WAIT_MS });
  await q.waitForSelector('#auth:not([hidden])', { timeout: WAIT_MS });
  assert.match(await q.textContent('#auth-message'), /token expired/);
  await q.close();
});

step('no uncaught errors in the page', async () => {
  assert.deepEqual(pageErrors, []);
});

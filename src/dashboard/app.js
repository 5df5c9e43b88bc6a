// tickcast dashboard: a watchlist of live prices, built on the tickcast-client package
// (clients/js, embedded at /client/). The package does the protocol: decoding, gap
// detection, reconnect with backoff, resume, the token. This page only shows what it
// reports.
//
// Data flow: client 'tick' -> applyTick() updates a row's model and marks it dirty ->
// a requestAnimationFrame pass writes the changed cells of the rows on screen, at most
// RENDER_INTERVAL_MS apart. However many ticks arrive, a visible row is written at most
// 20 times a second; a row scrolled out of view keeps its model current and is drawn
// when it comes back. Clicking a symbol subscribes it to the `book` channel too: the
// client rebuilds the book, and its 'book' events redraw the depth ladder once a frame.

import { connect, decimalPlaces } from '/client/index.js';

const WATCH_KEY = 'tickcast.watchlist';
const SETTINGS_KEY = 'tickcast.settings';
const TOKEN_KEY = 'tickcast.token';
const DEFAULT_WATCHLIST_SIZE = 10;
// Reconnect: the client's exponential backoff with equal jitter, from 250 ms to 5 s.
const BACKOFF_INITIAL_MS = 250;
const BACKOFF_MAX_MS = 5000;
const SYMBOLS_RETRY_MS = 2000;
const SPARK_POINTS = 60;
const SPARK_BUCKET_MS = 500;
const SPARK_REDRAW_MS = 250;
const SPARK_W = 96;
const SPARK_H = 22;
const FLASH_MS = 350;
const RENDER_INTERVAL_MS = 50;
const METER_MS = 500;
/** A sorted table is put back in order at most this often (rows do not jump per tick). */
const RESORT_MS = 1000;
const SEARCH_LIMIT = 50;
/** A latency below -this (ms) means the feed's clock is ahead of this computer's. */
const SKEW_MS = 1;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  msgRate: $('msg-rate'),
  tickRate: $('tick-rate'),
  latency: $('latency'),
  gaps: $('gaps'),
  table: $('watchlist'),
  head: document.querySelector('#watchlist thead tr'),
  rows: $('rows'),
  empty: $('empty'),
  note: $('note'),
  search: $('search'),
  results: $('search-results'),
  maxRate: $('max-rate'),
  format: $('format'),
  template: $('row-template'),
  auth: $('auth'),
  authMessage: $('auth-message'),
  token: $('token'),
  depth: $('depth'),
  depthTitle: $('depth-title'),
  ladder: $('ladder-rows'),
  depthNote: $('depth-note'),
};
/** Levels per side the depth ladder shows. */
const LADDER_LEVELS = 10;
const css = getComputedStyle(document.documentElement);
const UP = css.getPropertyValue('--up').trim() || '#1fc77e';
const DOWN = css.getPropertyValue('--down').trim() || '#f0475b';
const volumeFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

/** Every symbol the server knows, in id order: [{id, name}]. */
let allSymbols = [];
/** Watchlist names in display order; persisted in localStorage. */
let watch = [];
/** name -> row model. */
const rows = new Map();
let settings = { maxRate: 0, format: 'json', sort: null };
/** The subscriber; null while the page waits for a token. */
let client = null;
/** The token for a server with [auth] ('' when none). */
let token = '';
/** The symbol whose order book the depth ladder shows (null: none). */
let selected = null;
let ladderScheduled = false;

const stats = {
  messages: 0,
  ticks: 0,
  gaps: 0,
  connects: 0,
  reconnects: 0,
  shutdownNotices: 0,
  replayed: 0,
  snapshots: 0,
  lastLatencyMs: null,
  /** How far ahead of this computer's clock the last live update's ts_event was, in ms. */
  clockSkewMs: null,
  lastAck: null,
  lastError: null,
  lastGap: null,
  authChecks: 0,
  bookGaps: 0,
};

// ---------------------------------------------------------------- persistence

function loadJson(key) {
  try {
    const s = localStorage.getItem(key);
    return s === null ? null : JSON.parse(s);
  } catch (_) {
    return null;
  }
}

function saveJson(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch (_) {
    // Storage full or disabled: the page still works, it just forgets.
  }
}

function saveWatch() {
  saveJson(WATCH_KEY, watch);
}

// ---------------------------------------------------------------- formatting

/**
 * Change and change % of `last` against `open` with `dp` decimals: signed, and never
 * "-0.00" (a change that rounds to zero is shown as zero, without a sign).
 */
function formatChange(last, open, dp) {
  const ch = last - open;
  const chText = ch.toFixed(dp);
  const pct = open !== 0 ? (ch / open) * 100 : 0;
  const pctText = pct.toFixed(2);
  const flatCh = Number(chText) === 0;
  const flatPct = Number(pctText) === 0;
  return {
    change: flatCh ? (0).toFixed(dp) : (ch > 0 ? '+' : '') + chText,
    changePct: flatPct ? '0.00%' : (pct > 0 ? '+' : '') + pctText + '%',
    /** Colour of each cell: none for a value shown as zero. */
    sign: flatCh ? '' : ch > 0 ? 'up' : 'down',
    pctSign: flatPct ? '' : pct > 0 ? 'up' : 'down',
    pct,
  };
}

/** How long ago, for the Age column: "0.4 s", "12 s", "3 m", "2 h". */
function formatAge(ms) {
  if (ms < 10_000) return (ms / 1000).toFixed(1) + ' s';
  if (ms < 60_000) return Math.floor(ms / 1000) + ' s';
  if (ms < 3_600_000) return Math.floor(ms / 60_000) + ' m';
  return Math.floor(ms / 3_600_000) + ' h';
}

// ---------------------------------------------------------------- rows

function makeRow(name) {
  const tr = ui.template.content.firstElementChild.cloneNode(true);
  tr.dataset.symbol = name;
  tr.querySelector('th').textContent = name;
  const cells = {};
  const texts = {};
  for (const el of tr.querySelectorAll('[data-field]')) {
    cells[el.dataset.field] = el;
    // Writing a text node's data is cheaper than replacing a cell's children.
    if (el.tagName === 'TD') texts[el.dataset.field] = el.appendChild(document.createTextNode(''));
  }
  tr.querySelector('th').addEventListener('click', () => select(name));
  const rm = tr.querySelector('button.remove');
  rm.setAttribute('aria-label', 'Remove ' + name);
  rm.addEventListener('click', () => removeSymbol(name));
  return {
    name,
    tr,
    cells,
    texts,
    ctx: null,
    /** Near the viewport (IntersectionObserver): only such rows are written. */
    visible: false,
    // The value shown per kind: its seq and ts_recv (ns). An older record (a late one
    // of a flush, a snapshot repeating what is shown) is not shown; a lower seq with a
    // newer ts_recv comes from a restarted server that numbers afresh, and is.
    tradeSeq: 0,
    tradeRecv: 0n,
    quoteSeq: 0,
    quoteRecv: 0n,
    last: null,
    bid: null,
    ask: null,
    /** From the server's session summary: first trade, high, low, volume. */
    open: null,
    high: null,
    low: null,
    volume: 0,
    /** ts_recv of the latest update shown, in ms since the epoch. */
    updatedMs: null,
    dp: 2,
    dir: 0,
    flashUntil: 0,
    spark: [],
    sparkBucket: -1,
    sparkDrawn: -Infinity,
    shown: {},
  };
}

function addRow(name) {
  if (rows.has(name)) return rows.get(name);
  const r = makeRow(name);
  rows.set(name, r);
  rowByTr.set(r.tr, r);
  ui.rows.appendChild(r.tr);
  visibility.observe(r.tr);
  ui.empty.hidden = true;
  sortDue = true;
  return r;
}

function dropRow(name) {
  const r = rows.get(name);
  if (!r) return;
  rows.delete(name);
  rowByTr.delete(r.tr);
  visibility.unobserve(r.tr);
  dirty.delete(r);
  flashing.delete(r);
  sparkPending.delete(r);
  r.tr.remove();
  ui.empty.hidden = rows.size > 0;
}

// ---------------------------------------------------------------- ticks

function widen(r, s) {
  const dp = decimalPlaces(s);
  if (dp > r.dp) r.dp = Math.min(dp, 8);
}

/** Applies one tick from the client to its row. */
function applyTick(t) {
  const r = rows.get(t.symbol);
  stats.ticks++;
  tickWindow++;
  if (t.replay) stats.replayed++;
  else if (t.snapshot) stats.snapshots++;
  else if (!t.conflated) {
    const latency = Date.now() - Number(t.tsEvent) / 1e6;
    // Clamped: a negative latency only says the feed's clock is ahead of this one.
    stats.clockSkewMs = latency < -SKEW_MS ? -latency : null;
    stats.lastLatencyMs = Math.max(0, latency);
  }
  if (!r) return; // unsubscribed while in flight
  const trade = t.kind === 'trade';
  const seq = trade ? r.tradeSeq : r.quoteSeq;
  const recv = trade ? r.tradeRecv : r.quoteRecv;
  if (t.seq <= seq && t.tsRecv <= recv) return;
  r.updatedMs = Number(t.tsRecv) / 1e6;
  if (trade) {
    r.tradeSeq = t.seq;
    r.tradeRecv = t.tsRecv;
    const price = Number(t.price);
    if (r.last !== null && price !== r.last) {
      r.dir = price > r.last ? 1 : -1;
      r.flashUntil = performance.now() + FLASH_MS;
      flashing.add(r);
    }
    r.last = price;
    widen(r, t.price);
    const bucket = Math.floor(Date.now() / SPARK_BUCKET_MS);
    if (bucket !== r.sparkBucket || r.spark.length === 0) {
      r.spark.push(price);
      if (r.spark.length > SPARK_POINTS) r.spark.shift();
      r.sparkBucket = bucket;
    } else {
      r.spark[r.spark.length - 1] = price;
    }
    sparkPending.add(r);
  } else {
    r.quoteSeq = t.seq;
    r.quoteRecv = t.tsRecv;
    r.bid = Number(t.bidPx);
    r.ask = Number(t.askPx);
    widen(r, t.bidPx);
    widen(r, t.askPx);
  }
  dirty.add(r);
}

/** The server's session summary of a symbol: open, high, low and volume so far. */
function applySummary(s) {
  const r = rows.get(s.symbol);
  if (!r) return;
  if (s.trades > 0) {
    r.open = Number(s.open);
    r.high = Number(s.high);
    r.low = Number(s.low);
    widen(r, s.open);
  } else {
    r.open = r.high = r.low = null;
  }
  r.volume = Number(s.volume);
  dirty.add(r);
}

// ---------------------------------------------------------------- rendering

const dirty = new Set();
const flashing = new Set();
const sparkPending = new Set();
let frameScheduled = false;
let renderedAt = -Infinity;

function schedule() {
  if (!frameScheduled) {
    frameScheduled = true;
    requestAnimationFrame(frame);
  }
}

function setText(r, field, text) {
  if (r.shown[field] !== text) {
    r.shown[field] = text;
    r.texts[field].data = text;
  }
}

function setData(r, key, el, name, value) {
  if (r.shown[key] !== value) {
    r.shown[key] = value;
    if (value) el.dataset[name] = value;
    else delete el.dataset[name];
  }
}

function renderRow(r) {
  const dp = r.dp;
  if (r.last !== null) {
    setText(r, 'last', r.last.toFixed(dp));
    setData(r, 'dir', r.cells.last, 'dir', r.dir > 0 ? 'up' : r.dir < 0 ? 'down' : '');
  }
  if (r.last !== null && r.open !== null) {
    const c = formatChange(r.last, r.open, dp);
    setText(r, 'change', c.change);
    setText(r, 'change_pct', c.changePct);
    setData(r, 'sign-change', r.cells.change, 'sign', c.sign);
    setData(r, 'sign-pct', r.cells.change_pct, 'sign', c.pctSign);
  } else {
    // No trade in this session yet (a restarted server): nothing to compare with.
    setText(r, 'change', '');
    setText(r, 'change_pct', '');
    setData(r, 'sign-change', r.cells.change, 'sign', '');
    setData(r, 'sign-pct', r.cells.change_pct, 'sign', '');
  }
  setText(r, 'high', r.high === null ? '' : r.high.toFixed(dp));
  setText(r, 'low', r.low === null ? '' : r.low.toFixed(dp));
  setText(r, 'volume', volumeFormat.format(r.volume));
  if (r.bid !== null) {
    setText(r, 'bid', r.bid.toFixed(dp));
    setText(r, 'ask', r.ask.toFixed(dp));
  }
  renderAge(r, Date.now());
}

function renderAge(r, now) {
  if (r.updatedMs !== null) setText(r, 'age', formatAge(Math.max(0, now - r.updatedMs)));
}

function drawSpark(r) {
  const canvas = r.cells.spark;
  let ctx = r.ctx;
  if (!ctx) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(SPARK_W * dpr);
    canvas.height = Math.round(SPARK_H * dpr);
    ctx = r.ctx = canvas.getContext('2d');
    ctx.scale(dpr, dpr);
    ctx.lineWidth = 1.25;
    ctx.lineJoin = 'round';
  }
  ctx.clearRect(0, 0, SPARK_W, SPARK_H);
  const pts = r.spark;
  if (pts.length < 2) return;
  let min = Infinity;
  let max = -Infinity;
  for (const p of pts) {
    if (p < min) min = p;
    if (p > max) max = p;
  }
  const span = max - min || 1;
  // Fewer points than the window holds (a young session) spread over the full width.
  const step = SPARK_W / (pts.length - 1);
  const y = (p) => SPARK_H - 2 - ((p - min) / span) * (SPARK_H - 4);
  ctx.beginPath();
  ctx.moveTo(0, y(pts[0]));
  for (let i = 1; i < pts.length; i++) ctx.lineTo(i * step, y(pts[i]));
  ctx.strokeStyle = pts[pts.length - 1] >= pts[0] ? UP : DOWN;
  ctx.stroke();
}

function frame(now) {
  frameScheduled = false;
  if (now - renderedAt < RENDER_INTERVAL_MS) {
    schedule();
    return;
  }
  renderedAt = now;
  // Rows out of view stay in `dirty` until they are scrolled into it.
  for (const r of dirty) {
    if (r.visible) {
      renderRow(r);
      dirty.delete(r);
    }
  }
  for (const r of flashing) {
    if (!r.visible || now >= r.flashUntil) {
      delete r.cells.last.dataset.flash;
      flashing.delete(r);
    } else {
      r.cells.last.dataset.flash = r.dir > 0 ? 'up' : 'down';
    }
  }
  for (const r of sparkPending) {
    if (r.visible && now - r.sparkDrawn >= SPARK_REDRAW_MS) {
      r.sparkDrawn = now;
      drawSpark(r);
      sparkPending.delete(r);
    }
  }
  if (flashing.size > 0 || pendingVisible()) schedule();
}

function pendingVisible() {
  for (const r of sparkPending) if (r.visible) return true;
  return false;
}

const rowByTr = new WeakMap();
const visibility = new IntersectionObserver(
  (entries) => {
    for (const e of entries) {
      const r = rowByTr.get(e.target);
      if (!r) continue;
      r.visible = e.isIntersecting;
      if (r.visible && (dirty.has(r) || sparkPending.has(r))) schedule();
    }
  },
  { rootMargin: '200px 0px' },
);

// ---------------------------------------------------------------- sorting

/** Natural order of names: SYM4 before SYM40. */
const byName = (x, y) => x.length - y.length || (x < y ? -1 : x > y ? 1 : 0);

/** The value a row sorts by for `key`; null sorts last whatever the direction. */
function sortValue(r, key) {
  switch (key) {
    case 'last':
      return r.last;
    case 'bid':
      return r.bid;
    case 'ask':
      return r.ask;
    case 'change':
      return r.last !== null && r.open !== null ? r.last - r.open : null;
    case 'change_pct':
      return r.last !== null && r.open ? (r.last - r.open) / r.open : null;
    case 'high':
      return r.high;
    case 'low':
      return r.low;
    case 'volume':
      return r.volume;
    case 'age':
      return r.updatedMs === null ? null : -r.updatedMs;
    default:
      return null;
  }
}

/** The rows in display order: the watchlist's, or sorted by `settings.sort`. */
function orderedRows() {
  const list = watch.map((n) => rows.get(n)).filter(Boolean);
  const sort = settings.sort;
  if (!sort) return list;
  const dir = sort.dir === 'asc' ? 1 : -1;
  if (sort.key === 'symbol') return list.sort((a, b) => dir * byName(a.name, b.name));
  return list.sort((a, b) => {
    const x = sortValue(a, sort.key);
    const y = sortValue(b, sort.key);
    if (x === null || y === null) return (x === null) - (y === null);
    return dir * (x - y) || byName(a.name, b.name);
  });
}

let sortDue = false;

/** Puts the rows in order, moving only those out of place. */
function applySort() {
  sortDue = false;
  const want = orderedRows();
  let node = ui.rows.firstElementChild;
  for (const r of want) {
    if (node === r.tr) {
      node = node.nextElementSibling;
    } else {
      ui.rows.insertBefore(r.tr, node);
    }
  }
  for (const th of ui.head.querySelectorAll('th[data-sort]')) {
    const on = settings.sort && settings.sort.key === th.dataset.sort;
    th.setAttribute('aria-sort', on ? (settings.sort.dir === 'asc' ? 'ascending' : 'descending') : 'none');
  }
}

/** A click on a column: descending (ascending for names), then the other way, then unsorted. */
function toggleSort(key) {
  const first = key === 'symbol' ? 'asc' : 'desc';
  const s = settings.sort;
  if (!s || s.key !== key) settings.sort = { key, dir: first };
  else if (s.dir === first) settings.sort = { key, dir: first === 'asc' ? 'desc' : 'asc' };
  else settings.sort = null;
  saveJson(SETTINGS_KEY, settings);
  applySort();
}

ui.head.addEventListener('click', (e) => {
  const th = e.target.closest('th[data-sort]');
  if (th) toggleSort(th.dataset.sort);
});
ui.head.addEventListener('keydown', (e) => {
  const th = e.target.closest('th[data-sort]');
  if (th && (e.key === 'Enter' || e.key === ' ')) {
    toggleSort(th.dataset.sort);
    e.preventDefault();
  }
});
for (const th of ui.head.querySelectorAll('th[data-sort]')) th.tabIndex = 0;

// ---------------------------------------------------------------- meters

let msgWindow = 0;
let tickWindow = 0;
let meterAt = performance.now();
let sortedAt = 0;

function updateMeters() {
  const now = performance.now();
  const secs = (now - meterAt) / 1000;
  meterAt = now;
  ui.msgRate.textContent = Math.round(msgWindow / secs).toLocaleString('en-US');
  ui.tickRate.textContent = Math.round(tickWindow / secs).toLocaleString('en-US');
  msgWindow = 0;
  tickWindow = 0;
  if (stats.lastLatencyMs === null) {
    ui.latency.textContent = '–';
  } else {
    ui.latency.textContent = stats.lastLatencyMs.toFixed(1) + ' ms';
  }
  if (stats.clockSkewMs !== null) {
    ui.latency.dataset.skew = 'true';
    ui.latency.title =
      `clocks disagree: the feed's ts_event is ${stats.clockSkewMs.toFixed(1)} ms ahead of this computer's clock, ` +
      'so latency is shown as 0';
  } else {
    delete ui.latency.dataset.skew;
    ui.latency.title = 'now − ts_event of the last live update';
  }
  ui.gaps.textContent = String(stats.gaps);
  const wall = Date.now();
  for (const r of rows.values()) if (r.visible) renderAge(r, wall);
  if (settings.sort && (sortDue || now - sortedAt >= RESORT_MS)) {
    sortedAt = now;
    applySort();
  } else if (sortDue) {
    applySort();
  }
}

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text || state;
}

function note(text) {
  ui.note.textContent = text;
}

// ---------------------------------------------------------------- connection

function markStale() {
  ui.table.dataset.stale = 'true';
  stats.lastLatencyMs = null;
}

function startClient() {
  client = connect('/ws', {
    symbols: watch.slice(),
    format: settings.format,
    maxRate: settings.maxRate,
    token: () => token,
    backoffInitialMs: BACKOFF_INITIAL_MS,
    backoffMaxMs: BACKOFF_MAX_MS,
  });
  const c = client;
  if (selected !== null && rows.has(selected)) c.subscribe([selected], { ...subscribeOptions(), channels: WITH_BOOK });
  c.on('state', (s) => onState(c, s));
  c.on('tick', applyTick);
  c.on('batch', () => {
    stats.messages++;
    msgWindow++;
    if (dirty.size > 0 || sparkPending.size > 0) schedule();
  });
  c.on('summary', (s) => {
    applySummary(s);
    schedule();
  });
  c.on('gap', (g) => {
    stats.gaps++;
    stats.lastGap = { symbol: g.symbol, expected: g.expected, got: g.got };
  });
  c.on('subscribed', (ack) => {
    stats.lastAck = ack;
    ui.table.dataset.stale = 'false';
  });
  c.on('conflated', (s) => {
    // The page reads too slowly for the feed: the server merges updates meanwhile.
    note(s.on ? 'catching up: the server is merging updates' : '');
  });
  c.on('shutdown', () => {
    stats.shutdownNotices++;
    note('server restarting: reconnecting');
    markStale();
  });
  c.on('book', (b) => {
    if (b.symbol === selected) scheduleLadder();
  });
  c.on('bookGap', (g) => {
    stats.bookGaps++;
    stats.lastGap = { symbol: g.symbol, expected: g.expected, got: g.got, book: true };
  });
  c.on('error', onError);
}

function onState(c, s) {
  if (c !== client) return;
  switch (s.state) {
    case 'connecting':
      setStatus('connecting', 'connecting…');
      break;
    case 'open':
      stats.connects++;
      setStatus('connected');
      note('');
      if (watch.length === 0) ui.table.dataset.stale = 'false';
      if (s.reconnected) {
        stats.reconnects++;
        loadSymbols(); // the new server may know other symbols
      }
      break;
    case 'reconnecting':
      markStale();
      if (s.delayMs === undefined) setStatus('reconnecting', 'reconnecting…');
      else setStatus('reconnecting', 'reconnecting in ' + (s.delayMs / 1000).toFixed(1) + ' s');
      // An attempt that never opened may be a refused token: ask the server.
      if (s.failures > 0) recheckToken();
      break;
    case 'closed':
      markStale();
      setStatus('offline', 'offline');
      break;
  }
}

function onError(e) {
  stats.lastError = e.message;
  if (e.name !== 'ServerError') {
    note(e.message);
    return;
  }
  note('server: ' + e.message);
  if (e.symbols.length > 0 && !e.resubscribe) {
    // Names this server refused (unknown, or not entitled): nothing was subscribed.
    const refused = new Set(e.symbols);
    watch = watch.filter((n) => !refused.has(n));
    for (const n of refused) dropRow(n);
    saveWatch();
  }
}

// ---------------------------------------------------------------- auth

/**
 * With [auth], a plain GET /ws answers 401 (and why) unless the token is good, so the
 * page can tell a refused token from a server that is down: a WebSocket that fails
 * says neither. Resolves to the server's reason, or null.
 */
async function tokenRefused() {
  stats.authChecks++;
  const url = '/ws' + (token ? '?token=' + encodeURIComponent(token) : '');
  try {
    const res = await fetch(url, { cache: 'no-store' });
    if (res.status !== 401) return null;
    return (await res.text()).trim() || 'unauthorized';
  } catch (_) {
    return null; // the server is away: the client keeps trying
  }
}

let checking = false;

async function recheckToken() {
  if (checking) return;
  checking = true;
  try {
    const refused = await tokenRefused();
    if (refused && client) {
      client.close();
      client = null;
      askToken(refused);
    }
  } finally {
    checking = false;
  }
}

function askToken(reason) {
  setStatus('auth', 'token required');
  markStale();
  ui.authMessage.textContent = token ? `The server refused the token: ${reason}` : `This server needs a token: ${reason}`;
  ui.auth.hidden = false;
  ui.token.value = '';
  ui.token.focus();
}

/** Connects once the server takes the token (or needs none). */
async function connectWithToken() {
  const refused = await tokenRefused();
  if (refused) askToken(refused);
  else startClient();
}

ui.auth.addEventListener('submit', (e) => {
  e.preventDefault();
  token = ui.token.value.trim();
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch (_) {
    // not kept: asked again after a reload
  }
  ui.auth.hidden = true;
  setStatus('connecting', 'connecting…');
  connectWithToken();
});

/** The token from `?token=` (then removed from the address bar) or this tab's storage. */
function initialToken() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (fromUrl !== null) {
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : '') + location.hash);
    try {
      sessionStorage.setItem(TOKEN_KEY, fromUrl);
    } catch (_) {
      // not kept
    }
    return fromUrl;
  }
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (_) {
    return '';
  }
}

// ---------------------------------------------------------------- symbols and watchlist

/** Fetches /symbols; retried until it succeeds. Resolves once the list is known. */
function loadSymbols() {
  const p = fetch('/symbols', { cache: 'no-store' })
    .then((res) => {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.json();
    })
    .then((list) => {
      list.sort((x, y) => x.id - y.id);
      allSymbols = list;
      if (ui.search.value) renderResults();
    });
  return p.catch(() => new Promise((resolve) => setTimeout(resolve, SYMBOLS_RETRY_MS)).then(loadSymbols));
}

function subscribeOptions() {
  return { maxRate: settings.maxRate, format: settings.format };
}

function addSymbol(name) {
  if (rows.has(name)) {
    rows.get(name).tr.scrollIntoView({ block: 'nearest' });
    return;
  }
  watch.push(name);
  saveWatch();
  const r = addRow(name);
  if (!settings.sort) r.tr.scrollIntoView({ block: 'nearest' });
  if (client) client.subscribe([name], subscribeOptions());
}

// ---------------------------------------------------------------- depth ladder

const TRADES_AND_QUOTES = ['trade', 'quote'];
const WITH_BOOK = ['trade', 'quote', 'book'];

/**
 * Shows `name`'s order book: its subscription gains the `book` channel (the server
 * sends the whole book, then its changes) and the one shown before goes back to
 * trades and quotes. Selecting the shown symbol again hides the ladder.
 */
function select(name) {
  const prev = selected;
  selected = prev === name ? null : name;
  if (prev !== null) {
    const r = rows.get(prev);
    if (r) r.tr.removeAttribute('aria-selected');
    if (client && rows.has(prev)) client.subscribe([prev], { ...subscribeOptions(), channels: TRADES_AND_QUOTES });
  }
  if (selected !== null) {
    rows.get(selected)?.tr.setAttribute('aria-selected', 'true');
    if (client) client.subscribe([selected], { ...subscribeOptions(), channels: WITH_BOOK });
  }
  ui.depth.hidden = selected === null;
  renderLadder();
}

function scheduleLadder() {
  if (ladderScheduled) return;
  ladderScheduled = true;
  requestAnimationFrame(() => {
    ladderScheduled = false;
    renderLadder();
  });
}

/** Writes the ladder: the best LADDER_LEVELS bids and asks of the selected symbol. */
function renderLadder() {
  if (selected === null) return;
  ui.depthTitle.textContent = `Order book · ${selected}`;
  const book = client && client.book(selected);
  const bids = book ? book.levels('bid', LADDER_LEVELS) : [];
  const asks = book ? book.levels('ask', LADDER_LEVELS) : [];
  const n = Math.max(bids.length, asks.length);
  const body = ui.ladder;
  while (body.rows.length > n) body.deleteRow(-1);
  while (body.rows.length < n) {
    const tr = body.insertRow();
    for (const cls of ['bid size', 'bid', 'ask', 'ask size']) tr.insertCell().className = cls;
  }
  for (let i = 0; i < n; i++) {
    const c = body.rows[i].cells;
    c[0].textContent = bids[i] ? bids[i].size : '';
    c[1].textContent = bids[i] ? bids[i].price : '';
    c[2].textContent = asks[i] ? asks[i].price : '';
    c[3].textContent = asks[i] ? asks[i].size : '';
  }
  ui.depthNote.textContent = !book
    ? 'waiting for the book…'
    : n === 0
      ? 'no levels: the feed publishes no book for this symbol'
      : book.synced
        ? `book #${book.seq}`
        : `book #${book.seq}: changes were lost, waiting for a snapshot`;
}

function removeSymbol(name) {
  const i = watch.indexOf(name);
  if (i < 0) return;
  if (selected === name) select(name);
  watch.splice(i, 1);
  saveWatch();
  dropRow(name);
  if (client) client.unsubscribe([name]);
}

// ---------------------------------------------------------------- search

let matches = [];
let active = -1;

function renderResults() {
  const q = ui.search.value.trim().toUpperCase();
  if (!q) {
    closeResults();
    return;
  }
  const prefix = [];
  const inner = [];
  for (const s of allSymbols) {
    const i = s.name.toUpperCase().indexOf(q);
    if (i === 0) prefix.push(s.name);
    else if (i > 0) inner.push(s.name);
  }
  matches = prefix.sort(byName).concat(inner.sort(byName)).slice(0, SEARCH_LIMIT);
  active = matches.length > 0 ? 0 : -1;
  const frag = document.createDocumentFragment();
  matches.forEach((name, i) => {
    const li = document.createElement('li');
    li.id = 'opt-' + name;
    li.setAttribute('role', 'option');
    li.dataset.symbol = name;
    li.setAttribute('aria-selected', String(i === active));
    li.textContent = name;
    if (rows.has(name)) {
      const tag = document.createElement('span');
      tag.className = 'in';
      tag.textContent = 'in watchlist';
      li.appendChild(tag);
    }
    frag.appendChild(li);
  });
  if (matches.length === 0) {
    const li = document.createElement('li');
    li.setAttribute('aria-disabled', 'true');
    li.textContent = allSymbols.length ? 'no match' : 'loading symbols…';
    frag.appendChild(li);
  }
  ui.results.replaceChildren(frag);
  ui.results.hidden = false;
  ui.search.setAttribute('aria-expanded', 'true');
  updateActive();
}

function updateActive() {
  const items = ui.results.querySelectorAll('li[role="option"]');
  items.forEach((li, i) => li.setAttribute('aria-selected', String(i === active)));
  if (active >= 0 && items[active]) {
    ui.search.setAttribute('aria-activedescendant', items[active].id);
    items[active].scrollIntoView({ block: 'nearest' });
  } else {
    ui.search.removeAttribute('aria-activedescendant');
  }
}

function closeResults() {
  matches = [];
  active = -1;
  ui.results.hidden = true;
  ui.results.replaceChildren();
  ui.search.setAttribute('aria-expanded', 'false');
  ui.search.removeAttribute('aria-activedescendant');
}

function choose(name) {
  addSymbol(name);
  ui.search.value = '';
  closeResults();
}

ui.search.addEventListener('input', renderResults);
ui.search.addEventListener('keydown', (e) => {
  if (e.key === 'ArrowDown' && matches.length) {
    active = (active + 1) % matches.length;
    updateActive();
    e.preventDefault();
  } else if (e.key === 'ArrowUp' && matches.length) {
    active = (active - 1 + matches.length) % matches.length;
    updateActive();
    e.preventDefault();
  } else if (e.key === 'Enter') {
    // The highlighted match: the exact name unless the arrows moved (it sorts first).
    if (active >= 0) choose(matches[active]);
    e.preventDefault();
  } else if (e.key === 'Escape') {
    ui.search.value = '';
    closeResults();
  }
});
ui.search.addEventListener('blur', () => setTimeout(closeResults, 150));
ui.results.addEventListener('mousedown', (e) => {
  const li = e.target.closest('li[data-symbol]');
  if (li) {
    e.preventDefault();
    choose(li.dataset.symbol);
  }
});
document.addEventListener('keydown', (e) => {
  const t = e.target;
  if (e.key === '/' && !(t instanceof HTMLInputElement || t instanceof HTMLSelectElement)) {
    ui.search.focus();
    e.preventDefault();
  }
});

// ---------------------------------------------------------------- settings

ui.maxRate.addEventListener('change', () => {
  settings.maxRate = Number(ui.maxRate.value) || 0;
  saveJson(SETTINGS_KEY, settings);
  // Subscribing again to held symbols retunes their rate without a new snapshot.
  if (client && watch.length > 0) client.subscribe(watch.slice(), subscribeOptions());
});
ui.format.addEventListener('change', () => {
  settings.format = ui.format.value === 'binary' ? 'binary' : 'json';
  saveJson(SETTINGS_KEY, settings);
  if (client && watch.length > 0) client.subscribe(watch.slice(), subscribeOptions());
});

// ---------------------------------------------------------------- start

function start() {
  const saved = loadJson(SETTINGS_KEY);
  if (saved && typeof saved === 'object') {
    if (Number.isFinite(saved.maxRate) && saved.maxRate >= 0) settings.maxRate = saved.maxRate;
    if (saved.format === 'binary') settings.format = 'binary';
    if (saved.sort && typeof saved.sort.key === 'string' && (saved.sort.dir === 'asc' || saved.sort.dir === 'desc')) {
      settings.sort = { key: saved.sort.key, dir: saved.sort.dir };
    }
  }
  if (![...ui.maxRate.options].some((o) => Number(o.value) === settings.maxRate)) {
    ui.maxRate.add(new Option(settings.maxRate + '/s', String(settings.maxRate)));
  }
  ui.maxRate.value = String(settings.maxRate);
  ui.format.value = settings.format;

  const stored = loadJson(WATCH_KEY);
  const firstVisit = !Array.isArray(stored);
  if (!firstVisit) {
    watch = [...new Set(stored.filter((n) => typeof n === 'string'))];
    for (const name of watch) addRow(name);
  }
  applySort();
  ui.empty.hidden = firstVisit || rows.size > 0;
  setInterval(updateMeters, METER_MS);
  token = initialToken();
  connectWithToken();
  const symbols = loadSymbols();
  if (firstVisit) {
    // First visit: a default watchlist, so the screen is alive at once.
    symbols.then(() => {
      if (watch.length > 0) return;
      watch = allSymbols.slice(0, DEFAULT_WATCHLIST_SIZE).map((s) => s.name);
      saveWatch();
      for (const name of watch) addRow(name);
      ui.empty.hidden = rows.size > 0;
      applySort();
      if (client) client.subscribe(watch.slice(), subscribeOptions());
    });
  }
}

/** Read-only view for tests and the console, and a way to simulate a network drop. */
window.tickcast = {
  stats,
  drop: () => {
    if (client) client.drop();
  },
  watchlist: () => watch.slice(),
  symbolsLoaded: () => allSymbols.length > 0,
  row: (name) => {
    const r = rows.get(name);
    return (
      r && {
        maxSeq: (client && client.lastSeqs().get(name)) || 0,
        last: r.last,
        bid: r.bid,
        ask: r.ask,
        open: r.open,
        high: r.high,
        low: r.low,
        volume: r.volume,
        updatedMs: r.updatedMs,
      }
    );
  },
  summary: (name) => client && client.summary(name),
  select,
  /** The depth ladder as shown: [[bid size, bid, ask, ask size], …]. */
  ladder: () => [...ui.ladder.rows].map((tr) => [...tr.cells].map((c) => c.textContent)),
  book: (name) => {
    const b = client && client.book(name);
    return b && { seq: b.seq, synced: b.synced };
  },
  order: () => [...ui.rows.querySelectorAll('tr[data-symbol]')].map((tr) => tr.dataset.symbol),
  formatChange,
};

start();

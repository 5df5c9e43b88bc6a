// tickcast dashboard: a watchlist of live prices over the WebSocket protocol of
// docs/protocol.md. Plain JS, no build step; the server embeds this file.
//
// Data flow: socket message -> applyTick() updates a row's model and marks it dirty
// -> a requestAnimationFrame pass writes the changed cells of the rows on screen, at
// most RENDER_INTERVAL_MS apart. However many ticks arrive, a visible row is written
// at most 20 times a second (faster than anyone reads a price, and half the paint
// work of every frame); a row scrolled out of view keeps its model current and is
// drawn when it comes back.
'use strict';

(function () {
  const WATCH_KEY = 'tickcast.watchlist';
  const SETTINGS_KEY = 'tickcast.settings';
  const DEFAULT_WATCHLIST_SIZE = 10;
  // Reconnect: exponential backoff with equal jitter, reset once a connection has
  // stayed up for STABLE_MS (so a server that accepts and drops at once is not hammered).
  const BACKOFF_BASE_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const STABLE_MS = 2000;
  const CONNECT_TIMEOUT_MS = 5000;
  // A resumed symbol that receives nothing for this long is subscribed afresh.
  const RESUME_CHECK_MS = 3000;
  const SYMBOLS_RETRY_MS = 2000;
  const SPARK_POINTS = 60;
  const SPARK_BUCKET_MS = 500;
  const SPARK_REDRAW_MS = 250;
  const SPARK_W = 96;
  const SPARK_H = 22;
  const FLASH_MS = 350;
  // Records of one flush may arrive out of seq order; a shortfall is a gap only if it lasts.
  const GAP_GRACE_MS = 1000;
  const RENDER_INTERVAL_MS = 50;
  const METER_MS = 500;
  const SEARCH_LIMIT = 50;

  const F_SNAPSHOT = 1;
  const F_CONFLATED = 2;
  const F_REPLAY = 4;
  const FLAG_BITS = { snapshot: F_SNAPSHOT, conflated: F_CONFLATED, replay: F_REPLAY };
  const KIND_TRADE = 1;
  const KIND_QUOTE = 2;
  const TWO_POW_32 = 4294967296;
  const FIXED_ONE = 1e8;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    msgRate: $('msg-rate'),
    tickRate: $('tick-rate'),
    latency: $('latency'),
    gaps: $('gaps'),
    table: $('watchlist'),
    rows: $('rows'),
    empty: $('empty'),
    note: $('note'),
    search: $('search'),
    results: $('search-results'),
    maxRate: $('max-rate'),
    format: $('format'),
    template: $('row-template'),
  };
  const css = getComputedStyle(document.documentElement);
  const UP = css.getPropertyValue('--up').trim() || '#1fc77e';
  const DOWN = css.getPropertyValue('--down').trim() || '#f0475b';
  const volumeFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

  /** Every symbol the server knows, in id order: [{id, name}]. */
  let allSymbols = [];
  /** Symbol id -> name, for binary records. */
  const idToName = new Map();
  /** Watchlist names in display order; persisted in localStorage. */
  let watch = [];
  /** name -> row model. */
  const rows = new Map();
  let settings = { maxRate: 0, format: 'json' };

  const stats = {
    messages: 0,
    ticks: 0,
    gaps: 0,
    connects: 0,
    reconnects: 0,
    shutdownNotices: 0,
    seqResets: 0,
    replayed: 0,
    snapshots: 0,
    resumeRefreshes: 0,
    lastLatencyMs: null,
    lastAck: null,
    lastError: null,
    lastGap: null,
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
      // Highest seq applied per kind and its ts_recv (ns): duplicates are dropped,
      // and a lower seq with a newer ts_recv means the server numbers afresh.
      tradeSeq: 0,
      tradeRecv: 0,
      quoteSeq: 0,
      quoteRecv: 0,
      /** Highest seq seen for the symbol: what a resume asks to continue from. */
      maxSeq: 0,
      /**
       * Sequence numbers accounted for by the records applied (see applyTick); below
       * `maxSeq` for longer than GAP_GRACE_MS means updates were lost.
       */
      covered: 0,
      deficitSince: null,
      /** Ticks received, and the count when the last resume was sent. */
      received: 0,
      receivedAtResume: 0,
      last: null,
      bid: null,
      ask: null,
      /** Price of the first trade this page saw: the base of change and change %. */
      base: null,
      volume: 0,
      dp: 2,
      dir: 0,
      flashUntil: 0,
      spark: [],
      sparkBucket: -1,
      sparkDrawn: -Infinity,
      shown: { last: '', bid: '', ask: '', change: '', change_pct: '', volume: '', dir: '', sign: '' },
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

  /** Decimal places of a decimal string ("816.36" -> 2). */
  function decimals(s) {
    const i = s.indexOf('.');
    return i < 0 ? 0 : s.length - i - 1;
  }

  /** Decimal places of a fixed-point integer (value x 10^8). */
  function fixedDecimals(raw) {
    let frac = Math.abs(raw % FIXED_ONE);
    if (frac === 0) return 0;
    let dp = 8;
    while (frac % 10 === 0) {
      frac /= 10;
      dp--;
    }
    return dp;
  }

  let nowMs = 0;

  /**
   * Applies one tick to its row. Prices are numbers; `dpA`/`dpC` are the decimal
   * places of the first and third values (trade price / quote bid and ask).
   */
  function applyTick(name, seq, kind, tsEvent, tsRecv, flags, count, a, b, c, dpA, dpC) {
    const r = rows.get(name);
    if (!r) return; // unsubscribed while in flight
    r.received++;
    stats.ticks++;
    tickWindow++;
    const trade = kind === KIND_TRADE;
    const snapshot = (flags & F_SNAPSHOT) !== 0;
    const kindSeq = trade ? r.tradeSeq : r.quoteSeq;
    if (seq <= kindSeq) {
      const kindRecv = trade ? r.tradeRecv : r.quoteRecv;
      if (tsRecv <= kindRecv) {
        // Older than what the row shows. A snapshot repeats what the page has; any
        // other record is a late one (merged updates flushed after newer ones): its
        // updates are accounted for, its values are stale and not shown.
        if (!snapshot) r.covered += count;
        return;
      }
      // Sequence numbers went back while ingest time went forward: a restarted server
      // numbering from 1 again. Start this symbol's sequence tracking over.
      r.tradeSeq = r.quoteSeq = r.maxSeq = 0;
      r.covered = seq - count;
      stats.seqResets++;
    }
    // Every seq up to `covered` is accounted for: a snapshot stands for all before it,
    // any other record for `count` updates. checkGaps() reports a lasting shortfall.
    if (snapshot) {
      if (seq > r.covered) r.covered = seq;
    } else {
      r.covered += count;
    }
    if (seq > r.maxSeq) r.maxSeq = seq;
    if (flags === 0) stats.lastLatencyMs = nowMs - tsEvent / 1e6;
    else if (flags & F_REPLAY) stats.replayed++;
    else if (flags & F_SNAPSHOT) stats.snapshots++;

    if (trade) {
      r.tradeSeq = seq;
      r.tradeRecv = tsRecv;
      if (r.base === null) r.base = a;
      if (r.last !== null && a !== r.last) {
        r.dir = a > r.last ? 1 : -1;
        r.flashUntil = performance.now() + FLASH_MS;
        flashing.add(r);
      }
      r.last = a;
      if (dpA > r.dp) r.dp = Math.min(dpA, 8);
      r.volume += b;
      const bucket = Math.floor(nowMs / SPARK_BUCKET_MS);
      if (bucket !== r.sparkBucket || r.spark.length === 0) {
        r.spark.push(a);
        if (r.spark.length > SPARK_POINTS) r.spark.shift();
        r.sparkBucket = bucket;
      } else {
        r.spark[r.spark.length - 1] = a;
      }
      sparkPending.add(r);
    } else {
      r.quoteSeq = seq;
      r.quoteRecv = tsRecv;
      r.bid = a;
      r.ask = c;
      const dp = Math.max(dpA, dpC);
      if (dp > r.dp) r.dp = Math.min(dp, 8);
    }
    dirty.add(r);
  }

  function applyJsonTick(o) {
    let flags = 0;
    for (const f of o.flags) flags |= FLAG_BITS[f] || 0;
    if (o.kind === 'trade') {
      applyTick(o.symbol, o.seq, KIND_TRADE, o.ts_event, o.ts_recv, flags, o.count,
        +o.price, +o.size, 0, decimals(o.price), 0);
    } else {
      applyTick(o.symbol, o.seq, KIND_QUOTE, o.ts_event, o.ts_recv, flags, o.count,
        +o.bid_px, +o.bid_sz, +o.ask_px, decimals(o.bid_px), decimals(o.ask_px));
    }
  }

  /** An unsigned 64-bit little-endian integer as a Number (exact below 2^53). */
  function u64(dv, o) {
    return dv.getUint32(o + 4, true) * TWO_POW_32 + dv.getUint32(o, true);
  }

  /** A signed 64-bit little-endian integer as a Number (exact below 2^53). */
  function i64(dv, o) {
    return dv.getInt32(o + 4, true) * TWO_POW_32 + dv.getUint32(o, true);
  }

  /** Decodes a binary data message: 16-byte header, then fixed-size records. */
  function applyBinary(buf) {
    const dv = new DataView(buf);
    if (dv.byteLength < 16) return;
    const recordSize = dv.getUint16(2, true);
    const count = dv.getUint32(4, true);
    if (recordSize < 72) return;
    for (let i = 0; i < count; i++) {
      const o = 16 + i * recordSize;
      if (o + 72 > dv.byteLength) break;
      const name = idToName.get(dv.getUint32(o + 4, true));
      if (name === undefined) continue;
      const kind = dv.getUint8(o);
      const rawA = i64(dv, o + 40);
      const rawC = i64(dv, o + 56);
      applyTick(name, u64(dv, o + 8), kind, u64(dv, o + 16), u64(dv, o + 24),
        dv.getUint8(o + 1), dv.getUint32(o + 32, true),
        rawA / FIXED_ONE, i64(dv, o + 48) / FIXED_ONE, rawC / FIXED_ONE,
        fixedDecimals(rawA), kind === KIND_QUOTE ? fixedDecimals(rawC) : 0);
    }
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

  function setAttr(r, key, el, attr, value) {
    if (r.shown[key] !== value) {
      r.shown[key] = value;
      if (value) el.setAttribute(attr, value);
      else el.removeAttribute(attr);
    }
  }

  function renderRow(r) {
    const dp = r.dp;
    if (r.last !== null) {
      setText(r, 'last', r.last.toFixed(dp));
      setAttr(r, 'dir', r.cells.last, 'data-dir', r.dir > 0 ? 'up' : r.dir < 0 ? 'down' : '');
      const ch = r.last - r.base;
      const chText = ch.toFixed(dp);
      const flat = Number(chText) === 0;
      const sign = flat ? '' : ch > 0 ? 'up' : 'down';
      setText(r, 'change', flat ? (0).toFixed(dp) : (ch > 0 ? '+' : '') + chText);
      const pct = r.base !== 0 ? (ch / r.base) * 100 : 0;
      setText(r, 'change_pct', flat ? '0.00%' : (pct > 0 ? '+' : '') + pct.toFixed(2) + '%');
      if (r.shown.sign !== sign) {
        r.shown.sign = sign;
        for (const f of ['change', 'change_pct']) {
          if (sign) r.cells[f].dataset.sign = sign;
          else delete r.cells[f].dataset.sign;
        }
      }
      setText(r, 'volume', volumeFormat.format(r.volume));
    }
    if (r.bid !== null) {
      setText(r, 'bid', r.bid.toFixed(dp));
      setText(r, 'ask', r.ask.toFixed(dp));
    }
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
    const x0 = 0;
    const y = (p) => SPARK_H - 2 - ((p - min) / span) * (SPARK_H - 4);
    ctx.beginPath();
    ctx.moveTo(x0, y(pts[0]));
    for (let i = 1; i < pts.length; i++) ctx.lineTo(x0 + i * step, y(pts[i]));
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
      if (!r.visible) {
        delete r.cells.last.dataset.flash;
        flashing.delete(r);
      } else if (now >= r.flashUntil) {
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

  // ---------------------------------------------------------------- meters

  let msgWindow = 0;
  let tickWindow = 0;
  let meterAt = performance.now();

  function updateMeters() {
    const now = performance.now();
    const secs = (now - meterAt) / 1000;
    meterAt = now;
    ui.msgRate.textContent = Math.round(msgWindow / secs).toLocaleString('en-US');
    ui.tickRate.textContent = Math.round(tickWindow / secs).toLocaleString('en-US');
    msgWindow = 0;
    tickWindow = 0;
    ui.latency.textContent =
      stats.lastLatencyMs === null ? '–' : stats.lastLatencyMs.toFixed(1) + ' ms';
    checkGaps(now);
    ui.gaps.textContent = String(stats.gaps);
  }

  /** Counts a gap for each symbol whose sequence has been short for GAP_GRACE_MS. */
  function checkGaps(now) {
    for (const r of rows.values()) {
      if (r.covered > r.maxSeq) r.covered = r.maxSeq;
      if (r.covered === r.maxSeq) {
        r.deficitSince = null;
      } else if (r.deficitSince === null) {
        r.deficitSince = now;
      } else if (now - r.deficitSince >= GAP_GRACE_MS) {
        stats.gaps++;
        stats.lastGap = { symbol: r.name, covered: r.covered, maxSeq: r.maxSeq };
        r.covered = r.maxSeq;
        r.deficitSince = null;
      }
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

  let ws = null;
  let attempt = 0;
  let everConnected = false;
  let openedAt = 0;
  let reconnectTimer = 0;
  let resumeCheck = 0;
  let lastImmediate = -Infinity;

  function wsUrl() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  function subscribeMessage(symbols) {
    return { op: 'subscribe', symbols, format: settings.format, max_rate: settings.maxRate };
  }

  /** Subscribes the whole watchlist; after a reconnect, asks to resume from the last seq seen. */
  function subscribeWatchlist(resume) {
    if (watch.length === 0) {
      ui.table.dataset.stale = 'false';
      return;
    }
    const msg = subscribeMessage(watch.slice());
    const resumed = [];
    if (resume) {
      const from = {};
      for (const name of watch) {
        const r = rows.get(name);
        if (r && r.maxSeq > 0) {
          from[name] = r.maxSeq;
          r.receivedAtResume = r.received;
          resumed.push(name);
        }
      }
      if (resumed.length > 0) msg.resume = from;
    }
    if (send(msg) && resumed.length > 0) {
      const sock = ws;
      clearTimeout(resumeCheck);
      resumeCheck = setTimeout(() => refreshSilent(sock, resumed), RESUME_CHECK_MS);
    }
  }

  /**
   * Subscribes afresh (a snapshot, no resume) the resumed symbols that have received
   * nothing since. A server that cannot continue our sequence, such as one restarted
   * and numbering from 1 again, might otherwise hold back ticks until its numbers pass
   * ours; for a symbol that is merely quiet, the snapshot repeats what the page has and
   * is dropped as a duplicate. Either way no cell stays stale.
   */
  function refreshSilent(sock, names) {
    if (ws !== sock || sock.readyState !== WebSocket.OPEN) return;
    const silent = names.filter((n) => {
      const r = rows.get(n);
      return r && r.received === r.receivedAtResume;
    });
    if (silent.length === 0) return;
    stats.resumeRefreshes += silent.length;
    send({ op: 'unsubscribe', symbols: silent });
    send(subscribeMessage(silent));
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    if (ws) return;
    setStatus(everConnected ? 'reconnecting' : 'connecting', everConnected ? 'reconnecting…' : 'connecting…');
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    sock.binaryType = 'arraybuffer';
    const timeout = setTimeout(() => {
      if (sock.readyState === WebSocket.CONNECTING) sock.close();
    }, CONNECT_TIMEOUT_MS);
    sock.onopen = () => {
      if (ws !== sock) return;
      clearTimeout(timeout);
      openedAt = performance.now();
      stats.connects++;
      const again = everConnected;
      everConnected = true;
      setStatus('connected');
      note('');
      subscribeWatchlist(true);
      if (again) {
        stats.reconnects++;
        loadSymbols(); // the new server may know other symbols
      }
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      onMessage(ev.data);
    };
    sock.onclose = (ev) => {
      clearTimeout(timeout);
      if (ws !== sock) return;
      ws = null;
      ui.table.dataset.stale = 'true';
      stats.lastLatencyMs = null;
      if (openedAt && performance.now() - openedAt >= STABLE_MS) attempt = 0;
      openedAt = 0;
      if (ev.code === 1001) reconnectNow();
      else scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    const delay = cap / 2 + (Math.random() * cap) / 2;
    attempt++;
    setStatus('reconnecting', 'reconnecting in ' + (delay / 1000).toFixed(1) + ' s');
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  /**
   * The server is going away: reconnect at once (a load balancer sends us to a live
   * node). Only once per second, so a node that keeps accepting while it drains does
   * not get a tight loop; after that the normal backoff applies.
   */
  function reconnectNow() {
    const now = performance.now();
    if (now - lastImmediate < 1000) {
      scheduleReconnect();
      return;
    }
    lastImmediate = now;
    attempt = 0;
    connect();
  }

  function onShutdownNotice() {
    stats.shutdownNotices++;
    note('server restarting: reconnecting');
    const sock = ws;
    ws = null;
    ui.table.dataset.stale = 'true';
    stats.lastLatencyMs = null;
    if (sock) {
      sock.onclose = null;
      sock.onmessage = null;
      sock.close();
    }
    reconnectNow();
  }

  function onMessage(data) {
    stats.messages++;
    msgWindow++;
    nowMs = performance.timeOrigin + performance.now();
    if (typeof data !== 'string') {
      applyBinary(data);
    } else {
      let v;
      try {
        v = JSON.parse(data);
      } catch (_) {
        return;
      }
      if (Array.isArray(v)) {
        for (const o of v) handleObject(o);
      } else {
        handleObject(v);
      }
    }
    if (dirty.size > 0 || sparkPending.size > 0) schedule();
  }

  function handleObject(o) {
    switch (o.type) {
      case 'tick':
        applyJsonTick(o);
        break;
      case 'subscribed':
        stats.lastAck = o;
        ui.table.dataset.stale = 'false';
        break;
      case 'symbols':
        for (const s of o.symbols) idToName.set(s.id, s.name);
        break;
      case 'conflation':
        // The page reads too slowly for the feed: the server merges updates meanwhile.
        note(o.state === 'on' ? 'catching up: the server is merging updates' : '');
        break;
      case 'shutdown':
        onShutdownNotice();
        break;
      case 'error':
        onServerError(o);
        break;
      default:
        break;
    }
  }

  function onServerError(o) {
    stats.lastError = o.message;
    note('server: ' + o.message);
    if (Array.isArray(o.symbols) && o.symbols.length > 0) {
      // Names this server does not know: nothing was subscribed. Drop them and retry.
      const unknown = new Set(o.symbols);
      watch = watch.filter((n) => !unknown.has(n));
      for (const n of unknown) dropRow(n);
      saveWatch();
      subscribeWatchlist(true);
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
        for (const s of list) idToName.set(s.id, s.name);
        if (ui.search.value) renderResults();
      });
    return p.catch(
      () => new Promise((resolve) => setTimeout(resolve, SYMBOLS_RETRY_MS)).then(loadSymbols),
    );
  }

  function addSymbol(name) {
    if (rows.has(name)) {
      rows.get(name).tr.scrollIntoView({ block: 'nearest' });
      return;
    }
    watch.push(name);
    saveWatch();
    const r = addRow(name);
    r.tr.scrollIntoView({ block: 'nearest' });
    send(subscribeMessage([name]));
  }

  function removeSymbol(name) {
    const i = watch.indexOf(name);
    if (i < 0) return;
    watch.splice(i, 1);
    saveWatch();
    dropRow(name);
    send({ op: 'unsubscribe', symbols: [name] });
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
    // Natural order: SYM4 before SYM40.
    const byName = (x, y) => x.length - y.length || (x < y ? -1 : x > y ? 1 : 0);
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
    subscribeWatchlist(false);
  });
  ui.format.addEventListener('change', () => {
    settings.format = ui.format.value === 'binary' ? 'binary' : 'json';
    saveJson(SETTINGS_KEY, settings);
    subscribeWatchlist(false);
  });

  // ---------------------------------------------------------------- start

  function start() {
    const saved = loadJson(SETTINGS_KEY);
    if (saved && typeof saved === 'object') {
      if (Number.isFinite(saved.maxRate) && saved.maxRate >= 0) settings.maxRate = saved.maxRate;
      if (saved.format === 'binary') settings.format = 'binary';
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
    ui.empty.hidden = firstVisit || rows.size > 0;
    setInterval(updateMeters, METER_MS);
    window.addEventListener('online', () => {
      if (!ws) connect();
    });
    connect();
    const symbols = loadSymbols();
    if (firstVisit) {
      // First visit: a default watchlist, so the screen is alive at once.
      symbols.then(() => {
        if (watch.length > 0) return;
        watch = allSymbols.slice(0, DEFAULT_WATCHLIST_SIZE).map((s) => s.name);
        saveWatch();
        for (const name of watch) addRow(name);
        ui.empty.hidden = rows.size > 0;
        subscribeWatchlist(false);
      });
    }
  }

  /** Read-only view for tests and the console, and a way to simulate a network drop. */
  window.tickcast = {
    stats,
    drop: () => {
      if (ws) ws.close(4000, 'simulated network drop');
    },
    watchlist: () => watch.slice(),
    symbolsLoaded: () => allSymbols.length > 0,
    row: (name) => {
      const r = rows.get(name);
      return r && { maxSeq: r.maxSeq, last: r.last, bid: r.bid, ask: r.ask, volume: r.volume };
    },
  };

  start();
})();

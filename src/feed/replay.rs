//! The replay feed: plays a recorded capture (one venue message per line, as in
//! `feeds/`) through the venue's normalizer.
//!
//! Pacing follows the venue's own timestamps: the tick whose event time is `t` is sent
//! `(t - t0) / speed` after the first one, so `speed = 1` is the recorded pace,
//! `speed = 10` ten times faster and `speed = 0` as fast as the sequencer takes them.
//! A message without a time of its own (a Binance spot book ticker) goes out with the
//! latest time seen before it. By default ticks are re-stamped with the time they are
//! replayed (`rebase_time`), so latencies measured downstream mean something; with
//! `rebase_time = false` they keep the recorded times, field for field.
//!
//! The file is read line by line with a bounded line buffer, so a capture of any size
//! replays in constant memory; an over-long line is counted as a parse error and
//! skipped like any malformed message.
//!
//! A file that starts with `TCREC1` is a tickcast capture ([`crate::capture`], written
//! by the `record` example or the recorder) instead, and a directory stands for its
//! `.tcrec` captures in name order, played as one (a day of the recorder's rotated
//! files): their binary records are replayed in file order,
//! one tick each whatever their flags, named through the capture's symbol maps, and
//! sequenced afresh by the sequencer like any feed's ticks. Pacing, `speed`, `loop`,
//! `rebase_time` and `symbol_prefix` work the same; `venue` does not apply.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::normalize::{Normalizer, Venue, DEFAULT_MAX_MESSAGE_BYTES};
use super::{FeedContext, FeedTick};
use crate::clock::now_ns;
use crate::symbol::Symbol;
use crate::tick::{Body, Flags, Kind};

/// Settings of a replay feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// The capture: one venue message (JSON) per line, a tickcast capture (`TCREC1`),
    /// or a directory of tickcast captures (`.tcrec`, played in name order as one).
    /// Required.
    pub path: PathBuf,
    /// The venue whose format the file holds; `None` detects it from the first
    /// messages. Default: `None`.
    #[serde(default)]
    pub venue: Option<Venue>,
    /// Pace relative to the recording: 1.0 is the recorded pace, 2.0 twice as fast,
    /// 0 as fast as possible. Default: 1.0.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Start over at the end of the file, until shutdown. Default: false.
    #[serde(default, rename = "loop")]
    pub repeat: bool,
    /// Symbol prefix; `None` uses the venue's (`BINANCE`, `COINBASE`), `""` none.
    /// Default: `None`.
    #[serde(default)]
    pub symbol_prefix: Option<String>,
    /// Stamp ticks with the time they are replayed rather than the recorded time.
    /// Default: true.
    #[serde(default = "default_rebase_time")]
    pub rebase_time: bool,
    /// Longest line accepted, in bytes; longer ones are counted and skipped.
    /// Default: 65,536.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_speed() -> f64 {
    1.0
}

fn default_rebase_time() -> bool {
    true
}

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

impl ReplayConfig {
    /// Replays `path` at the recorded pace, once, with the venue detected.
    pub fn new(path: impl Into<PathBuf>) -> ReplayConfig {
        ReplayConfig {
            path: path.into(),
            venue: None,
            speed: default_speed(),
            repeat: false,
            symbol_prefix: None,
            rebase_time: default_rebase_time(),
            max_message_bytes: default_max_message_bytes(),
        }
    }
}

/// Maps the capture's event times to offsets from the start of a pass, sans-IO.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// 0 for as fast as possible.
    speed: f64,
    /// Event time of the first timed tick of this pass.
    first_ns: Option<u64>,
    /// The latest event time seen: the time of messages that carry none.
    clock_ns: u64,
}

impl Pacer {
    /// A pacer for `speed` (0 or less, or not finite: as fast as possible).
    pub fn new(speed: f64) -> Pacer {
        Pacer {
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                0.0
            },
            first_ns: None,
            clock_ns: 0,
        }
    }

    /// The time to give a message that carries none (0 before any timed tick).
    pub fn clock_ns(&self) -> u64 {
        self.clock_ns
    }

    /// Records a tick's event time and returns when, after the pass started, it is
    /// due; `None` when it is due at once (as fast as possible, or no time known).
    pub fn due(&mut self, ts_event: u64) -> Option<Duration> {
        if ts_event == 0 {
            return None;
        }
        self.clock_ns = self.clock_ns.max(ts_event);
        let first = *self.first_ns.get_or_insert(ts_event);
        if self.speed == 0.0 {
            return None;
        }
        let recorded = ts_event.saturating_sub(first);
        Some(Duration::from_nanos((recorded as f64 / self.speed) as u64))
    }

    /// Starts a new pass over the capture.
    pub fn restart(&mut self) {
        self.first_ns = None;
        self.clock_ns = 0;
    }
}

/// Reads the next line into `buf` (without its line ending), keeping at most `max`
/// bytes: `Ok(None)` at end of file, `Ok(Some(false))` for a line longer than `max`
/// (its content is discarded).
fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut fits = true;
    let mut read_any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(read_any.then_some(fits));
        }
        read_any = true;
        let (part, done) = match chunk.iter().position(|&c| c == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        let ended = done > part.len();
        if fits && buf.len() + part.len() <= max + 1 {
            buf.extend_from_slice(part);
        } else {
            fits = false;
            buf.clear();
        }
        reader.consume(done);
        if ended {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    let fits = fits && buf.len() <= max;
    if !fits {
        buf.clear();
    }
    Ok(Some(fits))
}

/// Detects the venue of a capture from its first non-empty lines.
pub fn detect_venue(path: &Path) -> std::io::Result<Option<Venue>> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    for _ in 0..16 {
        match read_line_bounded(&mut reader, &mut line, DEFAULT_MAX_MESSAGE_BYTES)? {
            None => break,
            Some(true) if !line.is_empty() => {
                if let Some(v) = Venue::detect(&line) {
                    return Ok(Some(v));
                }
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

/// Sleeps until `deadline`, waking every 50 ms to see whether the server is stopping.
/// Returns false if it is.
fn sleep_until(deadline: Instant, ctx: &FeedContext) -> bool {
    loop {
        if ctx.is_shutdown() {
            return false;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return true;
        };
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Runs the replay until the end of the capture (or, looping, until shutdown).
pub fn run(cfg: &ReplayConfig, ctx: &FeedContext) {
    if cfg.path.is_dir() {
        return run_capture(cfg, ctx);
    }
    match crate::capture::is_capture(&cfg.path) {
        Ok(true) => return run_capture(cfg, ctx),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(path = %cfg.path.display(), error = %e, "replay: cannot read capture");
            return;
        }
    }
    let venue = match cfg.venue {
        Some(v) => v,
        None => match detect_venue(&cfg.path) {
            Ok(Some(v)) => v,
            Ok(None) => {
                tracing::error!(path = %cfg.path.display(), "replay: cannot tell the venue of the capture; set `venue`");
                return;
            }
            Err(e) => {
                tracing::error!(path = %cfg.path.display(), error = %e, "replay: cannot read capture");
                return;
            }
        },
    };
    let prefix = cfg
        .symbol_prefix
        .as_deref()
        .unwrap_or(venue.default_prefix());
    let mut normalizer = Normalizer::new(venue, prefix, cfg.max_message_bytes);
    let mut pacer = Pacer::new(cfg.speed);
    let mut line = Vec::with_capacity(1024);
    let status = &ctx.status;
    status.set_connected();
    tracing::info!(path = %cfg.path.display(), %venue, speed = cfg.speed, "replay started");
    // Set when the replay stops short of the end: it then counts as a lost source.
    let mut failed = false;
    'passes: loop {
        let file = match File::open(&cfg.path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %cfg.path.display(), error = %e, "replay: cannot open capture");
                failed = true;
                break;
            }
        };
        let mut reader = BufReader::with_capacity(64 << 10, file);
        let start = Instant::now();
        let start_ns = now_ns();
        loop {
            if ctx.is_shutdown() {
                break 'passes;
            }
            let fits = match read_line_bounded(&mut reader, &mut line, cfg.max_message_bytes) {
                Ok(Some(fits)) => fits,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(path = %cfg.path.display(), error = %e, "replay: read failed");
                    failed = true;
                    break 'passes;
                }
            };
            if fits && line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            status.messages.fetch_add(1, Ordering::Relaxed);
            status.last_message_ns.store(now_ns(), Ordering::Relaxed);
            let result = if fits {
                normalizer.normalize(&line, pacer.clock_ns())
            } else {
                Err(super::normalize::NormalizeError::Oversize {
                    len: line.len().max(cfg.max_message_bytes + 1),
                    max: cfg.max_message_bytes,
                })
            };
            let out = match result {
                Ok(out) => out,
                Err(e) => {
                    let n = status.parse_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    super::log_parse_error(&status.name, n, &e);
                    continue;
                }
            };
            if let Some(gap) = out.gap {
                status.gaps.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(feed = %status.name, symbol = %gap.symbol, missed = gap.missed(), "id gap in capture");
            }
            if let Some(tick) = out.tick {
                if !play(tick, &mut pacer, (start, start_ns), cfg, ctx) {
                    break 'passes;
                }
            }
            // A venue book message: its level changes, in order.
            for &change in normalizer.book_changes() {
                if !play(change, &mut pacer, (start, start_ns), cfg, ctx) {
                    break 'passes;
                }
            }
        }
        if !cfg.repeat {
            break;
        }
        normalizer.reset();
        pacer.restart();
    }
    end(status, failed);
}

/// The feed tick of one capture record: its symbol by name (through `names`, with
/// `prefix`), event time and values. `None` for an unknown kind or an unnamed id.
/// Waits for `tick`'s turn on the pass that started at `start` (as an `Instant` and in
/// ns since the epoch), restamps it as configured and sends it. False when the feed
/// must stop: shutdown, or the sequencer is gone.
fn play(
    mut tick: FeedTick,
    pacer: &mut Pacer,
    (start, start_ns): (Instant, u64),
    cfg: &ReplayConfig,
    ctx: &FeedContext,
) -> bool {
    let due = pacer.due(tick.ts_event);
    if let Some(offset) = due {
        // A capture whose times jump centuries ahead would overflow `Instant`: such a
        // tick waits a year (in practice, until shutdown).
        let due_at = start
            .checked_add(offset)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
        if !sleep_until(due_at, ctx) {
            return false;
        }
    }
    if cfg.rebase_time {
        tick.ts_event = match due {
            Some(offset) => start_ns.saturating_add(offset.as_nanos() as u64),
            None => now_ns(),
        };
    } else if tick.ts_event == 0 {
        tick.ts_event = now_ns();
    }
    ctx.send(tick).is_ok()
}

fn capture_tick(
    rec: &crate::wire::ArchivedWireRecord,
    names: &HashMap<u32, Symbol>,
) -> Option<super::FeedTick> {
    let kind = Kind::from_u8(rec.kind)?;
    let symbol = *names.get(&rec.symbol_id.to_native())?;
    Some(super::FeedTick {
        symbol,
        ts_event: rec.ts_event.to_native(),
        body: Body::from_values(kind, rec.values.map(|v| v.to_native())),
    })
}

/// Adds a capture's id → name entries to `names`; names that are not valid symbols
/// (with the prefix) are counted as parse errors and their records skipped.
fn bind_names(
    entries: &[crate::capture::SymbolEntry],
    prefix: &str,
    names: &mut HashMap<u32, Symbol>,
    ctx: &FeedContext,
) {
    for e in entries {
        match Symbol::namespaced(prefix, e.name.as_bytes()) {
            Ok(s) => {
                names.insert(e.id, s);
            }
            Err(err) => {
                names.remove(&e.id);
                ctx.status.parse_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(feed = %ctx.status.name, name = %e.name, error = %err, "replay: invalid symbol name in capture");
            }
        }
    }
}

/// The captures a replay of `path` plays, in order: the file itself, or the `.tcrec`
/// files of a directory (the recorder's, whose names sort in time order) by name.
pub(crate) fn capture_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tcrec"))
        .collect();
    files.sort();
    Ok(files)
}

/// Replays a tickcast capture (`TCREC1`), or a directory of them as one stream: see
/// the module docs.
fn run_capture(cfg: &ReplayConfig, ctx: &FeedContext) {
    use crate::capture::{CaptureReader, Entry};
    let prefix = cfg.symbol_prefix.as_deref().unwrap_or("");
    let mut pacer = Pacer::new(cfg.speed);
    let status = &ctx.status;
    let files = match capture_files(&cfg.path) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            tracing::error!(path = %cfg.path.display(), "replay: no .tcrec capture in the directory");
            end(status, true);
            return;
        }
        Err(e) => {
            tracing::error!(path = %cfg.path.display(), error = %e, "replay: cannot list the directory");
            end(status, true);
            return;
        }
    };
    status.set_connected();
    tracing::info!(path = %cfg.path.display(), files = files.len(), speed = cfg.speed, "replay of a tickcast capture started");
    let mut books = CaptureBooks::default();
    let mut failed = false;
    'passes: loop {
        // One pass plays every file, paced as one recording.
        let start = Instant::now();
        let start_ns = now_ns();
        for path in &files {
            let mut reader = match File::open(path)
                .map_err(crate::capture::CaptureError::from)
                .and_then(|f| CaptureReader::new(BufReader::with_capacity(64 << 10, f)))
            {
                Ok(r) => r,
                Err(e) => {
                    // A file that cannot be opened is lost from the recording:
                    // counted, and the replay ends reported as cut short.
                    failed = true;
                    status.parse_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(path = %path.display(), error = %e, "replay: cannot open capture");
                    continue;
                }
            };
            let mut names: HashMap<u32, Symbol> = HashMap::new();
            bind_names(&reader.header().symbols.clone(), prefix, &mut names, ctx);
            loop {
                if ctx.is_shutdown() {
                    break 'passes;
                }
                let block = match reader.next_entry() {
                    Ok(None) => break,
                    Ok(Some(Entry::Symbols(entries))) => {
                        bind_names(&entries, prefix, &mut names, ctx);
                        continue;
                    }
                    Ok(Some(Entry::Block(b))) => b,
                    Err(e @ crate::capture::CaptureError::Block { .. }) => {
                        // Framed, but its contents disagree: skip its messages, count them.
                        let n = status.parse_errors.fetch_add(1, Ordering::Relaxed) + 1;
                        if n <= 10 || n.is_power_of_two() {
                            tracing::warn!(feed = %status.name, count = n, error = %e, "replay: skipped a bad block in the capture");
                        }
                        continue;
                    }
                    Err(e) => {
                        // The rest of the file cannot be framed: go on with the next.
                        status.parse_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(path = %path.display(), error = %e, "replay: bad capture");
                        break;
                    }
                };
                for msg in block {
                    status.messages.fetch_add(1, Ordering::Relaxed);
                    status.last_message_ns.store(now_ns(), Ordering::Relaxed);
                    for rec in msg.records() {
                        let Some(tick) = capture_tick(rec, &names) else {
                            status.parse_errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let snapshot = Flags(rec.flags).contains(Flags::SNAPSHOT);
                        if !books.record(tick, snapshot) {
                            if !play(tick, &mut pacer, (start, start_ns), cfg, ctx) {
                                break 'passes;
                            }
                            continue;
                        }
                        for &change in books.venue.changes() {
                            if !play(change, &mut pacer, (start, start_ns), cfg, ctx) {
                                break 'passes;
                            }
                        }
                    }
                }
            }
        }
        if !cfg.repeat {
            break;
        }
        pacer.restart();
    }
    end(status, failed);
}

/// The book records of a tickcast capture into level changes. A recorder's capture
/// holds the sequencer's changes, one per record; a subscriber's capture also holds
/// book snapshots (a message of K records flagged snapshot: "the whole book is
/// this") and merged changes. A snapshot is sent as the difference from the book the
/// replay has sent so far ([`VenueBooks`](super::venue_book::VenueBooks)), so the replaying server's book becomes it
/// exactly; a change goes as it is.
#[derive(Debug, Default)]
struct CaptureBooks {
    venue: super::venue_book::VenueBooks,
    /// The snapshot being gathered: its symbol, time, bids and asks.
    snapshot: Option<(
        Symbol,
        u64,
        Vec<crate::book::Level>,
        Vec<crate::book::Level>,
    )>,
}

impl CaptureBooks {
    /// Takes one record; `false` when it is no book record (play it as it is),
    /// `true` when it was taken: [`VenueBooks::changes`](super::venue_book::VenueBooks::changes) then holds what to play
    /// (empty while a snapshot is being gathered).
    fn record(&mut self, tick: FeedTick, snapshot: bool) -> bool {
        let Body::Book {
            side,
            price,
            size,
            group: (levels, index),
            ..
        } = tick.body
        else {
            return false;
        };
        self.venue.begin();
        if !snapshot {
            self.venue
                .level(tick.symbol, tick.ts_event, side, price, size);
            return true;
        }
        if index == 0 || self.snapshot.as_ref().is_none_or(|s| s.0 != tick.symbol) {
            self.snapshot = Some((tick.symbol, tick.ts_event, Vec::new(), Vec::new()));
        }
        let Some(s) = self.snapshot.as_mut() else {
            return true;
        };
        if levels > 0 {
            match side {
                crate::book::Side::Bid => s.2.push((price, size)),
                crate::book::Side::Ask => s.3.push((price, size)),
            }
        }
        if index + 1 >= levels {
            if let Some((symbol, ts, bids, asks)) = self.snapshot.take() {
                self.venue.snapshot(symbol, ts, &bids, &asks);
            }
        }
        true
    }
}

/// Marks the end of a replay: finished at the end of its capture, or a lost source
/// when it stopped short (`failed`).
fn end(status: &super::FeedStatus, failed: bool) {
    if failed {
        status.set_disconnected(now_ns());
        tracing::error!(feed = %status.name, "replay stopped before the end of its capture");
    } else {
        status.set_finished();
        tracing::info!(feed = %status.name, "replay finished");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber's capture: a book snapshot gathered over its records and sent as
    /// the difference from what was sent before, changes as they are, other kinds
    /// left to play as they are.
    #[test]
    fn capture_books_send_snapshots_as_differences() {
        use crate::book::Side;
        let sym = Symbol::new("A").unwrap();
        let rec = |side, price, size, group| FeedTick {
            symbol: sym,
            ts_event: 5,
            body: Body::Book {
                side,
                price,
                size,
                new_level: false,
                group,
            },
        };
        let changes = |b: &CaptureBooks| -> Vec<(Side, i64, i64)> {
            crate::feed::book_levels(b.venue.changes())
        };
        let mut b = CaptureBooks::default();
        let trade = FeedTick {
            symbol: sym,
            ts_event: 1,
            body: Body::trade(1, 1),
        };
        assert!(!b.record(trade, false), "a trade plays as it is");
        assert!(b.record(rec(Side::Bid, 100, 1, (2, 0)), true));
        assert!(changes(&b).is_empty(), "a snapshot is sent once whole");
        assert!(b.record(rec(Side::Ask, 101, 1, (2, 1)), true));
        assert_eq!(changes(&b), [(Side::Bid, 100, 1), (Side::Ask, 101, 1)]);
        assert!(b.record(rec(Side::Bid, 99, 3, (1, 0)), false));
        assert_eq!(changes(&b), [(Side::Bid, 99, 3)]);
        // A later snapshot of the bid 100 alone: 99 and the ask go.
        assert!(b.record(rec(Side::Bid, 100, 1, (1, 0)), true));
        assert_eq!(changes(&b), [(Side::Bid, 99, 0), (Side::Ask, 101, 0)]);
        // An empty snapshot empties the book.
        assert!(b.record(rec(Side::Bid, 0, 0, (0, 0)), true));
        assert_eq!(changes(&b), [(Side::Bid, 100, 0)]);
    }

    #[test]
    fn pacer_follows_recorded_times_scaled() {
        let mut p = Pacer::new(2.0);
        assert_eq!(p.clock_ns(), 0);
        assert_eq!(p.due(0), None, "untimed before any time: at once");
        assert_eq!(p.due(1_000_000_000), Some(Duration::ZERO));
        assert_eq!(p.due(3_000_000_000), Some(Duration::from_secs(1)));
        assert_eq!(p.clock_ns(), 3_000_000_000);
        // A time that goes backwards is due at once (offset before the last one).
        assert_eq!(p.due(2_000_000_000), Some(Duration::from_millis(500)));
        assert_eq!(p.clock_ns(), 3_000_000_000);
        p.restart();
        assert_eq!(p.due(9_000_000_000), Some(Duration::ZERO));

        let mut fast = Pacer::new(0.0);
        assert_eq!(fast.due(1), None);
        assert_eq!(fast.due(1_000_000_000_000), None);
        assert_eq!(fast.clock_ns(), 1_000_000_000_000);
        assert_eq!(Pacer::new(f64::NAN).due(5), None);
    }

    #[test]
    fn bounded_lines() {
        let data = b"one\r\n\ntoo long line\nlast";
        let mut r = std::io::BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        let table: &[(Option<bool>, &[u8])] = &[
            (Some(true), b"one"),
            (Some(true), b""),
            (Some(false), b""),
            (Some(true), b"last"),
            (None, b""),
        ];
        for (fits, content) in table {
            assert_eq!(read_line_bounded(&mut r, &mut buf, 6).unwrap(), *fits);
            assert_eq!(&buf[..], *content);
        }
    }

    #[test]
    fn detects_the_venue_of_the_sample_captures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds");
        assert_eq!(
            detect_venue(&dir.join("binance-spot-btcusdt-ethusdt.jsonl")).unwrap(),
            Some(Venue::Binance)
        );
        assert_eq!(
            detect_venue(&dir.join("coinbase-exchange-btc-usd-eth-usd.jsonl")).unwrap(),
            Some(Venue::Coinbase)
        );
    }
}

//! The rolling recorder (`[record]`): every sequenced tick into rotated capture files,
//! so that a day can be replayed or exported later.
//!
//! Like the bus publisher, it is a [`BatchSink`]: on the sequencer's thread,
//! [`RecordSink`] encodes each batch once into a binary data message (the layout of
//! `docs/protocol.md`, `ts_out` the time the recorder took it) and `try_send`s it to
//! the `recorder` thread's bounded queue (`record.queue_batches`). The sequencer never
//! waits for the disk: when the queue is full the batch is dropped and counted
//! (`dropped_batches`, `dropped_ticks`), and the capture shows a gap there.
//!
//! The `recorder` thread writes the messages into `record.dir` as capture files
//! ([`crate::capture`], version 2) named `tickcast-<UTC start time>.tcrec`, so that
//! names sort in time order. Each file's header holds every symbol known when it was
//! opened and a `symbols` entry names those that appear later, so every file reads on
//! its own. A file is closed once it holds `rotate_mb` MiB; before a new one is opened,
//! the oldest files beyond `keep` (the new one included) are deleted, so the recorder
//! uses at most about `keep × rotate_mb` MiB of disk. Everything is in the file within
//! `flush_interval_ms`.
//!
//! A write that fails (a full disk, a file-size limit, an I/O error) is logged and
//! counted (`write_errors`, `lost_ticks`), the file is cut back to its last flushed
//! length so that it ends on a whole entry, and the recorder drops what arrives
//! (counted in `dropped_ticks`) until it tries a new file `retry_interval_ms` later.
//! The data path never notices.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::capture::{CaptureError, CaptureHeader, CaptureWriter, SymbolEntry};
use crate::clock::now_ns;
use crate::sequencer::{Batch, BatchSink};
use crate::stats::Stats;
use crate::symbol::Symbol;
use crate::wire::{self, HEADER_SIZE, RECORD_SIZE};

/// Settings of `[record]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordConfig {
    /// Directory of the capture files, created if missing. Required.
    pub dir: PathBuf,
    /// A file is closed, and the next one started, once it holds this many MiB.
    /// Default: 256.
    pub rotate_mb: u64,
    /// Capture files kept in `dir`, the one being written included; older ones are
    /// deleted. Disk use stays at about `keep × rotate_mb` MiB. Default: 24.
    pub keep: usize,
    /// Batches queued between the sequencer and the recorder thread; when it is full a
    /// batch is dropped and counted. Default: 4,096.
    pub queue_batches: usize,
    /// Longest time a recorded tick waits in memory before it is written to the file,
    /// in ms. Default: 1,000.
    pub flush_interval_ms: u64,
    /// After a write error, how long the recorder drops batches before it tries a new
    /// file, in ms. Default: 1,000.
    pub retry_interval_ms: u64,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            dir: PathBuf::new(),
            rotate_mb: 256,
            keep: 24,
            queue_batches: 4096,
            flush_interval_ms: 1_000,
            retry_interval_ms: 1_000,
        }
    }
}

impl RecordConfig {
    /// Checks the ranges that serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.dir.as_os_str().is_empty() {
            return Err("record.dir is required".into());
        }
        if self.rotate_mb == 0 || self.rotate_mb > 1 << 20 {
            return Err("record.rotate_mb must be between 1 and 1,048,576".into());
        }
        if self.keep == 0 || self.queue_batches == 0 {
            return Err("record.keep and record.queue_batches must be positive".into());
        }
        if self.flush_interval_ms == 0 || self.retry_interval_ms == 0 {
            return Err(
                "record.flush_interval_ms and record.retry_interval_ms must be positive".into(),
            );
        }
        Ok(())
    }
}

/// Why the recorder could not start.
#[derive(Debug, Error)]
pub enum RecorderError {
    /// `record.dir` could not be created or read.
    #[error("record.dir {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the recorder thread: {0}")]
    Spawn(io::Error),
}

/// The recorder's counters, read by `/stats` (`recorder`) and `/metrics`
/// (`tickcast_recorder_*`).
#[derive(Debug, Default)]
pub struct RecorderStatus {
    /// 1 once a recorder runs (`[record]` configured).
    pub enabled: AtomicU64,
    /// Ticks written and flushed to a file.
    pub ticks: AtomicU64,
    /// Bytes of capture files written and flushed.
    pub bytes: AtomicU64,
    /// Capture files opened.
    pub files_opened: AtomicU64,
    /// Old capture files deleted to stay within `keep`.
    pub files_deleted: AtomicU64,
    /// Batches the sequencer dropped because the queue was full.
    pub dropped_batches: AtomicU64,
    /// Ticks not recorded because they were dropped: queue full, or arriving while the
    /// recorder waits to retry after a write error.
    pub dropped_ticks: AtomicU64,
    /// Writes, flushes, opens or deletions that failed (a full disk among them).
    pub write_errors: AtomicU64,
    /// Ticks handed to a file but lost when a write failed (the file is cut back to
    /// its last flushed length).
    pub lost_ticks: AtomicU64,
    /// 1 while the recorder waits to retry after a write error (gauge).
    pub failing: AtomicU64,
    /// Batches waiting in the queue (gauge, updated by the recorder thread).
    pub queued_batches: AtomicU64,
    /// The file being written, and the last error (cold path).
    pub state: Mutex<RecorderState>,
}

/// The recorder's cold-path state, for `/stats`.
#[derive(Debug, Default, Clone)]
pub struct RecorderState {
    /// The file being written, if any.
    pub file: Option<PathBuf>,
    /// The last write error and when it happened (ns since the Unix epoch).
    pub last_error: Option<(String, u64)>,
}

/// Reads one counter of [`RecorderStatus`].
type RecorderField = fn(&RecorderStatus) -> &AtomicU64;

/// The numeric fields of [`RecorderStatus`]: name, Prometheus kind, help.
const RECORDER_FIELDS: [(&str, &str, &str, RecorderField); 10] = [
    ("ticks", "counter", "Ticks written to capture files.", |s| {
        &s.ticks
    }),
    ("bytes", "counter", "Bytes written to capture files.", |s| {
        &s.bytes
    }),
    ("files_opened", "counter", "Capture files opened.", |s| {
        &s.files_opened
    }),
    (
        "files_deleted",
        "counter",
        "Old capture files deleted to stay within keep.",
        |s| &s.files_deleted,
    ),
    (
        "dropped_batches",
        "counter",
        "Batches dropped because the recorder queue was full.",
        |s| &s.dropped_batches,
    ),
    (
        "dropped_ticks",
        "counter",
        "Ticks not recorded: queue full, or waiting to retry after a write error.",
        |s| &s.dropped_ticks,
    ),
    (
        "write_errors",
        "counter",
        "Capture file writes, opens or deletions that failed (a full disk among them).",
        |s| &s.write_errors,
    ),
    (
        "lost_ticks",
        "counter",
        "Ticks handed to a file but lost to a write error.",
        |s| &s.lost_ticks,
    ),
    (
        "failing",
        "gauge",
        "1 while the recorder waits to retry after a write error.",
        |s| &s.failing,
    ),
    (
        "queued_batches",
        "gauge",
        "Batches waiting in the recorder queue.",
        |s| &s.queued_batches,
    ),
];

impl RecorderStatus {
    /// The `recorder` section of `/stats` (`null` without `[record]`).
    pub fn to_json(&self) -> Value {
        if self.enabled.load(Relaxed) == 0 {
            return Value::Null;
        }
        let mut m = serde_json::Map::new();
        for (name, _, _, get) in RECORDER_FIELDS {
            m.insert(name.into(), json!(get(self).load(Relaxed)));
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        m.insert(
            "file".into(),
            json!(state.file.map(|f| f.display().to_string())),
        );
        m.insert(
            "last_error".into(),
            match state.last_error {
                Some((error, at_ns)) => json!({"error": error, "at_ns": at_ns}),
                None => Value::Null,
            },
        );
        Value::Object(m)
    }

    /// Appends the `tickcast_recorder_*` metrics (nothing without `[record]`).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.enabled.load(Relaxed) == 0 {
            return;
        }
        for (name, kind, help, get) in RECORDER_FIELDS {
            let metric = match kind {
                "counter" => format!("tickcast_recorder_{name}_total"),
                _ => format!("tickcast_recorder_{name}"),
            };
            let _ = writeln!(out, "# HELP {metric} {help}");
            let _ = writeln!(out, "# TYPE {metric} {kind}");
            let _ = writeln!(out, "{metric} {}", get(self).load(Relaxed));
        }
    }
}

/// Logs the `n`th occurrence of something frequent: the first ten, then at powers of
/// two.
fn worth_logging(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}

/// One batch on its way to the recorder thread.
#[derive(Debug)]
struct Item {
    /// The batch as one binary data message (no records when it only names symbols).
    message: Vec<u8>,
    ticks: u64,
    /// Symbols named since the last item that got through: the first id, the names.
    symbols: Option<(u32, Vec<Symbol>)>,
}

/// The sequencer's hand-off to the recorder (see the module docs). Never blocks.
#[derive(Debug)]
pub struct RecordSink {
    tx: Sender<Item>,
    stats: Arc<Stats>,
    /// Names of dropped items, carried by the next one so every id gets its name.
    unsent_symbols: Option<(u32, Vec<Symbol>)>,
}

impl BatchSink for RecordSink {
    fn publish(&mut self, batch: &Batch<'_>) {
        let mut symbols = self.unsent_symbols.take();
        if !batch.new_symbols.is_empty() {
            symbols
                .get_or_insert_with(|| (batch.new_symbols_from, Vec::new()))
                .1
                .extend_from_slice(batch.new_symbols);
        }
        // A sequencer batch is at most a few hundred ticks: one message, far below
        // the 65,535-byte bound of a data message.
        let mut message = vec![0u8; HEADER_SIZE + batch.ticks.len() * RECORD_SIZE];
        let (head, records) = message.split_at_mut(HEADER_SIZE);
        let head: &mut [u8; HEADER_SIZE] = head.try_into().expect("HEADER_SIZE bytes");
        wire::encode_header(batch.ticks.len() as u32, now_ns(), head);
        for (tick, out) in batch
            .ticks
            .iter()
            .zip(records.chunks_exact_mut(RECORD_SIZE))
        {
            wire::encode_record(tick, out.try_into().expect("RECORD_SIZE bytes"));
        }
        let item = Item {
            message,
            ticks: batch.ticks.len() as u64,
            symbols,
        };
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(item)) => {
                let rec = &self.stats.recorder;
                rec.dropped_ticks.fetch_add(item.ticks, Relaxed);
                let n = rec.dropped_batches.fetch_add(1, Relaxed) + 1;
                if worth_logging(n) {
                    tracing::warn!(
                        dropped_batches = n,
                        "recorder: queue full, batch dropped (the disk is not keeping up)"
                    );
                }
                self.unsent_symbols = item.symbols;
            }
            // The recorder thread has stopped (it logged why).
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Starts the `recorder` thread; returns the sink to give the sequencer.
pub fn start(
    config: RecordConfig,
    stats: Arc<Stats>,
) -> Result<(RecordSink, std::thread::JoinHandle<()>), RecorderError> {
    let dir_error = |source| RecorderError::Dir {
        dir: config.dir.clone(),
        source,
    };
    fs::create_dir_all(&config.dir).map_err(dir_error)?;
    fs::read_dir(&config.dir).map_err(dir_error)?;
    let (tx, rx) = crossbeam_channel::bounded(config.queue_batches);
    stats.recorder.enabled.store(1, Relaxed);
    let sink = RecordSink {
        tx,
        stats: stats.clone(),
        unsent_symbols: None,
    };
    tracing::info!(dir = %config.dir.display(), rotate_mb = config.rotate_mb, keep = config.keep, "recorder: recording every sequenced tick");
    let thread = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || Recorder::new(config, stats).run(rx))
        .map_err(RecorderError::Spawn)?;
    Ok((sink, thread))
}

/// The file being written.
#[derive(Debug)]
struct Open {
    writer: CaptureWriter<BufWriter<File>>,
    /// The same file, to learn and cut its length.
    file: File,
    path: PathBuf,
    /// Length of the file at its last successful flush: it ends on a whole entry.
    flushed_len: u64,
    /// Length of its headers: a file no longer than this holds no tick.
    header_len: u64,
    /// Bytes handed to the writer (flushed or not), for rotation.
    len: u64,
    /// Ticks handed to the writer since the last flush.
    pending_ticks: u64,
}

/// The `recorder` thread's state.
#[derive(Debug)]
struct Recorder {
    config: RecordConfig,
    stats: Arc<Stats>,
    /// Every symbol name by id, for the header of the next file.
    names: Vec<Option<String>>,
    open: Option<Open>,
    /// After a write error: no file is tried before this.
    retry_at: Option<Instant>,
    /// When the open file must next be flushed, if it holds unflushed ticks.
    flush_at: Option<Instant>,
}

/// The name of a file started at `ns` (UTC, sortable): `tickcast-20250601T143000.123456789Z.tcrec`.
pub fn file_name(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(ns);
    let stamp: String = humantime::format_rfc3339_nanos(t)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("tickcast-{stamp}.tcrec")
}

/// Whether `name` is one of the recorder's files.
fn is_recording(name: &str) -> bool {
    name.starts_with("tickcast-") && name.ends_with(".tcrec")
}

/// The recorder's files in `dir`, oldest first.
fn recordings(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_recording))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

impl Recorder {
    fn new(config: RecordConfig, stats: Arc<Stats>) -> Recorder {
        Recorder {
            config,
            stats,
            names: Vec::new(),
            open: None,
            retry_at: None,
            flush_at: None,
        }
    }

    fn run(mut self, rx: Receiver<Item>) {
        loop {
            let wait = [self.flush_at, self.retry_at]
                .into_iter()
                .flatten()
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            let got = rx.recv_timeout(wait);
            self.stats
                .recorder
                .queued_batches
                .store(rx.len() as u64, Relaxed);
            let now = Instant::now();
            match got {
                Ok(item) => self.record(item, now),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.flush_at.is_some_and(|at| at <= now) {
                self.flush();
            }
            if self.retry_at.is_some_and(|at| at <= now) {
                self.retry_at = None;
                self.stats.recorder.failing.store(0, Relaxed);
            }
        }
        self.close();
    }

    /// Writes one item, opening (or rotating to) a file as needed.
    fn record(&mut self, item: Item, now: Instant) {
        let new_names = match &item.symbols {
            Some((from, names)) => self.learn(*from, names),
            None => Vec::new(),
        };
        if self.retry_at.is_some() {
            self.stats
                .recorder
                .dropped_ticks
                .fetch_add(item.ticks, Relaxed);
            return;
        }
        if self.open.is_none() && !self.open_file(now) {
            self.stats
                .recorder
                .dropped_ticks
                .fetch_add(item.ticks, Relaxed);
            return;
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let written = (|| -> Result<(), CaptureError> {
            if !new_names.is_empty() {
                open.writer.write_symbols(&new_names)?;
            }
            if item.ticks > 0 {
                open.writer.write_message(&item.message)?;
            }
            Ok(())
        })();
        open.pending_ticks += item.ticks;
        open.len += item.message.len() as u64;
        if let Err(e) = written {
            self.fail(&e.to_string(), now);
            return;
        }
        self.flush_at
            .get_or_insert(now + Duration::from_millis(self.config.flush_interval_ms));
        if open.len >= self.config.rotate_mb << 20 {
            self.close();
        }
    }

    /// Adds names from `from` on; returns those the open file has not heard of.
    fn learn(&mut self, from: u32, names: &[Symbol]) -> Vec<SymbolEntry> {
        let mut entries = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let id = from as usize + i;
            if self.names.len() <= id {
                self.names.resize(id + 1, None);
            }
            self.names[id] = Some(name.to_string());
            entries.push(SymbolEntry {
                id: id as u32,
                name: name.to_string(),
            });
        }
        // A file opened from now on has them in its header.
        if self.open.is_none() {
            entries.clear();
        }
        entries
    }

    /// Deletes the oldest files beyond `keep - 1`, then opens a new file with every
    /// known name in its header. False (and the error counted) when it cannot.
    fn open_file(&mut self, now: Instant) -> bool {
        self.prune();
        let mut ns = now_ns();
        let (path, file) = loop {
            let path = self.config.dir.join(file_name(ns));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                // Two files in the same nanosecond: take the next one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ns += 1,
                Err(e) => {
                    self.fail(&format!("cannot create {}: {e}", path.display()), now);
                    return false;
                }
            }
        };
        let header = CaptureHeader {
            created_at_ns: ns,
            symbols: self
                .names
                .iter()
                .enumerate()
                .filter_map(|(id, n)| {
                    n.as_ref().map(|name| SymbolEntry {
                        id: id as u32,
                        name: name.clone(),
                    })
                })
                .collect(),
            source: Some("tickcast recorder".into()),
        };
        let opened = file.try_clone().map_err(CaptureError::from).and_then(|f| {
            let mut writer = CaptureWriter::new(BufWriter::with_capacity(1 << 20, f), &header)?;
            writer.flush()?;
            Ok(writer)
        });
        let rec = &self.stats.recorder;
        rec.files_opened.fetch_add(1, Relaxed);
        rec.state.lock().unwrap_or_else(|e| e.into_inner()).file = Some(path.clone());
        match opened {
            Ok(writer) => {
                let flushed_len = (&file).stream_position().unwrap_or(0);
                rec.bytes.fetch_add(flushed_len, Relaxed);
                tracing::info!(file = %path.display(), "recorder: new capture file");
                self.open = Some(Open {
                    writer,
                    file,
                    path,
                    flushed_len,
                    header_len: flushed_len,
                    len: flushed_len,
                    pending_ticks: 0,
                });
                true
            }
            Err(e) => {
                // Not even the header is in: nothing of the file is worth keeping.
                let _ = fs::remove_file(&path);
                rec.state.lock().unwrap_or_else(|e| e.into_inner()).file = None;
                self.fail(&format!("{}: {e}", path.display()), now);
                false
            }
        }
    }

    /// Deletes the oldest recordings so that, with the one about to be opened, at
    /// most `keep` remain.
    fn prune(&mut self) {
        let rec = &self.stats.recorder;
        let files = match recordings(&self.config.dir) {
            Ok(f) => f,
            Err(e) => {
                rec.write_errors.fetch_add(1, Relaxed);
                tracing::warn!(dir = %self.config.dir.display(), error = %e, "recorder: cannot list the directory");
                return;
            }
        };
        let excess = (files.len() + 1).saturating_sub(self.config.keep);
        for old in &files[..excess] {
            match fs::remove_file(old) {
                Ok(()) => {
                    rec.files_deleted.fetch_add(1, Relaxed);
                    tracing::info!(file = %old.display(), "recorder: old capture file deleted (keep)");
                }
                Err(e) => {
                    rec.write_errors.fetch_add(1, Relaxed);
                    tracing::warn!(file = %old.display(), error = %e, "recorder: cannot delete an old capture file");
                }
            }
        }
    }

    /// Writes the open block to the file: what was recorded is then on disk.
    fn flush(&mut self) {
        self.flush_at = None;
        let Some(open) = self.open.as_mut() else {
            return;
        };
        match open.writer.flush() {
            Ok(()) => {
                let len = (&open.file).stream_position().unwrap_or(open.len);
                let rec = &self.stats.recorder;
                rec.ticks.fetch_add(open.pending_ticks, Relaxed);
                rec.bytes
                    .fetch_add(len.saturating_sub(open.flushed_len), Relaxed);
                open.pending_ticks = 0;
                open.flushed_len = len;
                open.len = len;
            }
            Err(e) => self.fail(&e.to_string(), Instant::now()),
        }
    }

    /// Flushes and closes the open file.
    fn close(&mut self) {
        self.flush();
        if let Some(open) = self.open.take() {
            drop(open.writer);
            self.stats
                .recorder
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .file = None;
            tracing::debug!(file = %open.path.display(), "recorder: capture file closed");
        }
    }

    /// A write failed: count it, cut the file back to its last flushed length (a whole
    /// entry), or remove it if that holds no tick (a full disk would otherwise fill
    /// the directory with empty files, one per retry), and wait `retry_interval_ms`
    /// before the next file.
    fn fail(&mut self, error: &str, now: Instant) {
        let rec = &self.stats.recorder;
        let n = rec.write_errors.fetch_add(1, Relaxed) + 1;
        rec.failing.store(1, Relaxed);
        rec.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some((error.to_string(), now_ns()));
        self.flush_at = None;
        self.retry_at = Some(now + Duration::from_millis(self.config.retry_interval_ms));
        if let Some(open) = self.open.take() {
            rec.lost_ticks.fetch_add(open.pending_ticks, Relaxed);
            // Dropping the writer tries its buffered bytes once more; the cut below
            // takes back whatever part of them got in.
            drop(open.writer);
            let cut = if open.flushed_len <= open.header_len {
                fs::remove_file(&open.path)
            } else {
                open.file.set_len(open.flushed_len)
            };
            if let Err(e) = cut {
                tracing::warn!(file = %open.path.display(), error = %e, "recorder: cannot cut the file back to its last whole entry");
            }
            rec.state.lock().unwrap_or_else(|e| e.into_inner()).file = None;
            if worth_logging(n) {
                tracing::warn!(
                    file = %open.path.display(),
                    error,
                    write_errors = n,
                    lost_ticks = open.pending_ticks,
                    retry_ms = self.config.retry_interval_ms,
                    "recorder: write failed (disk full?); ticks are dropped and counted until a new file works"
                );
            }
        } else if worth_logging(n) {
            tracing::warn!(
                error,
                write_errors = n,
                retry_ms = self.config.retry_interval_ms,
                "recorder: cannot open a capture file"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_in_time_order() {
        let a = file_name(1_795_000_000_123_456_789);
        assert_eq!(a, "tickcast-20261118T110640.123456789Z.tcrec");
        let b = file_name(1_795_000_001_000_000_000);
        assert!(a < b);
        assert!(is_recording(&a));
        assert!(!is_recording("notes.txt"));
    }

    #[test]
    fn validation_names_the_setting() {
        let ok = RecordConfig {
            dir: "/tmp/x".into(),
            ..RecordConfig::default()
        };
        assert!(ok.validate().is_ok());
        assert!(RecordConfig::default()
            .validate()
            .unwrap_err()
            .contains("record.dir"));
        let zero = RecordConfig {
            rotate_mb: 0,
            ..ok.clone()
        };
        assert!(zero.validate().unwrap_err().contains("rotate_mb"));
        let keep = RecordConfig { keep: 0, ..ok };
        assert!(keep.validate().unwrap_err().contains("keep"));
    }
}

//! The rolling recorder (`[record]`) on a running server: rotation, `keep`, every
//! sequenced tick in the files, the directory replayed as one, and a full disk (a real 2 MiB tmpfs, which needs
//! root: the test fails, loudly, without it) that is logged and counted while
//! subscribers get every tick.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::*;
use tickcast::capture::{CaptureReader, Entry};
use tickcast::client::{Client, Event, Options};
use tickcast::feed::replay::ReplayConfig;
use tickcast::feed::FeedSpec;
use tickcast::lvc::LastValueCache;
use tickcast::recorder::RecordConfig;
use tickcast::server::Server;
use tickcast::symbol::SymbolTable;

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tickcast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted on drop: a disk that
/// really fills up.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(name: &str, mib: u64) -> Tmpfs {
        let dir = TempDir::new(name);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir.0)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs to fill a disk for real, which needs root \
             (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

/// Waits (bounded) until `done`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The recorder's files in `dir`, oldest first.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// One record as read back: symbol name, seq, values.
type Recorded = (String, u64, [i64; 4]);

/// Reads a file to its end (any error fails the test); every record must be named by
/// the file's own header or `symbols` entries.
fn read_file(path: &Path) -> Vec<Recorded> {
    let mut reader = CaptureReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut names: HashMap<u32, String> = reader
        .header()
        .symbols
        .iter()
        .map(|s| (s.id, s.name.clone()))
        .collect();
    let mut out = Vec::new();
    while let Some(entry) = reader
        .next_entry()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        match entry {
            Entry::Symbols(map) => names.extend(map.into_iter().map(|s| (s.id, s.name))),
            Entry::Block(block) => {
                for r in block.records() {
                    let id = r.symbol_id.to_native();
                    let name = names
                        .get(&id)
                        .unwrap_or_else(|| panic!("{}: id {id} has no name", path.display()));
                    out.push((
                        name.clone(),
                        r.seq.to_native(),
                        r.values.map(|v| v.to_native()),
                    ));
                }
            }
        }
    }
    out
}

/// The last sequence number of every symbol, from the server's cache.
fn last_seqs(symbols: &SymbolTable, lvc: &LastValueCache) -> HashMap<String, u64> {
    let mut names = Vec::new();
    symbols.names_since(0, &mut names);
    names
        .iter()
        .enumerate()
        .map(|(id, name)| {
            let latest = lvc.latest(id as u32);
            let seq = latest.in_seq_order().map(|t| t.seq).max().unwrap_or(0);
            (name.to_string(), seq)
        })
        .collect()
}

/// `tickcast capture info --json` on `files`: one summary per file.
fn capture_info(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["capture", "info", "--json"])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_recorder_rotates_keeps_and_records_every_sequenced_tick() {
    let dir = TempDir::new("recorder-rotate");
    // Something of the user's in the directory is left alone.
    std::fs::write(dir.0.join("notes.txt"), "mine").unwrap();
    let mut config = config(20, 20_000);
    config.record = Some(RecordConfig {
        dir: dir.0.clone(),
        rotate_mb: 1,
        keep: 3,
        flush_interval_ms: 50,
        ..RecordConfig::default()
    });
    let server = start_server(config);
    let stats = server.stats().clone();
    wait_until("six files", || {
        stats.recorder.files_opened.load(Relaxed) >= 6
    });
    let (symbols, lvc) = (server.symbols().clone(), server.lvc().clone());
    // Shutdown stops the feed, lets the sequencer finish and the recorder close its
    // file: then every count is final.
    server.shutdown();
    let last = last_seqs(&symbols, &lvc);

    // Every sequenced tick went to a file; none dropped or lost.
    let rec = &stats.recorder;
    let sequenced = stats.sequencer.ticks.load(Relaxed);
    assert_eq!(rec.ticks.load(Relaxed), sequenced);
    assert_eq!(
        (
            rec.dropped_ticks.load(Relaxed),
            rec.lost_ticks.load(Relaxed),
            rec.write_errors.load(Relaxed)
        ),
        (0, 0, 0)
    );
    // keep = 3: the oldest were deleted, the user's file was not.
    let opened = rec.files_opened.load(Relaxed);
    assert_eq!(rec.files_deleted.load(Relaxed), opened - 3);
    let all = files(&dir.0);
    assert!(all.contains(&dir.0.join("notes.txt")));
    let kept: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tcrec"))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    for f in &kept[..2] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(
            (1 << 20..(1 << 20) + (64 << 10)).contains(&len),
            "{}: {len} bytes, rotated at about 1 MiB",
            f.display()
        );
    }

    // The kept files, in name order, hold every tick of each symbol from where they
    // start to the last one sequenced, each once, in order.
    let mut by_symbol: HashMap<String, Vec<u64>> = HashMap::new();
    let mut last_values: HashMap<String, [i64; 4]> = HashMap::new();
    let mut records = 0;
    for f in &kept {
        let recs = read_file(f);
        records += recs.len();
        for (name, seq, values) in recs {
            by_symbol.entry(name.clone()).or_default().push(seq);
            last_values.insert(name, values);
        }
    }
    assert_eq!(by_symbol.len(), 20);
    for (name, seqs) in &by_symbol {
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: not consecutive"
        );
        assert_eq!(
            seqs.last(),
            last.get(name),
            "{name}: the last tick is recorded"
        );
    }

    // The capture inspector agrees: no gap in any file, the same records.
    let infos = capture_info(&kept);
    assert_eq!(infos.len(), 3);
    assert!(infos.iter().all(|i| i["gaps"] == 0 && i["fault"].is_null()));
    let total: u64 = infos.iter().map(|i| i["records"].as_u64().unwrap()).sum();
    assert_eq!(total, records as u64);

    // The directory replays as one stream (the replay feed plays its captures in name
    // order, the user's file skipped): every record, each symbol ending on the values
    // it ended on in the files.
    let mut replay = ReplayConfig::new(&dir.0);
    replay.speed = 0.0;
    let mut replayer = common::config(0, 0);
    replayer.feeds = vec![FeedSpec::Replay(replay)];
    let second = Server::start(replayer).unwrap();
    let stats = second.stats().clone();
    wait_until("the replay", || {
        stats.sequencer.ticks.load(Relaxed) >= records as u64
    });
    let mut names = Vec::new();
    second.symbols().names_since(0, &mut names);
    assert_eq!(names.len(), 20);
    for (id, name) in names.iter().enumerate() {
        let latest = second.lvc().latest(id as u32);
        let last = latest.in_seq_order().max_by_key(|t| t.seq).unwrap();
        assert_eq!(last.body.values(), last_values[&name.to_string()], "{name}");
    }
    second.shutdown();
    assert_eq!(stats.sequencer.ticks.load(Relaxed), records as u64);
}

#[test]
fn a_full_disk_is_logged_counted_and_never_stalls_the_data_path() {
    let disk = Tmpfs::mount("recorder-full", 2);
    let dir = disk.0 .0.clone();
    let mut config = config(20, 40_000);
    config.record = Some(RecordConfig {
        dir: dir.clone(),
        rotate_mb: 1,
        // More than the disk holds: it fills up before `keep` frees anything.
        keep: 100,
        flush_interval_ms: 20,
        retry_interval_ms: 100,
        ..RecordConfig::default()
    });
    let server = start_server(config);
    let addr = server.local_addr();
    let stats = server.stats().clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = Client::connect(&format!("ws://{addr}/ws"), Options::symbols(["*"]))
            .await
            .unwrap();
        // Read ticks until the disk has been full for a while (three failed writes),
        // and then 20,000 more: the subscriber never waits for the disk.
        let (mut received, mut after_full) = (0u64, 0u64);
        let deadline = tokio::time::Instant::now() + WAIT;
        while stats.recorder.write_errors.load(Relaxed) < 3 || after_full < 20_000 {
            let event = tokio::time::timeout_at(deadline, client.next())
                .await
                .expect("ticks keep coming while the disk is full")
                .unwrap();
            match event {
                Event::Ticks(batch) => {
                    received += batch.len() as u64;
                    if stats.recorder.write_errors.load(Relaxed) > 0 {
                        after_full += batch.len() as u64;
                    }
                }
                Event::Gap(g) => panic!("gap while the disk is full: {g:?}"),
                _ => {}
            }
        }
        assert!(received > after_full);

        // Visible in /stats and /metrics.
        let (_, body) = http_get(addr, "/stats").await;
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        let r = &s["recorder"];
        assert!(r["write_errors"].as_u64().unwrap() >= 3, "{r}");
        let error = r["last_error"]["error"].as_str().unwrap();
        assert!(error.contains("No space left on device"), "{error}");
        let (_, metrics) = http_get(addr, "/metrics").await;
        let scrape =
            prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
        let value = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|x| x.metric == name)
                .map(|x| match x.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                    _ => -1.0,
                })
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert!(value("tickcast_recorder_write_errors_total") >= 3.0);
        assert!(value("tickcast_recorder_dropped_ticks_total") > 0.0);
        client.close().await.unwrap();
    });
    server.stop_feeds();
    server.shutdown();

    // Nothing silently lost: every sequenced tick is in a file, or counted as dropped
    // (while waiting to retry) or lost (written, then cut back after a failed write).
    let rec = &stats.recorder;
    let (ticks, dropped, lost) = (
        rec.ticks.load(Relaxed),
        rec.dropped_ticks.load(Relaxed),
        rec.lost_ticks.load(Relaxed),
    );
    assert_eq!(ticks + dropped + lost, stats.sequencer.ticks.load(Relaxed));
    assert!(ticks > 0 && dropped > 0, "{ticks} {dropped} {lost}");
    // Every file left ends on a whole entry and holds ticks; together they hold
    // what the counters say.
    let kept = files(&dir);
    assert!(!kept.is_empty());
    let recorded: usize = kept.iter().map(|f| read_file(f).len()).sum();
    assert!(kept.iter().all(|f| !read_file(f).is_empty()), "{kept:?}");
    assert_eq!(recorded as u64, ticks);
    let infos = capture_info(&kept);
    assert!(infos.iter().all(|i| i["fault"].is_null()));
}

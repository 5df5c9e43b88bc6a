//! Record and replay: a session recorded with the client into a capture file, replayed
//! into a second server by the replay feed, reaches that server's subscribers with the
//! same prices in the same order.

mod common;

use std::io::BufWriter;
use std::path::PathBuf;

use common::*;
use tickcast::capture::{CaptureHeader, CaptureReader, CaptureWriter, Entry, SymbolEntry};
use tickcast::client::{Client, Event, Options};
use tickcast::config::Config;
use tickcast::feed::replay::ReplayConfig;
use tickcast::feed::FeedSpec;
use tickcast::tick::Flags;

/// What the comparison looks at: symbol name, kind and the four values.
type Price = (String, u8, [i64; 4]);

/// Records `want` records of every symbol of `addr` into `path`, as `examples/record.rs`
/// does.
async fn record(addr: std::net::SocketAddr, path: &PathBuf, want: usize) {
    let file = std::fs::File::create(path).unwrap();
    let header = CaptureHeader {
        created_at_ns: tickcast::clock::now_ns(),
        symbols: Vec::new(),
        source: Some(format!("ws://{addr}/ws")),
    };
    let mut capture = CaptureWriter::new(BufWriter::new(file), &header).unwrap();
    let mut client = Client::connect(&format!("ws://{addr}/ws"), Options::symbols(["*"]))
        .await
        .unwrap();
    let mut records = 0;
    while records < want {
        let event = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("an event in time")
            .unwrap();
        match event {
            Event::Ticks(batch) => {
                capture.write_message(batch.as_bytes()).unwrap();
                records += batch.len();
            }
            Event::Symbols(map) => capture
                .write_symbols(
                    &map.into_iter()
                        .map(|(id, name)| SymbolEntry { id, name })
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
            Event::Gap(g) => panic!("gap while recording: {g:?}"),
            _ => {}
        }
    }
    capture.finish().unwrap();
    client.close().await.unwrap();
}

/// Every record of a capture, in file order, named through its symbol maps.
fn read_capture(path: &PathBuf) -> Vec<Price> {
    let mut reader = CaptureReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut names: std::collections::HashMap<u32, String> = reader
        .header()
        .symbols
        .iter()
        .map(|s| (s.id, s.name.clone()))
        .collect();
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        match entry {
            Entry::Symbols(map) => names.extend(map.into_iter().map(|s| (s.id, s.name))),
            Entry::Block(block) => {
                for t in block.records().map(|r| r.to_tick().unwrap()) {
                    out.push((
                        names[&t.symbol_id].clone(),
                        t.body.kind() as u8,
                        t.body.values(),
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn recorded_session_replays_into_another_server_in_the_same_order() {
    let path = std::env::temp_dir().join(format!(
        "tickcast-roundtrip-{}-{}.tcrec",
        std::process::id(),
        tickcast::clock::now_ns()
    ));
    // About two seconds of a 1,000 ticks/s feed.
    let source = start_server(config(5, 1_000));
    record(source.local_addr(), &path, 2_000).await;
    source.shutdown();
    let recorded = read_capture(&path);
    assert!(recorded.len() >= 2_000);
    assert!(tickcast::capture::is_capture(&path).unwrap());

    // The replay loops (at the recorded pace) until the subscriber has seen more than
    // one whole pass, so when it subscribes does not matter.
    let replay = start_server(Config {
        feeds: vec![FeedSpec::Replay(ReplayConfig {
            repeat: true,
            ..ReplayConfig::new(&path)
        })],
        ..config(0, 0)
    });
    let mut client = Client::connect(
        &format!("ws://{}/ws", replay.local_addr()),
        Options::symbols(["*"]),
    )
    .await
    .unwrap();
    // Snapshots stand for ticks before the subscription; every record after them is
    // a replayed tick, in the sequencer's (that is, the file's) order, except that the
    // snapshot join leaves out a symbol's ticks the snapshot already stands for (its
    // per-symbol rule: nothing at or below the snapshot's sequence number). Those all
    // come before that symbol's first live record, so from the point where every
    // symbol has had its first live record (`joined`) on, the stream is a contiguous
    // window of the recording repeated; before it, a subsequence of it.
    let symbols: std::collections::HashSet<&str> =
        recorded.iter().map(|(name, _, _)| name.as_str()).collect();
    let mut snapshotted: std::collections::HashSet<String> = Default::default();
    let mut first_live: std::collections::HashMap<String, usize> = Default::default();
    let mut live: Vec<Price> = Vec::new();
    let joined = |first: &std::collections::HashMap<String, usize>| {
        (first.len() == symbols.len()).then(|| first.values().max().copied().unwrap_or(0))
    };
    while joined(&first_live).is_none_or(|j| live.len() < j + recorded.len() + 10) {
        let event = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("an event in time")
            .unwrap();
        match event {
            Event::Ticks(batch) => {
                for r in batch.records() {
                    let flags = Flags(r.flags);
                    assert!(!flags.contains(Flags::CONFLATED), "the subscriber keeps up");
                    let name = batch.symbol(r.symbol_id.to_native()).unwrap().to_string();
                    if flags.contains(Flags::SNAPSHOT) {
                        assert!(live.is_empty(), "snapshots come first");
                        snapshotted.insert(name);
                        continue;
                    }
                    first_live.entry(name.clone()).or_insert(live.len());
                    live.push((name, r.kind, r.values.map(|v| v.to_native())));
                }
            }
            Event::Gap(g) => panic!("gap in the replay: {g:?}"),
            Event::Conflation { .. } => panic!("the subscriber keeps up"),
            _ => {}
        }
    }
    client.close().await.unwrap();
    replay.shutdown();
    let _ = std::fs::remove_file(&path);

    // `live[joined..]` must be a window of the recording repeated: find where it starts.
    let joined = joined(&first_live).unwrap();
    let n = recorded.len();
    let tail = &live[joined..];
    let matches_at = |start: usize| (0..tail.len()).all(|i| tail[i] == recorded[(start + i) % n]);
    let starts: Vec<usize> = (0..n).filter(|&s| matches_at(s)).collect();
    // On a failure, where the best-matching start first differs.
    let agree = |start: usize| {
        (0..tail.len())
            .take_while(|&i| tail[i] == recorded[(start + i) % n])
            .count()
    };
    let best = (0..n).max_by_key(|&s| agree(s)).unwrap_or(0);
    let at = agree(best);
    let around =
        |v: &dyn Fn(usize) -> Price| (at.saturating_sub(2)..at + 3).map(v).collect::<Vec<_>>();
    assert!(
        !starts.is_empty(),
        "from the join on ({joined} records in), the replayed ticks are the recorded ones, in \
         order (best start {best} of {n} agrees for {at} of {} records; live around there: \
         {:?}; recorded: {:?})",
        tail.len(),
        around(&|i| tail.get(i).cloned().unwrap_or_default()),
        around(&|i| recorded[(best + i) % n].clone()),
    );
    // Before the join: the recording read backwards from there, leaving out only ticks
    // of symbols that had a snapshot, and fewer of them than a pass of the recording.
    let start = starts[0];
    let mut j = start + n;
    for (i, tick) in live[..joined].iter().enumerate().rev() {
        loop {
            assert!(
                j > start,
                "record {i} before the join is not in the recording's order: {tick:?}"
            );
            j -= 1;
            let candidate = &recorded[j % n];
            if candidate == tick {
                break;
            }
            assert!(
                snapshotted.contains(&candidate.0),
                "the join left out {candidate:?}, of a symbol without a snapshot"
            );
        }
    }
}

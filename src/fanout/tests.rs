//! Deterministic tests of the fan-out core: no sockets, no threads, no sleeps.
//!
//! [`Sim`] plays the I/O shell and the clients (the quinn-proto way: a virtual clock
//! that jumps to the core's next deadline): it publishes ticks through a real
//! sequencer into a real ring and cache, feeds the core masked client frames, and
//! "writes" each connection's bytes into a simulated peer whose socket takes only as
//! many bytes as the test allows, so a slow consumer is one that stops taking.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::core::{ConnId, Core, Mode, Settings};
use crate::config::Config;
use crate::feed::FeedTick;
use crate::lvc::LastValueCache;
use crate::ring::Ring;
use crate::sequencer::{Sequencer, SequencerStats};
use crate::stats::Stats;
use crate::symbol::{Symbol, SymbolTable};
use crate::tick::{Body, Flags, Tick};
use crate::wire::frame::{
    client_frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const MASK: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

/// What a simulated client received, frame by frame.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Json(Value),
    Ticks(Vec<Tick>),
    /// A binary message kept as bytes (echo connections).
    Bytes(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

/// A simulated client: its socket takes `window` more bytes (then blocks) and
/// everything it took is parsed into frames.
#[derive(Debug, Default)]
struct Peer {
    window: usize,
    /// Keep binary messages as bytes instead of decoding them as ticks.
    raw_binary: bool,
    raw: Vec<u8>,
    got: Vec<Got>,
    dropped: bool,
}

impl Peer {
    fn parse(&mut self) {
        loop {
            let b = &self.raw;
            if b.len() < 2 {
                return;
            }
            assert_eq!(b[0] & 0x80, 0x80, "server frames are final");
            assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
            let op = b[0] & 0x0f;
            let (len, at) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => return,
                n => (n as usize, 2),
            };
            if b.len() < at + len {
                return;
            }
            let payload = b[at..at + len].to_vec();
            self.raw.drain(..at + len);
            if op >= OP_CLOSE {
                assert!(
                    payload.len() <= 125,
                    "control frames carry at most 125 bytes"
                );
            }
            self.got.push(match op {
                OP_TEXT => Got::Json(serde_json::from_slice(&payload).expect("JSON text")),
                OP_BINARY if self.raw_binary => Got::Bytes(payload),
                OP_BINARY => {
                    let mut aligned = rkyv::util::AlignedVec::<8>::new();
                    aligned.extend_from_slice(&payload);
                    Got::Ticks(crate::wire::decode_message(&aligned).expect("binary").1)
                }
                OP_PING => Got::Ping(payload),
                OP_PONG => Got::Pong(payload),
                OP_CLOSE => Got::Close(
                    u16::from_be_bytes([payload[0], payload[1]]),
                    String::from_utf8(payload[2..].to_vec()).expect("UTF-8 reason"),
                ),
                other => panic!("unexpected opcode {other}"),
            });
        }
    }
}

struct Sim {
    now: u64,
    core: Core,
    seq: Sequencer,
    seq_stats: Arc<SequencerStats>,
    stats: Arc<Stats>,
    peers: HashMap<ConnId, Peer>,
}

fn sym(i: usize) -> Symbol {
    Symbol::new(&format!("S{i}")).unwrap()
}

fn trade(price: i64, size: i64) -> Body {
    Body::trade(price, size)
}

fn quote(bid: i64) -> Body {
    Body::Quote {
        bid_px: bid,
        bid_sz: 1,
        ask_px: bid + 1,
        ask_sz: 2,
    }
}

impl Sim {
    fn new(tune: impl FnOnce(&mut Config)) -> Sim {
        let mut config = Config {
            ring_capacity: 1024,
            max_symbols: 64,
            ..Config::default()
        };
        tune(&mut config);
        config.validate().expect("valid test config");
        let symbols = Arc::new(SymbolTable::new(config.max_symbols));
        let (lvc_writer, lvc) =
            LastValueCache::with_books(config.max_symbols, config.max_book_levels);
        let (publisher, ring) = Ring::new(config.ring_capacity);
        let seq_stats = Arc::new(SequencerStats::default());
        let stats = Arc::new(Stats::new(1, seq_stats.clone()));
        let mut seq = Sequencer::new(symbols.clone(), lvc_writer, publisher, seq_stats.clone());
        let now = 1_000 * SEC;
        for i in 0..4 {
            // Every symbol exists (and has a first quote) before anyone subscribes.
            seq.sequence(
                &FeedTick {
                    symbol: sym(i),
                    ts_event: now,
                    body: quote(100),
                },
                now,
            )
            .unwrap();
        }
        let core = Core::new(
            0,
            Settings::from_config(&config),
            symbols,
            lvc,
            ring,
            stats.clone(),
        );
        let mut sim = Sim {
            now,
            core,
            seq,
            seq_stats,
            stats,
            peers: HashMap::new(),
        };
        sim.pump();
        sim
    }

    fn connect(&mut self, mode: Mode) -> ConnId {
        let peer = "127.0.0.1:5000".parse().unwrap();
        let k = self.core.open(peer, mode, None, self.now);
        self.peers.insert(
            k,
            Peer {
                window: usize::MAX,
                raw_binary: mode == Mode::Echo,
                ..Peer::default()
            },
        );
        k
    }

    /// Sends raw client bytes.
    fn send_raw(&mut self, k: ConnId, bytes: &[u8]) {
        let mut input = bytes.to_vec();
        self.core.on_input(k, &mut input, self.now);
        self.flush();
    }

    fn send(&mut self, k: ConnId, v: Value) {
        self.send_raw(
            k,
            &client_frame(true, OP_TEXT, v.to_string().as_bytes(), MASK),
        );
    }

    fn subscribe(&mut self, k: ConnId, v: Value) {
        let mut msg = json!({"op": "subscribe", "format": "binary"});
        for (key, val) in v.as_object().unwrap() {
            msg[key] = val.clone();
        }
        self.send(k, msg);
    }

    fn publish(&mut self, i: usize, body: Body) -> Tick {
        self.seq
            .sequence(
                &FeedTick {
                    symbol: sym(i),
                    ts_event: self.now,
                    body,
                },
                self.now,
            )
            .unwrap()
            .expect("a trade or quote is always published")
    }

    /// Publishes a book change; `None` when the server's book did not change.
    fn publish_book(&mut self, i: usize, body: Body) -> Option<Tick> {
        let ft = FeedTick {
            symbol: sym(i),
            ts_event: self.now,
            body,
        };
        self.seq.sequence(&ft, self.now).unwrap()
    }

    fn pump(&mut self) {
        let upto = self.core.mark_ring();
        self.core.pump(upto, usize::MAX, self.now);
        self.flush();
        self.core.record_latency(self.now);
    }

    /// Writes every ready connection into its peer, as far as its window goes.
    fn flush(&mut self) {
        let now = self.now;
        while let Some(k) = self.core.next_ready() {
            self.write(k, now);
        }
        let mut wakes = Vec::new();
        self.core.take_wakes(&mut wakes);
        for k in wakes {
            self.settle(k);
        }
    }

    fn write(&mut self, k: ConnId, now: u64) {
        loop {
            let peer = self.peers.get_mut(&k).expect("a peer");
            let bytes = self.core.transmit(k, now);
            if bytes.is_empty() {
                self.core.on_flushed(k, now);
                if self.core.transmit(k, now).is_empty() {
                    return;
                }
                continue;
            }
            let n = bytes.len().min(peer.window);
            if n == 0 {
                self.core.on_blocked(k, now);
                return;
            }
            peer.raw.extend_from_slice(&bytes[..n]);
            peer.window -= n;
            peer.parse();
            self.core.on_written(k, n, now);
        }
    }

    /// Plays the session's reaction to a state change: drops dead connections,
    /// finishes closed ones once drained, feeds kept input.
    fn settle(&mut self, k: ConnId) {
        let Some(st) = self.core.io_state(k) else {
            return;
        };
        if st.dead || (st.closing && st.drained) {
            self.core.remove(k, self.now);
            if let Some(p) = self.peers.get_mut(&k) {
                p.dropped = true;
            }
        } else if st.backlog {
            self.core.resume_input(k, self.now);
            self.flush();
        }
    }

    /// The peer reads everything it was sent and keeps reading.
    fn read_all(&mut self, k: ConnId) {
        self.peers.get_mut(&k).unwrap().window = usize::MAX;
        self.core.on_writable(k);
        self.write(k, self.now);
        self.flush();
        self.settle(k);
    }

    /// The peer's socket takes `n` more bytes, then none.
    fn stall(&mut self, k: ConnId, n: usize) {
        self.peers.get_mut(&k).unwrap().window = n;
    }

    /// Runs the core's timers up to `t`, jumping from deadline to deadline.
    fn run_until(&mut self, t: u64) {
        while let Some(d) = self.core.next_deadline() {
            if d > t {
                break;
            }
            self.now = self.now.max(d);
            self.core.on_timer(self.now);
            self.flush();
        }
        self.now = self.now.max(t);
    }

    fn got(&mut self, k: ConnId) -> Vec<Got> {
        std::mem::take(&mut self.peers.get_mut(&k).unwrap().got)
    }

    fn ticks(got: &[Got]) -> Vec<Tick> {
        got.iter()
            .filter_map(|g| match g {
                Got::Ticks(t) => Some(t.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn json_of(got: &[Got], kind: &str) -> Vec<Value> {
        got.iter()
            .filter_map(|g| match g {
                Got::Json(v) if v["type"] == kind => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// Times the core was lapped by the ring.
    fn laps(&self) -> u64 {
        self.core
            .core_stats()
            .laps
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn queued(&self, k: ConnId) -> usize {
        self.core.conns[k].out.queued()
    }
}

#[test]
fn snapshot_then_live_with_no_gap_or_duplicate() {
    let mut sim = Sim::new(|_| {});
    sim.publish(0, trade(5, 1)); // seq 2, a trade before anyone subscribes
    sim.pump();
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"], "id": 1}));
    let got = sim.got(k);
    let ack = &Sim::json_of(&got, "subscribed")[0];
    assert_eq!(ack["id"], 1);
    assert_eq!(ack["symbols"], json!(["S0"]));
    assert_eq!(Sim::json_of(&got, "symbols")[0]["symbols"][0]["name"], "S0");
    let snap = Sim::ticks(&got);
    assert_eq!(snap.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(snap.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
    // A tick that was in the ring before the subscribe but not read by the core yet
    // is already in the snapshot: it must not come twice.
    sim.publish(0, quote(101)); // seq 3, unread
    let k2 = sim.connect(Mode::Subscriber);
    sim.subscribe(k2, json!({"symbols": ["S0"]}));
    sim.pump();
    for i in 0..10 {
        sim.publish(0, trade(10 + i, 1));
        sim.publish(1, trade(1, 1)); // another symbol: not delivered
        sim.pump();
    }
    let live: Vec<u64> = Sim::ticks(&sim.got(k)).iter().map(|t| t.seq).collect();
    assert_eq!(
        live,
        (3..=13).collect::<Vec<_>>(),
        "live after the snapshot"
    );
    let k2_ticks = Sim::ticks(&sim.got(k2));
    let seqs: Vec<u64> = k2_ticks.iter().map(|t| t.seq).collect();
    assert_eq!(
        seqs,
        (2..=13).collect::<Vec<_>>(),
        "snapshot 2, 3 then live 4.."
    );
    assert!(k2_ticks[..2]
        .iter()
        .all(|t| t.flags.contains(Flags::SNAPSHOT)));
    assert!(k2_ticks[2..].iter().all(|t| t.flags == Flags::empty()));
}

#[test]
fn a_core_with_nothing_to_deliver_is_woken_half_a_ring_later_and_loses_nothing() {
    // A 1,024-slot ring: an idle core asks to be woken 512 slots past its position.
    let mut sim = Sim::new(|_| {});
    let at = sim.core.wake_at();
    assert!(at > 0);
    let k = sim.connect(Mode::Subscriber);
    assert_eq!(
        sim.core.wake_at(),
        at,
        "a connection alone delivers nothing"
    );
    let mut s1 = Vec::new();
    for i in 0..512 {
        assert!(!sim.core.ring_due(at), "due after {i} of 512 slots");
        let t = sim.publish(i % 2, trade(i as i64, 1));
        if t.symbol_id == 1 {
            s1.push(t.seq);
        }
    }
    assert!(sim.core.ring_due(at));
    // Before the core has read any of that backlog: a plain subscriber and a resume
    // from the middle of it. The first subscribe reads the backlog (as a busy core
    // would have), then the core wants the next slot at once.
    sim.subscribe(k, json!({"symbols": ["S0"]}));
    assert_eq!(sim.core.wake_at(), 0);
    assert!(
        !sim.core.ring_due(0),
        "the backlog was read by the subscribe"
    );
    let snap = Sim::ticks(&sim.got(k));
    assert!(snap.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
    let from = s1[100];
    let r = sim.connect(Mode::Subscriber);
    sim.subscribe(r, json!({"symbols": ["S1"], "resume": {"S1": from}}));
    sim.pump();
    let live = sim.publish(0, trade(1, 1));
    sim.pump();
    // The subscriber: its snapshot, then only what came after it.
    let seqs: Vec<u64> = Sim::ticks(&sim.got(k)).iter().map(|t| t.seq).collect();
    assert_eq!(seqs, [live.seq]);
    assert_eq!(snap.last().unwrap().seq + 1, live.seq);
    // The resume: every S1 tick after its point, once, in order, replayed.
    let resumed = Sim::ticks(&sim.got(r));
    assert_eq!(resumed.iter().map(|t| t.seq).collect::<Vec<_>>(), s1[101..]);
    assert!(resumed.iter().all(|t| t.flags.contains(Flags::REPLAY)));
    // Nothing to deliver again once both leave.
    for c in [k, r] {
        sim.core
            .close(c, crate::wire::CloseCode::Normal, "", false, sim.now);
    }
    sim.flush();
    sim.core.take_closed();
    for c in [k, r] {
        sim.core.remove(c, sim.now);
    }
    assert!(sim.core.wake_at() > 0);
    // A wildcard subscription wants every slot, symbols to come included.
    let w = sim.connect(Mode::Subscriber);
    sim.subscribe(w, json!({"symbols": ["*"]}));
    assert_eq!(sim.core.wake_at(), 0);
    sim.send(w, json!({"op": "unsubscribe", "symbols": ["*"]}));
    assert!(sim.core.wake_at() > 0);
    sim.subscribe(w, json!({"symbols": ["*"]}));
    sim.core.remove(w, sim.now);
    assert!(sim.core.wake_at() > 0);
}

#[test]
fn a_pump_reads_only_what_was_published_before_its_mark() {
    let mut sim = Sim::new(|_| {});
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"]}));
    sim.pump();
    sim.got(k);
    sim.publish(0, trade(1, 1));
    let upto = sim.core.mark_ring();
    // Published after the mark (after the shell read its clock): not this pump's.
    let late = sim.publish(0, trade(2, 1));
    assert_eq!(sim.core.pump(upto, usize::MAX, sim.now), 1);
    sim.flush();
    let first: Vec<u64> = Sim::ticks(&sim.got(k)).iter().map(|t| t.seq).collect();
    assert_eq!(first, [late.seq - 1]);
    sim.pump();
    let second: Vec<u64> = Sim::ticks(&sim.got(k)).iter().map(|t| t.seq).collect();
    assert_eq!(second, [late.seq]);
}

#[test]
fn conflation_enters_and_leaves_at_the_water_marks() {
    let mut sim = Sim::new(|c| {
        c.high_water_bytes = 4 * 1024;
        c.low_water_bytes = 1024;
        c.max_queue_age_ms = 0;
    });
    let fast = sim.connect(Mode::Subscriber);
    let slow = sim.connect(Mode::Subscriber);
    sim.subscribe(fast, json!({"symbols": ["S0", "S1"]}));
    sim.subscribe(slow, json!({"symbols": ["S0", "S1"]}));
    sim.got(fast);
    sim.got(slow);
    sim.stall(slow, 0);
    let mut published = Vec::new();
    // Enough single-tick batches to pass 4 KiB of queue (each message is 90 bytes).
    for i in 0..200 {
        published.push(sim.publish(0, trade(100 + (i % 7), 1 + i % 3)));
        published.push(sim.publish(1, quote(50 + i)));
        sim.pump();
        assert!(
            sim.queued(slow) <= 4 * 1024 + 200,
            "the slow queue stays within its budget"
        );
    }
    let c = &sim.core.conns[slow];
    assert!(c.conflating, "over high water: conflating");
    assert!(c.conflated_updates > 0);
    // The fast one got everything, in order.
    let fast_ticks = Sim::ticks(&sim.got(fast));
    assert_eq!(fast_ticks.len(), published.len());
    // The slow one reads: below low water it gets the merged records and streams again.
    sim.read_all(slow);
    let got = sim.got(slow);
    let on = Sim::json_of(&got, "conflation");
    assert_eq!(on[0]["state"], "on");
    let off = on
        .iter()
        .find(|v| v["state"] == "off")
        .expect("conflation off");
    let merged = off["merged"].as_u64().unwrap();
    let ticks = Sim::ticks(&got);
    let conflated: Vec<&Tick> = ticks
        .iter()
        .filter(|t| t.flags.contains(Flags::CONFLATED))
        .collect();
    assert_eq!(conflated.len(), 2, "one trade aggregate, one latest quote");
    let total: u64 = ticks.iter().map(|t| u64::from(t.count)).sum();
    assert_eq!(total, published.len() as u64, "every update sent or merged");
    assert_eq!(
        conflated.iter().map(|t| u64::from(t.count)).sum::<u64>(),
        merged
    );
    let agg = conflated
        .iter()
        .find(|t| matches!(t.body, Body::Trade { .. }))
        .unwrap();
    let merged_trades: Vec<&Tick> = published
        .iter()
        .filter(|t| t.symbol_id == agg.symbol_id && t.seq > agg.seq - u64::from(agg.count))
        .collect();
    let Body::Trade {
        price,
        size,
        high,
        low,
    } = agg.body
    else {
        unreachable!()
    };
    assert_eq!(
        size,
        merged_trades
            .iter()
            .map(|t| t.body.values()[1])
            .sum::<i64>(),
        "volume aggregated"
    );
    assert_eq!(price, merged_trades.last().unwrap().body.values()[0]);
    assert_eq!(
        high,
        merged_trades
            .iter()
            .map(|t| t.body.values()[0])
            .max()
            .unwrap()
    );
    assert_eq!(
        low,
        merged_trades
            .iter()
            .map(|t| t.body.values()[0])
            .min()
            .unwrap()
    );
    let q = conflated
        .iter()
        .find(|t| matches!(t.body, Body::Quote { .. }))
        .unwrap();
    assert_eq!(q.body, published.last().unwrap().body, "the latest quote");
    assert!(!sim.core.conns[slow].conflating);
    // Streaming again, with no gap after the merged records.
    let after = sim.publish(0, trade(1, 1));
    sim.pump();
    let next = Sim::ticks(&sim.got(slow));
    assert_eq!(next.iter().map(|t| t.seq).collect::<Vec<_>>(), [after.seq]);
}

#[test]
fn max_rate_releases_exactly_on_the_interval() {
    let mut sim = Sim::new(|_| {});
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"], "max_rate": 4}));
    sim.got(k);
    let start = sim.now;
    let mut deliveries = Vec::new();
    let mut last = None;
    // A quote every millisecond for two seconds.
    for i in 0..2_000u64 {
        sim.run_until(start + i * MS);
        last = Some(sim.publish(0, quote(i as i64)));
        sim.pump();
        for t in Sim::ticks(&sim.got(k)) {
            deliveries.push((sim.now, t));
        }
    }
    sim.run_until(start + 3 * SEC);
    for t in Sim::ticks(&sim.got(k)) {
        deliveries.push((sim.now, t));
    }
    let times: Vec<u64> = deliveries.iter().map(|(t, _)| t - start).collect();
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 250 * MS, "{times:?}");
    }
    // The first goes at once; after that, one every 250 ms exactly (released by the
    // timer at the deadline, or by the next tick when it is due).
    assert_eq!(times[0], 0);
    assert_eq!(times[1], 250 * MS);
    assert_eq!(times[4], 1_000 * MS);
    let total: u64 = deliveries.iter().map(|(_, t)| u64::from(t.count)).sum();
    assert_eq!(total, 2_000, "every update sent or merged");
    assert_eq!(
        deliveries.last().unwrap().1.seq,
        last.unwrap().seq,
        "final value held"
    );
}

#[test]
fn queue_age_conflation() {
    let mut sim = Sim::new(|c| {
        c.max_queue_age_ms = 100;
    });
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"]}));
    sim.got(k);
    sim.stall(k, 0);
    sim.publish(0, quote(1));
    sim.pump();
    assert!(!sim.core.conns[k].conflating, "young queue");
    sim.run_until(sim.now + 101 * MS);
    sim.publish(0, quote(2));
    sim.pump();
    assert!(
        sim.core.conns[k].conflating,
        "oldest byte older than 100 ms"
    );
    assert!(sim.queued(k) < 1024, "conflating on age, not size");
}

#[test]
fn stalled_connection_is_evicted_with_4008_at_exactly_the_stall_timeout() {
    let mut sim = Sim::new(|c| {
        c.stall_timeout_ms = 10_000;
    });
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"]}));
    sim.got(k);
    sim.stall(k, 100); // takes part of the next message, then nothing
    let stalled_at = sim.now;
    for i in 0..5 {
        sim.publish(0, quote(i));
        sim.pump();
    }
    assert!(sim.core.io_state(k).unwrap().blocked);
    sim.run_until(stalled_at + 10_000 * MS - 1);
    assert!(!sim.core.conns[k].closing, "not a nanosecond early");
    sim.run_until(stalled_at + 10_000 * MS);
    assert!(sim.core.conns[k].closing, "evicted on the dot");
    assert_eq!(
        sim.core
            .core_stats()
            .evictions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Unsent frames were dropped: the close frame follows the part-written message.
    sim.read_all(k);
    let got = sim.got(k);
    assert_eq!(got.last(), Some(&Got::Close(4008, "slow consumer".into())));
    assert!(sim.peers[&k].dropped);
}

#[test]
fn pings_then_idle_timeout_closes_with_4010() {
    let mut sim = Sim::new(|c| {
        c.ping_interval_ms = 15_000;
        c.idle_timeout_ms = 45_000;
    });
    let opened = sim.now;
    let k = sim.connect(Mode::Subscriber);
    let live = sim.connect(Mode::Subscriber);
    sim.run_until(opened + 15_000 * MS);
    for c in [k, live] {
        let got = sim.got(c);
        assert!(
            matches!(got.as_slice(), [Got::Ping(_)]),
            "pinged at 15 s: {got:?}"
        );
    }
    // `live` answers; `k` never does.
    sim.send_raw(live, &client_frame(true, OP_PONG, b"", MASK));
    sim.run_until(opened + 45_000 * MS - 1);
    assert!(sim.core.io_state(k).is_some_and(|s| !s.dead));
    sim.run_until(opened + 45_000 * MS);
    assert!(sim.peers[&k].dropped, "freed at 45 s");
    assert!(!sim.peers[&live].dropped);
    assert_eq!(
        sim.stats
            .heartbeat_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn control_message_budget_drops_and_reports_once() {
    let mut sim = Sim::new(|c| {
        c.limits.control_messages_per_sec = 10;
        c.limits.control_burst = 5;
    });
    let k = sim.connect(Mode::Subscriber);
    for _ in 0..50 {
        sim.send(k, json!({"op": "unsubscribe", "symbols": ["S0"]}));
    }
    let got = sim.got(k);
    let acks = Sim::json_of(&got, "unsubscribed");
    let errors = Sim::json_of(&got, "error");
    assert_eq!(acks.len(), 5, "the burst");
    assert_eq!(errors.len(), 1, "one error for the run of dropped messages");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("rate limit"));
    // 100 ms later one more token: the next message is preceded by a count.
    sim.run_until(sim.now + 100 * MS);
    sim.send(k, json!({"op": "unsubscribe", "symbols": ["S0"]}));
    let got = sim.got(k);
    let errors = Sim::json_of(&got, "error");
    assert_eq!(errors[0]["dropped"], 45);
    assert_eq!(Sim::json_of(&got, "unsubscribed").len(), 1);
}

#[test]
fn resume_replays_from_the_ring_or_falls_back_to_a_snapshot() {
    let mut sim = Sim::new(|c| c.ring_capacity = 64);
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"]}));
    let last_seen = Sim::ticks(&sim.got(k)).last().unwrap().seq;
    // The client goes away; five ticks later it comes back.
    sim.core
        .close(k, crate::wire::CloseCode::Normal, "", false, sim.now);
    sim.flush();
    let missed: Vec<u64> = (0..5).map(|i| sim.publish(0, trade(i, 1)).seq).collect();
    sim.pump();
    let k2 = sim.connect(Mode::Subscriber);
    sim.subscribe(k2, json!({"symbols": ["S0"], "resume": {"S0": last_seen}}));
    let replay = Sim::ticks(&sim.got(k2));
    assert_eq!(replay.iter().map(|t| t.seq).collect::<Vec<_>>(), missed);
    assert!(replay.iter().all(|t| t.flags.contains(Flags::REPLAY)));
    // Gone for longer than the ring holds: a flagged snapshot instead.
    let before = missed[4];
    for i in 0..200 {
        sim.publish(1, trade(i, 1));
        if i % 50 == 0 {
            sim.publish(0, trade(i, 1));
        }
        sim.pump();
    }
    let k3 = sim.connect(Mode::Subscriber);
    sim.subscribe(k3, json!({"symbols": ["S0"], "resume": {"S0": before}}));
    let snap = Sim::ticks(&sim.got(k3));
    assert!(!snap.is_empty());
    assert!(snap.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
    // Numbers from another run (higher than anything here): a snapshot too.
    let k4 = sim.connect(Mode::Subscriber);
    sim.subscribe(k4, json!({"symbols": ["S0"], "resume": {"S0": 1_000_000}}));
    let snap = Sim::ticks(&sim.got(k4));
    assert!(snap.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
    assert_eq!(
        snap.last().unwrap().seq,
        sim.publish(0, trade(0, 1)).seq - 1
    );
}

/// The resume counters of core 0: waited, caught up, timed out.
fn resume_counters(sim: &Sim) -> (u64, u64, u64) {
    let c = &sim.stats.cores[0];
    (
        c.resumes_waited.load(std::sync::atomic::Ordering::Relaxed),
        c.resumes_caught_up
            .load(std::sync::atomic::Ordering::Relaxed),
        c.resumes_timed_out
            .load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// A client comes from an edge that is ahead of this one (edges follow the leader a
/// few milliseconds apart): its resume waits for this edge to read its point, then
/// goes on live, with no snapshot and no gap.
#[test]
fn a_resume_ahead_of_a_lagging_edge_waits_then_goes_on() {
    let mut sim = Sim::new(|c| {
        c.role = crate::bus::Role::Edge;
        c.resume_wait_ms = 500;
    });
    let here = sim.publish(0, trade(1, 1)).seq;
    sim.pump();
    // The other edge had already sent the client two more.
    let from = here + 2;
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"], "resume": {"S0": from}}));
    let got = sim.got(k);
    assert_eq!(Sim::json_of(&got, "subscribed").len(), 1);
    assert!(Sim::ticks(&got).is_empty(), "no snapshot: it waits");
    assert_eq!(resume_counters(&sim), (1, 0, 0));
    // 100 ms later this edge receives them, and more.
    sim.run_until(sim.now + 100 * MS);
    assert!(sim.got(k).is_empty());
    let more: Vec<u64> = (0..4).map(|i| sim.publish(0, trade(i, 1)).seq).collect();
    sim.pump();
    let ticks = Sim::ticks(&sim.got(k));
    assert_eq!(
        ticks.iter().map(|t| t.seq).collect::<Vec<_>>(),
        more[2..],
        "what the client had is skipped, the rest follows"
    );
    assert!(ticks.iter().all(|t| t.flags == Flags::empty()));
    assert_eq!(resume_counters(&sim), (1, 1, 0));
    // The end of the wait does nothing more.
    sim.run_until(sim.now + SEC);
    assert!(sim.got(k).is_empty());
}

/// A resume this edge does not reach within `resume_wait_ms` (the client's numbers
/// come from another run) gets the latest values flagged snapshot at the bound, then
/// live ticks; one that unsubscribes meanwhile gets nothing.
#[test]
fn a_resume_the_edge_never_reaches_gets_a_snapshot_at_the_bound() {
    let mut sim = Sim::new(|c| {
        c.role = crate::bus::Role::Edge;
        c.resume_wait_ms = 500;
    });
    let k = sim.connect(Mode::Subscriber);
    let gone = sim.connect(Mode::Subscriber);
    let start = sim.now;
    sim.subscribe(k, json!({"symbols": ["S0"], "resume": {"S0": 1_000_000}}));
    sim.subscribe(
        gone,
        json!({"symbols": ["S1"], "resume": {"S1": 1_000_000}}),
    );
    sim.send(gone, json!({"op": "unsubscribe", "symbols": ["S1"]}));
    sim.got(gone);
    // Ticks arrive, all below the client's point: nothing goes out yet.
    sim.publish(0, trade(7, 1));
    let latest = sim.publish(0, trade(8, 1));
    sim.pump();
    sim.run_until(start + 499 * MS);
    assert!(Sim::ticks(&sim.got(k)).is_empty());
    sim.run_until(start + 500 * MS);
    let snap = Sim::ticks(&sim.got(k));
    assert_eq!(snap.last().map(|t| t.seq), Some(latest.seq));
    assert!(snap.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
    assert_eq!(resume_counters(&sim), (2, 0, 1));
    assert!(sim.got(gone).is_empty(), "the unsubscribed one got nothing");
    let next = sim.publish(0, trade(9, 1));
    sim.pump();
    assert_eq!(Sim::ticks(&sim.got(k)), vec![next], "then live");
}

/// A standalone node numbers its own ticks: a resume above them is from another run
/// and gets its snapshot at once.
#[test]
fn a_standalone_node_never_waits() {
    let mut sim = Sim::new(|c| c.resume_wait_ms = 500);
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"], "resume": {"S0": 1_000_000}}));
    let snap = Sim::ticks(&sim.got(k));
    assert!(!snap.is_empty() && snap.iter().all(|t| t.flags.contains(Flags::SNAPSHOT)));
    assert_eq!(resume_counters(&sim), (0, 0, 0));
}

/// A client that floods pings and never reads: its pongs are coalesced, its control
/// output stays under the bound, its input stops being read, and it is evicted at the
/// stall timeout; the other subscriber never notices.
#[test]
fn ping_flood_without_reading_is_bounded_then_evicted() {
    let mut sim = Sim::new(|c| {
        c.stall_timeout_ms = 10_000;
        c.limits.max_input_bytes_per_sec = 1 << 40;
    });
    let hostile = sim.connect(Mode::Subscriber);
    let good = sim.connect(Mode::Subscriber);
    sim.subscribe(good, json!({"symbols": ["S0"]}));
    sim.got(good);
    sim.stall(hostile, 0);
    let ping = client_frame(true, OP_PING, &[7; 125], MASK);
    let mut burst = Vec::new();
    for _ in 0..500 {
        burst.extend_from_slice(&ping);
    }
    let start = sim.now;
    let limit = sim.core.settings.max_pending_control_bytes;
    for round in 0..2_000 {
        sim.now = start + round * MS;
        if sim.core.io_state(hostile).is_some_and(|s| s.read) {
            sim.send_raw(hostile, &burst); // 64 KiB of pings per read
        }
        sim.publish(0, quote(round as i64));
        sim.pump();
        assert!(
            sim.core.conns[hostile].out.queued() <= limit + 127,
            "round {round}: control output stays bounded"
        );
    }
    let st = sim.core.io_state(hostile).unwrap();
    assert!(!st.read, "its input is no longer read");
    assert!(
        sim.core.conns[hostile].backlog.len() <= burst.len(),
        "at most one read kept"
    );
    let good_ticks = Sim::ticks(&sim.got(good));
    assert_eq!(
        good_ticks.len(),
        2_000,
        "the other subscriber got every tick"
    );
    sim.run_until(start + 10_000 * MS);
    assert!(
        sim.core.conns[hostile].closing,
        "evicted at the stall timeout"
    );
}

#[test]
fn invalid_message_flood_earns_bounded_replies() {
    // Input throttling is off the table here (its own test below): the replies alone
    // must stay bounded.
    let mut sim = Sim::new(|c| c.limits.max_input_bytes_per_sec = 1 << 40);
    let k = sim.connect(Mode::Subscriber);
    sim.stall(k, 0);
    let bad = client_frame(true, OP_TEXT, b"x", MASK);
    let mut burst = Vec::new();
    for _ in 0..10_000 {
        burst.extend_from_slice(&bad);
    }
    // A million bad messages at one instant: the burst of 100 is answered, then one
    // error says the rest are dropped.
    for _ in 0..100 {
        assert!(sim.core.io_state(k).is_some_and(|s| s.read));
        sim.send_raw(k, &burst);
    }
    let out = sim.core.conns[k].out.queued();
    assert!(out <= 16 * 1024, "{out} bytes of replies queued");
    assert_eq!(
        sim.stats
            .control_rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        1_000_000 - 100
    );
    // Over ten seconds of flooding the replies grow by the budget's rate at most, and
    // reading stops once they pass the bound.
    let start = sim.now;
    for i in 1..=1_000 {
        sim.now = start + i * 10 * MS;
        if sim.core.io_state(k).is_some_and(|s| s.read) {
            sim.send_raw(k, &burst);
        }
        assert!(sim.core.conns[k].out.queued() <= 16 * 1024 + 200);
    }
    assert!(
        !sim.core.io_state(k).unwrap().read,
        "paused: TCP pushes back"
    );
    sim.read_all(k);
    let got = sim.got(k);
    let errors = Sim::json_of(&got, "error");
    assert!(
        errors.len() <= 100 + 1 + 500 + 500,
        "{} error replies",
        errors.len()
    );
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert!(errors[100]["message"]
        .as_str()
        .unwrap()
        .contains("rate limit"));
}

#[test]
fn fragments_are_limited_by_the_whole_message() {
    let mut sim = Sim::new(|c| c.max_control_message_bytes = 65_536);
    // 80 KB in two 40 KB fragments: 1009 as soon as the second header shows it.
    let k = sim.connect(Mode::Subscriber);
    let mut wire = client_frame(false, OP_TEXT, &[b' '; 40_000], MASK);
    wire.extend(client_frame(true, OP_CONTINUATION, &[b' '; 40_000], MASK));
    sim.send_raw(k, &wire[..40_020]); // the first fragment and the second's header
    let got = sim.got(k);
    assert_eq!(
        got.last(),
        Some(&Got::Close(
            1009,
            "message too big (limit 65536 bytes)".into()
        ))
    );
    // Endless small fragments: the same, once the total passes the limit.
    let k = sim.connect(Mode::Subscriber);
    sim.send_raw(k, &client_frame(false, OP_TEXT, b"[", MASK));
    let mut sent = 1;
    while sim.core.io_state(k).is_some_and(|s| !s.closing) {
        sim.send_raw(
            k,
            &client_frame(false, OP_CONTINUATION, &[b' '; 1000], MASK),
        );
        sent += 1000;
        assert!(sent < 70_000);
    }
    assert!(matches!(sim.got(k).last(), Some(Got::Close(1009, _))));
    // Exactly at the limit is accepted (and answered: it is not a control message).
    let k = sim.connect(Mode::Subscriber);
    let mut text = vec![b' '; 65_536];
    text[0] = b'{';
    text[65_535] = b'}';
    sim.send_raw(k, &client_frame(true, OP_TEXT, &text, MASK));
    let got = sim.got(k);
    assert!(Sim::json_of(&got, "error")[0]["message"]
        .as_str()
        .unwrap()
        .contains("missing \"op\""));
    assert!(!got.iter().any(|g| matches!(g, Got::Close(..))));
}

#[test]
fn rfc_6455_breaches_close_with_the_right_code() {
    let mut sim = Sim::new(|_| {});
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x81, 0x01, b'a'], 1002), // unmasked
        (client_frame(true, 0x3, b"", MASK), 1002),
        (client_frame(true, OP_PING, &[0; 126], MASK), 1002),
        (client_frame(true, OP_TEXT, &[0xc3, 0x28], MASK), 1007),
        (
            client_frame(true, OP_CLOSE, &999u16.to_be_bytes(), MASK),
            1002,
        ),
    ];
    for (i, (wire, code)) in cases.into_iter().enumerate() {
        let k = sim.connect(Mode::Subscriber);
        sim.send_raw(k, &wire);
        let got = sim.got(k);
        assert!(
            matches!(got.last(), Some(Got::Close(c, _)) if *c == code),
            "case {i}: {got:?}"
        );
        assert!(sim.peers[&k].dropped || sim.core.conns[k].closing);
    }
    // A close with a 123-byte reason is answered with a close of at most 125 bytes
    // (the peer's parser checks it), echoing the code.
    let k = sim.connect(Mode::Subscriber);
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'r'; 123]);
    sim.send_raw(k, &client_frame(true, OP_CLOSE, &payload, MASK));
    assert_eq!(sim.got(k).last(), Some(&Got::Close(4000, String::new())));
    // A long server-side reason is cut to fit.
    let k = sim.connect(Mode::Subscriber);
    let long = "é".repeat(100);
    sim.core
        .close(k, crate::wire::CloseCode::Policy, &long, false, sim.now);
    sim.flush();
    match sim.got(k).last() {
        Some(Got::Close(1008, r)) => assert_eq!(r.len(), 122),
        other => panic!("{other:?}"),
    }
}

#[test]
fn echo_mode_sends_every_message_back() {
    let mut sim = Sim::new(|c| c.max_control_message_bytes = 65_536);
    let k = sim.connect(Mode::Echo);
    sim.send_raw(k, &client_frame(true, OP_TEXT, b"{\"a\":1}", MASK));
    let mut frag = client_frame(false, OP_BINARY, &[1; 30_000], MASK);
    frag.extend(client_frame(true, OP_CONTINUATION, &[1; 35_536], MASK));
    sim.send_raw(k, &frag);
    let got = sim.got(k);
    assert_eq!(
        got,
        vec![Got::Json(json!({"a": 1})), Got::Bytes(vec![1; 65_536])],
        "both messages back, the fragmented one whole"
    );
}

/// A ping read between the fragments of a message is answered before the message's
/// reply (Autobahn 5.6), even when both arrive in one read; pings in a row still get
/// one pong, for the latest.
#[test]
fn a_ping_is_answered_before_the_message_that_follows_it() {
    let mut sim = Sim::new(|_| {});
    let k = sim.connect(Mode::Echo);
    let mut wire = client_frame(false, OP_TEXT, br#"{"a""#, MASK);
    wire.extend(client_frame(true, OP_PING, b"1", MASK));
    wire.extend(client_frame(true, OP_PING, b"2", MASK));
    wire.extend(client_frame(true, OP_CONTINUATION, b":1}", MASK));
    wire.extend(client_frame(true, OP_PING, b"3", MASK));
    sim.send_raw(k, &wire);
    assert_eq!(
        sim.got(k),
        vec![
            Got::Pong(b"2".to_vec()),
            Got::Json(json!({"a": 1})),
            Got::Pong(b"3".to_vec()),
        ]
    );
}

/// A client's own 1001 (going away) is echoed like any code: it is not the server
/// shutting down, so no shutdown notice precedes it. The server's shutdown still
/// sends the notice, then 1001.
#[test]
fn a_client_going_away_gets_no_shutdown_notice() {
    let mut sim = Sim::new(|_| {});
    let k = sim.connect(Mode::Subscriber);
    sim.send_raw(
        k,
        &client_frame(true, OP_CLOSE, &1001u16.to_be_bytes(), MASK),
    );
    assert_eq!(sim.got(k), vec![Got::Close(1001, String::new())]);
    let k = sim.connect(Mode::Subscriber);
    sim.core.shutdown(sim.now);
    sim.flush();
    let got = sim.got(k);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        Got::Json(json!({"type": "shutdown", "message": "server shutting down"}))
    );
    assert_eq!(got[1], Got::Close(1001, "server shutting down".into()));
}

#[test]
fn idle_connection_holds_no_buffers() {
    let mut sim = Sim::new(|_| {});
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["*"]}));
    sim.got(k);
    for i in 0..100 {
        for s in 0..4 {
            sim.publish(s, trade(i, 1));
        }
        sim.pump();
    }
    let c = &sim.core.conns[k];
    assert!(c.out.is_empty());
    assert!(c.out.capacity() <= super::outbox::KEEP_CAPACITY);
    assert_eq!(c.frames.heap_bytes(), 0);
    assert_eq!(c.backlog.capacity(), 0);
}

/// A client that sends faster than `max_input_bytes_per_sec` is not read until its
/// budget refills: what it can make the core parse is bounded by the rate.
#[test]
fn input_over_its_byte_budget_is_throttled() {
    let mut sim = Sim::new(|c| {
        c.limits.max_input_bytes_per_sec = 100_000;
        c.max_control_message_bytes = 1024;
    });
    let k = sim.connect(Mode::Subscriber);
    let pong = client_frame(true, OP_PONG, &[0; 100], MASK);
    let mut chunk = Vec::new();
    while chunk.len() < 10_000 {
        chunk.extend_from_slice(&pong);
    }
    let start = sim.now;
    let mut read = 0usize;
    // Ten seconds in which the client would send 64 MB: it gets read at the rate.
    while sim.now < start + 10 * SEC {
        if sim.core.io_state(k).unwrap().read {
            sim.send_raw(k, &chunk);
            read += chunk.len();
        }
        sim.run_until(sim.now + MS);
    }
    // The burst (100 kB) plus 100 kB/s, give or take one chunk.
    assert!(
        read <= 100_000 + 10 * 100_000 + chunk.len(),
        "{read} bytes read"
    );
    assert!(read >= 10 * 100_000 - chunk.len(), "{read} bytes read");
    assert!(
        sim.core
            .core_stats()
            .input_throttled
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

/// The per-connection state is small (it is most of what an idle connection costs).
#[test]
fn per_connection_state_stays_small() {
    let conn = std::mem::size_of::<super::core::Conn>();
    let sub = std::mem::size_of::<super::subscriptions::Sub>();
    eprintln!("Conn {conn} bytes, Sub {sub} bytes");
    assert!(conn <= 640, "Conn is {conn} bytes");
    assert!(sub <= 64, "Sub is {sub} bytes");
}

// ---- order books -----------------------------------------------------------------

fn book(side: crate::book::Side, price: i64, size: i64) -> Body {
    Body::book(side, price, size)
}

/// Every book a symbol went through, by book sequence number, rebuilt from the ring
/// by a reader of its own: what a subscriber's book must equal after a message.
struct BookOracle {
    reader: crate::ring::Reader,
    books: HashMap<u32, crate::book::Book>,
    history: HashMap<(u32, u64), crate::book::Book>,
}

impl BookOracle {
    fn new(sim: &Sim) -> BookOracle {
        BookOracle {
            reader: sim.core.ring.reader(),
            books: HashMap::new(),
            history: HashMap::new(),
        }
    }

    fn catch_up(&mut self) {
        while let crate::ring::Read::Tick(t) = self.reader.read() {
            if let Body::Book {
                side, price, size, ..
            } = t.body
            {
                let b = self.books.entry(t.symbol_id).or_default();
                b.apply(side, price, size);
                self.history.insert((t.symbol_id, t.seq), b.clone());
            }
        }
    }

    fn at(&self, symbol: u32, seq: u64) -> crate::book::Book {
        self.history
            .get(&(symbol, seq))
            .cloned()
            .unwrap_or_else(|| {
                assert_eq!(seq, 0, "no book {seq} of symbol {symbol}");
                crate::book::Book::unbounded()
            })
    }
}

/// What the simulated clients rebuilt, and what they saw on the way.
#[derive(Default)]
struct BookClients {
    trackers: HashMap<(ConnId, u32), crate::client::BookTracker>,
    messages: u64,
    conflated: u64,
    snapshots: u64,
}

impl BookClients {
    /// Applies every book record `k` received; after each complete message, the
    /// client's book must be the server's as of that message's sequence number.
    fn take(&mut self, sim: &mut Sim, oracle: &BookOracle, k: ConnId) {
        for t in Sim::ticks(&sim.got(k)) {
            if t.body.kind() != crate::tick::Kind::Book {
                continue;
            }
            let tracker = self.trackers.entry((k, t.symbol_id)).or_default();
            let done = tracker
                .on_record(&t)
                .unwrap_or_else(|g| panic!("conn {k}: book gap {g:?} at {}", t.describe()));
            if let Some(seq) = done {
                self.messages += 1;
                self.conflated += u64::from(t.flags.contains(Flags::CONFLATED));
                self.snapshots += u64::from(t.flags.contains(Flags::SNAPSHOT));
                let want = oracle.at(t.symbol_id, seq);
                assert_eq!(
                    (tracker.book().bids(), tracker.book().asks()),
                    (want.bids(), want.asks()),
                    "conn {k}, symbol {}, book seq {seq}",
                    t.symbol_id
                );
            }
        }
    }
}

#[test]
fn a_book_subscription_starts_with_a_snapshot_then_changes() {
    use crate::book::Side::{Ask, Bid};
    let mut sim = Sim::new(|c| c.max_book_levels = 2);
    sim.publish(0, book(Bid, 100, 1));
    sim.publish(0, book(Ask, 101, 2));
    sim.publish(0, trade(5, 1));
    sim.pump();
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"], "channels": ["book"]}));
    let got = sim.got(k);
    assert_eq!(
        Sim::json_of(&got, "subscribed")[0]["channels"],
        json!(["book"])
    );
    let snap = Sim::ticks(&got);
    assert_eq!(
        snap.len(),
        2,
        "one record per level, no trade or quote: {snap:?}"
    );
    for (i, t) in snap.iter().enumerate() {
        assert_eq!((t.seq, t.flags), (2, Flags::SNAPSHOT));
        assert!(matches!(t.body, Body::Book { group, .. } if group == (2, i as u32)));
    }
    // Live: each change numbered one above the last; a better bid at a full side
    // pushes the worst out, published as its removal.
    sim.publish(0, book(Bid, 99, 3));
    sim.publish(0, book(Bid, 102, 4)); // evicts 99
    assert_eq!(
        sim.publish_book(0, book(Bid, 50, 1)),
        None,
        "worse than a full side: dropped"
    );
    sim.publish(0, quote(100));
    sim.pump();
    let live: Vec<(u64, Body)> = Sim::ticks(&sim.got(k))
        .iter()
        .map(|t| (t.seq, t.body))
        .collect();
    let change = |side, price, size, new_level| Body::Book {
        side,
        price,
        size,
        new_level,
        group: (1, 0),
    };
    assert_eq!(
        live,
        [
            (3, change(Bid, 99, 3, true)),
            (4, change(Bid, 102, 4, true)),
            (5, change(Bid, 99, 0, false)),
        ]
    );
    let b = sim.core.lvc.book(0);
    assert_eq!(
        (b.seq, b.bids.as_slice(), b.asks.as_slice()),
        (5, &[(102, 4), (100, 1)][..], &[(101, 2)][..])
    );
    let s = &sim.seq_stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((n(&s.book_evicted), n(&s.book_dropped)), (1, 1));

    // JSON: the same book as one object per message, prices and sizes as decimals.
    let j = sim.connect(Mode::Subscriber);
    sim.subscribe(
        j,
        json!({"symbols": ["S0"], "channels": ["book", "quote"], "format": "json"}),
    );
    sim.publish(0, book(Ask, 101, 0));
    sim.pump();
    let got = sim.got(j);
    let data: Vec<Value> = got
        .iter()
        .filter_map(|g| match g {
            Got::Json(Value::Array(a)) => Some(a.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let books: Vec<&Value> = data.iter().filter(|v| v["type"] == "book").collect();
    assert_eq!(
        *books[0],
        json!({"type": "book", "symbol": "S0", "seq": 5, "ts_event": sim.now, "ts_recv": sim.now,
               "flags": ["snapshot"], "count": 1,
               "bids": [["0.00000102", "0.00000004"], ["0.000001", "0.00000001"]],
               "asks": [["0.00000101", "0.00000002"]]})
    );
    assert_eq!(books[1]["seq"], 6);
    assert_eq!(books[1]["asks"], json!([["0.00000101", "0"]]));
    assert_eq!(books[1]["bids"], json!([]));
    assert_eq!(
        data.iter().filter(|v| v["kind"] == "quote").count(),
        1,
        "the quote snapshot"
    );
}

#[test]
fn a_book_resume_replays_from_the_ring_else_sends_a_snapshot() {
    use crate::book::Side::Bid;
    let mut sim = Sim::new(|c| c.ring_capacity = 64);
    for p in 0..5 {
        sim.publish(0, book(Bid, 100 + p, 1));
    }
    sim.pump();
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(
        k,
        json!({"symbols": ["S0"], "channels": ["book"], "resume_book": {"S0": 3}}),
    );
    let replay = Sim::ticks(&sim.got(k));
    assert_eq!(replay.iter().map(|t| t.seq).collect::<Vec<_>>(), [4, 5]);
    assert!(replay.iter().all(|t| t.flags == Flags::REPLAY));
    // Far behind: the ring no longer has the changes after 3: a snapshot.
    for p in 0..100 {
        sim.publish(0, book(Bid, 200 + p % 7, 1 + p));
    }
    sim.pump();
    let k2 = sim.connect(Mode::Subscriber);
    sim.subscribe(
        k2,
        json!({"symbols": ["S0"], "channels": ["book"], "resume_book": {"S0": 3}}),
    );
    let snap = Sim::ticks(&sim.got(k2));
    assert!(snap.iter().all(|t| t.flags == Flags::SNAPSHOT), "{snap:?}");
    assert_eq!(snap[0].seq, sim.core.lvc.book(0).seq);
}

/// The property of book conflation, in simulated time: random book changes (and
/// trades and quotes) on two symbols, subscribers that stall at random, one at a
/// `max_rate`, one that joins late; after every book message each subscriber
/// rebuilt, its book equals the server's as of that message's sequence number, and
/// the numbers account for every change (`count`), never a gap. At the end, every
/// book equals the server's current one.
#[test]
fn conflated_books_rebuild_the_servers_book_after_every_message() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let (mut messages, mut conflated, mut snapshots) = (0, 0, 0);
    for seed in 0..24u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut sim = Sim::new(|c| {
            c.high_water_bytes = 2048;
            c.low_water_bytes = 512;
            c.max_queue_age_ms = 0;
            c.max_book_levels = 6;
            c.stall_timeout_ms = 3_600_000;
            c.idle_timeout_ms = 3_600_000;
        });
        let mut oracle = BookOracle::new(&sim);
        let mut clients = BookClients::default();
        let fast = sim.connect(Mode::Subscriber);
        let slow = sim.connect(Mode::Subscriber);
        let rated = sim.connect(Mode::Subscriber);
        let all = json!(["trade", "quote", "book"]);
        sim.subscribe(fast, json!({"symbols": ["S0", "S1"], "channels": ["book"]}));
        sim.subscribe(slow, json!({"symbols": ["S0", "S1"], "channels": all}));
        sim.subscribe(
            rated,
            json!({"symbols": ["S0", "S1"], "channels": ["book"], "max_rate": 40}),
        );
        let mut conns = vec![fast, slow, rated];
        let mut late = None;
        for step in 0..1_500 {
            let r = rng.random_range(0..100);
            match r {
                0..55 => {
                    let s = rng.random_range(0..2);
                    let side = if rng.random_bool(0.5) {
                        crate::book::Side::Bid
                    } else {
                        crate::book::Side::Ask
                    };
                    let price = rng.random_range(90..110);
                    let size = if rng.random_bool(0.35) {
                        0
                    } else {
                        rng.random_range(1..5)
                    };
                    sim.publish_book(s, book(side, price, size));
                }
                55..60 => {
                    sim.publish(rng.random_range(0..2), trade(rng.random_range(1..9), 1));
                }
                60..75 => sim.pump(),
                75..83 => sim.stall(slow, rng.random_range(0..3_000)),
                83..90 => sim.read_all(slow),
                90..97 => sim.run_until(sim.now + rng.random_range(1..40) * MS),
                _ => {
                    if late.is_none() && step > 300 {
                        let k = sim.connect(Mode::Subscriber);
                        sim.subscribe(k, json!({"symbols": ["S1"], "channels": ["book"]}));
                        late = Some(k);
                        conns.push(k);
                    }
                }
            }
            oracle.catch_up();
            for &k in &conns {
                clients.take(&mut sim, &oracle, k);
            }
        }
        // The feed stops; every client reads everything; the timers release the rest.
        sim.pump();
        sim.read_all(slow);
        sim.run_until(sim.now + 10 * SEC);
        oracle.catch_up();
        for &k in &conns {
            clients.take(&mut sim, &oracle, k);
        }
        for (&(k, symbol), tracker) in &clients.trackers {
            let server = sim.core.lvc.book(symbol);
            assert_eq!(
                tracker.seq(),
                server.seq,
                "seed {seed} conn {k} symbol {symbol}"
            );
            assert_eq!(
                (tracker.book().bids(), tracker.book().asks()),
                (server.bids.as_slice(), server.asks.as_slice()),
                "seed {seed} conn {k} symbol {symbol}"
            );
        }
        assert_eq!(
            clients.trackers.len(),
            7,
            "seed {seed}: 3 × 2 symbols and the late one"
        );
        messages += clients.messages;
        conflated += clients.conflated;
        snapshots += clients.snapshots;
    }
    // The runs went through every path: merged changes and snapshots past the bound.
    eprintln!("{messages} book messages, {conflated} conflated, {snapshots} snapshots");
    assert!(conflated > 100, "{conflated} conflated messages");
    assert!(snapshots > 24 * 7, "snapshots past the first: {snapshots}");
}

/// A core lapped by the ring while a `max_rate` subscription holds merged book
/// changes: the snapshot replaces them, and nothing older follows it.
#[test]
fn a_lap_while_a_quote_is_held_back_sends_it_before_the_snapshot() {
    let mut sim = Sim::new(|c| c.ring_capacity = 64);
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(k, json!({"symbols": ["S0"], "max_rate": 1}));
    sim.publish(0, quote(101));
    sim.pump(); // sent: the first after the snapshot
    let held = sim.publish(0, quote(102));
    sim.pump(); // held back by the rate
    let mut got = Sim::ticks(&sim.got(k));
    assert!(got.iter().all(|t| t.seq < held.seq), "held back");
    // Lapped: more than the ring holds, S0 among them, before the core reads again.
    for i in 0..200 {
        sim.publish(1, trade(i, 1));
        if i % 40 == 0 {
            sim.publish(0, quote(103 + i));
        }
    }
    sim.pump();
    assert!(sim.laps() > 0, "the core was lapped");
    sim.run_until(sim.now + 5 * SEC);
    sim.publish(0, trade(7, 1));
    sim.pump();
    sim.run_until(sim.now + 5 * SEC);
    got.extend(Sim::ticks(&sim.got(k)));
    assert!(
        got.iter().any(|t| t.flags.contains(Flags::SNAPSHOT)),
        "a snapshot after the lap"
    );
    let seqs: Vec<u64> = got.iter().map(|t| t.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "numbers only go up: {seqs:?}"
    );
    assert!(
        seqs.contains(&held.seq),
        "the held-back quote was sent: {seqs:?}"
    );
    // The client ends with the server's latest quote and trade.
    let latest = sim.core.lvc.latest(0);
    let last_quote = got
        .iter()
        .rev()
        .find(|t| t.body.kind() == crate::tick::Kind::Quote)
        .unwrap();
    let server_quote = latest.quote.unwrap();
    assert_eq!(
        (last_quote.seq, last_quote.body),
        (server_quote.seq, server_quote.body)
    );
    assert_eq!(got.last().unwrap().seq, latest.seq());
}

#[test]
fn a_lap_while_book_changes_are_held_back_sends_a_snapshot_and_drops_them() {
    use crate::book::Side::Bid;
    let mut sim = Sim::new(|c| c.ring_capacity = 64);
    let mut oracle = BookOracle::new(&sim);
    let mut clients = BookClients::default();
    let k = sim.connect(Mode::Subscriber);
    sim.subscribe(
        k,
        json!({"symbols": ["S0"], "channels": ["book"], "max_rate": 1}),
    );
    sim.publish_book(0, book(Bid, 100, 1));
    sim.pump(); // sent: the first after the snapshot
    sim.publish_book(0, book(Bid, 101, 1));
    sim.pump(); // held back by the rate
    oracle.catch_up();
    clients.take(&mut sim, &oracle, k);
    for p in 0..200 {
        sim.publish_book(0, book(Bid, 102 + p % 9, 1 + p));
    }
    sim.pump();
    assert!(sim.laps() > 0, "the core was lapped");
    sim.run_until(sim.now + 5 * SEC);
    let got = Sim::ticks(&sim.got(k));
    assert!(
        got.iter().any(|t| t.flags.contains(Flags::SNAPSHOT)),
        "a snapshot after the lap"
    );
    let mut tracker = clients.trackers.remove(&(k, 0)).unwrap();
    for t in got
        .iter()
        .filter(|t| t.body.kind() == crate::tick::Kind::Book)
    {
        tracker
            .on_record(t)
            .unwrap_or_else(|g| panic!("gap {g:?} at {}", t.describe()));
    }
    let server = sim.core.lvc.book(0);
    assert_eq!(tracker.seq(), server.seq);
    assert_eq!(tracker.book().bids(), server.bids.as_slice());
}

#[test]
fn ready_connections_are_written_oldest_first_and_a_tick_is_timed_once_all_of_them_are() {
    let mut sim = Sim::new(|_| {});
    let a = sim.connect(Mode::Subscriber);
    sim.subscribe(a, json!({"symbols": ["S1"]}));
    let mut s1 = Vec::new();
    for _ in 0..3 {
        let k = sim.connect(Mode::Subscriber);
        sim.subscribe(k, json!({"symbols": ["S0"]}));
        s1.push(k);
    }
    sim.got(a);
    for &k in &s1 {
        sim.got(k);
    }
    let before = sim.core.latency.len();
    // One tick for `a`, then one for the three others; nothing written yet.
    sim.publish(1, trade(1, 1));
    sim.now += 1_000;
    let upto = sim.core.mark_ring();
    sim.core.pump(upto, usize::MAX, sim.now);
    sim.publish(0, trade(2, 1));
    sim.now += 1_000;
    let upto = sim.core.mark_ring();
    sim.core.pump(upto, usize::MAX, sim.now);
    assert!(sim.core.has_ready());
    // The first listed comes out first.
    let first = sim.core.next_ready().unwrap();
    assert_eq!(first, a);
    sim.write(first, sim.now);
    // S1's tick is out everywhere and timed; S0's waits for its three connections.
    sim.core.record_latency(sim.now);
    assert_eq!(sim.core.latency.len(), before + 1);
    for &k in &s1[..2] {
        assert_eq!(sim.core.next_ready(), Some(k));
        sim.write(k, sim.now);
    }
    sim.core.record_latency(sim.now);
    assert_eq!(sim.core.latency.len(), before + 1);
    assert_eq!(sim.core.next_ready(), Some(s1[2]));
    sim.write(s1[2], sim.now);
    sim.core.record_latency(sim.now);
    assert_eq!(sim.core.latency.len(), before + 2);
    assert!(!sim.core.has_ready());
    // Each got its one tick.
    assert_eq!(Sim::ticks(&sim.got(a)).len(), 1);
    for &k in &s1 {
        assert_eq!(Sim::ticks(&sim.got(k)).len(), 1);
    }
}

/// The shell over real sockets: a turn writes at most [`WRITES_PER_TURN`] connections
/// and says more are left; the next turn writes the rest; a tick is timed once every
/// connection it went to was written.
#[tokio::test(flavor = "current_thread")]
async fn a_turn_writes_a_bounded_number_of_connections_then_the_rest() {
    use super::session::{Adopted, Shell, WRITES_PER_TURN};
    use std::rc::Rc;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            use std::sync::atomic::Ordering::Relaxed;
            let Sim {
                core,
                mut seq,
                now,
                stats,
                ..
            } = Sim::new(|_| {});
            // Counted in the core, then published to the stats now and then.
            let writes_of =
                |core: &Core| core.counters.writes + stats.cores[0].writes.load(Relaxed);
            let records_of =
                |core: &Core| core.counters.records_out + stats.cores[0].records_out.load(Relaxed);
            let shell = Rc::new(Shell::new(core, Arc::new(crate::park::Parker::default())));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let n = WRITES_PER_TURN + 44;
            let admission = crate::admission::Admission::new(n, n);
            let subscribe = client_frame(
                true,
                OP_TEXT,
                br#"{"op":"subscribe","symbols":["S0"],"format":"binary"}"#,
                MASK,
            );
            let mut clients = Vec::new();
            for _ in 0..n {
                let client = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (server, peer) = listener.accept().await.unwrap();
                shell.adopt(Adopted {
                    transport: crate::transport::Transport::Plain(server),
                    prefix: bytes::Bytes::from(subscribe.clone()),
                    peer,
                    permit: admission.admit(peer.ip()).unwrap(),
                    entitlements: None,
                    mode: Mode::Subscriber,
                });
                clients.push(client);
            }
            // Every subscribe was answered as it came (its connection written at once).
            assert_eq!(shell.core.borrow().connections(), n);
            while shell.write_some() {}
            let writes = writes_of(&shell.core.borrow());
            assert!(writes >= n as u64, "{writes} writes for {n} subscribes");
            let timed = shell.core.borrow().latency.len();
            let records = records_of(&shell.core.borrow());

            seq.sequence(
                &FeedTick {
                    symbol: sym(0),
                    ts_event: now,
                    body: trade(7, 1),
                },
                now,
            )
            .unwrap();
            {
                let mut core = shell.core.borrow_mut();
                let upto = core.mark_ring();
                assert_eq!(core.pump(upto, usize::MAX, now), 1);
            }
            assert!(shell.write_some(), "connections left after one turn");
            {
                let mut core = shell.core.borrow_mut();
                assert_eq!(writes_of(&core), writes + WRITES_PER_TURN as u64);
                core.record_latency(now);
                let not_yet = core.latency.len();
                assert_eq!(not_yet, timed, "not timed before all are written");
            }
            assert!(!shell.write_some());
            {
                let mut core = shell.core.borrow_mut();
                assert_eq!(writes_of(&core), writes + n as u64);
                assert_eq!(records_of(&core), records + n as u64);
                core.record_latency(now);
                assert_eq!(core.latency.len(), timed + 1);
            }
            // Every client has the tick, after its snapshot.
            for c in &mut clients {
                let mut all = Vec::new();
                let mut buf = [0u8; 4096];
                // Loopback has every written byte in the socket already.
                c.readable().await.unwrap();
                loop {
                    match c.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => all.extend_from_slice(&buf[..k]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                let mut peer = Peer {
                    raw: all,
                    ..Peer::default()
                };
                peer.parse();
                let last = Sim::ticks(&peer.got).pop().expect("ticks");
                assert_eq!(last.body, trade(7, 1));
            }
        })
        .await;
}

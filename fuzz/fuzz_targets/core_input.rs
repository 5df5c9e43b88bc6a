//! The whole fan-out core fed arbitrary client bytes: `fanout::Core` in simulated
//! time, one echo and one subscriber connection (the first byte says which gets the
//! input), the input cut into pieces with time passing, timers running and ticks
//! arriving between them, and a peer whose socket takes a fuzzed number of bytes per
//! step. Limits are small so that every bound is reached. Whatever the input, the
//! server's output must be well-formed RFC 6455 server frames (unmasked, no reserved
//! bits or opcodes, control frames of at most 125 bytes, text in UTF-8), nothing may
//! follow a close frame, and no connection is left blocked with nothing to write.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tickcast::config::Config;
use tickcast::fanout::{ConnId, Core, Mode, Settings};
use tickcast::feed::FeedTick;
use tickcast::lvc::LastValueCache;
use tickcast::ring::Ring;
use tickcast::sequencer::{Sequencer, SequencerStats};
use tickcast::stats::Stats;
use tickcast::symbol::{Symbol, SymbolTable};
use tickcast::tick::Body;

const MS: u64 = 1_000_000;

/// A client's view of what the server sent it.
#[derive(Default)]
struct Peer {
    raw: Vec<u8>,
    closed: bool,
}

impl Peer {
    /// Checks every whole frame received so far.
    fn check(&mut self) {
        loop {
            let b = &self.raw;
            if b.len() < 2 {
                return;
            }
            assert_eq!(b[0] & 0x70, 0, "reserved bits from the server");
            assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
            let (len, at) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() >= 10 => {
                    let l = u64::from_be_bytes(b[2..10].try_into().unwrap());
                    (usize::try_from(l).unwrap(), 10)
                }
                126 | 127 => return,
                n => (usize::from(n), 2),
            };
            if b.len() < at + len {
                return;
            }
            assert!(!self.closed, "a frame after the close frame");
            let opcode = b[0] & 0x0f;
            let payload = &b[at..at + len];
            assert!(b[0] & 0x80 != 0, "server messages are never fragmented");
            match opcode {
                0x1 => assert!(std::str::from_utf8(payload).is_ok(), "text is UTF-8"),
                0x2 => {}
                0x8 | 0x9 | 0xA => {
                    assert!(len <= 125, "control frame of {len} bytes");
                    if opcode == 0x8 {
                        assert!(len >= 2, "the server's close frames carry a code");
                        assert!(std::str::from_utf8(&payload[2..]).is_ok());
                        self.closed = true;
                    }
                }
                other => panic!("opcode {other:#x} from the server"),
            }
            self.raw.drain(..at + len);
        }
    }
}

struct Sim {
    now: u64,
    core: Core,
    seq: Sequencer,
    conns: Vec<(ConnId, Peer)>,
    /// Bytes the peers' sockets take per write.
    window: usize,
}

impl Sim {
    fn new(window: usize) -> Sim {
        let mut config = Config {
            ring_capacity: 64,
            max_symbols: 8,
            max_control_message_bytes: 256,
            high_water_bytes: 4096,
            low_water_bytes: 1024,
            ..Config::default()
        };
        config.limits.max_pending_control_bytes = 1024;
        config.limits.max_input_bytes_per_sec = 1024;
        config.limits.control_messages_per_sec = 5;
        config.limits.control_burst = 5;
        config.limits.max_subscriptions_per_connection = 4;
        config.validate().expect("valid config");
        let symbols = Arc::new(SymbolTable::new(config.max_symbols));
        let (lvc_writer, lvc) = LastValueCache::new(config.max_symbols);
        let (publisher, ring) = Ring::new(config.ring_capacity);
        let seq_stats = Arc::new(SequencerStats::default());
        let stats = Arc::new(Stats::new(1, seq_stats.clone()));
        let seq = Sequencer::new(symbols.clone(), lvc_writer, publisher, seq_stats);
        let core = Core::new(0, Settings::from_config(&config), symbols, lvc, ring, stats);
        let mut sim = Sim {
            now: 1_000_000 * MS,
            core,
            seq,
            conns: Vec::new(),
            window,
        };
        for i in 0..3 {
            sim.tick(i);
        }
        let peer = "127.0.0.1:5000".parse().unwrap();
        for mode in [Mode::Echo, Mode::Subscriber] {
            let k = sim.core.open(peer, mode, None, sim.now);
            sim.conns.push((k, Peer::default()));
        }
        sim
    }

    fn tick(&mut self, i: u64) {
        let symbol = Symbol::new(["S0", "S1", "S2"][(i % 3) as usize]).unwrap();
        let body = if i % 2 == 0 {
            Body::trade(100 + i as i64, 1)
        } else {
            Body::Quote {
                bid_px: 99,
                bid_sz: 1,
                ask_px: 101,
                ask_sz: 1,
            }
        };
        let ft = FeedTick {
            symbol,
            ts_event: self.now,
            body,
        };
        let _ = self.seq.sequence(&ft, self.now);
        let upto = self.core.mark_ring();
        self.core.pump(upto, usize::MAX, self.now);
        self.flush();
    }

    fn flush(&mut self) {
        let now = self.now;
        while let Some(k) = self.core.next_ready() {
            self.write(k, now);
        }
        let mut wakes = Vec::new();
        self.core.take_wakes(&mut wakes);
        for k in wakes {
            let Some(st) = self.core.io_state(k) else {
                continue;
            };
            if st.dead || (st.closing && st.drained) {
                self.core.remove(k, now);
            } else if st.backlog {
                self.core.resume_input(k, now);
                self.flush();
            }
        }
    }

    fn write(&mut self, k: ConnId, now: u64) {
        let Some(i) = self.conns.iter().position(|(c, _)| *c == k) else {
            return;
        };
        let mut budget = self.window;
        loop {
            let bytes = self.core.transmit(k, now);
            if bytes.is_empty() {
                self.core.on_flushed(k, now);
                if self.core.transmit(k, now).is_empty() {
                    return;
                }
                continue;
            }
            let n = bytes.len().min(budget);
            if n == 0 {
                self.core.on_blocked(k, now);
                return;
            }
            let peer = &mut self.conns[i].1;
            peer.raw.extend_from_slice(&bytes[..n]);
            peer.check();
            budget -= n;
            self.core.on_written(k, n, now);
        }
    }

    /// The peers read again: everything blocked is written.
    fn drain(&mut self) {
        let keys: Vec<ConnId> = self.conns.iter().map(|(k, _)| *k).collect();
        for k in keys {
            if self.core.io_state(k).is_some() {
                self.core.on_writable(k);
                self.write(k, self.now);
            }
        }
        self.flush();
    }

    fn advance(&mut self, by: u64) {
        let until = self.now + by;
        while let Some(d) = self.core.next_deadline() {
            if d > until {
                break;
            }
            self.now = self.now.max(d);
            self.core.on_timer(self.now);
            self.flush();
        }
        self.now = until;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let target = usize::from(data[0] & 1);
    let window = 1 + usize::from(data[1]) * 16;
    let mut seed = u32::from(data[2]) | 1;
    let input = &data[3..];
    let mut sim = Sim::new(window);
    let mut at = 0;
    let mut step = 0u64;
    while at < input.len() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let take = (1 + (seed % 512) as usize).min(input.len() - at);
        let mut piece = input[at..at + take].to_vec();
        at += take;
        let (k, _) = sim.conns[target];
        // The shell reads only while the core asks for input.
        if sim.core.io_state(k).is_some_and(|s| s.read) {
            sim.core.on_input(k, &mut piece, sim.now);
            sim.flush();
        }
        step += 1;
        match seed % 4 {
            0 => sim.tick(step),
            1 => sim.drain(),
            _ => {}
        }
        sim.advance(u64::from(seed % 50) * MS);
    }
    // At the end the peers read everything and time runs out: every connection
    // ends or is left in a consistent state.
    sim.drain();
    sim.advance(60_000 * MS);
    sim.drain();
    for (k, _) in &sim.conns {
        if let Some(st) = sim.core.io_state(*k) {
            assert!(!(st.blocked && st.drained), "blocked with nothing to write");
        }
    }
});

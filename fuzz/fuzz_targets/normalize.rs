//! The Binance and Coinbase normalizers (`feed::normalize::Normalizer`) on arbitrary
//! messages. The first byte picks the venue; the rest is split at newlines into a
//! stream of messages, as a capture or a live session delivers them, so that the
//! per-symbol state (duplicate and gap detection, the books and their snapshot joins)
//! is fuzzed too. Every message is
//! normalized or refused with a typed error; a trade or quote carries a tick named in
//! the venue's namespace, a gap counts forward.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::feed::normalize::{MessageKind, Normalizer, Venue};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let venue = if pick & 1 == 0 {
        Venue::Binance
    } else {
        Venue::Coinbase
    };
    let prefix = venue.default_prefix();
    let mut normalizer = Normalizer::new(venue, prefix, 64 * 1024);
    for (i, message) in rest.split(|&b| b == b'\n').enumerate() {
        match normalizer.normalize(message, 1_000 + i as u64) {
            Ok(n) => {
                match n.kind {
                    MessageKind::Trade | MessageKind::Quote => {
                        let tick = n.tick.expect("a trade or quote carries its tick");
                        assert!(tick.symbol.as_str().starts_with(prefix));
                    }
                    _ => assert!(n.tick.is_none()),
                }
                // Book messages: level changes of the venue's symbols, sizes 0 or more;
                // any other message none.
                for c in normalizer.book_changes() {
                    assert_eq!(n.kind, MessageKind::Book, "{c:?}");
                    assert!(c.symbol.as_str().starts_with(prefix));
                    match c.body {
                        tickcast::tick::Body::Book { size, .. } => assert!(size >= 0, "{c:?}"),
                        other => panic!("a book change that is not one: {other:?}"),
                    }
                }
                for s in normalizer.take_snapshot_requests() {
                    assert!(!s.is_empty());
                }
                if let Some(gap) = n.gap {
                    assert!(gap.got > gap.expected, "{gap:?}");
                }
            }
            Err(e) => {
                let _ = (e.label(), e.is_terminal(), e.to_string());
            }
        }
    }
});

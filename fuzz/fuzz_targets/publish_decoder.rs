//! `/publish` messages: `publish::Decoder` on arbitrary text and binary messages. A
//! message is all or nothing (an error leaves no tick behind), an accepted message
//! holds at least one tick (unless it is a book snapshot, which may change nothing),
//! and a binary message's ticks are exactly its records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::publish::Decoder;
use tickcast::symbol::{Symbol, SymbolTable};

thread_local! {
    static STATE: (std::cell::RefCell<Decoder>, SymbolTable) = {
        let table = SymbolTable::new(64);
        for name in ["SYM0", "SYM1", "BINANCE:BTCUSDT"] {
            table.intern(Symbol::new(name).unwrap()).unwrap();
        }
        (std::cell::RefCell::new(Decoder::new()), table)
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, message)) = data.split_first() else {
        return;
    };
    STATE.with(|(decoder, symbols)| {
        let mut decoder = decoder.borrow_mut();
        let mut out = Vec::new();
        let now = 1_795_312_649_479_377_653;
        let result = if mode & 1 == 0 {
            decoder.decode_text(message, now, &mut out)
        } else {
            let r = decoder.decode_binary(message, symbols, now, &mut out);
            if r.is_ok() {
                assert_eq!(16 + out.len() * 72, message.len());
            }
            r
        };
        match result {
            Ok(()) => assert!(
                !out.is_empty() || message.windows(8).any(|w| w == b"snapshot"),
                "an accepted message with no tick"
            ),
            Err(e) => {
                assert!(out.is_empty(), "all or nothing");
                let _ = e.to_string();
            }
        }
    });
});

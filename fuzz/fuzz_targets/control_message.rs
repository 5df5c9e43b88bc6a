//! Client control messages: `protocol::parse` on arbitrary bytes. It answers every
//! input with a message or an error that can be sent back, and what it accepts holds
//! what the protocol allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::protocol::{self, ClientMessage, Selection};

fuzz_target!(|data: &[u8]| {
    let (id, result) = protocol::parse(data);
    match result {
        Ok(ClientMessage::Subscribe {
            symbols, max_rate, ..
        }) => {
            if let Some(rate) = max_rate {
                assert!(
                    rate == 0.0 || (rate.is_finite() && rate >= protocol::MIN_MAX_RATE),
                    "max_rate {rate}"
                );
            }
            if let Selection::Names(names) = symbols {
                assert!(!names.is_empty());
            }
        }
        Ok(ClientMessage::Unsubscribe { symbols }) => {
            if let Selection::Names(names) = symbols {
                assert!(!names.is_empty());
            }
        }
        Err(e) => {
            // The reply is JSON and carries the client's id back.
            let reply = protocol::error_message(&e, id.as_ref());
            let v: serde_json::Value = serde_json::from_slice(&reply).expect("reply is JSON");
            assert_eq!(v["type"], "error");
            assert_eq!(v.get("id"), id.as_ref());
        }
    }
});

//! Capture files: `capture::CaptureReader` on arbitrary bytes. It reads or refuses
//! every input, and every block it hands out is consistent: its messages' record
//! counts add up to its records, and iterating it yields exactly them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::capture::{CaptureReader, Entry};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(std::io::Cursor::new(data)) else {
        return;
    };
    let _ = reader.header();
    // Every entry takes at least 8 bytes of the input, so this loop ends.
    for _ in 0..=data.len() / 8 {
        match reader.next_entry() {
            Ok(Some(Entry::Block(block))) => {
                let records = block.record_count();
                assert_eq!(block.records().count(), records);
                let messages = block.message_count();
                let mut seen_messages = 0;
                let mut seen_records = 0;
                for m in block {
                    seen_messages += 1;
                    seen_records += m.len();
                    assert_eq!(m.records().count(), m.len());
                    assert_eq!(m.to_bytes().len(), 16 + 72 * m.len());
                }
                assert_eq!((seen_messages, seen_records), (messages, records));
            }
            Ok(Some(Entry::Symbols(_))) => {}
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more entries than the input can hold");
});

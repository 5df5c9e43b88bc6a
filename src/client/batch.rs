//! `Batch`: one binary data message, kept whole in an aligned buffer and read in place.

use std::sync::Arc;

use rkyv::rancor::Failure;
use rkyv::util::AlignedVec;

use crate::tick::{Flags, Tick};
use crate::wire::{ArchivedWireRecord, DecodeError, MessageHeader, HEADER_SIZE, RECORD_SIZE};

/// Symbol id → name on one connection, shared by every batch it delivered.
pub type SymbolNames = Arc<Vec<Option<Arc<str>>>>;

/// One binary data message: its header and records, borrowed zero-copy from the
/// message buffer. Checked once when made; reading a record costs no copy and no
/// allocation.
///
/// ```
/// # fn show(batch: &tickcast::client::Batch) {
/// use tickcast::tick::Flags;
/// for rec in batch.records() {
///     let snapshot = Flags(rec.flags).contains(Flags::SNAPSHOT);
///     println!("{:?} #{} {} snapshot={snapshot}",
///         batch.symbol(rec.symbol_id.to_native()), rec.seq, rec.values[0]);
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Batch {
    /// The message as received, 8-byte aligned.
    buf: AlignedVec<8>,
    header: MessageHeader,
    names: SymbolNames,
}

impl Batch {
    /// Checks a message already in an aligned buffer and keeps it.
    pub fn new(buf: AlignedVec<8>, names: SymbolNames) -> Result<Batch, DecodeError> {
        let header = check(&buf)?;
        Ok(Batch { buf, header, names })
    }

    /// Copies `bytes` into an aligned buffer and checks it (no names).
    pub fn from_bytes(bytes: &[u8]) -> Result<Batch, DecodeError> {
        let mut buf = AlignedVec::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        Batch::new(buf, SymbolNames::default())
    }

    /// The message header (record count, `ts_out`).
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// Records in the message.
    pub fn len(&self) -> usize {
        self.header.record_count as usize
    }

    /// Whether the message holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records, in place.
    pub fn records(&self) -> Records<'_> {
        records_in(&self.buf)
    }

    /// The records decoded into owned [`Tick`]s (records of an unknown kind skipped).
    pub fn to_ticks(&self) -> Vec<Tick> {
        self.records().filter_map(|r| r.to_tick()).collect()
    }

    /// Whether any record carries `flag` (snapshot, conflated, replay).
    pub fn any_flagged(&self, flag: Flags) -> bool {
        self.records().any(|r| Flags(r.flags).contains(flag))
    }

    /// The message exactly as received (header and records).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The name of a symbol id, as the connection that delivered this batch mapped it.
    pub fn symbol(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize)?.as_deref()
    }

    /// Gives the buffer back, for reuse.
    pub fn into_buffer(self) -> AlignedVec<8> {
        self.buf
    }
}

/// Iterator over the records of a checked message, in place.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl<'a> Iterator for Records<'a> {
    type Item = &'a ArchivedWireRecord;

    fn next(&mut self) -> Option<&'a ArchivedWireRecord> {
        // Every bit pattern of the record's fields is valid and the chunk is aligned
        // and sized (checked in `check`), so access cannot fail: it costs the
        // alignment and length checks only.
        self.chunks
            .by_ref()
            .find_map(|c| rkyv::access::<ArchivedWireRecord, Failure>(c).ok())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

/// The records of `msg` (an aligned message that passed [`check`]), in place.
pub fn records_in(msg: &[u8]) -> Records<'_> {
    records_of(msg.get(HEADER_SIZE..).unwrap_or(&[]))
}

/// The records of `body`, records back to back (a whole number of them, 8-byte
/// aligned), in place: the records of a capture block.
pub fn records_of(body: &[u8]) -> Records<'_> {
    Records {
        chunks: body.chunks_exact(RECORD_SIZE),
    }
}

/// Checks a binary message: aligned, a version-1 header, a length that matches the
/// record count. Records need no further check: every byte pattern is a valid record.
pub fn check(msg: &[u8]) -> Result<MessageHeader, DecodeError> {
    crate::wire::check_message(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Body;
    use crate::wire::{encode_header, encode_record};

    fn message(n: u32) -> Vec<u8> {
        let mut msg = vec![0u8; HEADER_SIZE];
        let mut h = [0u8; HEADER_SIZE];
        encode_header(n, 5, &mut h);
        msg.copy_from_slice(&h);
        for i in 0..n {
            let t = Tick {
                symbol_id: i % 3,
                seq: u64::from(i) + 1,
                ts_event: 1,
                ts_recv: 2,
                flags: Flags::empty(),
                count: 1,
                body: Body::trade(100 + i64::from(i), 1),
            };
            let mut r = [0u8; RECORD_SIZE];
            encode_record(&t, &mut r);
            msg.extend_from_slice(&r);
        }
        msg
    }

    #[test]
    fn reads_in_place_and_matches_owned_decode() {
        let msg = message(5);
        let b = Batch::from_bytes(&msg).unwrap();
        assert_eq!(b.len(), 5);
        assert_eq!(b.header().ts_out, 5);
        let seqs: Vec<u64> = b.records().map(|r| r.seq.to_native()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(
            b.to_ticks(),
            crate::wire::decode_message(b.as_bytes()).unwrap().1
        );
        assert_eq!(b.as_bytes(), &msg[..]);
        assert_eq!(b.symbol(0), None);
        assert!(!b.any_flagged(Flags::SNAPSHOT));
    }

    #[test]
    fn bad_messages_are_errors() {
        let msg = message(2);
        for cut in 0..msg.len() {
            assert!(Batch::from_bytes(&msg[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = msg.clone();
        v2[0] = 2;
        assert!(matches!(
            Batch::from_bytes(&v2),
            Err(DecodeError::Version(2))
        ));
        let mut size = msg.clone();
        size[2] = 80;
        assert!(matches!(
            Batch::from_bytes(&size),
            Err(DecodeError::Version(1))
        ));
        let mut extra = msg.clone();
        extra.push(0);
        assert!(Batch::from_bytes(&extra).is_err());
        // Misaligned input to `check` is refused, not read.
        let mut aligned = AlignedVec::<8>::new();
        aligned.extend_from_slice(&[0u8; 1]);
        aligned.extend_from_slice(&msg);
        assert!(check(&aligned[1..]).is_err());
    }
}

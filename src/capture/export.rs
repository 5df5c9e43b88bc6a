//! Captures out to other tools: CSV, JSON lines, Parquet, and human-readable lines
//! (`tickcast capture export` and `cat`).
//!
//! [`export`] walks a capture entry by entry ([`CaptureReader`], one block in memory at
//! a time) and hands every record that passes the [`Filter`] to a [`RowWriter`] as a
//! [`Row`]. Every format has the same columns, in this order (`docs/protocol.md`,
//! "Exporting captures"):
//!
//! `ts_event, ts_recv, ts_out, symbol, symbol_id, seq, kind, flags, count, price, size,
//! high, low, bid_px, bid_sz, ask_px, ask_sz`
//!
//! Prices and sizes stay exact: decimal strings in CSV and JSON lines (`64231.57`),
//! `Decimal128(19, 8)` in Parquet (the fixed-point integer itself with its scale 8; 19
//! digits hold every `i64`); a trade's row leaves the quote columns empty and the
//! other way round. Timestamps are integers of ns since the Unix epoch in CSV and JSON
//! lines, UTC nanosecond timestamps in Parquet.
//!
//! A fault in the capture (a file cut short, a bad block) ends the walk: what was
//! read before it is written, and the [`Summary`] carries the error, with its offset,
//! so the caller can finish the output and say so.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::Arc;

use arrow_array::builder::{
    Decimal128Builder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
    UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use thiserror::Error;

use super::{CaptureError, CaptureReader, Entry};
use crate::fixed;
use crate::tick::{Body, Flags, Kind, Tick};

/// The columns of every export format, in order.
pub const COLUMNS: [&str; 17] = [
    "ts_event",
    "ts_recv",
    "ts_out",
    "symbol",
    "symbol_id",
    "seq",
    "kind",
    "flags",
    "count",
    "price",
    "size",
    "high",
    "low",
    "bid_px",
    "bid_sz",
    "ask_px",
    "ask_sz",
];

/// Precision of the Parquet decimal columns: 19 digits hold every `i64`.
pub const DECIMAL_PRECISION: u8 = 19;

/// Rows per Parquet record batch handed to the writer.
const PARQUET_BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group: the writer holds one row group, encoded, in memory.
pub const PARQUET_ROW_GROUP_ROWS: usize = 128 * 1024;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet, Snappy-compressed, row groups of [`PARQUET_ROW_GROUP_ROWS`].
    Parquet,
    /// Human-readable lines (`tickcast capture cat`).
    Text,
}

/// Why an export failed: its output could not be written. (Faults in the capture are
/// not errors of the export: see [`Summary::fault`].)
#[derive(Debug, Error)]
pub enum ExportError {
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Io(#[from] io::Error),
    /// The Parquet writer refused the data.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] ParquetError),
    /// Arrow refused a batch (a bug: the schema is fixed).
    #[error("building Arrow arrays: {0}")]
    Arrow(#[from] ArrowError),
    /// A timestamp past what a signed nanosecond timestamp holds (year 2262).
    #[error(
        "record at byte {offset}: {field} {value} is past the range of a nanosecond timestamp"
    )]
    Timestamp {
        /// Offset of the record's block entry in the capture.
        offset: u64,
        /// Which timestamp.
        field: &'static str,
        /// Its value, ns since the Unix epoch.
        value: u64,
    },
}

/// Which records to export. Times are `ts_event`, ns since the Unix epoch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these symbols (by name); `None`: every symbol.
    pub symbols: Option<HashSet<String>>,
    /// Only records with `ts_event >= start_ns`.
    pub start_ns: Option<u64>,
    /// Only records with `ts_event < end_ns`.
    pub end_ns: Option<u64>,
}

impl Filter {
    fn keeps(&self, symbol: Option<&str>, ts_event: u64) -> bool {
        self.start_ns.is_none_or(|s| ts_event >= s)
            && self.end_ns.is_none_or(|e| ts_event < e)
            && self
                .symbols
                .as_ref()
                .is_none_or(|set| symbol.is_some_and(|s| set.contains(s)))
    }
}

/// One record on its way out.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The symbol's name from the capture's maps; `None` for an id never named.
    pub symbol: Option<&'a str>,
    /// `ts_out` of the message the record came in.
    pub ts_out: u64,
    /// The record.
    pub tick: Tick,
    /// Offset of the record's block entry in the capture, for error messages.
    pub offset: u64,
}

/// Writes rows in one format.
pub trait RowWriter {
    /// Writes one row.
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), ExportError>;
    /// Writes what is buffered and the format's trailer (Parquet's footer), and
    /// flushes.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

/// A writer of `format` into `out`.
pub fn writer<W: Write + Send + 'static>(
    format: Format,
    out: W,
) -> Result<Box<dyn RowWriter>, ExportError> {
    Ok(match format {
        Format::Csv => Box::new(Csv::new(out)?),
        Format::Jsonl => Box::new(Jsonl {
            out,
            line: Vec::with_capacity(512),
        }),
        Format::Parquet => Box::new(Parquet::new(out)?),
        Format::Text => Box::new(Text {
            out,
            line: Vec::with_capacity(256),
        }),
    })
}

/// What an export did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rows written.
    pub rows: u64,
    /// Records read (written or filtered out).
    pub records: u64,
    /// Records of an unknown kind, skipped.
    pub unknown_kind: u64,
    /// Bytes of the capture read, up to the end of the last whole entry.
    pub bytes: u64,
    /// The fault that ended the walk before the end of the file, if any: everything
    /// before it was exported.
    pub fault: Option<CaptureError>,
}

/// An id → name map that grows with the capture's `symbols` entries.
#[derive(Debug, Default)]
pub struct Names {
    map: HashMap<u32, Arc<str>>,
}

impl Names {
    /// The map of a capture's header.
    pub fn from_header<R: Read>(reader: &CaptureReader<R>) -> Names {
        let mut names = Names::default();
        names.extend(&reader.header().symbols);
        names
    }

    /// Adds (or replaces) entries.
    pub fn extend(&mut self, entries: &[super::SymbolEntry]) {
        for s in entries {
            self.map.insert(s.id, Arc::from(s.name.as_str()));
        }
    }

    /// The name of `id`.
    pub fn get(&self, id: u32) -> Option<&str> {
        self.map.get(&id).map(|s| &**s)
    }

    /// Every id and name.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.map.iter().map(|(&id, name)| (id, &**name))
    }
}

/// Exports every record of `reader` that `filter` keeps into `out`, calling
/// `progress` with the bytes read so far after each entry. Returns what it did; a
/// fault in the capture ends the walk and is in [`Summary::fault`]. `out` is not
/// finished: call [`RowWriter::finish`].
pub fn export<R: Read>(
    reader: &mut CaptureReader<R>,
    filter: &Filter,
    out: &mut dyn RowWriter,
    mut progress: impl FnMut(u64),
) -> Result<Summary, ExportError> {
    let mut names = Names::from_header(reader);
    let mut summary = Summary {
        bytes: reader.offset(),
        ..Summary::default()
    };
    loop {
        let at = reader.offset();
        match reader.next_entry() {
            Ok(None) => break,
            Ok(Some(Entry::Symbols(map))) => names.extend(&map),
            Ok(Some(Entry::Block(block))) => {
                for message in block {
                    let ts_out = message.header.ts_out;
                    for rec in message.records() {
                        summary.records += 1;
                        let Some(tick) = rec.to_tick() else {
                            summary.unknown_kind += 1;
                            continue;
                        };
                        let symbol = names.get(tick.symbol_id);
                        if !filter.keeps(symbol, tick.ts_event) {
                            continue;
                        }
                        out.write_row(&Row {
                            symbol,
                            ts_out,
                            tick,
                            offset: at,
                        })?;
                        summary.rows += 1;
                    }
                }
            }
            Err(e) => {
                summary.fault = Some(e);
                break;
            }
        }
        summary.bytes = reader.offset();
        progress(summary.bytes);
    }
    Ok(summary)
}

/// The names of a kind's four values, in wire order.
fn value_names(kind: Kind) -> [&'static str; 4] {
    match kind {
        Kind::Trade => ["price", "size", "high", "low"],
        Kind::Quote => ["bid_px", "bid_sz", "ask_px", "ask_sz"],
        Kind::Book => ["price", "size", "side", "group"],
    }
}

/// Appends `name` as a JSON string (names from a hostile file may need escaping).
fn json_string(name: &str, out: &mut Vec<u8>) {
    if name
        .bytes()
        .all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, name);
    }
}

/// Appends `field` as a CSV field, quoted when it holds a comma, a quote or a line
/// break (RFC 4180).
fn csv_field(field: &str, out: &mut Vec<u8>) {
    if field
        .bytes()
        .any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for c in field.bytes() {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

struct Csv<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> Csv<W> {
    fn new(mut out: W) -> io::Result<Csv<W>> {
        out.write_all(COLUMNS.join(",").as_bytes())?;
        out.write_all(b"\n")?;
        Ok(Csv {
            out,
            line: Vec::with_capacity(256),
        })
    }
}

impl<W: Write> RowWriter for Csv<W> {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), ExportError> {
        let t = &row.tick;
        let l = &mut self.line;
        let mut n = itoa::Buffer::new();
        l.clear();
        for v in [t.ts_event, t.ts_recv, row.ts_out] {
            l.extend_from_slice(n.format(v).as_bytes());
            l.push(b',');
        }
        csv_field(row.symbol.unwrap_or(""), l);
        l.push(b',');
        l.extend_from_slice(n.format(t.symbol_id).as_bytes());
        l.push(b',');
        l.extend_from_slice(n.format(t.seq).as_bytes());
        l.push(b',');
        l.extend_from_slice(t.body.kind().name().as_bytes());
        l.push(b',');
        l.extend_from_slice(n.format(t.flags.0).as_bytes());
        l.push(b',');
        l.extend_from_slice(n.format(t.count).as_bytes());
        // Eight value columns: the trade's four, then the quote's four.
        let values = t.body.values();
        let trade = matches!(t.body, Body::Trade { .. });
        for column in 0..8 {
            l.push(b',');
            if (column < 4) == trade {
                fixed::write(values[column % 4], l);
            }
        }
        l.push(b'\n');
        self.out.write_all(l)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }
}

struct Jsonl<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> RowWriter for Jsonl<W> {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), ExportError> {
        let t = &row.tick;
        let l = &mut self.line;
        let mut n = itoa::Buffer::new();
        l.clear();
        for (name, v) in [
            ("{\"ts_event\":", t.ts_event),
            (",\"ts_recv\":", t.ts_recv),
            (",\"ts_out\":", row.ts_out),
        ] {
            l.extend_from_slice(name.as_bytes());
            l.extend_from_slice(n.format(v).as_bytes());
        }
        l.extend_from_slice(b",\"symbol\":");
        match row.symbol {
            Some(s) => json_string(s, l),
            None => l.extend_from_slice(b"null"),
        }
        for (name, v) in [
            (",\"symbol_id\":", u64::from(t.symbol_id)),
            (",\"seq\":", t.seq),
        ] {
            l.extend_from_slice(name.as_bytes());
            l.extend_from_slice(n.format(v).as_bytes());
        }
        l.extend_from_slice(b",\"kind\":\"");
        l.extend_from_slice(t.body.kind().name().as_bytes());
        l.extend_from_slice(b"\",\"flags\":");
        l.extend_from_slice(n.format(t.flags.0).as_bytes());
        l.extend_from_slice(b",\"count\":");
        l.extend_from_slice(n.format(t.count).as_bytes());
        for (name, v) in value_names(t.body.kind()).iter().zip(t.body.values()) {
            l.extend_from_slice(b",\"");
            l.extend_from_slice(name.as_bytes());
            l.extend_from_slice(b"\":\"");
            fixed::write(v, l);
            l.push(b'"');
        }
        l.extend_from_slice(b"}\n");
        self.out.write_all(l)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }
}

struct Text<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> RowWriter for Text<W> {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), ExportError> {
        use std::io::Write as _;
        let t = &row.tick;
        let l = &mut self.line;
        l.clear();
        l.extend_from_slice(format_ns(t.ts_event).as_bytes());
        let v = t.body.values().map(fixed::to_string);
        let body = match t.body.kind() {
            Kind::Trade => format!("trade {} x {}", v[0], v[1]),
            Kind::Quote => format!("quote {} x {} / {} x {}", v[0], v[1], v[2], v[3]),
            Kind::Book => match t.body {
                crate::tick::Body::Book { side, .. } => {
                    format!("book {side:?} {} x {}", v[0], v[1])
                }
                _ => String::new(),
            },
        };
        let name = row
            .symbol
            .map_or_else(|| format!("#{}", t.symbol_id), str::to_string);
        let _ = write!(l, " {name:<12} #{:<8} {body}", t.seq);
        let flags: Vec<&str> = Flags::NAMES
            .iter()
            .filter(|(f, _)| t.flags.contains(*f))
            .map(|(_, n)| *n)
            .collect();
        if !flags.is_empty() {
            let _ = write!(l, " [{}]", flags.join(","));
        }
        if t.count != 1 {
            let _ = write!(l, " count {}", t.count);
        }
        l.push(b'\n');
        self.out.write_all(l)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.out.flush()?;
        Ok(())
    }
}

/// `ts` (ns since the Unix epoch) as RFC 3339 UTC with nanoseconds.
pub fn format_ns(ts: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ts);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// The Parquet schema of an export.
pub fn parquet_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let dec = DataType::Decimal128(DECIMAL_PRECISION, fixed::DECIMALS as i8);
    let mut fields = vec![
        Field::new("ts_event", ts(), false),
        Field::new("ts_recv", ts(), false),
        Field::new("ts_out", ts(), false),
        Field::new("symbol", DataType::Utf8, true),
        Field::new("symbol_id", DataType::UInt32, false),
        Field::new("seq", DataType::UInt64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("flags", DataType::UInt8, false),
        Field::new("count", DataType::UInt32, false),
    ];
    for name in &COLUMNS[9..] {
        fields.push(Field::new(*name, dec.clone(), true));
    }
    Arc::new(Schema::new(fields))
}

/// Column builders of one Parquet record batch.
struct Columns {
    ts: [TimestampNanosecondBuilder; 3],
    symbol: StringBuilder,
    symbol_id: UInt32Builder,
    seq: UInt64Builder,
    kind: StringBuilder,
    flags: UInt8Builder,
    count: UInt32Builder,
    values: [Decimal128Builder; 8],
    rows: usize,
}

impl Columns {
    fn new() -> Result<Columns, ArrowError> {
        let n = PARQUET_BATCH_ROWS;
        let ts = || TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
        let dec = || {
            Decimal128Builder::with_capacity(n)
                .with_precision_and_scale(DECIMAL_PRECISION, fixed::DECIMALS as i8)
        };
        Ok(Columns {
            ts: [ts(), ts(), ts()],
            symbol: StringBuilder::with_capacity(n, n * 8),
            symbol_id: UInt32Builder::with_capacity(n),
            seq: UInt64Builder::with_capacity(n),
            kind: StringBuilder::with_capacity(n, n * 5),
            flags: UInt8Builder::with_capacity(n),
            count: UInt32Builder::with_capacity(n),
            values: [
                dec()?,
                dec()?,
                dec()?,
                dec()?,
                dec()?,
                dec()?,
                dec()?,
                dec()?,
            ],
            rows: 0,
        })
    }

    fn push(&mut self, row: &Row<'_>) -> Result<(), ExportError> {
        let t = &row.tick;
        for (b, (field, v)) in self.ts.iter_mut().zip([
            ("ts_event", t.ts_event),
            ("ts_recv", t.ts_recv),
            ("ts_out", row.ts_out),
        ]) {
            let v = i64::try_from(v).map_err(|_| ExportError::Timestamp {
                offset: row.offset,
                field,
                value: v,
            })?;
            b.append_value(v);
        }
        self.symbol.append_option(row.symbol);
        self.symbol_id.append_value(t.symbol_id);
        self.seq.append_value(t.seq);
        self.kind.append_value(t.body.kind().name());
        self.flags.append_value(t.flags.0);
        self.count.append_value(t.count);
        let values = t.body.values();
        let trade = matches!(t.body, Body::Trade { .. });
        for (column, b) in self.values.iter_mut().enumerate() {
            if (column < 4) == trade {
                b.append_value(i128::from(values[column % 4]));
            } else {
                b.append_null();
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The batch of the rows pushed since the last call (the builders start over).
    fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
        for b in &mut self.ts {
            columns.push(Arc::new(b.finish()));
        }
        columns.push(Arc::new(self.symbol.finish()));
        columns.push(Arc::new(self.symbol_id.finish()));
        columns.push(Arc::new(self.seq.finish()));
        columns.push(Arc::new(self.kind.finish()));
        columns.push(Arc::new(self.flags.finish()));
        columns.push(Arc::new(self.count.finish()));
        for b in &mut self.values {
            columns.push(Arc::new(b.finish()));
        }
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

struct Parquet<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    columns: Columns,
}

impl<W: Write + Send> Parquet<W> {
    fn new(out: W) -> Result<Parquet<W>, ExportError> {
        let schema = parquet_schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
            .set_created_by(format!("tickcast {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Parquet {
            writer: ArrowWriter::try_new(out, schema.clone(), Some(props))?,
            schema,
            columns: Columns::new()?,
        })
    }

    fn write_batch(&mut self) -> Result<(), ExportError> {
        if self.columns.rows > 0 {
            let batch = self.columns.batch(&self.schema)?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }
}

impl<W: Write + Send> RowWriter for Parquet<W> {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), ExportError> {
        self.columns.push(row)?;
        if self.columns.rows >= PARQUET_BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), ExportError> {
        self.write_batch()?;
        let mut out = self.writer.into_inner()?;
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureHeader, CaptureWriter, SymbolEntry};
    use crate::wire::{self, HEADER_SIZE, RECORD_SIZE};

    /// A message of `ticks`.
    fn message(ticks: &[Tick], ts_out: u64) -> Vec<u8> {
        let mut h = [0u8; HEADER_SIZE];
        wire::encode_header(ticks.len() as u32, ts_out, &mut h);
        let mut msg = h.to_vec();
        for t in ticks {
            let mut r = [0u8; RECORD_SIZE];
            wire::encode_record(t, &mut r);
            msg.extend_from_slice(&r);
        }
        msg
    }

    fn tick(symbol_id: u32, seq: u64, ts_event: u64, body: Body) -> Tick {
        Tick {
            symbol_id,
            seq,
            ts_event,
            ts_recv: ts_event.wrapping_add(5),
            flags: if seq == 1 {
                Flags::SNAPSHOT
            } else {
                Flags::empty()
            },
            count: 1,
            body,
        }
    }

    /// A trade of A, a quote of a symbol named `we"ird,` (quoting), a record of an
    /// unnamed id, then a map entry and a trade of B.
    fn sample() -> Vec<u8> {
        let header = CaptureHeader {
            created_at_ns: 1,
            symbols: vec![
                SymbolEntry {
                    id: 0,
                    name: "A".into(),
                },
                SymbolEntry {
                    id: 1,
                    name: "we\"ird,".into(),
                },
            ],
            source: None,
        };
        let mut w = CaptureWriter::new(Vec::new(), &header).unwrap();
        let quote = Body::Quote {
            bid_px: 99_950_000,
            bid_sz: 1,
            ask_px: -1,
            ask_sz: i64::MAX,
        };
        w.write_message(&message(
            &[
                tick(0, 1, 1_000, Body::trade(6_423_157_000_000, 150_000_000)),
                tick(1, 2, 2_000, quote),
                tick(7, 3, 3_000, Body::trade(1, 1)),
            ],
            10,
        ))
        .unwrap();
        w.write_symbols(&[SymbolEntry {
            id: 2,
            name: "B".into(),
        }])
        .unwrap();
        w.write_message(&message(&[tick(2, 4, 4_000, Body::trade(5, 6))], 11))
            .unwrap();
        w.finish().unwrap()
    }

    /// Exports `bytes` as `format` with `filter` into memory.
    fn run_bytes(bytes: &[u8], format: Format, filter: &Filter) -> (Vec<u8>, Summary) {
        /// A `Vec` the test keeps a handle to (the writer wants `'static`).
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let mut w = writer(format, out.clone()).unwrap();
        let mut reader = CaptureReader::new(bytes).unwrap();
        let summary = export(&mut reader, filter, &mut *w, |_| {}).unwrap();
        w.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        (bytes, summary)
    }

    fn run(bytes: &[u8], format: Format, filter: &Filter) -> (String, Summary) {
        let (out, summary) = run_bytes(bytes, format, filter);
        (String::from_utf8(out).unwrap(), summary)
    }

    #[test]
    fn csv_has_exact_prices_and_quotes_odd_names() {
        let (csv, summary) = run(&sample(), Format::Csv, &Filter::default());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "1000,1005,10,A,0,1,trade,1,1,64231.57,1.5,64231.57,64231.57,,,,"
        );
        assert_eq!(
            lines[2],
            "2000,2005,10,\"we\"\"ird,\",1,2,quote,0,1,,,,,0.9995,0.00000001,-0.00000001,92233720368.54775807"
        );
        assert_eq!(
            lines[3],
            "3000,3005,10,,7,3,trade,0,1,0.00000001,0.00000001,0.00000001,0.00000001,,,,"
        );
        assert_eq!(
            lines[4],
            "4000,4005,11,B,2,4,trade,0,1,0.00000005,0.00000006,0.00000005,0.00000005,,,,"
        );
        assert_eq!(lines.len(), 5);
        assert_eq!((summary.rows, summary.records), (4, 4));
        assert!(summary.fault.is_none());
    }

    #[test]
    fn jsonl_lines_are_json_with_string_prices() {
        let (jsonl, _) = run(&sample(), Format::Jsonl, &Filter::default());
        let rows: Vec<serde_json::Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["price"], "64231.57");
        assert_eq!(rows[0]["ts_out"], 10);
        assert_eq!(rows[1]["symbol"], "we\"ird,");
        assert_eq!(rows[1]["ask_sz"], "92233720368.54775807");
        assert!(rows[1].get("price").is_none());
        assert_eq!(rows[2]["symbol"], serde_json::Value::Null);
    }

    #[test]
    fn filters_by_symbol_and_time() {
        let filter = Filter {
            symbols: Some(["A".to_string(), "B".to_string()].into()),
            start_ns: Some(1_000),
            end_ns: Some(4_000),
        };
        let (csv, summary) = run(&sample(), Format::Csv, &filter);
        assert_eq!(csv.lines().count(), 2, "{csv}");
        assert!(csv.lines().nth(1).unwrap().contains(",A,"));
        assert_eq!((summary.rows, summary.records), (1, 4));
    }

    #[test]
    fn a_truncated_capture_exports_its_whole_entries_and_says_where_it_ends() {
        let bytes = sample();
        // Cut inside the last block: the first block and the map are whole.
        let (csv, summary) = run(&bytes[..bytes.len() - 3], Format::Csv, &Filter::default());
        assert_eq!(csv.lines().count(), 4);
        let Some(CaptureError::Entry { offset, message }) = &summary.fault else {
            panic!("{:?}", summary.fault)
        };
        assert!(message.contains("ends inside"), "{message}");
        assert_eq!(
            *offset, summary.bytes,
            "the fault is where the whole part ends"
        );
    }

    #[test]
    fn text_lines_read_like_print_ticks() {
        let (text, _) = run(&sample(), Format::Text, &Filter::default());
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "1970-01-01T00:00:00.000001000Z A            #1        trade 64231.57 x 1.5 [snapshot]"
        );
        assert!(text.lines().nth(2).unwrap().contains(" #7  "), "{text}");
    }

    #[test]
    fn parquet_holds_decimals_with_scale_8_and_utc_nanosecond_timestamps() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Decimal128Type, TimestampNanosecondType};
        use arrow_array::Array;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let (file, summary) = run_bytes(&sample(), Format::Parquet, &Filter::default());
        let file = bytes::Bytes::from(file);
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(total as u64, summary.rows);
        let b = &batches[0];
        assert_eq!(b.schema().fields().len(), COLUMNS.len());
        assert_eq!(
            b.schema().field(9).data_type(),
            &DataType::Decimal128(19, 8)
        );
        let price = b.column(9).as_primitive::<Decimal128Type>();
        assert_eq!(price.value(0), 6_423_157_000_000);
        assert_eq!(price.value_as_string(0), "64231.57000000");
        assert!(price.is_null(1), "a quote has no price");
        let ask_sz = b.column(16).as_primitive::<Decimal128Type>();
        assert_eq!(ask_sz.value(1), i128::from(i64::MAX));
        let ts = b.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(0), 1_000);
        assert_eq!(ts.timezone(), Some("UTC"));
        assert!(b.column(3).as_string::<i32>().is_null(2), "an unnamed id");
    }

    #[test]
    fn timestamps_past_2262_are_an_error_in_parquet() {
        let header = CaptureHeader::default();
        let mut w = CaptureWriter::new(Vec::new(), &header).unwrap();
        w.write_message(&message(&[tick(0, 1, u64::MAX, Body::trade(1, 1))], 1))
            .unwrap();
        let bytes = w.finish().unwrap();
        let mut out = writer(Format::Parquet, Vec::new()).unwrap();
        let mut reader = CaptureReader::new(&bytes[..]).unwrap();
        let err = export(&mut reader, &Filter::default(), &mut *out, |_| {}).unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::Timestamp {
                    field: "ts_event",
                    ..
                }
            ),
            "{err}"
        );
    }
}

//! `tickcast capture`: look into capture files and convert them for other tools.
//!
//! ```text
//! tickcast capture info session.tcrec
//! tickcast capture export session.tcrec --format parquet -o session.parquet
//! tickcast capture export day/*.tcrec --format csv --symbols SYM0,SYM1 --start 2025-06-01T14:30:00Z
//! tickcast capture cat session.tcrec | less
//! ```
//!
//! Files are read one entry at a time ([`tickcast::capture::CaptureReader`]), so a
//! capture of any size goes through in bounded memory; on a terminal a progress bar
//! shows the bytes read. Several files are read one after the other, as one stream (a
//! day of the recorder's rotated files). A file cut short or with a bad block stops
//! the walk with an error naming the file and the offset; `export` and `cat` first
//! finish their output with every record of the whole entries before it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tickcast::capture::export::{self, ExportError, Filter, Format, RowWriter};
use tickcast::capture::inspect::{self, Info};
use tickcast::capture::CaptureReader;

/// Arguments of `tickcast capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    #[command(subcommand)]
    command: CaptureCommand,
}

#[derive(Debug, Subcommand)]
enum CaptureCommand {
    /// Summarise captures: version, time range, records per kind and flag, per symbol
    /// the records, sequence range and gaps.
    Info {
        /// Capture files (`.tcrec`), read in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the summary as JSON (one object per file).
        #[arg(long)]
        json: bool,
    },
    /// Convert captures to CSV, JSON lines or Parquet: exact decimal prices,
    /// nanosecond timestamps (see docs/protocol.md, "Exporting captures").
    Export {
        /// Capture files (`.tcrec`), exported in order into one output.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file [default: standard output].
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        select: Select,
    },
    /// Print every record as a human-readable line.
    Cat {
        /// Capture files (`.tcrec`), printed in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
    },
}

/// Which records to take.
#[derive(Debug, Args)]
struct Select {
    /// Only these symbols (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    symbols: Vec<String>,
    /// Only records with `ts_event` at or after this time: RFC 3339 (UTC unless it
    /// says otherwise; `2025-06-01T14:30:00Z`, `2025-06-01`) or ns since the epoch.
    #[arg(long, value_parser = parse_time)]
    start: Option<u64>,
    /// Only records with `ts_event` before this time (same forms as `--start`).
    #[arg(long, value_parser = parse_time)]
    end: Option<u64>,
}

impl Select {
    fn filter(&self) -> Filter {
        Filter {
            symbols: (!self.symbols.is_empty())
                .then(|| self.symbols.iter().cloned().collect::<HashSet<_>>()),
            start_ns: self.start,
            end_ns: self.end,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Jsonl,
    Parquet,
}

/// Parses `--start`/`--end`: ns since the epoch, an RFC 3339 time, or a date.
fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ns) = s.parse::<u64>() {
        return Ok(ns);
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|e| {
        format!("{e} (expected e.g. 2025-06-01T14:30:00Z, 2025-06-01 or ns since the epoch)")
    })?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .map_err(|_| "times before 1970 hold no ticks".to_string())
}

/// Runs `tickcast capture …`.
pub fn run(args: CaptureArgs) -> anyhow::Result<()> {
    let result = match args.command {
        CaptureCommand::Info { files, json } => info(&files, json),
        CaptureCommand::Export {
            files,
            format,
            output,
            select,
        } => {
            let format = match format {
                ExportFormat::Csv => Format::Csv,
                ExportFormat::Jsonl => Format::Jsonl,
                ExportFormat::Parquet => Format::Parquet,
            };
            convert(&files, format, output.as_deref(), &select.filter())
        }
        CaptureCommand::Cat { files, select } => {
            convert(&files, Format::Text, None, &select.filter())
        }
    };
    // `… | head` closes the pipe early: that is the reader's choice, not an error.
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io =
            c.downcast_ref::<std::io::Error>()
                .or_else(|| match c.downcast_ref::<ExportError>() {
                    Some(ExportError::Io(io)) => Some(io),
                    _ => None,
                });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn open(path: &Path) -> anyhow::Result<(CaptureReader<BufReader<File>>, u64)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = CaptureReader::new(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("{} is not a readable capture", path.display()))?;
    Ok((reader, len))
}

/// A progress bar over `total` bytes on standard error, if it is a terminal and
/// `show` (hidden otherwise, and so free).
fn progress(total: u64, show: bool) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn total_len(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn info(files: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let bar = progress(total_len(files), true);
    let mut done = 0;
    let mut out = std::io::stdout().lock();
    for path in files {
        let (reader, len) = open(path)?;
        bar.set_message(path.display().to_string());
        let (info, fault) = inspect::inspect(reader, |b| bar.set_position(done + b));
        done += len;
        bar.suspend(|| -> anyhow::Result<()> {
            if json {
                let mut v = serde_json::to_value(&info)?;
                v["file"] = serde_json::json!(path.display().to_string());
                writeln!(out, "{v}")?;
            } else {
                write_info(&mut out, path, len, &info)?;
            }
            Ok(())
        })?;
        if let Some(e) = fault {
            bar.finish_and_clear();
            bail!(
                "{}: {e} (the summary above covers the {} bytes before it)",
                path.display(),
                info.bytes
            );
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn range(r: Option<inspect::TimeRange>) -> String {
    match r {
        None => "-".into(),
        Some(r) => format!(
            "{} .. {} ({:.3} s)",
            export::format_ns(r.first_ns),
            export::format_ns(r.last_ns),
            (r.last_ns - r.first_ns) as f64 / 1e9
        ),
    }
}

fn write_info(out: &mut impl Write, path: &Path, len: u64, i: &Info) -> std::io::Result<()> {
    writeln!(out, "file        {} ({len} bytes)", path.display())?;
    writeln!(out, "version     {}", i.version)?;
    writeln!(out, "created     {}", export::format_ns(i.created_at_ns))?;
    if let Some(s) = &i.source {
        writeln!(out, "source      {s}")?;
    }
    writeln!(
        out,
        "records     {} ({} trades, {} quotes, {} book levels{}) in {} messages, {} blocks, {} symbol maps",
        i.records,
        i.trades,
        i.quotes,
        i.book_records,
        if i.unknown_kind > 0 {
            format!(", {} of an unknown kind", i.unknown_kind)
        } else {
            String::new()
        },
        i.messages,
        i.blocks,
        i.symbol_maps
    )?;
    writeln!(
        out,
        "flagged     {} snapshot, {} conflated, {} replay",
        i.snapshots, i.conflated, i.replayed
    )?;
    writeln!(out, "ts_event    {}", range(i.ts_event))?;
    writeln!(out, "ts_recv     {}", range(i.ts_recv))?;
    writeln!(
        out,
        "symbols     {}, gaps {}, book gaps {}",
        i.symbols.len(),
        i.gaps,
        i.book_gaps
    )?;
    if !i.symbols.is_empty() {
        writeln!(
            out,
            "  {:<20} {:>10} {:>10} {:>10} {:>12} {:>12} {:>6} {:>8}",
            "symbol", "records", "trades", "quotes", "first_seq", "last_seq", "gaps", "missed"
        )?;
        for (name, s) in &i.symbols {
            writeln!(
                out,
                "  {:<20} {:>10} {:>10} {:>10} {:>12} {:>12} {:>6} {:>8}",
                name, s.records, s.trades, s.quotes, s.first_seq, s.last_seq, s.gaps, s.missed
            )?;
        }
    }
    if i.book_records > 0 {
        writeln!(
            out,
            "  {:<20} {:>10} {:>10} {:>12} {:>12} {:>6} {:>8}",
            "books", "levels", "messages", "first_seq", "last_seq", "gaps", "missed"
        )?;
        for (name, s) in i.symbols.iter().filter(|(_, s)| s.book_records > 0) {
            writeln!(
                out,
                "  {:<20} {:>10} {:>10} {:>12} {:>12} {:>6} {:>8}",
                name,
                s.book_records,
                s.book_messages,
                s.first_book_seq,
                s.last_book_seq,
                s.book_gaps,
                s.book_missed
            )?;
        }
    }
    Ok(())
}

/// `export` and `cat`: every file in order into one writer.
fn convert(
    files: &[PathBuf],
    format: Format,
    output: Option<&Path>,
    filter: &Filter,
) -> anyhow::Result<()> {
    let to_terminal = output.is_none() && std::io::stdout().is_terminal();
    if format == Format::Parquet && to_terminal {
        bail!("Parquet is binary: give an output file with -o, or redirect standard output");
    }
    let mut writer: Box<dyn RowWriter> = match output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            export::writer(format, BufWriter::with_capacity(1 << 20, file))?
        }
        None => export::writer(format, BufWriter::with_capacity(1 << 20, std::io::stdout()))?,
    };
    // No bar over records printed on the same terminal.
    let bar = progress(total_len(files), !to_terminal);
    let (mut rows, mut done) = (0u64, 0u64);
    for path in files {
        let (mut reader, len) = open(path)?;
        bar.set_message(path.display().to_string());
        let summary = export::export(&mut reader, filter, &mut *writer, |b| {
            bar.set_position(done + b)
        })
        .with_context(|| format!("exporting {}", path.display()))?;
        rows += summary.rows;
        done += len;
        if summary.unknown_kind > 0 {
            bar.suspend(|| {
                eprintln!(
                    "{}: {} records of an unknown kind skipped",
                    path.display(),
                    summary.unknown_kind
                )
            });
        }
        if let Some(fault) = summary.fault {
            bar.finish_and_clear();
            writer.finish().context("finishing the output")?;
            bail!(
                "{}: {fault}; the output is complete up to there: {rows} records, every \
                 whole entry before byte {}",
                path.display(),
                summary.bytes
            );
        }
    }
    bar.finish_and_clear();
    writer.finish().context("finishing the output")?;
    if output.is_some() {
        eprintln!("{rows} records exported");
    }
    Ok(())
}

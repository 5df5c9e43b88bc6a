//! Records a tickcast session into a capture file (`TCREC1`, see `docs/protocol.md`,
//! "Capture files"): every binary message exactly as received, and the symbol maps.
//! Replay it into a server with `tickcast serve --feed replay:FILE`.
//!
//! The capture is flushed every second, so a recorder that is killed loses at most the
//! last second; Ctrl-C, `--seconds` and `--records` end it cleanly.
//!
//! ```text
//! cargo run --example record -- ws://127.0.0.1:9001/ws '*' --out session.tcrec --seconds 10
//! cargo run --example record -- wss://md.example.com/ws '*' --out s.tcrec --ca-file ca.pem
//! ```

use std::io::BufWriter;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tickcast::capture::{CaptureHeader, CaptureWriter, SymbolEntry};
use tickcast::client::{Client, Event, Options};

/// Record a tickcast session to a capture file.
#[derive(Debug, Parser)]
struct Args {
    /// WebSocket URL of the server.
    url: String,
    /// Symbols to subscribe (`*` for all).
    #[arg(required = true)]
    symbols: Vec<String>,
    /// The capture file to write.
    #[arg(long)]
    out: std::path::PathBuf,
    /// Stop after this many seconds (0: at Ctrl-C only).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Stop after this many records (0: no limit).
    #[arg(long, default_value_t = 0)]
    records: u64,
    /// `wss://` only: a PEM file of CA certificates to trust besides the webpki roots
    /// (a private CA, or a self-signed server certificate).
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// The token of a server with `[auth]`, sent as `Authorization: Bearer`.
    #[arg(long)]
    token: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let header = CaptureHeader {
        created_at_ns: tickcast::clock::now_ns(),
        symbols: Vec::new(),
        source: Some(args.url.clone()),
    };
    let mut capture = CaptureWriter::new(BufWriter::with_capacity(1 << 20, file), &header)?;
    let options = Options {
        ca_file: args.ca_file.clone(),
        token: args.token.clone(),
        ..Options::symbols(args.symbols.clone())
    };
    let mut client = Client::connect(&args.url, options)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let deadline =
        (args.seconds > 0).then(|| tokio::time::Instant::now() + Duration::from_secs(args.seconds));
    let (mut messages, mut records, mut gaps) = (0u64, 0u64, 0u64);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, client.next()).await.ok(),
                None => Some(client.next().await),
            }
        };
        let event = tokio::select! {
            e = next => e,
            _ = tokio::signal::ctrl_c() => None,
            _ = flush.tick() => {
                capture.flush()?;
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Ok(Event::Ticks(batch)) => {
                capture.write_message(batch.as_bytes())?;
                messages += 1;
                records += batch.len() as u64;
                if args.records > 0 && records >= args.records {
                    break;
                }
            }
            Ok(Event::Symbols(map)) => {
                let entries: Vec<SymbolEntry> = map
                    .into_iter()
                    .map(|(id, name)| SymbolEntry { id, name })
                    .collect();
                capture.write_symbols(&entries)?;
            }
            Ok(Event::Gap(g)) => {
                gaps += 1;
                eprintln!("gap in {}: #{}..#{}", g.symbol, g.expected, g.got);
            }
            Ok(Event::ServerError { message }) => anyhow::bail!("server: {message}"),
            Ok(other) => eprintln!("{other:?}"),
            Err(e) if !e.is_terminal() => eprintln!("skipped: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    capture.finish()?;
    let _ = client.close().await;
    eprintln!(
        "recorded {records} records in {messages} messages ({gaps} gaps) to {}",
        args.out.display()
    );
    Ok(())
}

//! Prints the ticks of a tickcast server, one line per record, with gaps, reconnects
//! and conflation as they happen.
//!
//! ```text
//! cargo run --example print_ticks -- ws://127.0.0.1:9001/ws SYM0 SYM1 --count 20
//! cargo run --example print_ticks -- wss://md.example.com/ws '*' --ca-file ca.pem
//! ```

use anyhow::Context;
use clap::Parser;
use tickcast::client::{Client, Event, Options};
use tickcast::tick::{Flags, Kind};

/// Print ticks from a tickcast server.
#[derive(Debug, Parser)]
struct Args {
    /// WebSocket URL of the server.
    #[arg(default_value = "ws://127.0.0.1:9001/ws")]
    url: String,
    /// Symbols to subscribe (`*` for all).
    #[arg(default_values_t = ["SYM0".to_string(), "SYM1".to_string()])]
    symbols: Vec<String>,
    /// Stop after this many records (0: never).
    #[arg(long, default_value_t = 0)]
    count: u64,
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
    let options = Options {
        ca_file: args.ca_file,
        token: args.token,
        ..Options::symbols(args.symbols)
    };
    let mut client = Client::connect(&args.url, options)
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let mut printed = 0u64;
    loop {
        let event = match client.next().await {
            Ok(e) => e,
            Err(e) if !e.is_terminal() => {
                eprintln!("skipped: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match event {
            Event::Ticks(batch) => {
                for r in batch.records() {
                    let flags: Vec<&str> = Flags::NAMES
                        .iter()
                        .filter(|(f, _)| Flags(r.flags).contains(*f))
                        .map(|(_, n)| *n)
                        .collect();
                    let v = r.values.map(|v| tickcast::fixed::to_string(v.to_native()));
                    let body = match Kind::from_u8(r.kind) {
                        Some(Kind::Trade) => format!("trade {} x {}", v[0], v[1]),
                        Some(Kind::Quote) => {
                            format!("quote {} x {} / {} x {}", v[0], v[1], v[2], v[3])
                        }
                        Some(Kind::Book) => {
                            let side = if r.values[2].to_native() & 0xff == 1 {
                                "ask"
                            } else {
                                "bid"
                            };
                            format!("book {side} {} x {}", v[0], v[1])
                        }
                        None => format!("kind {}", r.kind),
                    };
                    println!(
                        "{:<12} #{:<8} {body} [{}] count {}",
                        batch.symbol(r.symbol_id.to_native()).unwrap_or("?"),
                        r.seq,
                        flags.join(","),
                        r.count,
                    );
                    printed += 1;
                    if args.count > 0 && printed >= args.count {
                        client.close().await?;
                        return Ok(());
                    }
                }
            }
            Event::Gap(g) => eprintln!(
                "GAP {}: expected #{}, got #{} ({} lost)",
                g.symbol,
                g.expected,
                g.got,
                g.missed()
            ),
            Event::Symbols(_) | Event::Subscribed { .. } => {}
            other => eprintln!("{other:?}"),
        }
    }
}

//! The `tickcast` binary: parses flags, starts the server, waits for a signal.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tickcast::config::Config;
use tickcast::feed::FeedSpec;
use tickcast::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Live market-data streaming server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve(ServeArgs),
}

#[derive(Debug, Default, Args)]
struct ServeArgs {
    /// TOML config file (every key optional; see docs/tickcast.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:9001].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Writer cores; 0 = one per CPU [default: 0].
    #[arg(long)]
    workers: Option<usize>,
    /// Number of synthetic symbols [default: 100].
    #[arg(long)]
    symbols: Option<usize>,
    /// Synthetic ticks per second over all symbols [default: 10000].
    #[arg(long)]
    rate: Option<u64>,
    /// Seed of the synthetic feed [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Feeds to run, replacing the config's (repeatable): `synthetic`.
    #[arg(long = "feed")]
    feeds: Vec<FeedSpec>,
    /// Do not pin writer cores to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// What this node does: `standalone`, `ingest` (publishes every sequenced batch
    /// to NATS) or `edge` (no feeds: fans out the ingest's ticks from NATS)
    /// [default: standalone].
    #[arg(long)]
    role: Option<tickcast::bus::Role>,
    /// NATS server URL(s) of an ingest or edge, comma-separated
    /// [default: nats://127.0.0.1:4222].
    #[arg(long = "nats")]
    nats_url: Option<String>,
    /// Serve a WebSocket echo route at this path, for conformance testing (`/echo`)
    /// [default: none].
    #[arg(long, value_name = "PATH")]
    echo_path: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let config = build_config(args)?;
    let (http, ws) = if config.tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let server = Server::start(config).context("starting tickcast")?;
    let addr = server.local_addr();
    println!("tickcast listening on {http}://{addr} (WebSocket: {ws}://{addr}/ws)");
    wait_for_signal()?;
    tracing::info!("shutting down");
    server.shutdown();
    Ok(())
}

fn build_config(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    if args.no_pin {
        config.pin_cores = false;
    }
    if let Some(role) = args.role {
        config.role = role;
    }
    if let Some(url) = args.nats_url {
        config.nats_url = url;
    }
    if let Some(path) = args.echo_path {
        config.echo_path = Some(path);
    }
    if !args.feeds.is_empty() {
        config.feeds = args.feeds;
    }
    for feed in &mut config.feeds {
        #[allow(irrefutable_let_patterns)]
        if let FeedSpec::Synthetic(s) = feed {
            if let Some(n) = args.symbols {
                s.symbols = n;
            }
            if let Some(r) = args.rate {
                s.rate = r;
            }
            if let Some(seed) = args.seed {
                s.seed = seed;
            }
        }
    }
    config.validate()?;
    Ok(config)
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

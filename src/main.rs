//! The `tickcast` binary: parses flags, starts the server, waits for a signal.
//!
//! `tickcast` with no subcommand is `tickcast serve`. Every user error (flags, config,
//! files, ports) prints once, as one line on stderr, and exits with 2 for a usage
//! error (clap's) or 1 otherwise; never a backtrace.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tickcast::config::{Config, Layered, LogFormat};
use tickcast::feed::FeedSpec;
use tickcast::server::Server;

mod cli {
    pub mod capture;
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Live market-data streaming server.
///
/// Settings come from the defaults, then `--config FILE`, then `TICKCAST_<NAME>`
/// environment variables, then the flags (see docs/operations.md).
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `serve`'s flags, for `tickcast` without a subcommand.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve(ServeArgs),
    /// Validate a config file (with the `TICKCAST_` environment over it) and print the
    /// effective settings as TOML.
    CheckConfig(CheckConfigArgs),
    /// Look into capture files and convert them (info, export, cat).
    Capture(cli::capture::CaptureArgs),
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
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=4096))]
    workers: Option<u16>,
    /// Number of synthetic symbols, at least 1 [default: 100].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    symbols: Option<u64>,
    /// Synthetic ticks per second over all symbols, at least 1 [default: 10000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Seed of the synthetic feed [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Order-book levels per side the synthetic feed keeps for each symbol; 0 for no
    /// books [default: 0].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=4096))]
    book_depth: Option<u64>,
    /// Feeds to run, replacing the config's (repeatable): `synthetic`;
    /// `replay:PATH` (a venue capture, one JSON message per line, or a tickcast
    /// `.tcrec` capture); `binance` or `coinbase` (the venue's public endpoint);
    /// `binance:ws(s)://URL` or `coinbase:ws(s)://URL` (another endpoint). The
    /// config file's `[[feeds]]` sets everything else.
    #[arg(long = "feed", value_name = "FEED")]
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
    /// Log line format on stderr: `text` or `json` [default: text].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Serve a WebSocket echo route at this path, for conformance testing (`/echo`)
    /// [default: none].
    #[arg(long, value_name = "PATH")]
    echo_path: Option<String>,
}

#[derive(Debug, Args)]
struct CheckConfigArgs {
    /// The TOML config file to check.
    file: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::CheckConfig(args)) => check_config(&args),
        Some(Command::Capture(args)) => cli::capture::run(args),
        Some(Command::Serve(args)) => serve(args),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickcast: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let layered = build_config(args)?;
    let config = layered.config;
    init_logging(config.log_format);
    warn_ignored(&layered.ignored_env);
    let (http, ws) = if config.tls.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    // Before the port opens: a SIGTERM sent as soon as the server answers must shut it
    // down cleanly, not kill it with the signal's default action.
    let signals = Signals::install()?;
    let server = Server::start(config)?;
    let addr = server.local_addr();
    println!("tickcast listening on {http}://{addr} (WebSocket: {ws}://{addr}/ws)");
    signals.wait();
    tracing::info!("shutting down");
    server.shutdown();
    Ok(())
}

/// `tickcast check-config FILE`: the settings the server would run with, or the first
/// thing wrong with them (feeds included: a capture that cannot be read fails here).
fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let layered = Config::layered(Some(&args.file))?;
    let config = &layered.config;
    if config.role != tickcast::bus::Role::Edge {
        for spec in &config.feeds {
            tickcast::feed::check(spec)?;
        }
    }
    if let Some(tls) = &config.tls {
        tickcast::transport::server_config(&tls.cert_path, &tls.key_path)?;
    }
    for var in &layered.ignored_env {
        println!("# ignored: {var} names no setting");
    }
    print!("{}", config.to_toml_redacted());
    Ok(())
}

/// Defaults, then the file, then the environment (`Config::layered`), then the flags.
fn build_config(args: ServeArgs) -> anyhow::Result<Layered> {
    let mut layered = Config::layered(args.config.as_deref())?;
    let config = &mut layered.config;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(w) = args.workers {
        config.workers = usize::from(w);
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
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    if let Some(path) = args.echo_path {
        config.echo_path = Some(path);
    }
    if !args.feeds.is_empty() {
        config.feeds = args.feeds;
    }
    for feed in &mut config.feeds {
        if let FeedSpec::Synthetic(s) = feed {
            if let Some(n) = args.symbols {
                s.symbols = n as usize;
            }
            if let Some(r) = args.rate {
                s.rate = r;
            }
            if let Some(seed) = args.seed {
                s.seed = seed;
            }
            if let Some(d) = args.book_depth {
                s.book_depth = d as usize;
            }
        }
    }
    config.validate()?;
    Ok(layered)
}

/// Logs to stderr as `format` says, filtered by `RUST_LOG` (default `info`); ANSI
/// colours only when stderr is a terminal (and `NO_COLOR` is unset).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(ansi).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn warn_ignored(vars: &[String]) {
    for var in vars {
        tracing::warn!(variable = %var, "environment variable ignored: it names no setting");
    }
}

/// The error and its causes on one line, each cause once: a message that already
/// quotes its source is not followed by it again.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out.replace('\n', " ")
}

/// SIGINT and SIGTERM, caught from the moment [`Signals::install`] returns.
struct Signals {
    rt: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _in_rt = rt.enter();
        let interrupt = signal(SignalKind::interrupt())?;
        let terminate = signal(SignalKind::terminate())?;
        drop(_in_rt);
        Ok(Signals {
            rt,
            interrupt,
            terminate,
        })
    }

    /// Blocks until one of them arrives (or arrived since `install`).
    fn wait(mut self) {
        self.rt.block_on(async {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        });
    }
}

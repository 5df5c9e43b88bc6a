//! The `loadgen` binary: parses flags and runs, plots or compares.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use loadgen::plot::{self, Series};
use loadgen::report::{self, Summary};
use loadgen::settings::{self, Format, Select, Settings};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Open-loop tail-latency load generator for tickcast.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario (or the defaults) against --url, or against a tickcast server
    /// started in this process when no URL is given.
    Run(Box<RunArgs>),
    /// Draw one or more runs' percentile spectra (their --json files) on one SVG.
    Plot {
        /// Summaries written by `run --json`.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output SVG file.
        #[arg(short, long)]
        output: PathBuf,
        /// Plot title.
        #[arg(long, default_value = "tickcast latency by percentile")]
        title: String,
    },
    /// Print two runs side by side with ratios (b / a).
    Compare {
        /// Baseline summary (`run --json`).
        a: PathBuf,
        /// Summary compared against it.
        b: PathBuf,
    },
    /// Server memory per idle subscribed connection: starts a tickcast server in its
    /// own process (or measures --pid at --url), opens --connections connections that
    /// subscribe to one symbol each, and reports the server's resident set growth.
    Idle(IdleArgs),
    /// List the scenarios and their settings.
    Scenarios {
        /// Scenarios file [default: the built-in loadgen/scenarios.toml].
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario name: dashboard, quant, fanout (see `loadgen scenarios`).
    scenario: Option<String>,
    /// Scenarios file [default: the built-in loadgen/scenarios.toml].
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Name of the run in reports and plot legends [default: the scenario's, or custom].
    #[arg(long)]
    name: Option<String>,
    /// Subscriber endpoint, e.g. ws://127.0.0.1:9001/ws; without it loadgen starts a
    /// tickcast server in this process on 127.0.0.1:0.
    #[arg(long)]
    url: Option<String>,
    /// Subscriber connections.
    #[arg(long)]
    connections: Option<usize>,
    /// Symbols per connection (0 = all).
    #[arg(long)]
    symbols_per_conn: Option<usize>,
    /// How symbols are picked: all, uniform, zipf.
    #[arg(long)]
    select: Option<Select>,
    /// Zipf exponent.
    #[arg(long)]
    zipf_s: Option<f64>,
    /// Subscriber encoding: binary or json.
    #[arg(long)]
    format: Option<Format>,
    /// max_rate (updates/s per symbol) asked by each subscriber; 0 = unlimited.
    #[arg(long)]
    max_rate: Option<f64>,
    /// Channels each subscriber asks for, comma-separated (trade,quote,book).
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<String>>,
    /// In-process server only: order-book levels per side of the synthetic feed.
    #[arg(long)]
    book_depth: Option<usize>,
    /// Fraction of subscribers that stop reading after subscribing (slow consumers).
    #[arg(long)]
    stalled_fraction: Option<f64>,
    /// Client threads (0 = automatic).
    #[arg(long)]
    threads: Option<usize>,
    /// Pin client threads (and the in-process server's cores) to CPUs.
    #[arg(long)]
    pin: bool,
    /// Seed of the symbol selection.
    #[arg(long)]
    seed: Option<u64>,
    /// Measured time after the warm-up: 10, 10s, 500ms, 2m [default: 10 s; at most 1 h].
    #[arg(long, value_parser = settings::parse_seconds)]
    duration: Option<f64>,
    /// Warm-up excluded from the figures [default: 1 s].
    #[arg(long, value_parser = settings::parse_seconds)]
    warmup: Option<f64>,
    /// Longest wait for in-flight records after the run [default: 5 s].
    #[arg(long, value_parser = settings::parse_seconds)]
    drain: Option<f64>,
    /// Longest time to open and subscribe every connection [default: 60 s].
    #[arg(long, value_parser = settings::parse_seconds)]
    connect_timeout: Option<f64>,
    /// Ticks per second published to /publish, open loop (0 = none).
    #[arg(long)]
    publish_rate: Option<u64>,
    /// Encoding of published ticks: binary or json.
    #[arg(long)]
    publish_format: Option<Format>,
    /// Most ticks per published message.
    #[arg(long)]
    publish_batch: Option<usize>,
    /// Token for /publish (the server's publish_token).
    #[arg(long)]
    token: Option<String>,
    /// Process id of the server at --url: its CPU time goes in the report.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// In-process server: synthetic feed rate, ticks/s over all symbols (0 = no feed).
    #[arg(long)]
    rate: Option<u64>,
    /// In-process server and publisher: number of symbols SYM0..SYMn.
    #[arg(long)]
    symbols: Option<usize>,
    /// In-process server: writer cores.
    #[arg(long)]
    server_workers: Option<usize>,
    /// Write the percentile distribution in HdrHistogram's text format (values in µs).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write the summary as JSON (percentiles_ns, records, records_per_sec, gaps, …).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the percentile spectrum as SVG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Encoding the connections ask for: binary or json.
    #[arg(long, default_value = "binary")]
    format: Format,
    /// An external server's WebSocket URL (with --pid); without it a server is started.
    #[arg(long, requires = "pid")]
    url: Option<String>,
    /// The external server's process id, whose /proc/PID/status is read.
    #[arg(long, requires = "url")]
    pid: Option<u32>,
    /// The tickcast binary to start [default: `tickcast` beside this binary].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Started server: synthetic ticks per second over all symbols.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Started server: symbols.
    #[arg(long, default_value_t = 100)]
    symbols: usize,
    /// Started server: writer cores.
    #[arg(long, default_value_t = 1)]
    server_workers: usize,
    /// Time the server settles once every connection is subscribed: 2, 500ms.
    #[arg(long, value_parser = settings::parse_seconds, default_value = "2")]
    settle: f64,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl RunArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let text = match &self.scenarios {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?,
            None => settings::BUILTIN_SCENARIOS.to_string(),
        };
        let mut s = match &self.scenario {
            Some(name) => settings::scenario(&text, name)?,
            None => Settings::default(),
        };
        macro_rules! set {
            ($($flag:ident => $field:ident),* $(,)?) => {
                $(if let Some(v) = self.$flag.clone() { s.$field = v; })*
            };
        }
        set!(
            connections => connections,
            symbols_per_conn => symbols_per_conn,
            select => select,
            zipf_s => zipf_s,
            format => format,
            max_rate => max_rate,
            channels => channels,
            book_depth => book_depth,
            stalled_fraction => stalled_fraction,
            threads => threads,
            seed => seed,
            duration => duration_s,
            warmup => warmup_s,
            drain => drain_s,
            connect_timeout => connect_timeout_s,
            publish_rate => publish_rate,
            publish_format => publish_format,
            publish_batch => publish_batch,
            rate => rate,
            symbols => symbols,
            server_workers => server_workers,
        );
        if let Some(name) = &self.name {
            s.name = name.clone();
        }
        if self.url.is_some() {
            s.url = self.url.clone();
        }
        if self.token.is_some() {
            s.publish_token = self.token.clone();
        }
        if self.server_pid.is_some() {
            s.server_pid = self.server_pid;
        }
        s.pin |= self.pin;
        s.validate()?;
        Ok(s)
    }
}

fn load(path: &PathBuf) -> anyhow::Result<Summary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a loadgen summary", path.display()))
}

fn label(path: &std::path::Path, s: &Summary) -> String {
    let stem = path
        .file_stem()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == s.settings.name {
        stem
    } else {
        format!("{stem} ({})", s.settings.name)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let settings = args.settings()?;
            let (summary, hist) = loadgen::run::run(&settings, !args.quiet)?;
            println!("{}", summary.table());
            if let Some(p) = &args.hgrm {
                std::fs::write(p, report::hgrm(&hist))
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            if let Some(p) = &args.json {
                std::fs::write(p, serde_json::to_string_pretty(&summary)?)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            if let Some(p) = &args.plot {
                let series = [Series {
                    label: settings.name.clone(),
                    points: summary.spectrum.clone(),
                }];
                let title = format!("loadgen {}: latency by percentile", settings.name);
                std::fs::write(p, plot::svg(&series, &title))
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            Ok(())
        }
        Command::Plot {
            inputs,
            output,
            title,
        } => {
            let mut series = Vec::new();
            for p in &inputs {
                let s = load(p)?;
                series.push(Series {
                    label: label(p, &s),
                    points: s.spectrum,
                });
            }
            std::fs::write(&output, plot::svg(&series, &title))
                .with_context(|| format!("cannot write {}", output.display()))?;
            Ok(())
        }
        Command::Compare { a, b } => {
            let (sa, sb) = (load(&a)?, load(&b)?);
            print!(
                "{}",
                report::compare(&sa, &sb, &label(&a, &sa), &label(&b, &sb))
            );
            Ok(())
        }
        Command::Idle(a) => {
            let server_bin = match a.server_bin {
                Some(p) => p,
                None => std::env::current_exe()?
                    .parent()
                    .context("loadgen has no directory")?
                    .join("tickcast"),
            };
            let s = loadgen::idle::IdleSettings {
                connections: a.connections,
                concurrency: a.concurrency,
                format: a.format.name().to_string(),
                url: a.url,
                pid: a.pid,
                server_bin,
                rate: a.rate,
                symbols: a.symbols,
                workers: a.server_workers,
                settle: std::time::Duration::from_secs_f64(a.settle),
            };
            let report = loadgen::idle::run(&s, true)?;
            println!("{}", report.table());
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            Ok(())
        }
        Command::Scenarios { file } => {
            let text = match file {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
                None => settings::BUILTIN_SCENARIOS.to_string(),
            };
            for (name, s) in settings::parse_scenarios(&text)? {
                println!(
                    "{name}: {} connections x {} symbols ({:?}), {}, max_rate {}, feed {} ticks/s, publish {} ticks/s",
                    s.connections,
                    if s.symbols_per_conn == 0 { "all".to_string() } else { s.symbols_per_conn.to_string() },
                    s.select,
                    s.format,
                    s.max_rate,
                    s.rate,
                    s.publish_rate
                );
            }
            Ok(())
        }
    }
}

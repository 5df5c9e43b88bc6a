//! `Settings`: every knob of a run, with its default and its bound, and the named
//! scenarios of `scenarios.toml`.
//!
//! A run starts from the defaults, applies a scenario (a table of `scenarios.toml`
//! whose every key is optional), then the command-line flags. [`Settings::validate`]
//! enforces the hard caps, so every run is bounded in time and size.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The scenarios shipped with loadgen (`loadgen/scenarios.toml`).
pub const BUILTIN_SCENARIOS: &str = include_str!("../scenarios.toml");

/// Longest run accepted, in seconds.
pub const MAX_DURATION_S: f64 = 3_600.0;
/// Most connections accepted.
pub const MAX_CONNECTIONS: usize = 100_000;
/// Highest publish rate accepted, in ticks per second.
pub const MAX_PUBLISH_RATE: u64 = 10_000_000;
/// Longest drain or connect phase accepted, in seconds.
pub const MAX_PHASE_S: f64 = 120.0;

/// How each connection picks its symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// Every symbol (`["*"]`), including symbols that appear later.
    All,
    /// `symbols_per_conn` distinct symbols, uniformly at random.
    #[default]
    Uniform,
    /// `symbols_per_conn` distinct symbols, Zipf-skewed towards low ids (exponent
    /// `zipf_s`): a few symbols are on almost every screen.
    Zipf,
}

/// Encoding of ticks on a subscriber or publisher connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Fixed-layout records.
    #[default]
    Binary,
    /// JSON objects.
    Json,
}

impl Format {
    /// The protocol's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
        }
    }
}

impl FromStr for Select {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Select> {
        Ok(match s {
            "all" => Select::All,
            "uniform" => Select::Uniform,
            "zipf" => Select::Zipf,
            other => bail!("unknown selection {other:?}: all, uniform or zipf"),
        })
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Format> {
        Ok(match s {
            "binary" => Format::Binary,
            "json" => Format::Json,
            other => bail!("unknown format {other:?}: binary or json"),
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every setting of a run. Serialized into the JSON report as `settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Scenario name, for reports and plot legends. Default: `custom`.
    pub name: String,
    /// Subscriber endpoint, `ws://host:port/ws`; `None` starts a tickcast server in
    /// this process on `127.0.0.1:0` (with `limits.max_connections_per_ip` raised to
    /// fit the run). An external tickcast must allow as many connections from one
    /// address (`[limits] max_connections_per_ip`, default 1,000). Default: `None`.
    pub url: Option<String>,
    /// Process id of the external server at `url`, whose CPU time the report gives
    /// (`/proc/PID/stat`); the in-process server's is always given. Default: `None`.
    pub server_pid: Option<u32>,
    /// Subscriber connections. Default: 100.
    pub connections: usize,
    /// Symbols per connection; 0 means all (`["*"]`). Default: 10.
    pub symbols_per_conn: usize,
    /// How symbols are picked. Default: uniform.
    pub select: Select,
    /// Zipf exponent for `select = "zipf"`. Default: 1.0.
    pub zipf_s: f64,
    /// Subscriber encoding. Default: binary.
    pub format: Format,
    /// `max_rate` per symbol asked by each subscriber; 0 is unlimited. Default: 0.
    pub max_rate: f64,
    /// The `channels` each subscriber asks for (`"trade"`, `"quote"`, `"book"`);
    /// empty is the server's default, trades and quotes. Default: empty.
    pub channels: Vec<String>,
    /// In-process server only: order-book levels per side of the synthetic feed
    /// (`book_depth`); 0 makes no books. Default: 0.
    pub book_depth: usize,
    /// Fraction of the subscribers that subscribe to every symbol and then never read
    /// again (slow consumers), to measure what they cost the others; they are not
    /// measured themselves. Default: 0.
    pub stalled_fraction: f64,
    /// Client threads (each a current-thread runtime); 0 picks one per CPU, or half
    /// the CPUs when the server runs in this process. Default: 0.
    pub threads: usize,
    /// Pin client threads to CPUs (the last CPUs first, away from the server's).
    /// Default: false.
    pub pin: bool,
    /// Seed for symbol selection. Default: 1.
    pub seed: u64,
    /// Measured time after the warm-up, in seconds (capped at 3,600). Default: 10.
    pub duration_s: f64,
    /// Warm-up excluded from the figures, in seconds. Default: 1.
    pub warmup_s: f64,
    /// Longest wait after the run for in-flight records, in seconds. Default: 5.
    pub drain_s: f64,
    /// Longest time to open and subscribe every connection, in seconds. Default: 60.
    pub connect_timeout_s: f64,
    /// Most handshakes in flight per client thread. Default: 64.
    pub connect_concurrency: usize,
    /// Ticks per second published to `/publish`; 0 publishes nothing. Default: 0.
    pub publish_rate: u64,
    /// Encoding of published ticks. Default: binary.
    pub publish_format: Format,
    /// Most ticks in one published message (a backlog after a stall is sent in
    /// messages of this size). Default: 256.
    pub publish_batch: usize,
    /// Token for `/publish`; in-process runs make one up. Default: `None`.
    pub publish_token: Option<String>,
    /// In-process server only: synthetic feed rate in ticks per second over all
    /// symbols; 0 runs no feed. Default: 10,000.
    pub rate: u64,
    /// In-process server and publisher: symbols `SYM0..SYMn`. Default: 100.
    pub symbols: usize,
    /// In-process server only: writer cores. Default: 1.
    pub server_workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "custom".into(),
            url: None,
            connections: 100,
            symbols_per_conn: 10,
            select: Select::Uniform,
            zipf_s: 1.0,
            format: Format::Binary,
            max_rate: 0.0,
            channels: Vec::new(),
            book_depth: 0,
            stalled_fraction: 0.0,
            threads: 0,
            pin: false,
            seed: 1,
            duration_s: 10.0,
            warmup_s: 1.0,
            drain_s: 5.0,
            connect_timeout_s: 60.0,
            connect_concurrency: 64,
            publish_rate: 0,
            publish_format: Format::Binary,
            publish_batch: 256,
            publish_token: None,
            server_pid: None,
            rate: 10_000,
            symbols: 100,
            server_workers: 1,
        }
    }
}

impl Settings {
    /// Checks every bound; a run never starts with settings that fail it.
    pub fn validate(&self) -> anyhow::Result<()> {
        let finite = |name: &str, v: f64| -> anyhow::Result<()> {
            if !v.is_finite() || v < 0.0 {
                bail!("{name} must be a finite number ≥ 0, got {v}");
            }
            Ok(())
        };
        finite("duration", self.duration_s)?;
        finite("warmup", self.warmup_s)?;
        finite("drain", self.drain_s)?;
        finite("connect_timeout", self.connect_timeout_s)?;
        finite("max_rate", self.max_rate)?;
        if !(0.0..=0.9).contains(&self.stalled_fraction) {
            bail!(
                "stalled_fraction must be in [0, 0.9], got {}",
                self.stalled_fraction
            );
        }
        finite("zipf_s", self.zipf_s)?;
        if self.duration_s <= 0.0 || self.duration_s > MAX_DURATION_S {
            bail!("duration must be in (0, {MAX_DURATION_S}] seconds");
        }
        if self.warmup_s > MAX_DURATION_S
            || self.drain_s > MAX_PHASE_S
            || self.connect_timeout_s > MAX_PHASE_S
        {
            bail!("warmup ≤ {MAX_DURATION_S} s, drain and connect_timeout ≤ {MAX_PHASE_S} s");
        }
        if self.connections > MAX_CONNECTIONS {
            bail!("at most {MAX_CONNECTIONS} connections");
        }
        if self.publish_rate > MAX_PUBLISH_RATE {
            bail!("publish_rate at most {MAX_PUBLISH_RATE} ticks/s");
        }
        if self.connections == 0 && self.publish_rate == 0 {
            bail!("nothing to do: no connections and no publishing");
        }
        if self.publish_batch == 0 || self.publish_batch > 900 {
            bail!("publish_batch must be in 1..=900 (a binary message stays under 64 KiB)");
        }
        if self.connect_concurrency == 0 {
            bail!("connect_concurrency must be positive");
        }
        if self.symbols == 0 || self.symbols > 16_384 {
            bail!("symbols must be in 1..=16384");
        }
        if self.server_workers == 0 || self.server_workers > 256 {
            bail!("server_workers must be in 1..=256");
        }
        if let Some(url) = &self.url {
            crate::client::WsUrl::parse(url)?;
        }
        Ok(())
    }

    /// Client threads to run.
    pub fn thread_count(&self) -> usize {
        if self.threads > 0 {
            return self.threads.min(256);
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let t = if self.url.is_none() { cpus / 2 } else { cpus };
        t.clamp(1, self.connections.max(1))
    }
}

/// Reads a scenarios file: one table per scenario, keys as in [`Settings`].
pub fn parse_scenarios(text: &str) -> anyhow::Result<BTreeMap<String, Settings>> {
    let raw: BTreeMap<String, Settings> = toml::from_str(text).context("invalid scenarios file")?;
    Ok(raw
        .into_iter()
        .map(|(name, mut s)| {
            s.name = name.clone();
            (name, s)
        })
        .collect())
}

/// The scenario `name` from `text` (a scenarios file).
pub fn scenario(text: &str, name: &str) -> anyhow::Result<Settings> {
    let all = parse_scenarios(text)?;
    let names: Vec<&String> = all.keys().collect();
    all.get(name)
        .cloned()
        .with_context(|| format!("unknown scenario {name:?}; known: {names:?}"))
}

/// Parses a duration: `10` or `10s` (seconds), `500ms`, `2m`.
pub fn parse_seconds(s: &str) -> anyhow::Result<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("invalid duration {s:?}: e.g. 10, 10s, 500ms, 2m"))?;
    if !v.is_finite() || v < 0.0 {
        bail!("invalid duration {s:?}");
    }
    Ok(v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_scenarios_parse_and_validate() {
        let all = parse_scenarios(BUILTIN_SCENARIOS).unwrap();
        for name in ["dashboard", "quant", "fanout"] {
            let s = &all[name];
            assert_eq!(s.name, name);
            s.validate().unwrap();
        }
        let d = &all["dashboard"];
        assert_eq!((d.connections, d.symbols_per_conn), (1_000, 20));
        assert_eq!((d.format, d.max_rate), (Format::Json, 4.0));
        let q = &all["quant"];
        assert_eq!(
            (q.connections, q.symbols_per_conn, q.rate),
            (50, 0, 100_000)
        );
        assert_eq!(q.format, Format::Binary);
        let f = &all["fanout"];
        assert_eq!((f.connections, f.symbols_per_conn), (10_000, 10));
        assert!(scenario(BUILTIN_SCENARIOS, "nope").is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        let ok = Settings::default();
        ok.validate().unwrap();
        for bad in [
            Settings {
                duration_s: 0.0,
                ..ok.clone()
            },
            Settings {
                duration_s: 4_000.0,
                ..ok.clone()
            },
            Settings {
                connections: MAX_CONNECTIONS + 1,
                ..ok.clone()
            },
            Settings {
                warmup_s: f64::NAN,
                ..ok.clone()
            },
            Settings {
                url: Some("http://x".into()),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_seconds("10").unwrap(), 10.0);
        assert_eq!(parse_seconds("10s").unwrap(), 10.0);
        assert_eq!(parse_seconds("500ms").unwrap(), 0.5);
        assert_eq!(parse_seconds("2m").unwrap(), 120.0);
        assert!(parse_seconds("x").is_err());
        assert!(parse_seconds("-1").is_err());
    }
}

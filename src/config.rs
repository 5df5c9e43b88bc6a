//! `Config`: every setting of the server, with its default, in one place.
//!
//! Settings come in layers, each over the one before: the built-in defaults, a TOML
//! file (`tickcast --config FILE`, every key optional), the environment
//! (`TICKCAST_<NAME>`, with `__` between levels: `TICKCAST_LISTEN`,
//! `TICKCAST_LIMITS__MAX_CONNECTIONS`), then the command line's flags, which the
//! binary applies last. [figment](https://docs.rs/figment) merges the file and the
//! environment. Unknown keys are an error, so a typo never silently falls back to a
//! default; a `TICKCAST_` variable that names no setting at all is left alone and
//! reported ([`Layered::ignored_env`]). `docs/tickcast.example.toml` lists every
//! setting with its default; `docs/operations.md` the environment's rules.

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Serialized};
use figment::Figment;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::feed::FeedSpec;

/// The prefix of environment variables that set config values.
pub const ENV_PREFIX: &str = "TICKCAST_";

/// Why a config could not be used. Each message is one line naming the setting (or
/// the file) at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("invalid config {path}, line {line} column {column}: {message}")]
    Parse {
        /// The path given (`<text>` for a string).
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting has the wrong type, or names no setting.
    #[error("invalid setting `{setting}` ({origin}): {message}")]
    Setting {
        /// The setting's path, `limits.max_connections`.
        setting: String,
        /// Where the value came from: the file's path, or the environment variable.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The format of log lines (`log_format`, `--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected `text` or `json`"
            )),
        }
    }
}

/// A config made from its layers, with what the environment offered but named no
/// setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Layered {
    /// The settings, validated.
    pub config: Config,
    /// `TICKCAST_` variables that name no setting and were left alone, sorted.
    pub ignored_env: Vec<String>,
}

/// The server's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the one HTTP/WebSocket port. Default: `127.0.0.1:9001`.
    pub listen: SocketAddr,
    /// Writer cores (threads that own connections); 0 means one per available CPU.
    /// Default: 0.
    pub workers: usize,
    /// Pin each writer core to its own CPU with core_affinity. Default: true.
    pub pin_cores: bool,
    /// Slots in the broadcast ring, a power of two. It bounds how far a writer core may
    /// fall behind before it resynchronises from the last-value cache, and how far back
    /// a resume can replay. Default: 65,536.
    pub ring_capacity: usize,
    /// Most distinct symbols; ticks for more are rejected and counted. Default: 16,384.
    pub max_symbols: usize,
    /// Levels kept per side of each symbol's order book; a better level arriving at a
    /// full side pushes the worst out (published as a removal, counted in
    /// `sequencer.book_evicted`), a worse one is not kept (`sequencer.book_dropped`).
    /// A slow subscriber merges at most twice this many book levels before it is sent
    /// a fresh snapshot instead. At most 4,096. Default: 50.
    pub max_book_levels: usize,
    /// Capacity of the feed → sequencer channel, in ticks; full blocks the feeds.
    /// Default: 65,536.
    pub feed_channel_capacity: usize,
    /// Largest client control message, in bytes; a larger one closes the connection
    /// with code 1009. Default: 65,536.
    pub max_control_message_bytes: usize,
    /// Outbound queue per connection above which it conflates, in bytes.
    /// Default: 1,048,576.
    pub high_water_bytes: usize,
    /// Outbound queue at or below which a conflating connection streams again, in bytes.
    /// Default: 262,144.
    pub low_water_bytes: usize,
    /// Oldest unsent byte's age above which a connection conflates, in ms; 0 turns the
    /// age bound off. Default: 1,000.
    pub max_queue_age_ms: u64,
    /// A connection with queued bytes that makes no write progress for this long is
    /// closed with code 4008 `slow consumer`, in ms. Default: 10,000.
    pub stall_timeout_ms: u64,
    /// On an edge or an ingest (nodes that follow the leader's numbers): how long a
    /// client that resumes from a sequence this node has not reached yet waits for it,
    /// in ms. The node is usually a few milliseconds behind the one the client came
    /// from; once it has read the client's resume point the client goes on with no gap
    /// and no snapshot, and past this bound it gets a snapshot. 0 sends the snapshot
    /// at once. A standalone node numbers its own ticks and never waits.
    /// Default: 500.
    pub resume_wait_ms: u64,
    /// Token a publisher must present to use `/publish` (as `?token=` or
    /// `Authorization: Bearer`); `None` disables the endpoint. Default: `None`.
    pub publish_token: Option<String>,
    /// Path of a WebSocket route that sends every text and binary message back, for
    /// conformance testing (`/echo`, say); `None` (the default) serves no such route.
    /// It is served by the same connection code as `/ws`: same admission, origin and
    /// auth checks, same limits. Default: `None`.
    pub echo_path: Option<String>,
    /// What this node does: `standalone` (feeds, sequencer and clients on one node),
    /// `ingest` (the same, and it publishes every sequenced batch to NATS) or `edge`
    /// (no feeds: its ticks come from the ingest through NATS). Default: `standalone`.
    pub role: crate::bus::Role,
    /// NATS server(s) of an `ingest` or `edge` node, comma-separated URLs.
    /// Default: `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// Subjects, queues and timeouts of the NATS bus (`[bus]`).
    pub bus: crate::bus::BusConfig,
    /// Largest message accepted on `/publish`, in bytes; a larger one closes the
    /// connection with code 1009. Default: 1,048,576.
    pub max_publish_message_bytes: usize,
    /// Ping a connection after this long without hearing from it, in ms.
    /// Default: 15,000.
    pub ping_interval_ms: u64,
    /// Close (code 4010, `heartbeat timeout`) and free a connection from which nothing,
    /// not even a pong, arrived for this long, in ms. Default: 45,000.
    pub idle_timeout_ms: u64,
    /// Connection and message limits.
    pub limits: Limits,
    /// TLS (`wss://`, `https://`) for the one port; absent (the default) serves plain
    /// TCP.
    pub tls: Option<TlsConfig>,
    /// Subscriber authentication; absent (the default) lets anyone subscribe to
    /// anything, as suits a local demo.
    pub auth: Option<crate::auth::AuthConfig>,
    /// The format of log lines on stderr: `text` or `json`. Default: `text`.
    pub log_format: LogFormat,
    /// What `/readyz` waits for (`[readiness]`).
    pub readiness: crate::readiness::ReadinessConfig,
    /// The feeds to run. Default: one synthetic feed.
    pub feeds: Vec<FeedSpec>,
    /// The rolling recorder: every sequenced tick into rotated capture files
    /// (`[record]`); absent (the default) records nothing.
    pub record: Option<crate::recorder::RecordConfig>,
}

/// Settings of `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_path: std::path::PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: std::path::PathBuf,
}

/// Limits that protect the server from too many or too demanding clients. Each one's
/// response when hit is in `docs/operations.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Open WebSocket connections in total; past it upgrades get HTTP 503.
    /// Default: 100,000.
    pub max_connections: usize,
    /// Open connections from one IP address; past it upgrades get HTTP 429.
    /// Default: 1,000.
    pub max_connections_per_ip: usize,
    /// Symbols one connection may hold; a subscribe past it gets an error and
    /// subscribes nothing. Default: 10,000.
    pub max_subscriptions_per_connection: usize,
    /// Control messages per second per connection (sustained); messages past the
    /// budget get an error and are dropped. Default: 50.
    pub control_messages_per_sec: u32,
    /// Control messages a connection may send in a burst. Default: 100.
    pub control_burst: u32,
    /// Control output (acks, errors, symbol maps, pongs) queued for a connection above
    /// which the server stops reading its input until the output drains, in bytes:
    /// a client that sends without reading the replies is pushed back by TCP instead
    /// of growing the server's memory. Default: 16,384.
    pub max_pending_control_bytes: usize,
    /// Bytes a subscriber may send per second (sustained), in bytes; past it (and a
    /// burst of this many bytes or twice `max_control_message_bytes`, whichever is
    /// more) its input is not read until the budget refills, so a flooding client
    /// costs the server a bounded share of its core. Default: 262,144.
    pub max_input_bytes_per_sec: u64,
    /// Time a client has to send its request headers, in ms. Default: 10,000.
    pub handshake_timeout_ms: u64,
    /// Browser origins allowed to connect (exact `Origin` header values); empty allows
    /// any. Requests without an `Origin` header (non-browser clients) are always
    /// allowed. Past it: HTTP 403. Default: empty.
    pub allowed_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_subscriptions_per_connection: 10_000,
            control_messages_per_sec: 50,
            control_burst: 100,
            max_pending_control_bytes: 16 * 1024,
            max_input_bytes_per_sec: 256 * 1024,
            handshake_timeout_ms: 10_000,
            allowed_origins: Vec::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            workers: 0,
            pin_cores: true,
            ring_capacity: 65_536,
            max_symbols: 16_384,
            max_book_levels: crate::lvc::DEFAULT_MAX_BOOK_LEVELS,
            feed_channel_capacity: 65_536,
            max_control_message_bytes: 65_536,
            high_water_bytes: 1 << 20,
            low_water_bytes: 256 << 10,
            max_queue_age_ms: 1_000,
            stall_timeout_ms: 10_000,
            resume_wait_ms: 500,
            publish_token: None,
            echo_path: None,
            role: crate::bus::Role::Standalone,
            nats_url: "nats://127.0.0.1:4222".into(),
            bus: crate::bus::BusConfig::default(),
            max_publish_message_bytes: 1 << 20,
            ping_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            limits: Limits::default(),
            tls: None,
            auth: None,
            log_format: LogFormat::Text,
            readiness: crate::readiness::ReadinessConfig::default(),
            feeds: vec![FeedSpec::default()],
            record: None,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file (defaults for what it leaves out; no
    /// environment).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::from_layers(Some((&path.display().to_string(), &text)), None)
    }

    /// Parses and validates TOML text (defaults for what it leaves out; no
    /// environment).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_layers(Some(("<text>", text)), None)
    }

    /// The defaults, then the file at `path` (if any), then the process's `TICKCAST_`
    /// environment variables; validated.
    pub fn layered(path: Option<&Path>) -> Result<Layered, ConfigError> {
        let text = path.map(read).transpose()?;
        let name = path.map(|p| p.display().to_string());
        let file = name.as_deref().zip(text.as_deref());
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let known = top_level_keys();
        let (used, mut ignored): (Vec<_>, Vec<_>) = vars
            .into_iter()
            .partition(|(k, _)| known.iter().any(|n| names_setting(k, n)));
        ignored.sort();
        let names: Vec<&str> = used.iter().map(|(k, _)| &k[ENV_PREFIX.len()..]).collect();
        let config = Config::from_layers(file, Some(&names))?;
        Ok(Layered {
            config,
            ignored_env: ignored.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// Merges `file` (its name for messages, and its text) and the environment
    /// variables `env` (names without the prefix) over the defaults, and validates the
    /// result.
    fn from_layers(
        file: Option<(&str, &str)>,
        env: Option<&[&str]>,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        let file_name = file.map_or("<none>", |(name, _)| name).to_string();
        if let Some((name, text)) = file {
            let table: toml::Table = toml::from_str(text).map_err(|e| {
                let (line, column) = e
                    .span()
                    .map_or((1, 1), |span| line_column(text, span.start));
                ConfigError::Parse {
                    path: name.to_string(),
                    line,
                    column,
                    message: e.message().trim().to_string(),
                }
            })?;
            figment = figment.merge(Serialized::defaults(table));
        }
        if let Some(names) = env {
            figment = figment.merge(Env::prefixed(ENV_PREFIX).only(names).split("__"));
        }
        let config: Config = figment
            .extract()
            .map_err(|e| setting_error(e, &file_name))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the ranges that serde cannot; the error names the first setting out of
    /// range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive: [(&str, u64); 15] = [
            ("max_symbols", self.max_symbols as u64),
            ("max_book_levels", self.max_book_levels as u64),
            ("feed_channel_capacity", self.feed_channel_capacity as u64),
            ("high_water_bytes", self.high_water_bytes as u64),
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("ping_interval_ms", self.ping_interval_ms),
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                l.max_connections_per_ip as u64,
            ),
            (
                "limits.max_subscriptions_per_connection",
                l.max_subscriptions_per_connection as u64,
            ),
            (
                "limits.control_messages_per_sec",
                u64::from(l.control_messages_per_sec),
            ),
            ("limits.control_burst", u64::from(l.control_burst)),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            (
                "readiness.max_feed_outage_ms",
                self.readiness.max_feed_outage_ms,
            ),
            (
                "max_control_message_bytes",
                self.max_control_message_bytes as u64,
            ),
            (
                "max_publish_message_bytes",
                self.max_publish_message_bytes as u64,
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(invalid(format!("{name} must be at least 1 (got 0)")));
            }
        }
        if !self.ring_capacity.is_power_of_two() || self.ring_capacity < 2 {
            let up = self.ring_capacity.max(2).checked_next_power_of_two();
            return Err(invalid(format!(
                "ring_capacity must be a power of two, at least 2 (got {}{})",
                self.ring_capacity,
                up.map_or(String::new(), |p| format!("; the next one is {p}"))
            )));
        }
        if self.workers > 4096 {
            return Err(invalid(format!(
                "workers must be at most 4096 (got {}; 0 means one per CPU)",
                self.workers
            )));
        }
        if self.max_book_levels > 4096 {
            return Err(invalid(format!(
                "max_book_levels must be at most 4096 (got {})",
                self.max_book_levels
            )));
        }
        if self.low_water_bytes >= self.high_water_bytes {
            return Err(invalid(format!(
                "low_water_bytes ({}) must be below high_water_bytes ({})",
                self.low_water_bytes, self.high_water_bytes
            )));
        }
        if let Some(path) = &self.echo_path {
            if !path.starts_with('/') || crate::http::is_builtin_path(path) {
                return Err(invalid(format!(
                    "echo_path {path:?} must start with '/' and not be a built-in route"
                )));
            }
        }
        if self.publish_token.as_deref() == Some("") {
            return Err(invalid(
                "publish_token must not be empty (leave it out to disable /publish)",
            ));
        }
        for (name, v) in [
            ("max_publish_message_bytes", self.max_publish_message_bytes),
            ("max_control_message_bytes", self.max_control_message_bytes),
        ] {
            if v < 256 {
                return Err(invalid(format!("{name} must be at least 256 (got {v})")));
            }
        }
        if self.idle_timeout_ms <= self.ping_interval_ms {
            return Err(invalid(format!(
                "idle_timeout_ms ({}) must be longer than ping_interval_ms ({})",
                self.idle_timeout_ms, self.ping_interval_ms
            )));
        }
        for (i, feed) in self.feeds.iter().enumerate() {
            feed.validate()
                .map_err(|e| invalid(format!("feeds[{i}] ({}): {e}", crate::feed::name(feed))))?;
        }
        if self.limits.max_input_bytes_per_sec < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_input_bytes_per_sec must be at least 1024".into(),
            ));
        }
        if self.limits.max_pending_control_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_pending_control_bytes must be at least 1024".into(),
            ));
        }
        crate::bus::validate(self)?;
        if let Some(record) = &self.record {
            record.validate().map_err(ConfigError::Invalid)?;
            if self.role == crate::bus::Role::Edge {
                return Err(ConfigError::Invalid(
                    "[record] records what a node sequences: an edge sequences nothing \
                     (record on the ingest)"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The settings as TOML, with secrets (`publish_token`, `auth.jwt_secret`)
    /// replaced by `<redacted>`: what `tickcast check-config` prints.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        let redacted = || "<redacted>".to_string();
        if shown.publish_token.is_some() {
            shown.publish_token = Some(redacted());
        }
        if let Some(auth) = &mut shown.auth {
            auth.jwt_secret = redacted();
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"))
    }

    /// The number of writer cores to run.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// The names of the top-level settings (`listen`, `limits`, …).
fn top_level_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Whether the variable `var` (`TICKCAST_LIMITS__MAX_CONNECTIONS`) sets the top-level
/// setting `key` (`limits`).
fn names_setting(var: &str, key: &str) -> bool {
    let name = &var[ENV_PREFIX.len().min(var.len())..];
    let first = name.split("__").next().unwrap_or("");
    first.eq_ignore_ascii_case(key)
}

/// The first of figment's errors, as one line naming the setting and where its value
/// came from (`file` or the environment variable).
fn setting_error(e: figment::Error, file: &str) -> ConfigError {
    let Some(e) = e.into_iter().next() else {
        return ConfigError::Invalid("unknown error".into());
    };
    // An unknown field's path already ends with the field.
    let path = e.path.clone();
    let message = match &e.kind {
        figment::error::Kind::UnknownField(..) => "no such setting".to_string(),
        kind => kind.to_string(),
    };
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    let origin = if from_env {
        let var: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
        format!("environment variable {ENV_PREFIX}{}", var.join("__"))
    } else if e.metadata.is_some() {
        file.to_string()
    } else {
        "defaults".to_string()
    };
    ConfigError::Setting {
        setting: path.join("."),
        origin,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn example_file_matches_defaults() {
        let text = include_str!("../docs/tickcast.example.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_ranges() {
        let e = Config::parse("listne = \"1.2.3.4:5\"").unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
        let e = Config::parse("low_water_bytes = 10\nhigh_water_bytes = 5").unwrap_err();
        assert!(e.to_string().contains("low_water_bytes"), "{e}");
    }

    #[test]
    fn record_section() {
        let c = Config::parse("[record]\ndir = \"/var/lib/tickcast\"\nrotate_mb = 64\n").unwrap();
        let r = c.record.unwrap();
        assert_eq!((r.rotate_mb, r.keep), (64, 24));
        let e = Config::parse("[record]\nrotate_mb = 64\n").unwrap_err();
        assert!(e.to_string().contains("record.dir"), "{e}");
        let e = Config::parse("role = \"edge\"\n[record]\ndir = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("edge"), "{e}");
        let e = Config::parse("[record]\ndir = \"x\"\nrotate = 1\n").unwrap_err();
        assert!(e.to_string().contains("rotate"), "{e}");
    }

    #[test]
    fn echo_path_is_off_by_default_and_checked() {
        assert_eq!(Config::default().echo_path, None);
        let c = Config::parse("echo_path = \"/echo\"").unwrap();
        assert_eq!(c.echo_path.as_deref(), Some("/echo"));
        for bad in ["echo", "/ws", "/healthz", "/publish", "/"] {
            let e = Config::parse(&format!("echo_path = {bad:?}")).unwrap_err();
            assert!(e.to_string().contains("echo_path"), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_feeds() {
        let c = Config::parse("[[feeds]]\nkind = \"synthetic\"\nrate = 5\n").unwrap();
        match &c.feeds[..] {
            [FeedSpec::Synthetic(s)] => assert_eq!(s.rate, 5),
            other => panic!("{other:?}"),
        }
    }
}
